"""The test image's stand-in serving backend (marker ``docker``).

``llem-fake-server`` runs as a container's main process (``--init``, as llem's ``init: true``),
"loads" for ``--load-s``, then answers requests through files in its state folder (no network:
every container here runs with ``--network none``); ``llem-fake-ready`` says whether it is ready,
``llem-fake-client`` sends one request and writes ``result.json``; while ready the image's
``nvidia-smi`` reports the server's memory (``/tmp/fake-smi-memory-used``).
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from llem_cli.docker.probe import parse_csv, query_argv
from llem_testkit import TEST_IMAGE

pytestmark = pytest.mark.docker

TOTAL_MIB = 81559  # the stand-in nvidia-smi's one default GPU
STATE = "/tmp/llem-fake-server"


@pytest.fixture
def containers() -> Iterator[list[str]]:
    """Names of the containers a test starts; every one is removed afterwards."""
    made: list[str] = []
    try:
        yield made
    finally:
        for name in made:
            subprocess.run(
                ["docker", "rm", "-f", name], capture_output=True, timeout=60, check=False
            )


def start(
    made: list[str], argv: list[str], mounts: dict[Path, str] | None = None, init: bool = True
) -> str:
    name = f"llem-test-server-{uuid.uuid4().hex[:8]}"
    made.append(name)
    cmd = ["docker", "run", "-d", "--network", "none", "--name", name]
    if init:
        cmd.append("--init")
    for host, inside in (mounts or {}).items():
        cmd += ["-v", f"{host}:{inside}"]
    done = subprocess.run(
        [*cmd, TEST_IMAGE, *argv], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return name


def dexec(
    name: str, argv: list[str], env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    cmd = ["docker", "exec"]
    for k, v in (env or {}).items():
        cmd += ["-e", f"{k}={v}"]
    return subprocess.run(
        [*cmd, name, *argv], capture_output=True, text=True, timeout=timeout, check=False
    )


def wait_ready(name: str, within: float = 30) -> list[str]:
    """Exec llem-fake-ready until it exits 0; the reasons it gave before."""
    reasons: list[str] = []
    deadline = time.monotonic() + within
    while True:
        done = dexec(name, ["llem-fake-ready"])
        if done.returncode == 0:
            assert done.stdout.startswith("ready: ")
            return reasons
        assert done.returncode == 1, done.stdout + done.stderr
        reasons.append(done.stderr.strip())
        assert time.monotonic() < deadline, f"never ready: {reasons[-3:]}"
        time.sleep(0.1)


def memory_used(name: str) -> list[float | None]:
    done = dexec(name, query_argv())
    assert done.returncode == 0, done.stdout + done.stderr
    return [g.memory_used_mib for g in parse_csv(done.stdout)]


def state(name: str, file: str) -> str:
    done = dexec(name, ["cat", f"{STATE}/{file}"])
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def client(
    name: str, argv: list[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return dexec(name, ["llem-fake-client", *argv], env)


def container_state(name: str) -> tuple[str, int]:
    done = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", name],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    status, code = done.stdout.split()
    return status, int(code)


def wait_exited(name: str, within: float = 30) -> int:
    deadline = time.monotonic() + within
    while True:
        status, code = container_state(name)
        if status == "exited":
            return code
        assert time.monotonic() < deadline, f"{name} still {status}"
        time.sleep(0.1)


def logs(name: str) -> str:
    done = subprocess.run(
        ["docker", "logs", name], capture_output=True, text=True, timeout=60, check=False
    )
    return done.stdout + done.stderr


def test_loads_then_ready_then_serves_its_params(tmp_path: Path, containers: list[str]) -> None:
    name = start(
        containers,
        [
            "llem-fake-server",
            "--load-s",
            "2",
            "--memory-pct",
            "90",
            "--grow-mib-per-request",
            "1000",
            "--name",
            "srv-a",
            "model=m",
            "tp=2",
        ],
        {tmp_path: "/llem/run"},
    )
    # while loading: not ready, and nvidia-smi as without a server
    early = dexec(name, ["llem-fake-ready"])
    assert early.returncode == 1
    assert early.stderr.startswith("not ready: "), early.stderr
    assert memory_used(name) == [1024.0]
    reasons = wait_ready(name)
    assert reasons and all(r.startswith("not ready: ") for r in reasons)
    assert any("loading" in r for r in reasons), reasons
    # ready no sooner than --load-s after this start began
    started_at = float(state(name, "started"))
    ready_at = float(state(name, "ready"))
    assert 2 <= ready_at - started_at < 10
    assert abs(started_at - time.time()) < 60  # the wall clock, shared with the host
    assert state(name, "params") == "model=m\ntp=2"
    assert json.loads(state(name, "params.json")) == {"model": "m", "tp": "2"}
    assert (state(name, "starts"), state(name, "name")) == ("1", "srv-a")
    # ready: 90 % of the GPU's memory
    assert memory_used(name) == [float(int(TOTAL_MIB * 0.9))]

    # a client: its params and the server's in result.json, the busy interval as steady
    uuids = "GPU-aaaa,GPU-bbbb"
    env = {"LLEM_EXPERIMENT_DIR": "/llem/run/experiments/k1", "LLEM_GPU_UUIDS": uuids}
    done = client(name, ["--busy-s", "0.5", "batch=8", 'prompt=a "quoted" \\ one'], env)
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "experiments" / "k1" / "result.json").read_text())
    assert json.loads(done.stdout) == result
    steady = result.pop("llem_phases")["steady"]
    assert result == {
        "server_name": "srv-a",
        "server_pid": int(state(name, "pid")),
        "server_start": 1,
        "request": 1,
        "server_params": {"model": "m", "tp": "2"},
        "client_params": {"batch": "8", "prompt": 'a "quoted" \\ one'},
        "output_tokens": 128,
    }
    start_s, end_s = steady
    assert 0.5 <= end_s - start_s < 5
    assert abs(start_s - time.time()) < 60  # the wall clock, shared with the host
    assert start_s >= ready_at
    for u in uuids.split(","):
        lines = (tmp_path / "fake-busy" / u).read_text().splitlines()
        assert [[float(x) for x in line.split()] for line in lines] == [[start_s], steady]
    # each request grows the memory by 1000 MiB
    assert memory_used(name) == [float(int(TOTAL_MIB * 0.9 + 1000))]

    # a second client, no busy part: the next request of the same start
    env = {"LLEM_EXPERIMENT_DIR": "/llem/run/experiments/k2"}
    done = client(name, ["--output-tokens", "7", "batch=16"], env)
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "experiments" / "k2" / "result.json").read_text())
    assert (result["request"], result["server_start"], result["output_tokens"]) == (2, 1, 7)
    assert result["client_params"] == {"batch": "16"}
    start_s, end_s = result["llem_phases"]["steady"]
    assert 0 <= end_s - start_s < 5
    assert memory_used(name) == [float(int(TOTAL_MIB * 0.9 + 2000))]
    assert dexec(name, ["ls", "-A", f"{STATE}/spool"]).stdout == ""  # nothing left behind

    out = logs(name)
    for line in (
        "llem-fake-server srv-a: loading... (start 1, 2 s) model=m tp=2",
        "llem-fake-server srv-a: ready (memory 90 %)",
        "llem-fake-server srv-a: request 1 (batch=8",
        "llem-fake-server srv-a: request 2 (batch=16)",
    ):
        assert line in out, out


def test_crashes_after_k_requests(containers: list[str]) -> None:
    name = start(
        containers,
        [
            "llem-fake-server",
            "--crash-after",
            "2",
            "--memory-pct",
            "50",
            "--grow-pct-per-request",
            "3",
            "model=m",
        ],
    )
    wait_ready(name)
    assert memory_used(name) == [float(int(TOTAL_MIB * 0.5))]
    first = client(name, ["--busy-s", "0.2", "n=1"])
    assert first.returncode == 0, first.stderr
    assert memory_used(name) == [float(int(TOTAL_MIB * 0.53))]
    # the K-th client still ends well: the server dies once it has exited
    second = client(name, ["--busy-s", "0.5", "n=2"])
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["request"] == 2
    # then the main process exits 3: the container dies
    assert wait_exited(name) == 3
    assert "llem-fake-server fake-server: crashing after 2 requests" in logs(name)
    third = client(name, ["n=3"])
    assert third.returncode != 0
    assert "is not running" in third.stderr


def test_client_without_a_ready_server_fails(containers: list[str]) -> None:
    # the server in the background of a container that outlives it (not its main process)
    name = start(containers, ["sleep", "infinity"])
    done = client(name, ["n=0"])
    assert done.returncode == 1
    assert done.stderr.startswith("llem-fake-client: no ready server: no llem-fake-server"), (
        done.stderr
    )
    started = dexec(name, ["sh", "-c", "llem-fake-server --crash-after 1 x=1 >/tmp/log 2>&1 &"])
    assert started.returncode == 0, started.stderr
    wait_ready(name)
    done = client(name, ["n=1"])
    assert done.returncode == 0, done.stderr
    deadline = time.monotonic() + 30
    while (ready := dexec(name, ["llem-fake-ready"])).returncode == 0:
        assert time.monotonic() < deadline, "the server did not crash"
        time.sleep(0.1)
    assert "exited: 3 crashing after 1 requests" in ready.stderr, ready.stderr
    done = client(name, ["n=2"])
    assert done.returncode == 1
    assert "no ready server: the server (pid " in done.stderr, done.stderr
    assert dexec(name, ["ls", "-A", f"{STATE}/spool"]).stdout == ""
    # nvidia-smi as without a server once it is gone
    assert memory_used(name) == [1024.0]


@pytest.mark.parametrize("load_s", ["60", "0"], ids=["loading", "ready"])
def test_sigterm_stops_it_at_once(containers: list[str], load_s: str) -> None:
    name = start(containers, ["llem-fake-server", "--load-s", load_s, "model=m"])
    if load_s == "0":
        wait_ready(name)
    else:
        deadline = time.monotonic() + 30
        while "loading" not in dexec(name, ["llem-fake-ready"]).stderr:
            assert time.monotonic() < deadline, "not loading"
            time.sleep(0.1)
    t0 = time.monotonic()
    done = subprocess.run(
        ["docker", "stop", "-t", "5", name], capture_output=True, text=True, timeout=60, check=False
    )
    took = time.monotonic() - t0
    assert done.returncode == 0, done.stderr
    assert took < 2.5, f"docker stop took {took:.1f} s"
    assert container_state(name) == ("exited", 143)
    assert "llem-fake-server fake-server: stopping (SIGTERM)" in logs(name)


def test_restart_counts_starts(containers: list[str]) -> None:
    # /tmp survives a container restart: the start counter goes on, the old state goes
    name = start(containers, ["llem-fake-server", "--load-s", "0.3", "--memory-pct", "20", "a=1"])
    wait_ready(name)
    assert client(name, []).returncode == 0
    done = subprocess.run(
        ["docker", "restart", "-t", "5", name],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    reasons = wait_ready(name)
    assert not any("exited" in r for r in reasons), reasons
    result = json.loads(client(name, ["b=2"]).stdout)
    assert (result["server_start"], result["request"]) == (2, 1)
    assert memory_used(name) == [float(int(TOTAL_MIB * 0.2))]
    # a second server in the same folder is refused
    again = dexec(name, ["llem-fake-server", "x=1"])
    assert again.returncode == 1
    assert "another server" in again.stderr


def test_usage_errors(containers: list[str]) -> None:
    name = start(containers, ["sleep", "infinity"])
    for argv in (
        ["llem-fake-server", "--load-s", "x"],
        ["llem-fake-server", "--bogus"],
        ["llem-fake-server", "notaparam"],
        ["llem-fake-server", "--grow-mib-per-request", "5"],
        ["llem-fake-client", "--busy-s"],
        ["llem-fake-ready", "extra"],
    ):
        done = dexec(name, argv)
        assert done.returncode == 2, (argv, done.stderr)
        assert "usage: " in done.stderr


SPECS = {
    "2048": 2048,
    "50%": int(TOTAL_MIB * 0.5),
    "12.5%+100.5": int(TOTAL_MIB * 0.125 + 100.5),
    " 10% + 1 \n": int(TOTAL_MIB * 0.1 + 1),
    "200%": TOTAL_MIB,  # never above memory.total
    "99999999": TOTAL_MIB,
    "": 1024,  # ignored: as without the file
    "lots": 1024,
    "50%x": 1024,
    "+5": 1024,
}


def test_smi_memory_file(tmp_path: Path, containers: list[str]) -> None:
    name = start(containers, ["sleep", "infinity"])
    for spec, used in SPECS.items():
        (tmp_path / "spec").write_text(spec)
        done = subprocess.run(
            ["docker", "cp", str(tmp_path / "spec"), f"{name}:/tmp/fake-smi-memory-used"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert memory_used(name) == [float(used)], spec
        free = dexec(name, ["nvidia-smi", "--query-gpu=memory.free", "--format=csv,noheader"])
        assert free.stdout == f"{TOTAL_MIB - used} MiB\n", spec
    # another path, and several GPUs (the stand-in NVML's state file), each its own total
    (tmp_path / "state").write_text("count=2\ngpu1.mem_total=42949672960\n")
    (tmp_path / "mem").write_text("25%\n")
    done = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            f"{tmp_path}:/x:ro",
            "-e",
            "LLEM_FAKE_NVML_STATE=/x/state",
            "-e",
            "LLEM_FAKE_SMI_MEMORY_USED=/x/mem",
            TEST_IMAGE,
            *query_argv(),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert [g.memory_used_mib for g in parse_csv(done.stdout)] == [20480.0, 10240.0]
