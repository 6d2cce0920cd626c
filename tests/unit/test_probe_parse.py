"""Parsing the nvidia-smi CSV and reading its exit codes (no engine needed)."""

from __future__ import annotations

import pytest

from llem_cli.docker.probe import (
    FULL_FIELDS,
    MINIMAL_FIELDS,
    GpuStatus,
    ProbeParseError,
    ProbeResult,
    interpret,
    parse_csv,
    query_argv,
)


def test_query_argv_is_the_contract() -> None:
    assert query_argv() == [
        "nvidia-smi",
        "--query-gpu=index,uuid,memory.used,memory.total,temperature.gpu,utilization.gpu,"
        "power.draw",
        "--format=csv,noheader,nounits",
    ]
    assert query_argv(MINIMAL_FIELDS)[1] == "--query-gpu=index,memory.used,memory.total"


def test_full_row() -> None:
    (gpu,) = parse_csv("0, GPU-abc, 1024, 81559, 35, 7, 70.5\n")
    assert gpu == GpuStatus(0, "GPU-abc", 1024.0, 81559.0, 35.0, 7.0, 70.5)
    assert gpu.memory_used_pct == pytest.approx(100 * 1024 / 81559)


def test_several_gpus_and_blank_lines() -> None:
    gpus = parse_csv("\n0, GPU-a, 10, 100, 30, 0, 50\n\n1, GPU-b, 95, 100, 60, 99, 300.25\n")
    assert [g.index for g in gpus] == [0, 1]
    assert gpus[1].power_w == 300.25


@pytest.mark.parametrize("missing", ["[N/A]", "[Not Supported]", "[Unknown Error]", "N/A", ""])
def test_bracketed_values_are_none_never_zero(missing: str) -> None:
    (gpu,) = parse_csv(f"0, GPU-a, {missing}, 81559, {missing}, {missing}, {missing}")
    assert gpu.memory_used_mib is None
    assert gpu.temperature_c is None
    assert gpu.utilization_pct is None
    assert gpu.power_w is None
    assert gpu.memory_total_mib == 81559
    assert gpu.memory_used_pct is None


def test_pct_needs_both_values_and_a_nonzero_total() -> None:
    assert GpuStatus(0, memory_used_mib=5, memory_total_mib=None).memory_used_pct is None
    assert GpuStatus(0, memory_used_mib=5, memory_total_mib=0).memory_used_pct is None
    assert GpuStatus(0, memory_used_mib=50, memory_total_mib=200).memory_used_pct == 25.0


def test_units_left_in_are_tolerated() -> None:
    (gpu,) = parse_csv("0, GPU-a, 1024 MiB, 81559 MiB, 35, 7 %, 70.50 W")
    assert (gpu.memory_used_mib, gpu.utilization_pct, gpu.power_w) == (1024, 7, 70.5)


def test_minimal_row_is_read_as_minimal() -> None:
    (gpu,) = parse_csv("3, 2048, 4096", FULL_FIELDS)
    assert gpu == GpuStatus(3, memory_used_mib=2048, memory_total_mib=4096)
    assert parse_csv("3, 2048, 4096", MINIMAL_FIELDS) == (gpu,)


@pytest.mark.parametrize(
    "text", ["0, GPU-a, 1, 2", "0, GPU-a, lots, 81559, 35, 7, 70", "GPU 0: NVIDIA H100 (UUID: x)"]
)
def test_bad_rows_raise(text: str) -> None:
    with pytest.raises(ProbeParseError):
        parse_csv(text)


HEALTHY = "0, GPU-a, 1024, 81559, 35, 0, 70.5\n"


NOT_RUNNABLE = "the probe command is not runnable in the container"


@pytest.mark.parametrize(
    ("code", "stdout", "status", "message"),
    [
        (0, HEALTHY, "ok", "1 GPU(s) ok"),
        (
            9,
            "NVIDIA-SMI has failed because it couldn't communicate with the driver.",
            "driver_not_loaded",
            "NVIDIA driver not loaded (nvidia-smi exit 9): "
            "NVIDIA-SMI has failed because it couldn't communicate with the driver.",
        ),
        (
            12,
            "NVML Shared Library Not Found",
            "nvml_missing",
            "NVML shared library not found (nvidia-smi exit 12): NVML Shared Library Not Found",
        ),
        (
            15,
            "Unknown Error",
            "gpu_lost",
            "a GPU is lost (nvidia-smi exit 15); reboot the host to recover it: Unknown Error",
        ),
        (
            0,
            "Unable to determine the device handle for GPU0000:3B:00.0: GPU is lost.",
            "gpu_lost",
            "a GPU is lost (nvidia-smi exit 15); reboot the host to recover it: "
            "Unable to determine the device handle for GPU0000:3B:00.0: GPU is lost.",
        ),
        (
            2,
            'Field "power.draw" is not a valid field to query.',
            "invalid_field",
            "nvidia-smi rejects the query fields (exit 2): "
            'Field "power.draw" is not a valid field to query.',
        ),
        (126, "", "not_runnable", NOT_RUNNABLE),
        (127, "", "not_runnable", NOT_RUNNABLE),
        (1, "boom", "failed", "the probe failed: boom"),
        (
            0,
            "garbage here",
            "unparseable",
            "the probe's output is not the expected CSV: "
            "line 1: 1 values, expected 7: 'garbage here'",
        ),
        (0, "", "unparseable", "the probe's output is not the expected CSV: no GPU rows"),
    ],
)
def test_interpret_exit_codes(code: int, stdout: str, status: str, message: str) -> None:
    found = interpret(code, stdout)
    assert found.status == status
    assert found.exit_code == code
    assert found.message() == message
    if status != "ok":
        assert not found.gpus


def test_interpret_timeout_wins() -> None:
    assert interpret(-9, "", timed_out=True).status == "timeout"


def test_threshold_uses_present_values_and_selected_gpus() -> None:
    found = interpret(0, "0, GPU-a, 10, 100, 30, 0, 50\n1, GPU-b, 95, 100, 60, 99, 300\n")
    assert found.max_memory_used_pct() == 95
    assert found.over_threshold(90)
    assert not found.over_threshold(95)
    assert not found.over_threshold(90, indices=[0])
    assert found.max_memory_used_pct(indices=[7]) is None


def test_threshold_with_nothing_reported_is_not_over() -> None:
    found = interpret(0, "0, GPU-a, [N/A], [N/A], [N/A], [N/A], [N/A]\n")
    assert found.ok
    assert found.max_memory_used_pct() is None
    assert not found.over_threshold(0)


def test_message() -> None:
    assert ProbeResult("ok", gpus=(GpuStatus(0),)).message() == "1 GPU(s) ok"
    assert "exit 15" in interpret(15, "").message()
