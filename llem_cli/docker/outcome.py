"""What happened to one experiment exec, decided by one pure function.

The inputs are plain data gathered by the manager (exit code, whether llem timed it out, the stderr
tail, the container's state from ``docker inspect``, how many ``oom`` events ``docker events``
listed), so the decision is tested as a table without Docker. The ok path needs none of the
diagnostics: they are gathered only after a non-zero exit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from llem_cli.docker.daemon import daemon_unreachable
from llem_cli.runs.record import OutcomeStatus

#: a process killed by SIGKILL (the OOM killer, ``docker kill``, ...) exits 128 + 9
EXIT_SIGKILL = 137
#: ``docker exec`` / compose exec when the connection to the daemon dropped
EXIT_CLIENT_ERROR = 255
NOT_RUNNABLE_CODES = (126, 127)

_GPU_OOM = re.compile(r"CUDA out of memory|OutOfMemoryError|CUDA error: out of memory")
#: what the client prints when its connection to the daemon breaks mid-exec (beside the
#: "cannot reach the daemon" lines that :func:`llem_cli.docker.daemon.daemon_unreachable` knows)
_CONNECTION_DROPPED = re.compile(
    r"connection reset|unexpected EOF|broken pipe|use of closed network connection",
    re.IGNORECASE,
)
_NOT_RUNNING = re.compile(
    r"is not running|No such container|container .* is restarting|"
    r"service \S+ is not running|no container found",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class ContainerState:
    """The parts of ``docker inspect`` ``.State`` the classifier needs."""

    exists: bool
    running: bool = False
    oom_killed: bool = False
    status: str = ""
    exit_code: int | None = None

    @classmethod
    def from_inspect(cls, state: dict[str, Any]) -> ContainerState:
        """From the ``State`` object of ``docker inspect``."""
        return cls(
            exists=True,
            running=bool(state.get("Running")) and not state.get("Restarting"),
            oom_killed=bool(state.get("OOMKilled")),
            status=str(state.get("Status", "")),
            exit_code=state.get("ExitCode"),
        )

    @classmethod
    def gone(cls) -> ContainerState:
        """The container does not exist any more."""
        return cls(exists=False, status="removed")


def classify(
    exit_code: int | None,
    *,
    timed_out: bool = False,
    stderr_tail: str = "",
    container: ContainerState | None = None,
    oom_events: int = 0,
) -> tuple[OutcomeStatus, str]:
    """The status of an exec and a one-line detail.

    ``container`` is ``None`` when its state is unknown (not inspected, or inspect failed).
    Order matters: a timeout is a timeout whatever the code; a SIGKILL with an OOM record is the
    memory limit (cgroup v1 engines may leave ``OOMKilled`` false for an exec'd process, the
    ``oom`` event is the evidence); CUDA's message wins over a plain failure; a missing or stopped
    container, or the client's 255 when the daemon connection dropped, means the container died.
    """
    if timed_out:
        return "timeout", "timed out; the process may still run in the container until it restarts"
    if exit_code == 0:
        return "ok", ""
    stopped = container is not None and not container.running
    if exit_code in NOT_RUNNABLE_CODES and not stopped:
        # (in a stopped container, exec answers 126 too: that is the container dying, and
        # calling it not_runnable would skip the rest of the backend)
        why = "not executable" if exit_code == 126 else "command not found"
        return "not_runnable", f"exit {exit_code}: {why}{_tail_hint(stderr_tail)}"
    oom_recorded = container is not None and container.oom_killed
    if exit_code == EXIT_SIGKILL and (oom_recorded or oom_events > 0):
        evidence = "State.OOMKilled" if oom_recorded else f"{oom_events} oom event(s)"
        return "oom_killed", f"exit 137: killed by the memory limit ({evidence})"
    if _GPU_OOM.search(stderr_tail):
        return "gpu_oom", f"exit {exit_code}: CUDA out of memory"
    if container is not None and not container.running:
        state = container.status or ("removed" if not container.exists else "stopped")
        return "container_died", f"exit {exit_code}: container {state}"
    connection_lost = daemon_unreachable(stderr_tail) or _CONNECTION_DROPPED.search(stderr_tail)
    if exit_code == EXIT_CLIENT_ERROR and (container is None or connection_lost):
        hint = _tail_hint(stderr_tail)
        return "container_died", f"exit 255: lost the connection to the container{hint}"
    if container is None and _NOT_RUNNING.search(stderr_tail):
        return "container_died", f"exit {exit_code}: container not running"
    if exit_code == EXIT_SIGKILL:
        return "failed", "exit 137: killed (SIGKILL), no OOM recorded"
    return "failed", f"exit {exit_code}{_tail_hint(stderr_tail)}"


def _tail_hint(stderr_tail: str) -> str:
    for line in reversed(stderr_tail.strip().splitlines()):
        if line.strip():
            line = line.strip()
            return ": " + (line if len(line) <= 200 else line[:197] + "...")
    return ""


@dataclass(frozen=True)
class ExecOutcome:
    """One experiment exec as the campaign runner records it.

    Times are timezone-aware UTC datetimes; ``duration_s`` is seconds (monotonic clock).
    ``container_running`` is ``None`` when the state was not looked at (the ok path, a
    timeout). What to do about it (restart, retry, carry on) is the decision's, not this layer's.
    """

    status: OutcomeStatus
    exit_code: int | None
    started_at: datetime
    ended_at: datetime
    duration_s: float
    stderr_tail: str = ""
    detail: str = ""
    container_running: bool | None = None

    @property
    def ok(self) -> bool:
        """True when the experiment exited 0."""
        return self.status == "ok"
