"""The run directory: ``<results>/<name>/<run_id>/``, its file names, and safe writes.

Run ids are UTC timestamps so that ``ls`` sorts runs by age and cron mail names
them unambiguously; ``os.mkdir`` claims one atomically, so two runs started in
the same second (two campaigns, one results directory) get ``-2``, ``-3``.
Files that are rewritten (``plan.json``, ``results.csv``) are replaced
atomically: a reader or a crash sees the old file or the new, never half.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from llem_cli.atomic import fsync_dir
from llem_cli.runs.journal import JOURNAL_NAME
from llem_cli.timestamps import utc_now

RUN_ID_FORMAT = "%Y%m%dT%H%M%SZ"
_RUN_ID = re.compile(r"(\d{8}T\d{6}Z)(?:-([1-9]\d*))?")
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def new_run_id(now: datetime | None = None) -> str:
    """The run id for ``now`` (default: the current time), e.g. ``20261128T140500Z``."""
    moment = now or utc_now()
    if moment.tzinfo is None:
        raise ValueError("run ids are UTC: pass an aware datetime")
    return moment.astimezone(timezone.utc).strftime(RUN_ID_FORMAT)


def run_id_sort_key(run_id: str) -> tuple[str, int] | None:
    """Order of run ids (``...Z`` < ``...Z-2`` < ``...Z-10``); None for other names."""
    match = _RUN_ID.fullmatch(run_id)
    if match is None:
        return None
    return match.group(1), int(match.group(2) or 1)


#: a sharded run's shards keep their own files in ``shards/s<k>/`` (``llem slurm``)
SHARDS_DIR = "shards"


@dataclass(frozen=True)
class RunDir:
    """The paths inside one run directory, named in one place.

    With ``shard`` set, this is shard k of a sharded run (``llem slurm``): the journal, plan,
    ``results.csv`` and compose overrides are the shard's own, in ``shards/s<k>/`` (two shards
    may run at once, on one node or several), while ``campaign.yaml`` and ``experiments/``
    (keys never repeat across shards) are the run's.
    """

    root: Path
    shard: int | None = None

    @property
    def run_id(self) -> str:
        """The directory's name (a shard's is its run's)."""
        return self.root.name

    @property
    def own(self) -> Path:
        """Where this run's own files are: the root, or the shard's ``shards/s<k>/``."""
        if self.shard is None:
            return self.root
        return self.root / SHARDS_DIR / f"s{self.shard}"

    @property
    def journal(self) -> Path:
        """``journal.jsonl``: the append-only event log."""
        return self.own / JOURNAL_NAME

    @property
    def campaign(self) -> Path:
        """``campaign.yaml``: the campaign file as run."""
        return self.root / "campaign.yaml"

    @property
    def plan(self) -> Path:
        """``plan.json``: the expanded experiments (a shard's: its own)."""
        return self.own / "plan.json"

    @property
    def results_csv(self) -> Path:
        """``results.csv``: one row per experiment, rewritten as the run goes."""
        return self.own / "results.csv"

    @property
    def compose_override(self) -> Path:
        """``compose.override.yaml``: generated, passed after the user's compose files."""
        return self.own / "compose.override.yaml"

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
