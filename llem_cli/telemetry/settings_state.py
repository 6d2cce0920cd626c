"""The host-wide state file of the GPU settings llem changed: what to restore after a crash.

``<LLEM_STATE_DIR or /var/lib/llem>/gpu-state.json``::

    {"version": 1,
     "gpus": {"GPU-<uuid>": {"index": 0,
                             "original": {"power_limit_w": 700.0,
                                          "reset_sm_clocks": true, "reset_mem_clocks": true},
                             "owner": {"run_dir": "/results/x/20261128T140500Z", "pid": 4242,
                                       "pid_start": 123456, "boot_id": "...",
                                       "host": "node1", "since": "2026-11-28T14:05:01.123Z"}}}}

An entry is written (:meth:`StateFile.claim`) before llem first changes a GPU and removed
(:meth:`StateFile.release`) once its settings are restored. An entry whose owner is gone
(:meth:`Owner.alive`: its pid is not running, or the pid was reused by another process, told
by the process start time, field 22 of ``/proc/<pid>/stat``) is an *orphan*: a run crashed
or was killed with the GPU changed, and :func:`restore_orphans` puts the GPU back.

Keyed by GPU UUID: indices can change across reboots, UUIDs do not. Every change happens
under an exclusive ``fcntl.flock`` on ``gpu-state.json.lock`` beside the file (never
deleted) and is written atomically (temporary file, fsync, ``os.replace``, directory fsync),
so a reader, which takes no lock, sees the old file or the new one and a crash leaves one of
them. A file that cannot be read or parsed is an error naming it, never silently dropped: it
may be the only record of a GPU left changed.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llem_cli.atomic import atomic_write_text
from llem_cli.errors import EnvironmentProblem, LockHeld
from llem_cli.telemetry.gpu_settings import Original, SettingsControl
from llem_cli.timestamps import utc_now_iso

STATE_DIR_ENV = "LLEM_STATE_DIR"
DEFAULT_STATE_DIR = Path("/var/lib/llem")
STATE_FILE_NAME = "gpu-state.json"
VERSION = 1


def state_dir() -> Path:
    """``$LLEM_STATE_DIR``, else ``/var/lib/llem``."""
    configured = os.environ.get(STATE_DIR_ENV)
    return Path(configured) if configured else DEFAULT_STATE_DIR


class StateFileError(EnvironmentProblem):
    """The state file cannot be read, parsed or written (exit 3); the message names it."""


class SettingsBusy(LockHeld):
    """A live run owns a GPU's settings (exit 75, as for a held run lock)."""


# ---- owners ----


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """``(state, start time)`` of ``pid`` from ``/proc/<pid>/stat`` (fields 3 and 22)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: count after its last ")"
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return fields[0], int(fields[19])  # fields[0] is field 3, so field 22 is fields[19]
    except (IndexError, ValueError):
        return None


def process_start_ticks(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks after boot (``/proc/<pid>/stat`` field 22).

    None when the process does not exist or ``/proc`` cannot say. With the pid, it names a
    process for the life of a boot: a reused pid has a later start time.
    """
    found = _proc_stat(pid)
    return None if found is None else found[1]


def boot_id() -> str | None:
    """This boot's id (``/proc/sys/kernel/random/boot_id``), None where unreadable."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


@dataclass(frozen=True)
class Owner:
    """The run that changed a GPU: its run directory and process, on which host, since when.

    Identity is ``(host, pid, pid_start)``: ``run_dir``, ``since`` and ``boot_id`` describe.
    """

    run_dir: str
    pid: int
    pid_start: int | None
    host: str
    since: str
    boot_id: str | None = None

    @classmethod
    def current(cls, run_dir: Path | str) -> Owner:
        """This process, for the run in ``run_dir``."""
        pid = os.getpid()
        return cls(
            run_dir=str(run_dir),
            pid=pid,
            pid_start=process_start_ticks(pid),
            host=socket.gethostname(),
            since=utc_now_iso(),
            boot_id=boot_id(),
        )

    def same(self, other: Owner) -> bool:
        """Whether ``other`` is the same process (same host, pid and start time)."""
        return (self.host, self.pid, self.pid_start) == (other.host, other.pid, other.pid_start)

    def status(self) -> str:
        """``alive``; ``gone`` (no such process, a zombie, or the host rebooted since);
        ``reused`` (the pid is another process now: its start time differs); or
        ``elsewhere`` (written on another machine: cannot tell).

        The same machine is the same boot id (the kernel's, so also inside a container of
        this host) or the same host name.
        """
        now_boot = boot_id()
        same_boot = self.boot_id is not None and self.boot_id == now_boot
        if not same_boot:
            if self.host != socket.gethostname():
                return "elsewhere"
            if self.boot_id is not None and now_boot is not None:
                return "gone"  # this host rebooted since: the process is gone
        found = _proc_stat(self.pid)
        if found is None:
            return "alive" if _pid_exists(self.pid) else "gone"
        state, start = found
        if self.pid_start is not None and start != self.pid_start:
            return "reused"
        if state in ("Z", "X"):
            return "gone"  # exited, not yet reaped by its parent
        return "alive"

    def alive(self) -> bool:
        """Whether the owner may still be running (another host's owner counts as alive)."""
        return self.status() in ("alive", "elsewhere")

    def to_json(self) -> dict[str, Any]:
        """The state file's ``owner`` object."""
        return {
            "run_dir": self.run_dir,
            "pid": self.pid,
            "pid_start": self.pid_start,
            "boot_id": self.boot_id,
            "host": self.host,
            "since": self.since,
        }

    @classmethod
    def from_json(cls, data: Any) -> Owner:
        """Parse :meth:`to_json`'s object; ``ValueError`` (one line) if it is not one."""
        if not isinstance(data, dict):
            raise ValueError("'owner' is not an object")
        pid, start = data.get("pid"), data.get("pid_start")
        if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
            raise ValueError(f"'owner.pid' is not a process id: {pid!r}")
        if start is not None and (isinstance(start, bool) or not isinstance(start, int)):
            raise ValueError(f"'owner.pid_start' is not a number: {start!r}")
        texts = {}
        for name in ("run_dir", "host", "since"):
            value = data.get(name)
            if not isinstance(value, str):
                raise ValueError(f"'owner.{name}' is not a string: {value!r}")
            texts[name] = value
        boot = data.get("boot_id")
        return cls(
            pid=pid,
            pid_start=start,
            boot_id=boot if isinstance(boot, str) else None,
            **texts,
        )

    def describe(self) -> str:
        """``run /results/x/2026... (pid 4242, gone)``."""
        return f"run {self.run_dir} (pid {self.pid}, {self.status()})"


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class Entry:
    """One GPU llem changed: its UUID, index when changed, original settings and owner."""

    uuid: str
    index: int
    original: Original
    owner: Owner

    def to_json(self) -> dict[str, Any]:
        """One entry of the state file's ``gpus``."""
        return {
            "index": self.index,
            "original": self.original.to_json(),
            "owner": self.owner.to_json(),
        }

    @classmethod
    def from_json(cls, uuid: str, data: Any) -> Entry:
        """Parse one entry of ``gpus``; ``ValueError`` naming the UUID if it is not one."""
        if not isinstance(data, dict):
            raise ValueError(f"entry {uuid} is not an object")
        index = data.get("index")
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise ValueError(f"entry {uuid}: 'index' is not a GPU index: {index!r}")
        try:
            return cls(
                uuid=uuid,
                index=index,
                original=Original.from_json(data.get("original")),
                owner=Owner.from_json(data.get("owner")),
            )
        except ValueError as exc:
            raise ValueError(f"entry {uuid}: {exc}") from exc


# ---- the file ----


class StateFile:
    """The state file at ``path`` (default: :func:`state_dir` / ``gpu-state.json``)."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else state_dir() / STATE_FILE_NAME
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._mutex = threading.RLock()
        self._depth = 0

    def __repr__(self) -> str:
        return f"StateFile({str(self.path)!r})"

    # reading

    def _read(self) -> dict[str, Entry]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError) as exc:
            raise StateFileError(
                f"cannot read the GPU settings state file {self.path}: {_why(exc)}",
                hint=_fix_hint(exc, writing=False),
            ) from exc
        try:
            data = json.loads(text)
            return _parse(data)
        except ValueError as exc:
            raise StateFileError(
                f"the GPU settings state file {self.path} is corrupt ({_one_line(exc)})",
                hint="GPUs it records may still be changed: check them with nvidia-smi, "
                "then move the file away",
            ) from exc

    def entries(self) -> list[Entry]:
        """Every entry, by UUID order; empty when there is no file. Takes no lock."""
        return [entry for _, entry in sorted(self._read().items())]

    def orphans(self) -> list[Entry]:
        """Entries whose owner is gone: its pid is not running, or runs another process."""
        return [e for e in self.entries() if not e.owner.alive()]

    # changing

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the exclusive lock, creating the directory (0755) when needed.

        Re-entrant within a thread; threads of one process (lanes) take turns on this
        object's mutex, processes on the ``flock``.
        """
        with self._mutex:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self._ensure_dir()
            try:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                raise StateFileError(
                    f"cannot open the GPU settings lock file {self.lock_path}: {_why(exc)}",
                    hint=_fix_hint(exc),
                ) from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._depth = 1
                try:
                    yield
                finally:
                    self._depth = 0
            finally:
                os.close(fd)  # closing drops the lock

    def _ensure_dir(self) -> None:
        directory = self.path.parent
        if directory.is_dir():
            return
        try:
            directory.mkdir(mode=0o755, parents=True, exist_ok=True)
        except OSError as exc:
            raise StateFileError(
                f"cannot create the GPU settings state directory {directory}: {_why(exc)}",
                hint=_fix_hint(exc),
            ) from exc

    def _write(self, entries: dict[str, Entry]) -> None:
        data = {
            "version": VERSION,
            "gpus": {uuid: entries[uuid].to_json() for uuid in sorted(entries)},
        }
        try:
            atomic_write_text(self.path, json.dumps(data, indent=2) + "\n")
        except OSError as exc:
            raise StateFileError(
                f"cannot write the GPU settings state file {self.path}: {_why(exc)}",
                hint=_fix_hint(exc),
            ) from exc

    def claim(self, uuid: str, index: int, original: Original, owner: Owner) -> bool:
        """Record ``original`` for GPU ``uuid`` as ``owner``'s, before its first change.

        True: the entry is ``owner``'s (written now, or already there). False: a dead
        owner's entry is there and is left as it is (its original is the true one):
        restore orphans (:func:`restore_orphans`) first, then claim again.
        Raises :class:`SettingsBusy` if a live other owner has it.
        """
        with self.locked():
            entries = self._read()
            found = entries.get(uuid)
            if found is not None:
                if found.owner.same(owner):
                    return True
                if found.owner.alive():
                    raise SettingsBusy(
                        f"GPU {index} ({uuid}) has settings changed by another live "
                        f"{found.owner.describe()} on {found.owner.host}",
                        hint="wait for it to end, or choose other GPUs",
                    )
                return False
            entries[uuid] = Entry(uuid=uuid, index=index, original=original, owner=owner)
            self._write(entries)
            return True

    def release(self, uuid: str, owner: Owner) -> bool:
        """Remove GPU ``uuid``'s entry once restored, if it is ``owner``'s; whether it was."""
        with self.locked():
            entries = self._read()
            found = entries.get(uuid)
            if found is None or not found.owner.same(owner):
                return False
            del entries[uuid]
            self._write(entries)
            return True


def _parse(data: Any) -> dict[str, Entry]:
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    if data.get("version") != VERSION:
        raise ValueError(f"version {data.get('version')!r}, expected {VERSION}")
    gpus = data.get("gpus")
    if not isinstance(gpus, dict):
        raise ValueError("'gpus' is not an object")
    return {uuid: Entry.from_json(uuid, entry) for uuid, entry in gpus.items()}


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return _one_line(exc)


def _fix_hint(exc: BaseException, *, writing: bool = True) -> str | None:
    """How to get past an ``OSError`` on the state file or its directory."""
    if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"run as root, or set {STATE_DIR_ENV} to a writable directory"
    if writing:
        return f"set {STATE_DIR_ENV} to a writable directory"
    return None


# ---- after a crash ----


def restore_orphans(state: StateFile, control: SettingsControl) -> list[str]:
    """Restore every GPU a dead run left changed, and clear its entry; one line per GPU.

    Holds the state lock throughout, so no run claims a GPU while it is being restored.
    A GPU NVML does not know (another host's, or gone) stays in the file, and its line
    says so; so does one whose restore failed (its problems in the line), for the next try.
    """
    lines: list[str] = []
    with state.locked():
        for entry in state.orphans():
            owner = entry.owner
            left = f"left changed by run {owner.run_dir} (pid {owner.pid}, {owner.status()})"
            index = control.index_of(entry.uuid)
            if index is None:
                lines.append(
                    f"GPU {entry.uuid} (index {entry.index} then) {left} is not known to NVML "
                    "here: its original settings stay in the state file"
                )
                continue
            problems = control.restore(index, entry.original)
            if problems:
                lines.append(
                    f"could not restore GPU {index} ({entry.uuid}) {left}: "
                    + "; ".join(problems)
                    + " (kept in the state file for the next try)"
                )
                continue
            state.release(entry.uuid, owner)
            lines.append(f"restored GPU {index} ({entry.uuid}) {entry.original.describe()}, {left}")
    return lines
