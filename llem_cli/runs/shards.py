"""A sharded run (``llem slurm``): which configurations each shard runs, and the shards read
together.

``llem slurm`` cuts the plan's configurations into N contiguous blocks (every cycle of a
configuration in one shard, neighbours in the plan together, so a serving backend's server
configurations and equal GPU settings stay grouped) and writes the cut into the run directory
(``slurm/shards.json``). Every task of the job array reads the cut from there, never computes it
again: a resubmitted script, a requeued task or a later llem version runs the same shard.
Each shard journals in ``shards/s<k>/``; ``llem status``, ``results`` and ``report`` read them
together (:func:`replay_run`).
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from llem_cli.atomic import atomic_write_text
from llem_cli.runs.layout import RunDir, planned_keys
from llem_cli.runs.record import Record
from llem_cli.runs.results_csv import write_results_csv
from llem_cli.runs.state import RunState, replay

#: the cut, written once by ``llem slurm``
SHARDS_FILE = Path("slurm") / "shards.json"
SHARDS_FORMAT = 1


@dataclass(frozen=True)
class ShardMap:
    """The configurations of each shard, in plan order."""

    shards: tuple[tuple[str, ...], ...]
    project: str

    @property
    def count(self) -> int:
        """N, the number of shards (array tasks 0 .. N-1)."""
        return len(self.shards)

    def shard_of(self, config_id: str) -> int | None:
        """The shard that runs ``config_id`` (None: not in the cut)."""
        for number, configs in enumerate(self.shards):
            if config_id in configs:
                return number
        return None

    def project_of(self, shard: int) -> str:
        """Shard k's compose project, ``<project>-s<k>``: tasks sharing a node never collide."""
        return shard_project(self.project, shard)

    def to_json(self) -> dict[str, Any]:
        """``slurm/shards.json``."""
        return {
            "format": SHARDS_FORMAT,
            "project": self.project,
            "shards": [{"shard": k, "configs": list(c)} for k, c in enumerate(self.shards)],
        }

    @classmethod
    def from_json(cls, data: Any) -> ShardMap:
        """Parse ``slurm/shards.json`` (ValueError when it is not one)."""
        if not isinstance(data, dict) or data.get("format") != SHARDS_FORMAT:
            raise ValueError("not an llem shards file (format 1)")
        shards = data.get("shards")
        project = data.get("project")
        if not isinstance(shards, list) or not isinstance(project, str):
            raise ValueError("shards file without shards or project")
        cut: list[tuple[str, ...]] = []
        for k, entry in enumerate(shards):
            configs = entry.get("configs") if isinstance(entry, dict) else None
            if entry.get("shard") != k or not isinstance(configs, list):
                raise ValueError(f"shards file: entry {k} is not shard {k}")
            cut.append(tuple(str(c) for c in configs))
        return cls(tuple(cut), project)


def shard_project(project: str, shard: int) -> str:
    """``<project>-s<k>``."""
    return f"{project}-s{shard}"


def split_configs(config_ids: Sequence[str], shards: int) -> tuple[tuple[str, ...], ...]:
    """Cut configurations (plan order, no repeats) into ``shards`` contiguous blocks whose sizes
    differ by at most one, the larger first. Every block is non-empty: the caller refuses more
    shards than configurations."""
    if shards < 1 or shards > len(config_ids):
        raise ValueError(f"cannot cut {len(config_ids)} configurations into {shards} shards")
    base, extra = divmod(len(config_ids), shards)
    out: list[tuple[str, ...]] = []
    start = 0
    for k in range(shards):
        size = base + (1 if k < extra else 0)
        out.append(tuple(config_ids[start : start + size]))
        start += size
    return tuple(out)


def config_order(config_ids: Iterable[str]) -> list[str]:
    """Configurations in the order they first appear (experiments list each once per cycle)."""
    return list(dict.fromkeys(config_ids))


def shards_path(root: Path) -> Path:
    """``<run>/slurm/shards.json``."""
    return root / SHARDS_FILE


def is_sharded(root: Path) -> bool:
    """Whether the run directory at ``root`` was made by ``llem slurm``."""
    return shards_path(root).is_file()


def write_shard_map(root: Path, shard_map: ShardMap) -> None:
    """Write the cut once, atomically."""
    path = shards_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(shard_map.to_json(), indent=2) + "\n")


def read_shard_map(root: Path) -> ShardMap:
    """The cut of the sharded run at ``root`` (OSError / ValueError when unreadable)."""
    return ShardMap.from_json(json.loads(shards_path(root).read_text(encoding="utf-8")))


def shard_runs(run: RunDir) -> list[RunDir]:
    """Each shard of a sharded run (empty for a run that is not sharded)."""
    if run.shard is not None or not is_sharded(run.root):
        return []
    try:
        count = read_shard_map(run.root).count
    except (OSError, ValueError):
        return []
    return [RunDir(run.root, k) for k in range(count)]


def replay_run(run: RunDir, *, slim: bool = False) -> RunState:
    """The run's state; a sharded run's is every shard's journal folded together."""
    shards = shard_runs(run)
    if not shards:
        return replay(run.journal, slim=slim)
    return merge_states([replay(s.journal, slim=slim) for s in shards])


def journal_paths(run: RunDir) -> list[Path]:
    """Every journal of the run: each shard's, or the run's one."""
    shards = shard_runs(run)
    return [s.journal for s in shards] if shards else [run.journal]


def write_merged_results(root: Path, *, current: tuple[int, RunState] | None = None) -> None:
    """The run's own ``results.csv``, every shard's records in plan order, rewritten when a
    shard ends. Shards end at once on several nodes: the rewrite (replay every journal, then
    replace the file) is done under an exclusive lock in the run directory, so the last
    writer always read every shard's latest journal and no finished shard's rows are lost.
    ``current``: the ending shard's number and full replay, used instead of a second one."""
    run = RunDir(root)
    lock_path = root / "slurm" / "results.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        state = merge_states(
            [
                current[1] if current and shard.shard == current[0] else replay(shard.journal)
                for shard in shard_runs(run)
            ]
        )
        order = {key: i for i, key in enumerate(planned_keys(run) or [])}
        records = sorted(state.records.values(), key=lambda r: order.get(r.key, len(order)))
        # a full replay (no slim=True): every record is a Record
        write_results_csv(run.results_csv, cast("list[Record]", records))
    finally:
        os.close(fd)  # releases the lock


def merge_states(states: Sequence[RunState]) -> RunState:
    """Shards' states as one run's: records and in-flight keys together (keys never repeat
    across shards), counters summed, finished only when every shard is, aborted or interrupted
    when one is. ``writer_pid`` and ``last_event`` are the newest shard's, by timestamp."""
    merged = RunState()
    newest: dict[str, Any] | None = None
    for state in states:
        merged.records.update(state.records)
        merged.in_flight |= state.in_flight
        merged.restarts += state.restarts
        merged.restarts_this_session += state.restarts_this_session
        merged.sessions += state.sessions
        merged.events += state.events
        merged.defects.extend(state.defects)
        merged.started = merged.started or state.started
        merged.aborted = merged.aborted or state.aborted
        merged.interrupted = merged.interrupted or state.interrupted
        last = state.last_event
        if last is not None and (newest is None or str(last.get("ts")) > str(newest.get("ts"))):
            newest = last
            merged.writer_pid = state.writer_pid
    merged.finished = bool(states) and all(s.finished for s in states)
    merged.last_event = newest
    return merged


__all__ = [
    "SHARDS_FILE",
    "ShardMap",
    "config_order",
    "is_sharded",
    "journal_paths",
    "merge_states",
    "read_shard_map",
    "replay_run",
    "shard_project",
    "shard_runs",
    "split_configs",
    "write_merged_results",
    "write_shard_map",
]
