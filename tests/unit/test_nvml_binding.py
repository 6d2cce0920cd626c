"""llem's NVML layer over the real pynvml binding, loaded from the compiled stub."""

from __future__ import annotations

import subprocess
import sys

from llem_testkit import REPO_ROOT
from llem_testkit.nvml_stub import DRIVER_NOT_LOADED, GPU_IS_LOST, NOT_SUPPORTED

DESCRIBE = """
from llem_cli.telemetry import describe_gpus
report = describe_gpus()
result = {"data": report.to_dict(), "lines": report.lines()}
"""


def test_importing_telemetry_does_not_import_pynvml():
    code = "import sys, llem_cli.telemetry, llem_cli.results.stats; print('pynvml' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=True,
        timeout=30,
    )
    assert out.stdout.strip() == "False"


def test_open_gpus_reads_identity_memory_and_driver(stub):
    result = stub.run(
        """
        from llem_cli.telemetry import open_gpus
        with open_gpus() as gs:
            g = gs.gpus[1]
            result = {"indices": sorted(gs.gpus), "driver": gs.driver_version,
                      "name": g.name(), "uuid": g.uuid(), "mem": list(g.memory_bytes()),
                      "reason": gs.reason}
        """,
        {
            "count": 2,
            "driver": "560.35.03",
            "gpu1.name": "NVIDIA H200",
            "gpu1.uuid": "GPU-abc",
            "gpu1.mem_total": 2**30 * 141,
            "gpu1.mem_used": 2**20 * 512,
        },
    )
    assert result == {
        "indices": [0, 1],
        "driver": "560.35.03",
        "name": "NVIDIA H200",
        "uuid": "GPU-abc",
        "mem": [2**30 * 141, 2**20 * 512],
        "reason": None,
    }


def test_requested_gpu_the_host_lacks_is_missing_with_reason(stub):
    result = stub.run(
        """
        from llem_cli.telemetry import open_gpus
        gs = open_gpus([1, 5])
        result = {"indices": sorted(gs.gpus), "missing": gs.missing, "reason": gs.reason}
        """,
        {"count": 2},
    )
    assert result == {
        "indices": [1],
        "missing": {"5": "GPU 5 not found (host has 2)"},
        "reason": None,
    }


def test_doctor_report_with_counter_and_without(stub):
    result = stub.run(
        DESCRIBE,
        {
            "count": 2,
            "driver": "550.54.15",
            "gpu0.name": "NVIDIA H200",
            "gpu0.mem_total": 143771 * 2**20,
            "gpu1.name": "Tesla P100",
            "gpu1.mem_total": 16384 * 2**20,
            "gpu1.error.nvmlDeviceGetTotalEnergyConsumption": NOT_SUPPORTED,
        },
    )
    gpus = result["data"]["gpus"]
    assert [g["energy_method"] for g in gpus] == ["counter", "power_sampling"]
    assert gpus[0]["memory_total_mib"] == 143771
    assert gpus[1]["unsupported"] == {"energy_counter": "not supported (Not Supported)"}
    assert result["lines"] == [
        "NVIDIA driver 550.54.15, 2 GPU(s)",
        "GPU 0: NVIDIA H200, 143771 MiB; energy: total energy counter; temperature: yes",
        "GPU 1: Tesla P100, 16384 MiB; energy: sampled power every 50 ms "
        "(not supported (Not Supported)); temperature: yes",
    ]


def test_doctor_report_when_nothing_is_supported(stub):
    state = {"count": 1}
    for fn in (
        "nvmlDeviceGetTotalEnergyConsumption",
        "nvmlDeviceGetPowerUsage",
        "nvmlDeviceGetTemperature",
        "nvmlDeviceGetMemoryInfo",
        "nvmlDeviceGetCurrentClocksEventReasons",
        "nvmlDeviceGetComputeRunningProcesses_v3",
    ):
        state[f"error.{fn}"] = NOT_SUPPORTED
    result = stub.run(DESCRIBE, state)
    gpu = result["data"]["gpus"][0]
    assert gpu["energy_method"] is None
    assert gpu["memory_total_mib"] is None
    assert set(gpu["unsupported"]) == {
        "energy_counter",
        "power",
        "temperature",
        "memory",
        "clock_events",
        "processes",
    }
    assert "energy: not measurable" in result["lines"][1]


def test_no_library_gives_empty_set_with_reason(stub, no_nvml_dir):
    result = stub.run(DESCRIBE, lib_dir=no_nvml_dir)
    assert result["data"]["gpus"] == []
    assert "libnvidia-ml.so.1 not found" in result["data"]["reason"]
    assert result["lines"] == [
        "GPUs: none (NVML library libnvidia-ml.so.1 not found (no NVIDIA driver on this "
        "host)); energy, power and temperature will be recorded as null"
    ]


def test_driver_not_loaded_gives_empty_set_with_reason(stub):
    result = stub.run(DESCRIBE, {"init_error": DRIVER_NOT_LOADED})
    assert result["data"]["gpus"] == []
    assert result["data"]["reason"] == "NVIDIA driver not loaded"


def test_zero_gpus(stub):
    result = stub.run(DESCRIBE, {"count": 0})
    assert result["data"]["reason"] == "no NVIDIA GPU found by NVML"


def test_error_mapping_not_supported_and_gpu_lost(stub):
    result = stub.run(
        """
        from llem_cli.telemetry import open_gpus, NvmlGpuLost, NvmlNotSupported
        from llem_cli.telemetry.nvml import reading
        gs = open_gpus()
        g = gs.gpus[0]
        value, why = reading(g.temperature_c)
        try:
            g.power_mw()
            lost = None
        except NvmlGpuLost as exc:
            lost = [exc.message, exc.code, exc.exit_code]
        try:
            g.temperature_c()
            unsupported = None
        except NvmlNotSupported as exc:
            unsupported = exc.code
        result = {"value": value, "why": why, "lost": lost, "unsupported": unsupported}
        """,
        {
            "error.nvmlDeviceGetTemperature": NOT_SUPPORTED,
            "error.nvmlDeviceGetPowerUsage": GPU_IS_LOST,
        },
    )
    assert result == {
        "value": None,
        "why": "not supported (Not Supported)",
        "lost": ["GPU lost (GPU is lost)", GPU_IS_LOST, 4],
        "unsupported": NOT_SUPPORTED,
    }


def test_clock_event_reasons_and_processes(stub):
    result = stub.run(
        """
        from llem_cli.telemetry import open_gpus
        g = open_gpus().gpus[0]
        result = {"reasons": g.clock_event_reasons(), "procs": g.compute_processes()}
        """,
        {"gpu0.throttle": "0x1024", "gpu0.procs": "4242:1048576,77:0"},
    )
    assert result == {
        "reasons": ["sw_power_cap", "sw_thermal_slowdown", "0x1000"],
        "procs": [[4242, 1048576], [77, 0]],
    }


def test_older_driver_throttle_reasons_name(stub, legacy_nvml_stub_dir):
    result = stub.run(
        """
        from llem_cli.telemetry import open_gpus
        import pynvml
        g = open_gpus().gpus[0]
        try:
            pynvml.nvmlDeviceGetCurrentClocksEventReasons(g._handle)
            new_name = "present"
        except pynvml.NVMLError_FunctionNotFound:
            new_name = "missing"
        result = {"new_name": new_name, "reasons": g.clock_event_reasons()}
        """,
        {"gpu0.throttle": "0x40"},
        lib_dir=legacy_nvml_stub_dir,
    )
    assert result == {"new_name": "missing", "reasons": ["hw_thermal_slowdown"]}
