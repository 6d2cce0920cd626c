"""What ``llem run`` does when the environment fails under it (disk full, daemon gone).

These are not experiment outcomes but environment problems (exit 3, resumable once fixed):
the run must stop cleanly, say so in one line, and leave a journal from which ``--resume``
runs again exactly what the outage cost. Kept apart from the session's happy path so that
path reads as lock, journal, loop, summary.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from llem_cli.docker.compose import daemon_problem
from llem_cli.errors import EnvironmentProblem
from llem_cli.runs.journal import Journal
from llem_cli.runs.journal_read import iter_events
from llem_cli.runs.layout import RunDir
from llem_cli.runs.record import Record

#: errors writing the run directory that the user fixes outside llem (then ``--resume``)
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO})

#: failures an environment going away (daemon stopped, its containers killed) produces; a
#: graceful daemon stop can even make ``exec`` exit 126 ("cannot exec in a stopped container"),
#: which reads as not_runnable and skips the rest of the backend
COLLATERAL_STATUSES = frozenset(
    {"failed", "container_died", "timeout", "oom_killed", "not_runnable"}
)
#: how recent (seconds before the abort) such a failure must be to be blamed on the environment
COLLATERAL_WINDOW_S = 60.0


def is_disk_error(exc: OSError) -> bool:
    """Whether a failed write is the results filesystem's fault (full, read-only, failing)."""
    return exc.errno in DISK_ERRNOS


def disk_problem(exc: OSError, where: Path) -> EnvironmentProblem:
    """A full (or read-only, or failing) results filesystem as an exit-3 environment problem."""
    why = exc.strerror or str(exc)
    return EnvironmentProblem(
        f"cannot write the run directory {where}: {why}",
        hint="free space on that filesystem, then run again with --resume",
    )


def check_daemon() -> None:
    """Fail early with exit 3 when Docker or its daemon is not there."""
    why = daemon_problem()
    if why is not None:
        raise EnvironmentProblem(
            f"the Docker daemon is not reachable: {why}",
            hint="start it (sudo systemctl start docker) or run 'llem doctor'",
        )


def unsettle_last_failure(run: RunDir, journal: Journal, emit: Callable[[Any], Any]) -> None:
    """Let ``--resume`` run again the experiments whose failure the environment caused.

    When the daemon stops, the experiment running then fails first (exit 137 when a graceful
    stop kills the container, 255 when the connection drops, 126 when the exec cannot start in
    the stopping container) and is recorded ``failed``, ``container_died`` or ``not_runnable``
    (which also records the rest of its backend ``skipped``); only a later restart, probe or exec
    finds the daemon gone. Those records would settle the experiments for good. So when the run
    stops on an environment problem, this session's last recorded experiment, if it failed that
    way within the last minute, and the ``skipped`` records it caused, are superseded by
    ``interrupted`` records (not final: a resume runs them again). At worst a genuine failure
    just before an outage runs once more.
    """
    pid = os.getpid()
    last: dict[str, Any] | None = None
    after: list[dict[str, Any]] = []  # skipped records written after ``last``
    for event in iter_events(run.journal):
        if event.get("pid") != pid:
            continue
        kind = event.get("type")
        if kind == "experiment_finished":
            last, after = event, []
        elif kind == "skipped" and last is not None:
            after.append(event)
    data = last.get("record") if last else None
    if not isinstance(data, dict):
        return
    try:
        record = Record.from_json(data)
        ended = datetime.fromisoformat(str(record.ended_at).replace("Z", "+00:00"))
    except (TypeError, ValueError):
        return
    age = (datetime.now(timezone.utc) - ended).total_seconds()
    if record.status not in COLLATERAL_STATUSES or age > COLLATERAL_WINDOW_S:
        return
    caused = [record]
    if record.status == "not_runnable":
        for event in after:
            try:
                skipped = Record.from_json(event["record"])
            except (KeyError, TypeError, ValueError):
                continue
            if f"(experiment {record.key})" in str(skipped.error):
                caused.append(skipped)
    for item in caused:
        item.error = (
            f"interrupted: the environment failed during this run ({item.status}: "
            f"{item.error}); runs again on --resume"
        )
        item.status = "interrupted"
        emit(journal.append("experiment_finished", key=item.key, record=item))


__all__ = [
    "COLLATERAL_STATUSES",
    "COLLATERAL_WINDOW_S",
    "DISK_ERRNOS",
    "check_daemon",
    "disk_problem",
    "is_disk_error",
    "unsettle_last_failure",
]
