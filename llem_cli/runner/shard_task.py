"""One Slurm array task's share of a sharded run: ``llem run FILE --resume RUN_DIR --shard K``.

Everything a task decides before it touches Docker lives here: that the run directory is
visible on this node (a run directory on a node-local disk is the classic cluster mistake,
and the task should say so in one line rather than start a fresh run nobody will find), which
experiments are its shard's (from the cut ``llem slurm`` wrote, never recomputed), whether the
shard is already finished (a resubmitted or requeued task then exits 0 at once), its own compose
project ``<project>-s<k>``, and the GPUs: those Slurm gave the task, by node index, which the
lanes map to UUIDs through host NVML.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from llem_cli.campaign.load import LoadedCampaign
from llem_cli.errors import EnvironmentProblem, UsageProblem
from llem_cli.runner.lane_plan import LaneRequest
from llem_cli.runner.schedule import Experiment
from llem_cli.runs.layout import RunDir
from llem_cli.runs.shards import is_sharded, read_shard_map, shard_project
from llem_cli.runs.state import replay, run_phase
from llem_cli.slurm.task import SlurmTask, drop_relative_gpu_variables


@dataclass
class ShardTask:
    """What ``llem run --shard K`` runs: the shard's run directory, campaign and experiments."""

    run: RunDir
    loaded: LoadedCampaign
    experiments: list[Experiment]
    lanes: LaneRequest
    slurm: SlurmTask
    resumed: bool
    finished: bool

    @property
    def number(self) -> int:
        """K."""
        assert self.run.shard is not None
        return self.run.shard


def open_shard(
    loaded: LoadedCampaign,
    experiments: list[Experiment],
    *,
    shard: int,
    run_dir: Path | None,
    lanes: LaneRequest,
    slurm: SlurmTask | None = None,
) -> ShardTask:
    """Shard ``shard`` of the run at ``run_dir``, ready to run (exit 2 / 3 with one line when it
    cannot be)."""
    task = slurm or SlurmTask.from_env()
    if run_dir is None:
        raise UsageProblem(
            f"--shard {shard} needs the run directory: --resume RUN_DIR",
            hint="the job array's script (RUN_DIR/slurm/llem.sbatch) passes both",
        )
    root = run_dir.resolve()
    if not root.exists():
        raise EnvironmentProblem(
            f"run directory {root} is not visible on node {task.node}: a sharded run's "
            "directory must be on a filesystem every node mounts",
            hint="make the run again with llem slurm --results-dir on the shared filesystem "
            "(the campaign and compose files too), then submit its script",
        )
    if not is_sharded(root):
        raise UsageProblem(
            f"{root}: not a run made by 'llem slurm' (no slurm/shards.json)",
            hint="--shard runs a shard of such a run; without it, llem run --resume RUN_DIR",
        )
    try:
        cut = read_shard_map(root)
    except (OSError, ValueError) as exc:
        raise UsageProblem(
            f"{root}/slurm/shards.json: unreadable ({exc})", hint="make the run again"
        ) from None
    if shard >= cut.count:
        raise UsageProblem(
            f"--shard {shard}: the run has {cut.count} shard(s), 0 to {cut.count - 1}",
            hint=f"see {root}/slurm/llem.sbatch",
        )
    mine = set(cut.shards[shard])
    known = {c.config_id for c in loaded.configs}
    missing = sorted(mine - known)
    if missing:
        raise UsageProblem(
            f"{loaded.path}: no configuration {missing[0]} any more, which shard {shard} of "
            f"{root} runs: the campaign file changed since llem slurm",
            hint="restore the campaign file, or make a new run with llem slurm",
        )
    campaign = loaded.campaign.model_copy(update={"project": shard_project(cut.project, shard)})
    shard_loaded = dataclasses.replace(
        loaded,
        campaign=campaign,
        configs=[c for c in loaded.configs if c.config_id in mine],
    )
    own = [e for e in experiments if e.config.config_id in mine]
    run = RunDir(root, shard)
    resumed = run.journal.exists()
    finished = False
    if resumed and run_phase(run) == "finished":
        state = replay(run.journal, slim=True)
        finished = not state.pending([e.key for e in own])
    if task.in_slurm:
        drop_relative_gpu_variables()  # the daemon numbers GPUs by the node, not by the job
    request = LaneRequest(
        lanes=lanes.lanes, gpus=task.gpus if task.gpus is not None else lanes.gpus
    )
    return ShardTask(run, shard_loaded, own, request, task, resumed, finished)


__all__ = ["ShardTask", "open_shard"]
