"""The run directory: ``<results>/<name>/<run_id>/``, its file names, and safe writes.

Run ids are UTC timestamps so that ``ls`` sorts runs by age and cron mail names
them unambiguously; ``os.mkdir`` claims one atomically, so two runs started in
the same second (two campaigns, one results directory) get ``-2``, ``-3``.
Files that are rewritten (``plan.json``, ``results.csv``) are replaced
atomically: a reader or a crash sees the old file or the new, never half.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from llem_cli.run.journal import JOURNAL_NAME, fsync_dir, replay

RUN_ID_FORMAT = "%Y%m%dT%H%M%SZ"
_RUN_ID = re.compile(r"(\d{8}T\d{6}Z)(?:-([1-9]\d*))?")
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def new_run_id(now: datetime | None = None) -> str:
    """The run id for ``now`` (default: the current time), e.g. ``20261128T140500Z``."""
    moment = now or datetime.now(timezone.utc)
    if moment.tzinfo is None:
        raise ValueError("run ids are UTC: pass an aware datetime")
    return moment.astimezone(timezone.utc).strftime(RUN_ID_FORMAT)


def run_id_sort_key(run_id: str) -> tuple[str, int] | None:
    """Order of run ids (``...Z`` < ``...Z-2`` < ``...Z-10``); None for other names."""
    match = _RUN_ID.fullmatch(run_id)
    if match is None:
        return None
    return match.group(1), int(match.group(2) or 1)


@dataclass(frozen=True)
class RunDir:
    """The paths inside one run directory, named in one place."""

    root: Path

    @property
    def run_id(self) -> str:
        """The directory's name."""
        return self.root.name

    @property
    def journal(self) -> Path:
        """``journal.jsonl``: the append-only event log."""
        return self.root / JOURNAL_NAME

    @property
    def campaign(self) -> Path:
        """``campaign.yaml``: the campaign file as run."""
        return self.root / "campaign.yaml"

    @property
    def plan(self) -> Path:
        """``plan.json``: the expanded experiments."""
        return self.root / "plan.json"

    @property
    def results_csv(self) -> Path:
        """``results.csv``: one row per experiment, rewritten as the run goes."""
        return self.root / "results.csv"

    @property
    def compose_override(self) -> Path:
        """``compose.override.yaml``: generated, passed after the user's compose files."""
        return self.root / "compose.override.yaml"

    @property
    def experiments(self) -> Path:
        """``experiments/``: one directory per experiment key."""
        return self.root / "experiments"

    def experiment(self, key: str) -> Path:
        """``experiments/<key>/``; refuses a key that could leave the directory."""
        if not _KEY.fullmatch(key):
            raise ValueError(f"not a valid experiment key: {key!r}")
        return self.experiments / key

    def make_experiment(self, key: str) -> Path:
        """Create (if needed) and return ``experiments/<key>/``."""
        path = self.experiment(key)
        path.mkdir(parents=True, exist_ok=True)
        return path


def create_run_dir(results_dir: Path | str, name: str, *, now: datetime | None = None) -> RunDir:
    """Create a new run directory, suffixing the id when another run took it first."""
    parent = Path(results_dir) / name
    parent.mkdir(parents=True, exist_ok=True)
    base = new_run_id(now)
    suffix = 1
    while True:
        run_id = base if suffix == 1 else f"{base}-{suffix}"
        try:
            os.mkdir(parent / run_id)
        except FileExistsError:
            suffix += 1
            continue
        run = RunDir(parent / run_id)
        run.experiments.mkdir()
        fsync_dir(parent)
        return run


def list_runs(results_dir: Path | str, name: str) -> list[RunDir]:
    """The campaign's run directories, oldest first (other entries are ignored)."""
    parent = Path(results_dir) / name
    try:
        entries = list(os.scandir(parent))
    except (FileNotFoundError, NotADirectoryError):
        return []
    runs = [(run_id_sort_key(e.name), e.path) for e in entries if e.is_dir()]
    return [RunDir(Path(path)) for key, path in sorted((k, p) for k, p in runs if k)]


def _last_event_type(journal: Path, chunk: int = 8192) -> str | None:
    """Type of the journal's last readable event, read from its tail only."""
    try:
        with open(journal, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - chunk))
            tail = f.read()
    except FileNotFoundError:
        return None
    lines = tail.split(b"\n")
    if size > chunk:
        lines = lines[1:]  # the first piece may be the end of a longer line
    for line in reversed(lines):
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and isinstance(event.get("type"), str):
            return event["type"]
    return None


def run_phase(run: RunDir) -> Literal["finished", "unfinished", "not_started"]:
    """Whether the run finished, started and has not ``run_finished`` since, or never started.

    Aborted, interrupted and crashed runs are unfinished: ``--resume`` picks them up. A
    directory whose journal never got a ``run_started`` is not a run to resume: nothing in it
    was done, a new run is equivalent. Read from the journal's tail (and head), not replayed.
    """
    last = _last_event_type(run.journal)
    if last == "run_finished":
        return "finished"  # the common case for old runs, without reading the whole journal
    if last is not None:
        # every session's events follow its run_started, so the journal's head settles
        # "started" without a replay of what may be 100k records (the resume replays once)
        return "unfinished" if _first_event_type(run.journal) == "run_started" else "not_started"
    state = replay(run.journal)  # the tail is unreadable: let the whole journal decide
    if state.finished:
        return "finished"
    return "unfinished" if state.started else "not_started"


def is_unfinished(run: RunDir) -> bool:
    """Whether the run started and has not finished (see :func:`run_phase`)."""
    return run_phase(run) == "unfinished"


def _first_event(journal: Path, limit: int = 1 << 20) -> dict[str, Any] | None:
    """The journal's first event, read from its first line only (None if unreadable)."""
    try:
        with open(journal, "rb") as f:
            line = f.readline(limit)
    except FileNotFoundError:
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


def _first_event_type(journal: Path) -> str | None:
    """Type of the journal's first event."""
    event = _first_event(journal)
    return event.get("type") if event else None


def campaign_of_run(run: RunDir) -> str | None:
    """The campaign name the run was started for (its first ``run_started``), None if unknown."""
    event = _first_event(run.journal)
    name = event.get("campaign") if event and event.get("type") == "run_started" else None
    return name if isinstance(name, str) else None


def find_newest_unfinished(results_dir: Path | str, name: str) -> RunDir | None:
    """The run ``--resume`` continues: the newest run of ``name``, if it is unfinished.

    An unfinished run older than a finished one was superseded: the user started over (a
    plain ``llem run``) and that run finished, so resuming the old one would run again what
    the newer run measured, and, if the campaign file changed since, refuse for ever. None
    means "start a new run". Directories whose journal never got a ``run_started`` are not
    runs (nothing was done in them) and are passed over. Finished runs are recognised from
    the journal's tail without replaying it, so many long runs are still scanned quickly.
    """
    for run in reversed(list_runs(results_dir, name)):
        phase = run_phase(run)
        if phase == "finished":
            return None
        if phase == "unfinished":
            return run
    return None


def atomic_write_bytes(path: Path | str, data: bytes, *, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` so that readers and crashes see old or new, never half.

    Writes a temporary file beside it, fsyncs it, ``os.replace``s it over the
    target, then fsyncs the directory so the rename itself is durable.
    """
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(target.parent)


def atomic_write_text(path: Path | str, text: str, *, mode: int = 0o644) -> None:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode(), mode=mode)


_PLAN_KEY = re.compile(r'\s*,?\s*\{"key": "([^"]+)"')


def planned_keys(run: RunDir) -> list[str] | None:
    """The keys of the run's ``plan.json`` in order (None: no readable plan).

    ``plan.json`` is written one object per line with ``key`` first, so the keys are read
    line by line without building 100k dicts; any other shape falls back to a full parse.
    """
    try:
        with open(run.plan, encoding="utf-8") as f:
            keys = []
            for line in f:
                match = _PLAN_KEY.match(line)
                if match:
                    keys.append(match.group(1))
                elif line.strip() not in ("[", "]", ""):
                    raise ValueError("not llem's plan.json layout")
            return keys
    except OSError:
        return None
    except ValueError:
        try:
            old = json.loads(run.plan.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return [i["key"] for i in old if isinstance(i, dict) and isinstance(i.get("key"), str)]
