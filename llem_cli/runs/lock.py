"""One lock per compose project, so two runs that would share containers never overlap.

Two campaigns with the same compose project drive the same containers even
when their results directories differ, so the lock lives in a per-user
directory named after the project, not in the results directory. It is an
``fcntl.flock`` on a descriptor opened close-on-exec:

* the kernel drops it when the holder dies, however it dies (``kill -9``,
  power loss), so a stale lock is taken over without any pid guessing;
* no child (``docker compose up``, an experiment exec) inherits it, so a
  straggling child cannot keep a dead run's lock.

The file is never deleted: unlinking a lock file lets a waiter lock the
unlinked inode while a newcomer locks a fresh file, and both would run.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import socket
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llem_cli.errors import EnvironmentProblem, LockHeld
from llem_cli.timestamps import utc_now_iso

LOCK_DIR_ENV = "LLEM_LOCK_DIR"


def lock_dir() -> Path:
    """Where lock files live: ``$LLEM_LOCK_DIR``, else ``/tmp/llem-locks-<uid>``.

    Not ``$XDG_RUNTIME_DIR``: cron jobs do not have it set, so a cron run and a
    shell run of the same user would lock in different places and overlap.
    Runs by different users only exclude each other through a shared
    ``LLEM_LOCK_DIR``.
    """
    configured = os.environ.get(LOCK_DIR_ENV)
    if configured:
        return Path(configured)
    return Path("/tmp") / f"llem-locks-{os.getuid()}"  # noqa: S108 - checked in _ensure_dir


def _ensure_dir(path: Path) -> None:
    """Create the lock directory, refusing one another user could tamper with."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.lstat(path)
    except OSError as e:
        raise EnvironmentProblem(
            f"cannot create the lock directory {path}: {e.strerror}",
            hint=f"set {LOCK_DIR_ENV} to a writable directory",
        ) from e
    if not stat.S_ISDIR(info.st_mode) or (
        info.st_uid != os.getuid() and os.environ.get(LOCK_DIR_ENV) is None
    ):
        raise EnvironmentProblem(
            f"the lock directory {path} is not a directory owned by you",
            hint=f"remove it or set {LOCK_DIR_ENV}",
        )


def lock_path(project: str, directory: Path | None = None) -> Path:
    """The lock file of a compose project (characters unsafe in a file name become ``_``)."""
    if not project:
        raise ValueError("a compose project name is required")
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", project)
    return (directory or lock_dir()) / f"{safe}.lock"


@dataclass(frozen=True)
class Holder:
    """Who holds a lock, as written into the lock file by the holder."""

    pid: int | None
    run_dir: str | None
    started_at: str | None
    #: the holder's host: a lock in a shared run directory (a shard's) may be held on another node
    host: str | None = None

    @classmethod
    def parse(cls, text: str) -> Holder | None:
        """Read the holder info; None when absent or unreadable (written a moment later)."""
        try:
            data: Any = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        pid = data.get("pid")
        return cls(
            pid=pid if isinstance(pid, int) else None,
            run_dir=data.get("run_dir"),
            started_at=data.get("started_at"),
            host=data.get("host") if isinstance(data.get("host"), str) else None,
        )


def read_holder(project: str, directory: Path | None = None) -> Holder | None:
    """The holder info in a project's lock file, held or not (for ``llem status``)."""
    try:
        return Holder.parse(lock_path(project, directory).read_text())
    except OSError:
        return None


class RunLock:
    """The lock of one compose project for one run; a context manager.

    ``acquire`` raises :class:`~llem_cli.errors.LockHeld` (exit 75) naming the
    holder's pid and run directory when another process has it.
    """

    def __init__(self, project: str, run_dir: Path | str, *, directory: Path | None = None):
        self.project = project
        self.run_dir = str(run_dir)
        self.path = lock_path(project, directory)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock without waiting, then write this process's holder info."""
        if self._fd is not None:
            return
        _ensure_dir(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            raise self._held_error() from None
        info = {
            "pid": os.getpid(),
            "run_dir": self.run_dir,
            "started_at": utc_now_iso(),
            "project": self.project,
            "host": socket.gethostname(),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        self._fd = fd

    def holder_description(self) -> str:
        """Who holds the lock, for a message: ``pid N, run directory D``."""
        holder = read_holder(self.project, self.path.parent)
        if holder is None or holder.pid is None:
            return "another process (holder not yet recorded)"
        where = f" on {holder.host}" if holder.host and holder.host != socket.gethostname() else ""
        return f"pid {holder.pid}{where}, run directory {holder.run_dir}"

    def _held_error(self) -> LockHeld:
        return LockHeld(
            f"another llem run holds the lock of compose project {self.project!r}: "
            f"{self.holder_description()}",
            hint=f"wait for it to finish; lock file {self.path}",
        )

    def release(self) -> None:
        """Clear the holder info and drop the lock (the file stays; see the module doc)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
