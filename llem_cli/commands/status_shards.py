"""``llem status`` of a sharded run (``llem slurm``): every shard's progress and the Slurm job's
view of its tasks.

A shard's process runs on a compute node, so its pid says nothing on the login node where
status is read: a shard counts as running when Slurm says its task is RUNNING, or, without an
answer from Slurm, when its journal's writer is alive on this very node.
"""

from __future__ import annotations

import json
import mmap
import os
import socket
from pathlib import Path
from typing import Any

import click

from llem_cli.commands.status import line_at, summarize
from llem_cli.output import Output
from llem_cli.runs.layout import RunDir, planned_keys
from llem_cli.runs.shards import ShardMap, read_shard_map, shard_runs
from llem_cli.slurm.jobs import submitted_jobs, task_states

_RUN_STARTED = b'{"type":"run_started"'
#: Slurm task states in which the task's llem is (or is about to be) at work
_ACTIVE = frozenset({"RUNNING", "COMPLETING", "CONFIGURING", "REQUEUED", "RESIZING"})
_QUEUED = frozenset({"PENDING", "REQUEUE_HOLD", "REQUEUE_FED", "SUSPENDED"})


def latest_session(journal: Path) -> dict[str, Any] | None:
    """The journal's last ``run_started`` event (found by a byte search from the end)."""
    try:
        with open(journal, "rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                return None
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                at = data.rfind(_RUN_STARTED)
                return line_at(data, at) if at >= 0 else None
    except (OSError, ValueError):
        return None


def _shard_keys(plan: list[str], configs: tuple[str, ...]) -> list[str]:
    """The whole plan's keys (``<config_id>-c<cycle>``) that belong to these configurations."""
    mine = set(configs)
    return [key for key in plan if key.rpartition("-c")[0] in mine]


def summarize_sharded(run: RunDir) -> dict[str, Any]:
    """The status of a sharded run: totals, each shard's summary, the Slurm job's states."""
    cut: ShardMap = read_shard_map(run.root)
    plan = planned_keys(run) or []
    sessions = {s.shard: latest_session(s.journal) for s in shard_runs(run)}
    jobs = submitted_jobs(run.root)
    for event in sessions.values():
        job = ((event or {}).get("slurm") or {}).get("job_id")
        if isinstance(job, str) and job not in jobs:
            jobs.append(job)
    job_id = max(jobs, key=int) if jobs else None  # the newest submission
    states = task_states(job_id, cut.count) if job_id else {}
    here = socket.gethostname()
    shards: list[dict[str, Any]] = []
    for shard in shard_runs(run):
        k = shard.shard
        assert k is not None
        keys = _shard_keys(plan, cut.shards[k])
        slurm_state = states.get(k)
        session = sessions.get(k)
        node = ((session or {}).get("slurm") or {}).get("node")
        if not shard.journal.exists():
            info: dict[str, Any] = {
                "state": "pending" if slurm_state in _QUEUED else "not_started",
                "state_detail": "waiting in Slurm's queue"
                if slurm_state in _QUEUED
                else "not started",
                "total": len(keys),
                "done": 0,
                "pending": len(keys),
                "counts": {},
                "restarts": 0,
                "in_flight": [],
                "process_alive": False,
            }
        else:
            alive: bool | None
            if slurm_state is not None:
                alive = slurm_state in _ACTIVE
            elif node in (None, here, here.split(".")[0]):
                alive = None  # this node: the writer's pid tells
            else:
                alive = False
            info = summarize(shard, planned=keys, alive=alive)
            if info["state"] == "crashed":  # a shard is continued by its job array's script
                info["state_detail"] = (
                    "crashed (its process is gone; sbatch slurm/llem.sbatch continues it)"
                )
        info.update(
            shard=k,
            project=cut.project_of(k),
            configs=len(cut.shards[k]),
            node=node,
            slurm_state=slurm_state,
        )
        shards.append(info)
    counts: dict[str, int] = {}
    for info in shards:
        for status, n in info["counts"].items():
            counts[status] = counts.get(status, 0) + n
    return {
        "run_id": run.run_id,
        "run_dir": str(run.root),
        "state": _overall([i["state"] for i in shards], states),
        "sharded": True,
        "job_id": job_id,
        "jobs": jobs,
        "total": sum(i["total"] for i in shards),
        "done": sum(i["done"] for i in shards),
        "pending": sum(i["pending"] for i in shards),
        "counts": dict(sorted(counts.items())),
        "restarts": sum(i["restarts"] for i in shards),
        "shards": shards,
    }


def _overall(shard_states: list[str], slurm: dict[int, str]) -> str:
    """One word for the run: finished when every shard is; running while any shard runs or
    waits in Slurm's queue; else the worst of aborted, interrupted, crashed, not started."""
    if shard_states and all(s == "finished" for s in shard_states):
        return "finished"
    if any(s in ("running", "pending") for s in shard_states) or any(
        v in _QUEUED | _ACTIVE for v in slurm.values()
    ):
        return "running"
    for word in ("aborted", "interrupted", "crashed", "not_started"):
        if word in shard_states:
            return word
    return "not_started"


def _shard_line(info: dict[str, Any]) -> str:
    """``  shard 1:   running on node7, 2/3 done (1 failed); Slurm RUNNING``."""
    where = f" on {info['node']}" if info.get("node") and info["state"] == "running" else ""
    others = ", ".join(f"{n} {s}" for s, n in sorted(info["counts"].items()) if s != "ok")
    parts = [
        f"{info['state_detail']}{where}",
        f"{info['done']}/{info['total']} done" + (f" ({others})" if others else ""),
    ]
    if info["in_flight"]:
        verb = "running" if info["state"] == "running" else "was running"
        parts.append(f"{verb} {', '.join(info['in_flight'])}")
    if info.get("slurm_state"):
        parts.append(f"Slurm {info['slurm_state']}")
    label = f"shard {info['shard']}:"
    return f"  {label:<10} {'; '.join(parts)}"


def show_sharded(run: RunDir, *, as_json: bool, out: Output) -> int:
    """Print a sharded run's status (exit 0)."""
    info = summarize_sharded(run)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return 0
    counts = ", ".join(f"{n} {s}" for s, n in sorted(info["counts"].items())) or "none yet"
    job = f", Slurm job {info['job_id']}" if info["job_id"] else ""
    out.line(f"run {info['run_id']}: {info['state']} ({len(info['shards'])} shards{job})")
    out.line(f"  directory: {info['run_dir']}")
    out.line(f"  progress:  {info['done']}/{info['total']} done, {info['pending']} pending")
    out.line(f"  records:   {counts}; restarts {info['restarts']}")
    for shard in info["shards"]:
        out.line(_shard_line(shard))
    return 0


__all__ = ["show_sharded", "summarize_sharded"]
