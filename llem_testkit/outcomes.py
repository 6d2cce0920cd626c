"""Experiments and exec outcomes made by hand, for the runner's record and fault logic.

Shared by the fault regression tests that need no engine (tests/unit/test_fault_regressions.py)
and those that do (tests/e2e/test_faults.py).
"""

from __future__ import annotations

from datetime import datetime, timezone

from llem_cli.campaign.expansion import Config
from llem_cli.docker.outcome import ExecOutcome
from llem_cli.runner.schedule import Experiment

__all__ = ["experiment", "outcome"]


def experiment() -> Experiment:
    """Cycle 1 of a one-configuration experiment (backend and service ``app``)."""
    config = Config(backend="app", params={"i": 1}, config_id="abcdef012345", origin=())
    return Experiment(config=config, cycle=1, service="app")


def outcome(status: str = "failed", code: int = 3, stderr: str = "") -> ExecOutcome:
    """An exec that ended now with ``status`` and exit ``code``, ``stderr`` its last output."""
    now = datetime.now(timezone.utc)
    detail = f"exit {code}: {stderr.strip().splitlines()[-1]}" if stderr else f"exit {code}"
    return ExecOutcome(
        status,  # type: ignore[arg-type]
        code,
        now,
        now,
        0.1,
        stderr_tail=stderr,
        detail=detail,
    )
