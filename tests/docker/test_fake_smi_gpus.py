"""The test image's stand-ins as several GPUs (marker ``docker``).

``nvidia-smi`` in llem-test-busybox:latest takes its GPUs from the host's stand-in NVML state
file when ``LLEM_FAKE_NVML_STATE`` names it (its folder bind-mounted), filtered by
``NVIDIA_VISIBLE_DEVICES`` as the NVIDIA container runtime would; ``llem-fake-busy`` marks the
experiment's GPUs (``LLEM_GPU_UUIDS``) busy in files the host's stub (``busy_dir``) then reads.
Every container runs with ``--network none``.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from llem_cli.docker.probe import parse_csv, query_argv
from llem_testkit import TEST_IMAGE
from llem_testkit.nvml_stub import Stub

pytestmark = pytest.mark.docker

STATE_DIR = "/llem/fake-nvml"  # where the state file's folder is mounted in the container
PROBE = query_argv()[1:]
UUID1 = "GPU-11111111-2222-3333-4444-555555555555"
GIB = 2**30

STATE = {
    "count": 3,
    "gpu0.name": "NVIDIA H200",
    "gpu0.mem_total": 141 * GIB,
    "gpu0.mem_used": 2 * GIB,
    "gpu0.temp_c": 41,
    "gpu0.power_mw": 120_500,
    "gpu1.uuid": UUID1,
    "gpu1.name": "NVIDIA H100 80GB HBM3",
    "gpu1.mem_total": 80 * GIB,
    "gpu1.mem_used": 512 * 2**20,
    "gpu1.temp_c": 52,
    "gpu1.power_mw": 300_000,
    # GPU 2: every default of the stub (UUID ...-000000000002, 80 GiB, 1 GiB used, 40 C, 100 W)
}
ROWS = {
    0: ("GPU-00000000-0000-0000-0000-000000000000", 2048.0, 144384.0, 41.0, 120.5),
    1: (UUID1, 512.0, 81920.0, 52.0, 300.0),
    2: ("GPU-00000000-0000-0000-0000-000000000002", 1024.0, 81920.0, 40.0, 100.0),
}


def docker_run(
    argv: list[str],
    env: dict[str, str] | None = None,
    mounts: dict[Path, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        run_argv(argv, env, mounts), capture_output=True, text=True, timeout=timeout, check=False
    )


def run_argv(
    argv: list[str],
    env: dict[str, str] | None = None,
    mounts: dict[Path, str] | None = None,
    name: str | None = None,
) -> list[str]:
    cmd = ["docker", "run", "--rm", "--network", "none"]
    if name:
        cmd += ["--name", name]
    for host, inside in (mounts or {}).items():
        cmd += ["-v", f"{host}:{inside}"]
    for k, v in (env or {}).items():
        cmd += ["-e", f"{k}={v}"]
    return [*cmd, TEST_IMAGE, *argv]


@pytest.fixture
def state(stub: Stub) -> Stub:
    stub.write_state(STATE)
    return stub


def smi(stub: Stub, args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    """nvidia-smi in a fresh container that sees the stub's state file."""
    env = {"LLEM_FAKE_NVML_STATE": f"{STATE_DIR}/{stub.state_file.name}", **env}
    return docker_run(["nvidia-smi", *args], env, {stub.state_file.parent: f"{STATE_DIR}:ro"})


def probe_rows(done: subprocess.CompletedProcess[str]) -> list[tuple[object, ...]]:
    assert done.returncode == 0, done.stdout + done.stderr
    return [
        (g.index, g.uuid, g.memory_used_mib, g.memory_total_mib, g.temperature_c, g.power_w)
        for g in parse_csv(done.stdout)
    ]


def expect(*host_indexes: int) -> list[tuple[object, ...]]:
    """The probe's rows for these host GPUs, renumbered from 0 as inside the container."""
    return [(i, *ROWS[h]) for i, h in enumerate(host_indexes)]


@pytest.mark.parametrize(
    ("visible", "seen"),
    [
        (None, (0, 1, 2)),
        ("all", (0, 1, 2)),
        ("2", (2,)),
        (f"GPU-00000000-0000-0000-0000-000000000002,{UUID1}", (2, 1)),
        ("1,0", (1, 0)),
    ],
    ids=["unset", "all", "one-index", "two-uuids-in-order", "two-indexes"],
)
def test_probe_sees_the_visible_gpus(
    state: Stub, visible: str | None, seen: tuple[int, ...]
) -> None:
    env = {} if visible is None else {"NVIDIA_VISIBLE_DEVICES": visible}
    assert probe_rows(smi(state, PROBE, **env)) == expect(*seen)


@pytest.mark.parametrize("visible", ["none", "void", ""])
def test_no_visible_gpu_is_no_devices_found(state: Stub, visible: str) -> None:
    done = smi(state, PROBE, NVIDIA_VISIBLE_DEVICES=visible)
    assert (done.returncode, done.stdout) == (6, "No devices were found\n")


def test_privileged_sees_every_gpu_and_list(state: Stub) -> None:
    done = smi(state, PROBE, NVIDIA_VISIBLE_DEVICES="none", LLEM_FAKE_SMI_ALL_GPUS="1")
    assert probe_rows(done) == expect(0, 1, 2)
    listed = smi(state, ["-L"], NVIDIA_VISIBLE_DEVICES=f"{UUID1},0")
    assert listed.returncode == 0
    assert listed.stdout.splitlines() == [
        f"GPU 0: NVIDIA H100 80GB HBM3 (UUID: {UUID1})",
        "GPU 1: NVIDIA H200 (UUID: GPU-00000000-0000-0000-0000-000000000000)",
    ]
    # other fields, with header and units
    other = smi(state, ["--query-gpu=index,name,count,memory.free", "--format=csv"])
    assert other.stdout.splitlines() == [
        "index, name, count, memory.free [MiB]",
        "0, NVIDIA H200, 3, 142336 MiB",
        "1, NVIDIA H100 80GB HBM3, 3, 81408 MiB",
        "2, Fake GPU, 3, 80896 MiB",
    ]
    bad = smi(state, ["--query-gpu=index,bogus", "--format=csv"])
    assert (bad.returncode, bad.stdout) == (2, 'Field "bogus" is not a valid field to query.\n\n')


def test_without_the_state_file_one_default_gpu_as_before(tmp_path: Path) -> None:
    # no state file named, or one named that is not there: the old single GPU
    for env in ({}, {"LLEM_FAKE_NVML_STATE": "/nowhere/state", "NVIDIA_VISIBLE_DEVICES": "none"}):
        done = docker_run(["nvidia-smi", *PROBE], env)
        assert (done.returncode, done.stdout) == (
            0,
            "0, GPU-00000000-0000-0000-0000-000000000000, 1024, 81559, 35, 0, 70.5\n",
        )
    # the control files keep priority over the state file
    run = tmp_path / "run"
    run.mkdir()
    (run / "fake-smi.csv").write_text("0, GPU-x, 1, 2, 3, 4, 5\n")
    (tmp_path / "state").write_text("count=3\n")
    done = docker_run(
        ["nvidia-smi", *PROBE],
        {"LLEM_FAKE_NVML_STATE": f"{STATE_DIR}/state"},
        {run: "/llem/run", tmp_path: STATE_DIR},
    )
    assert done.stdout == "0, GPU-x, 1, 2, 3, 4, 5\n"


# ---- llem-fake-busy and the stub's busy periods ------------------------------------------------

POWER = """
import pynvml as N
N.nvmlInit()
hs = [N.nvmlDeviceGetHandleByIndex(i) for i in range(N.nvmlDeviceGetCount())]
result = {"power": [N.nvmlDeviceGetPowerUsage(h) for h in hs],
          "energy": [N.nvmlDeviceGetTotalEnergyConsumption(h) for h in hs]}
"""


@pytest.fixture
def names() -> Iterator[list[str]]:
    """Names for containers started in the background; any left are removed afterwards."""
    made: list[str] = []
    yield made
    for name in made:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60, check=False)


def intervals(path: Path) -> list[tuple[float, ...]]:
    return [tuple(float(x) for x in line.split()) for line in path.read_text().splitlines()]


def test_fake_busy_marks_the_experiments_gpus_for_the_stub(
    state: Stub, tmp_path: Path, names: list[str]
) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    uuids = [ROWS[i][0] for i in range(3)]
    state.write_state({**STATE, "t0": time.time(), "busy_dir": busy, "gpu0.busy_power_mw": 250_000})
    # two "lanes" at once: GPUs 0 and 2 in one container, GPU 1 in the other
    lanes = {f"{uuids[0]},{uuids[2]}": 3.0, uuids[1]: 2.5}
    procs = []
    for lane_uuids, seconds in lanes.items():
        name = f"llem-test-busy-{uuid.uuid4().hex[:8]}"
        names.append(name)
        argv = run_argv(
            ["llem-fake-busy", str(seconds)],
            {"LLEM_GPU_UUIDS": lane_uuids, "LLEM_FAKE_BUSY_DIR": "/busy"},
            {busy: "/busy"},
            name,
        )
        procs.append(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    try:
        deadline = time.monotonic() + 30
        while not all((busy / u).exists() for u in uuids):
            assert time.monotonic() < deadline, "llem-fake-busy wrote no busy file"
            time.sleep(0.05)
        during = state.run(POWER)
        # the stub defaults: 100 W idle, 200 W more while busy (GPU 0 here: 250 W more)
        assert during["power"] == [120_500 + 250_000, 300_000 + 200_000, 100_000 + 200_000]
        for p in procs:
            out, err = p.communicate(timeout=60)
            assert p.returncode == 0, err
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)
    # each file: the open line, then the same START with its END
    for u, seconds in ((uuids[0], 3.0), (uuids[1], 2.5), (uuids[2], 3.0)):
        (start,), (start2, end) = intervals(busy / u)
        assert start == start2
        assert seconds <= end - start < seconds + 2
        assert abs(start - time.time()) < 60  # the wall clock, shared with the host
    assert intervals(busy / uuids[0]) == intervals(busy / uuids[2])

    after = state.run(POWER)
    assert after["power"] == [120_500, 300_000, 100_000]
    # with no idle rate set, the counter holds only the busy time: power * (END - START)
    for i, busy_mw in ((0, 250_000), (1, 200_000), (2, 200_000)):
        (_,), (start, end) = intervals(busy / uuids[i])
        assert after["energy"][i] == pytest.approx(busy_mw * (end - start), abs=2)


def test_fake_busy_closes_its_line_when_stopped(tmp_path: Path, names: list[str]) -> None:
    # default folder: the run directory's fake-busy; a docker stop (TERM to it, PID 1 with a
    # trap) still writes END
    name = f"llem-test-busy-{uuid.uuid4().hex[:8]}"
    names.append(name)
    argv = run_argv(
        ["llem-fake-busy", "60"], {"LLEM_GPU_UUIDS": "GPU-a"}, {tmp_path: "/llem/run"}, name
    )
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        path = tmp_path / "fake-busy" / "GPU-a"
        deadline = time.monotonic() + 30
        while not path.exists():
            assert time.monotonic() < deadline, "llem-fake-busy wrote no busy file"
            time.sleep(0.05)
        subprocess.run(
            ["docker", "stop", "-t", "20", name], capture_output=True, timeout=60, check=False
        )
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    (start,), (start2, end) = intervals(path)
    assert start == start2 and 0 < end - start < 30
