"""The container protocol the loop runs over: start, exec, probe, restart, stop.

Three implementations carry it: :class:`llem_cli.docker.manager.ContainerManager` (real
containers through the Docker CLI; with a :class:`~llem_cli.docker.proc.DryRunRunner` it prints
the commands instead, which is ``llem run --dry-run``), and the scripted fake of the loop's
table tests (``tests/unit/test_loop.py``). The loop never learns which one it drives, so the
tests without Docker exercise the same code that runs a campaign.

The layer reports what happened (an :class:`ExecOutcome`, a :class:`ProbeResult`); what to do
about it is :func:`llem_cli.runner.decision.decide`'s alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from llem_cli.docker.outcome import ExecOutcome
from llem_cli.docker.probe import ProbeResult


class Containers(Protocol):
    """One long-running container per compose service, as the loop needs it."""

    def start(self, service: str) -> None:
        """Bring the service's container up (raises StartFailed when it cannot)."""
        ...

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
        """Run one experiment in the container and classify what happened; never restarts."""
        ...

    def probe(
        self, service: str, argv: Sequence[str] | None = None, *, timeout_s: float | None = None
    ) -> ProbeResult:
        """One health probe (``nvidia-smi`` query, or the campaign's argv) in the container."""
        ...

    def restart(self, service: str) -> None:
        """Restart the container (a fresh one if it is gone); the loop probes again after."""
        ...

    def stop(self, service: str) -> None:
        """Remove the container: its backend has nothing left to run."""
        ...

    def configure_server(
        self, service: str, argv: Sequence[str], env: Mapping[str, str] | None = None
    ) -> None:
        """A serving backend: ``argv`` (with ``env``) becomes the container's main process at
        its next start."""
        ...

    def ready(self, service: str, argv: Sequence[str], *, timeout_s: float) -> tuple[str, str]:
        """One exec of ``ready``: ``ready``, ``not_ready`` or ``dead`` (the container stopped),
        and the last line it printed."""
        ...

    def logs_tail(self, service: str, lines: int = 20) -> str:
        """The container's last log lines (a server's), for an error message."""
        ...


__all__ = ["Containers"]
