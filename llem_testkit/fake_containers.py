"""A scripted container layer for the campaign loop's table tests (no Docker).

The loop drives its containers through a protocol (:class:`llem_cli.runner.containers.Containers`):
start, exec, probe, restart, stop. :class:`FakeContainers` implements it from a script: each
verb goes into one ordered log (``calls``), each experiment key maps to the status of each of its
attempts (``outcomes``; the last one repeats, default ``ok``), and the probe reports one healthy
GPU. The loop's tests (plain, lanes, serving) subclass it for what they check: probe scripts, a
lane's GPUs and timing, a server's readiness.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from llem_cli.docker.outcome import ExecOutcome
from llem_cli.docker.probe import GpuStatus, ProbeResult
from llem_cli.timestamps import utc_now

#: the exit code each scripted status reports (anything else: 1)
EXIT_CODES: dict[str, int | None] = {
    "ok": 0,
    "timeout": None,
    "not_runnable": 127,
    "oom_killed": 137,
}


def exec_outcome(status: str, *, duration_s: float, detail: str = "scripted") -> ExecOutcome:
    """The :class:`ExecOutcome` of a scripted exec that ended with ``status``."""
    now = utc_now()
    return ExecOutcome(
        status,  # type: ignore[arg-type]
        exit_code=EXIT_CODES.get(status, 1),
        started_at=now,
        ended_at=now,
        duration_s=duration_s,
        detail="" if status == "ok" else detail,
        container_running=False if status == "container_died" else None,
    )


@dataclass(kw_only=True)
class FakeContainers:
    """The container protocol from a script (see the module docstring)."""

    calls: list[tuple[str, ...]] = field(default_factory=list)
    outcomes: Mapping[str, Sequence[str]] = field(default_factory=dict)  # key -> per attempt
    attempts: dict[str, int] = field(default_factory=dict)
    exec_s: float = 0.5

    def start(self, service: str) -> None:
        """Log ``("start", service)``."""
        self.calls.append(("start", service))

    def restart(self, service: str) -> None:
        """Log ``("restart", service)``."""
        self.calls.append(("restart", service))

    def stop(self, service: str) -> None:
        """Log ``("stop", service)``."""
        self.calls.append(("stop", service))

    def next_status(self, key: str) -> str:
        """The scripted status of ``key``'s next attempt (counted)."""
        attempt = self.attempts.get(key, 0)
        self.attempts[key] = attempt + 1
        script = self.outcomes.get(key, ["ok"])
        return script[min(attempt, len(script) - 1)]

    def exec(
        self,
        service: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        timeout_s: float,
        stdout_path: Path | None = None,
        stderr_path: Path | None = None,
    ) -> ExecOutcome:
        """Log the exec, run :meth:`work`, return the scripted outcome."""
        assert env is not None
        key = env["LLEM_EXPERIMENT_KEY"]
        status = self.next_status(key)
        self.work(service, argv, env, key)
        return exec_outcome(status, duration_s=self.exec_s, detail=self.detail(status))

    def work(self, service: str, argv: Sequence[str], env: Mapping[str, str], key: str) -> None:
        """What the exec does besides its outcome: log ``("exec", service, key)``."""
        self.calls.append(("exec", service, key))

    def detail(self, status: str) -> str:
        """The failed outcome's detail text."""
        return "scripted"

    def probe(
        self, service: str, argv: Sequence[str] | None = None, *, timeout_s: float | None = None
    ) -> ProbeResult:
        """One healthy GPU at 10 % memory."""
        self.calls.append(("probe", service))
        return ProbeResult("ok", gpus=(GpuStatus(0, "GPU-0", 100.0, 1000.0),))


__all__ = ["EXIT_CODES", "FakeContainers", "exec_outcome"]
