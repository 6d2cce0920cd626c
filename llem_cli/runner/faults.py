"""What ``llem run`` does when the environment fails under it (disk full, daemon gone).

These are not experiment outcomes but environment problems (exit 3, resumable once fixed):
the run must stop cleanly, say so in one line, and leave a journal from which ``--resume``
runs again exactly what the outage cost. The one rule: :func:`check_environment` runs before a
failed experiment is recorded, so an outage is never written down as the experiment's failure
(and nothing written is ever taken back). Kept apart from the session's happy path so that
path reads as lock, journal, loop, summary.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from pathlib import Path

from llem_cli.docker.daemon import daemon_problem, unreachable_error
from llem_cli.docker.outcome import ExecOutcome
from llem_cli.errors import EnvironmentProblem

#: errors writing the run directory that the user fixes outside llem (then ``--resume``)
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO})

#: how long a daemon that still answers is watched after a container vanished under an
#: experiment: a daemon being stopped stops its containers first and may answer meanwhile
SETTLE_S = 1.0


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


def check_space(experiment_dir: Path) -> None:
    """Raise ENOSPC when the experiment's filesystem is full.

    The docker client exits non-zero when it cannot write the experiment's output to
    ``stdout.log``: on a full results filesystem a good experiment would be recorded ``failed``
    (and never run again). Its record must not be written at all: the run stops (exit 3) and
    ``--resume`` runs it again once there is space.
    """
    try:
        st = os.statvfs(experiment_dir)
    except OSError:
        return
    if st.f_blocks and st.f_bavail == 0:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(experiment_dir))


def check_environment(
    outcome: ExecOutcome,
    experiment_dir: Path,
    *,
    problem: Callable[[], str | None] = daemon_problem,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Before a failed experiment is recorded: raise when the host, not the experiment, failed.

    A full results disk raises ENOSPC (the session turns it into exit 3). Then the daemon must
    answer ``docker version``: when it stops, the experiment running fails first (exit 137 when
    a graceful stop kills the container, 255 when the connection drops, 126 when the exec cannot
    start in the stopping container), and recorded as it is the failure would settle the
    experiment for good, with the rest of its backend ``skipped`` after a 126. A container that
    vanished while the daemon still answers may be the first sign of a stop in progress, so the
    daemon is asked once more after :data:`SETTLE_S`. Costs nothing on the ok path.
    """
    check_space(experiment_dir)
    why = problem()
    if why is None and outcome.container_running is False:
        sleep(SETTLE_S)
        why = problem()
    if why is not None:
        raise unreachable_error(why)


__all__ = [
    "DISK_ERRNOS",
    "check_environment",
    "check_space",
    "disk_problem",
    "is_disk_error",
]
