"""``llem down``: remove the containers (and networks) a run left behind, by label, and put
back the GPU settings a stopped run left changed (any run of this host whose process is gone)."""

from __future__ import annotations

from pathlib import Path

from llem_cli.campaign.load import load_campaign
from llem_cli.docker.sweep import teardown_by_label
from llem_cli.errors import LockHeld, UsageProblem
from llem_cli.output import Output
from llem_cli.runner.gpu_settings_run import restore_left_changed
from llem_cli.runs.layout import RunDir
from llem_cli.runs.lock import RunLock
from llem_cli.runs.resolve import project_of_run
from llem_cli.runs.shards import read_shard_map, shard_runs


def bring_down(target: Path, out: Output) -> int:
    """FILE: llem's containers in its compose project; RUN_DIR: that run's (and its project's).

    A run that is still going holds its project's lock: its containers are not "left behind",
    so ``down`` refuses with exit 75 instead of pulling them from under it (stop the run with
    Ctrl-C or ``kill -TERM``; it tears down itself). The lock is held during the removal, so
    no run can start in the middle of it.
    """
    if target.is_dir() and shard_runs(RunDir(target.resolve())):
        return _bring_down_shards(RunDir(target.resolve()), out)
    if target.is_dir():
        run = RunDir(target.resolve())
        if not run.journal.exists() and not run.campaign.exists():
            raise UsageProblem(
                f"{target}: not a run directory (no journal.jsonl)",
                hint="give a campaign file or <results>/<name>/<run_id>",
            )
        project = project_of_run(run)
        what = f"run {run.run_id}"
        lock_for = run.root
    else:
        loaded = load_campaign(target)
        project = loaded.campaign.project_name
        what = f"compose project {project}"
        lock_for = target.resolve()
    removed = _remove(what, project, lock_for, run_id=None if project else run.run_id)
    out.line(f"{what}: removed {len(removed)} container(s)")
    for line in restore_left_changed():
        out.line(line)
    return 0


def _bring_down_shards(run: RunDir, out: Output) -> int:
    """A sharded run (``llem slurm``): every shard's project, each under its own lock (a shard
    still running on this node refuses, exit 75, after the others are down)."""
    cut = read_shard_map(run.root)
    total: list[str] = []
    held: LockHeld | None = None
    for shard in shard_runs(run):
        assert shard.shard is not None
        try:
            total += _remove(
                f"run {run.run_id} shard {shard.shard}", cut.project_of(shard.shard), shard.own
            )
        except LockHeld as exc:
            held = held or exc
    out.line(f"run {run.run_id}: removed {len(total)} container(s) of {cut.count} shard(s)")
    for line in restore_left_changed():
        out.line(line)
    if held is not None:
        raise held
    return 0


def _remove(
    what: str, project: str | None, lock_for: Path, *, run_id: str | None = None
) -> list[str]:
    """Remove the project's containers (every lane's too) under its lock; without a project,
    the run's by its label."""
    lock = RunLock(project, lock_for) if project is not None else None
    if lock is not None:
        try:
            lock.acquire()
        except LockHeld:
            raise LockHeld(
                f"{what}: a run is still active ({lock.holder_description()}); "
                "its containers are in use",
                hint="stop it with Ctrl-C or 'kill -TERM <pid>': it removes its containers itself",
            ) from None
    try:
        # A run id is a timestamp, unique only among its campaign's runs: another campaign
        # started in the same second has the same llem.run label. The run's containers are
        # all in its compose project, so the project alone names them without that risk.
        if project is not None:
            return teardown_by_label(project=project, include_lanes=True)
        assert run_id is not None
        return teardown_by_label(run_id=run_id)
    finally:
        if lock is not None:
            lock.release()
