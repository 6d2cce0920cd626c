"""The exec outcome classifier, as a table (no engine needed)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from llem_cli.docker.outcome import ContainerState, ExecOutcome, classify

RUNNING = ContainerState(exists=True, running=True, status="running")
RUNNING_OOM = ContainerState(exists=True, running=True, oom_killed=True, status="running")
EXITED = ContainerState(exists=True, running=False, status="exited", exit_code=137)
EXITED_OOM = ContainerState(exists=True, running=False, oom_killed=True, status="exited")
GONE = ContainerState.gone()
CUDA = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"

TABLE = [
    # exit, timed_out, stderr, container, oom_events -> status
    (0, False, "", None, 0, "ok"),
    (0, False, CUDA, None, 0, "ok"),  # exit 0 is ok whatever it printed
    (None, True, "", None, 0, "timeout"),
    (0, True, "", RUNNING, 0, "timeout"),  # timed out is timed out
    (1, False, "", RUNNING, 0, "failed"),
    (3, False, "Traceback ...\nValueError: x", RUNNING, 0, "failed"),
    (126, False, "exec: permission denied", None, 0, "not_runnable"),
    (127, False, "exec: not found", None, 0, "not_runnable"),
    (127, False, "exec: not found", RUNNING, 0, "not_runnable"),
    (126, False, "cannot exec in a stopped container", EXITED, 0, "container_died"),
    (126, False, "", GONE, 0, "container_died"),
    (137, False, "", RUNNING_OOM, 0, "oom_killed"),
    (137, False, "", RUNNING, 1, "oom_killed"),  # cgroup v1: only the event tells
    (137, False, "", EXITED_OOM, 0, "oom_killed"),
    (137, False, "", RUNNING, 0, "failed"),  # a plain SIGKILL
    (137, False, "", EXITED, 0, "container_died"),  # docker kill of the container
    (137, False, "", GONE, 0, "container_died"),
    (1, False, CUDA, RUNNING, 0, "gpu_oom"),
    (1, False, "RuntimeError: CUDA error: out of memory", RUNNING, 0, "gpu_oom"),
    (1, False, "torch.cuda.OutOfMemoryError", RUNNING, 0, "gpu_oom"),
    (1, False, 'service "app" is not running', EXITED, 0, "container_died"),
    (1, False, 'service "app" is not running', None, 0, "container_died"),
    (1, False, "", GONE, 0, "container_died"),
    (255, False, "error during connect: EOF", None, 0, "container_died"),
    (255, False, "unexpected EOF", RUNNING, 0, "container_died"),
    (255, False, "", None, 0, "container_died"),
    (255, False, "my program exits 255", RUNNING, 0, "failed"),
]


@pytest.mark.parametrize(("code", "timed_out", "stderr", "state", "events", "want"), TABLE)
def test_classify(
    code: int | None,
    timed_out: bool,
    stderr: str,
    state: ContainerState | None,
    events: int,
    want: str,
) -> None:
    status, detail = classify(
        code, timed_out=timed_out, stderr_tail=stderr, container=state, oom_events=events
    )
    assert status == want
    assert (detail == "") == (want == "ok")


def test_oom_detail_names_the_evidence() -> None:
    assert "oom event" in classify(137, container=RUNNING, oom_events=2)[1]
    assert "OOMKilled" in classify(137, container=RUNNING_OOM)[1]


def test_from_inspect() -> None:
    state = ContainerState.from_inspect(
        {"Status": "running", "Running": True, "Restarting": False, "OOMKilled": False}
    )
    assert state == ContainerState(exists=True, running=True, status="running", exit_code=None)
    assert not ContainerState.from_inspect({"Running": True, "Restarting": True}).running


def _outcome(**kw: object) -> ExecOutcome:
    now = datetime.now(timezone.utc)
    base: dict[str, object] = {
        "status": "failed",
        "exit_code": 1,
        "started_at": now,
        "ended_at": now,
        "duration_s": 0.0,
    }
    base.update(kw)
    return ExecOutcome(**base)  # type: ignore[arg-type]


def test_outcome_reports_and_asks_for_nothing() -> None:
    # restarting is the decision's alone: the outcome says what happened, nothing more
    assert not hasattr(_outcome(), "needs_restart") and not hasattr(_outcome(), "restarted")
    status, detail = classify(None, timed_out=True)
    assert status == "timeout" and "may still run" in detail
