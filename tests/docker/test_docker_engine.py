"""The ContainerManager against a real Docker engine and Compose v2 (marker ``docker``).

Each test builds its own compose project (unique names) from llem_testkit/data/compose/basic.yml
on the local image llem-test-busybox:latest, whose stand-in nvidia-smi reads control files from
the run directory (bind-mounted at /llem/run). Nothing here mocks Docker.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from llem_cli.docker.compose import discover_compose
from llem_cli.docker.manager import ContainerManager, StartFailed, Timeouts
from llem_cli.docker.proc import Result, SubprocessRunner
from llem_cli.docker.sweep import teardown_by_label
from llem_testkit.runspec import COMPOSE_DIR, RunSpec

pytestmark = pytest.mark.docker
REPO = Path(__file__).resolve().parents[2]
MakeManager = Callable[..., ContainerManager]


def labelled(run_id: str) -> list[str]:
    done = subprocess.run(
        ["docker", "ps", "-a", "-q", "--filter", f"label=llem.run={run_id}"],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    return done.stdout.split()


def in_container(mgr: ContainerManager, service: str, *argv: str) -> str:
    res = SubprocessRunner().run(mgr.project.exec(service, list(argv)), timeout=30)
    return res.stdout


class RecordingRunner(SubprocessRunner):
    """The real runner, remembering every argv it ran."""

    def __init__(self) -> None:
        super().__init__()
        self.argvs: list[tuple[str, ...]] = []

    def run(self, argv, **kw):  # type: ignore[no-untyped-def,override]
        self.argvs.append(tuple(argv))
        return super().run(argv, **kw)


def test_discovers_compose_v2_plugin() -> None:
    cli = discover_compose(env={**os.environ, "LLEM_COMPOSE": ""})
    assert cli.argv == ("docker", "compose") and cli.major >= 2 and cli.supports_wait


def test_override_passes_compose_config(make_manager: MakeManager) -> None:
    mgr = make_manager(["app", "mem"])
    res = SubprocessRunner().run(mgr.project.config(), timeout=60)
    assert "/llem/run" in res.stdout and "llem.run" in res.stdout and "infinity" in res.stdout


def test_up_exec_exit_codes_env_and_teardown(make_manager: MakeManager, run_spec: RunSpec) -> None:
    runner = RecordingRunner()
    mgr = make_manager(runner=runner)
    mgr.start("app")
    assert labelled(run_spec.run_id)
    ok = mgr.exec("app", ["true"], timeout_s=30)
    assert (ok.status, ok.exit_code, ok.container_running) == ("ok", 0, None)
    assert ok.ended_at >= ok.started_at and ok.duration_s > 0

    out = run_spec.run_dir / "experiments" / "k1" / "stdout.log"
    err = out.with_name("stderr.log")
    env = {"LLEM_PARAMS": '{"a": 1}', "HF_TOKEN": "hf_topsecret1"}
    failed = mgr.exec(
        "app", ["sh", "-c", 'echo "$LLEM_PARAMS $HF_TOKEN"; echo bad >&2; exit 3'],
        env=env, timeout_s=30, stdout_path=out, stderr_path=err,
    )  # fmt: skip
    assert (failed.status, failed.exit_code, failed.container_running) == ("failed", 3, True)
    assert out.read_text() == '{"a": 1} hf_topsecret1\n'
    assert failed.stderr_tail == "bad\n" == err.read_text()
    assert not any("hf_topsecret1" in " ".join(a) for a in runner.argvs)

    missing = mgr.exec("app", ["no-such-benchmark"], timeout_s=30)
    assert missing.status == "not_runnable" and missing.exit_code in (126, 127)

    gpu = mgr.exec(
        "app", ["sh", "-c", "echo 'torch.OutOfMemoryError: CUDA out of memory.' >&2; exit 1"],
        timeout_s=30,
    )  # fmt: skip
    assert gpu.status == "gpu_oom"

    # the run directory is mounted where the contract says
    (run_spec.run_dir / "marker").write_text("hi")
    assert in_container(mgr, "app", "cat", "/llem/run/marker") == "hi"
    mgr.teardown()
    assert labelled(run_spec.run_id) == []
    mgr.teardown()  # idempotent


def test_streaming_output(make_manager: MakeManager, run_spec: RunSpec) -> None:
    mgr = make_manager()
    mgr.start("app")
    out = run_spec.run_dir / "stdout.log"
    box: list[object] = []
    t = threading.Thread(
        target=lambda: box.append(
            mgr.exec("app", ["sh", "-c", "echo first; sleep 3; echo second"], timeout_s=30,
                     stdout_path=out, stderr_path=run_spec.run_dir / "stderr.log")
        )
    )  # fmt: skip
    t.start()
    seen_while_running = False
    while t.is_alive():
        if out.exists() and out.read_text() == "first\n":
            seen_while_running = t.is_alive()
            break
        time.sleep(0.05)
    t.join()
    assert seen_while_running
    assert out.read_text() == "first\nsecond\n"
    assert box[0].status == "ok"  # type: ignore[attr-defined]


def test_probe(make_manager: MakeManager, run_spec: RunSpec) -> None:
    mgr = make_manager()
    mgr.start("app")
    healthy = mgr.probe("app")
    assert healthy.ok and len(healthy.gpus) == 1
    gpu = healthy.gpus[0]
    assert (gpu.index, gpu.memory_used_mib, gpu.memory_total_mib, gpu.power_w) == (
        0,
        1024,
        81559,
        70.5,
    )
    assert not healthy.over_threshold(90)

    csv = run_spec.run_dir / "fake-smi.csv"
    csv.write_text("0, GPU-a, 79000, 81559, 60, 100, 300.5\n1, GPU-b, 10, 81559, 30, 0, 60\n")
    full = mgr.probe("app")
    assert full.ok and full.over_threshold(90) and not full.over_threshold(90, indices=[1])

    csv.write_text("0, GPU-a, [N/A], 81559, [N/A], [Not Supported], [N/A]\n")
    missing = mgr.probe("app")
    assert (
        missing.ok and missing.gpus[0].memory_used_mib is None and missing.gpus[0].power_w is None
    )
    assert missing.max_memory_used_pct() is None and not missing.over_threshold(0)
    csv.unlink()

    rc = run_spec.run_dir / "fake-smi.rc"
    rc.write_text("15")
    lost = mgr.probe("app")
    assert (lost.status, lost.exit_code) == ("gpu_lost", 15)
    rc.write_text("9")
    assert mgr.probe("app").status == "driver_not_loaded"
    rc.write_text("12")
    assert mgr.probe("app").status == "nvml_missing"

    rc.write_text("2")  # every query rejected: the default one is retried once, minimal
    log = run_spec.run_dir / "fake-smi.log"
    log.touch()
    bad = mgr.probe("app")
    assert bad.status == "invalid_field"
    calls = log.read_text().splitlines()
    assert len(calls) == 2 and "--query-gpu=index,memory.used,memory.total" in calls[1]
    rc.unlink()
    log.unlink()

    custom = mgr.probe("app", ["sh", "-c", "echo '0, GPU-c, 50, 100, 40, 5, 99.5'"])
    assert custom.ok and custom.gpus[0].memory_used_pct == 50.0


def test_restart_after_docker_kill(make_manager: MakeManager) -> None:
    mgr = make_manager()
    mgr.start("app")
    cid = mgr.container_id("app")
    subprocess.run(["docker", "kill", cid], capture_output=True, timeout=30, check=True)
    dead = mgr.exec("app", ["true"], timeout_s=30)
    assert dead.status == "container_died" and dead.container_running is False
    assert mgr.probe("app").status == "container_died"
    mgr.restart("app")
    assert mgr.container_state("app").running  # type: ignore[union-attr]
    assert mgr.exec("app", ["true"], timeout_s=30).ok
    assert mgr.probe("app").ok


def test_restart_when_the_container_is_gone(make_manager: MakeManager) -> None:
    mgr = make_manager()
    mgr.start("app")
    cid = mgr.container_id("app")
    subprocess.run(["docker", "rm", "-f", cid], capture_output=True, timeout=30, check=True)
    assert mgr.exec("app", ["true"], timeout_s=30).status == "container_died"
    mgr.restart("app")
    assert mgr.exec("app", ["true"], timeout_s=30).ok


def test_oom_and_plain_kill(make_manager: MakeManager) -> None:
    mgr = make_manager(["mem"])
    mgr.start("mem")
    oom = mgr.exec("mem", ["tail", "/dev/zero"], timeout_s=60)
    assert (oom.status, oom.exit_code) == ("oom_killed", 137), oom.detail
    assert oom.container_running is True  # cgroup v1: the container lives on
    killed = mgr.exec("mem", ["sh", "-c", "kill -9 $$"], timeout_s=30)
    assert (killed.status, killed.exit_code) == ("failed", 137)


def test_timeout_kills_the_process_in_the_container(make_manager: MakeManager) -> None:
    mgr = make_manager()
    mgr.start("app")
    # what docker does by itself: killing the client leaves the exec'd process running
    bare = SubprocessRunner().run(
        mgr.project.exec("app", ["sleep", "313"]), timeout=1.5, check=False
    )
    assert bare.timed_out
    assert "sleep 313" in in_container(mgr, "app", "ps", "-o", "args")

    out = mgr.exec("app", ["sleep", "314"], timeout_s=1.5)
    assert (out.status, out.exit_code) == ("timeout", None)
    # the layer reports and restarts nothing (the decision does): the process runs on...
    assert "sleep 314" in in_container(mgr, "app", "ps", "-o", "args")
    mgr.restart("app")  # ...until the restart the decision asks for ends it
    procs = in_container(mgr, "app", "ps", "-o", "args")
    assert "sleep 314" not in procs and "sleep 313" not in procs
    assert mgr.exec("app", ["true"], timeout_s=30).ok


def test_start_failure_removes_the_half_started(
    make_manager: MakeManager, run_spec: RunSpec
) -> None:
    mgr = make_manager({"broken": False}, timeouts=Timeouts(up_s=60))
    with pytest.raises(StartFailed, match="broken"):
        mgr.start("broken")
    assert labelled(run_spec.run_id) == []


def test_up_conflict_is_retried_once(make_manager: MakeManager, run_spec: RunSpec) -> None:
    """A container holding the service's name (a killed llem's `up`) makes the first `up` fail."""
    name = f"{run_spec.project}-app-1"
    subprocess.run(
        ["docker", "create", "--name", name, "--network", "none", "llem-test-busybox:latest"],
        capture_output=True, timeout=30, check=True,
    )  # fmt: skip

    class FreeNameAfterConflict(SubprocessRunner):
        conflicts = 0

        def run(self, argv, **kw):  # type: ignore[no-untyped-def,override]
            res: Result = super().run(argv, **kw)
            if "up" in argv and "already in use" in res.stderr:
                self.conflicts += 1
                subprocess.run(
                    ["docker", "rm", "-f", name], capture_output=True, timeout=30, check=False
                )
            return res

    runner = FreeNameAfterConflict()
    mgr = make_manager(runner=runner, timeouts=Timeouts(conflict_pause_s=0.2))
    mgr.start("app")
    assert runner.conflicts == 1
    assert mgr.exec("app", ["true"], timeout_s=30).ok


def test_teardown_on_exception(run_spec: RunSpec) -> None:
    with pytest.raises(RuntimeError, match="boom"), ContainerManager(
        run_spec.project, run_spec.files, run_id=run_spec.run_id, run_dir=run_spec.run_dir,
        services=["app", "mem"],
    ) as mgr:  # fmt: skip
        mgr.start("app")
        mgr.start("mem")
        assert len(labelled(run_spec.run_id)) == 2
        raise RuntimeError("boom")
    assert labelled(run_spec.run_id) == []


def test_stop_one_service(make_manager: MakeManager, run_spec: RunSpec) -> None:
    mgr = make_manager(["app", "mem"])
    mgr.start("app")
    mgr.start("mem")
    mgr.stop("mem")
    assert len(labelled(run_spec.run_id)) == 1
    assert [row["Service"] for row in mgr.ps()] == ["app"]


SIGNAL_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from llem_cli.docker import ContainerManager, handle_signals
    from llem_cli.errors import LlemError

    project, run_id, run_dir, compose_file = sys.argv[1:]
    try:
        with handle_signals(), ContainerManager(
            project, [compose_file], run_id=run_id, run_dir=run_dir, services=["app", "mem"]
        ) as mgr:
            mgr.start("app")
            mgr.start("mem")
            Path(run_dir, "ready").write_text("1")
            mgr.exec("app", ["sleep", "120"], timeout_s=300)
    except LlemError as err:
        print(err.one_line(), file=sys.stderr)
        sys.exit(err.exit_code)
    """
)


@pytest.mark.parametrize("second", [None, signal.SIGINT], ids=["sigterm", "sigterm-then-sigint"])
def test_teardown_on_sigterm_in_a_separate_process(
    run_spec: RunSpec, tmp_path: Path, second: int | None
) -> None:
    script = tmp_path / "hold.py"
    script.write_text(SIGNAL_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), run_spec.project, run_spec.run_id, str(run_spec.run_dir),
         str(COMPOSE_DIR / "basic.yml")],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        ready = run_spec.run_dir / "ready"
        deadline = time.monotonic() + 60
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ready.exists(), proc.communicate(timeout=5)
        time.sleep(0.5)  # let the exec start
        proc.send_signal(signal.SIGTERM)
        if second is not None:
            time.sleep(0.3)  # teardown under way: a second signal must not abort it
            proc.send_signal(second)
        _, stderr = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, stderr
    assert "interrupted by SIGTERM" in stderr
    assert "Traceback" not in stderr
    assert labelled(run_spec.run_id) == []


def test_teardown_by_label_finds_what_a_dead_llem_left(run_spec: RunSpec) -> None:
    """`llem down`: no manager state, no compose file needed, only the labels."""
    mgr = ContainerManager(
        run_spec.project, run_spec.files, run_id=run_spec.run_id, run_dir=run_spec.run_dir,
        services=["app"],
    )  # fmt: skip
    mgr.start("app")  # and never torn down, as if llem had been SIGKILLed
    assert len(labelled(run_spec.run_id)) == 1
    removed = teardown_by_label(project=run_spec.project)
    assert len(removed) == 1 and labelled(run_spec.run_id) == []
    assert teardown_by_label(run_id=run_spec.run_id) == []
