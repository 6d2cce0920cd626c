"""``llem slurm``: a campaign as a Slurm job array, one task per shard (../shared/DESIGN.md
"Slurm"). Writes the run directory (campaign, plan, the cut into shards, the script) and, with
``--submit``, hands the script to ``sbatch``; the tasks do the rest (``llem run --shard``)."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import click

from llem_cli.atomic import atomic_write_text
from llem_cli.campaign.load import LoadedCampaign, load_campaign
from llem_cli.errors import UsageProblem
from llem_cli.output import Output
from llem_cli.runner.schedule import Experiment, order_experiments, stream_json
from llem_cli.runs.layout import create_run_dir, new_run_id
from llem_cli.runs.shards import ShardMap, config_order, split_configs, write_shard_map
from llem_cli.slurm.jobs import record_job, require_sbatch, submit
from llem_cli.slurm.script import (
    SCRIPT_NAME,
    SbatchSpec,
    check_line_value,
    check_sbatch_arg,
    llem_command,
    render_sbatch,
)


def write_slurm(
    file: Path,
    *,
    shards: int,
    gpus_per_shard: int,
    partition: str | None,
    time: str | None,
    sbatch_args: tuple[str, ...],
    results_dir: Path | None,
    submit_it: bool,
    dry_run: bool,
    out: Output,
) -> int:
    """Write (and maybe submit) the job array; exit code 0."""
    partition = check_line_value("--partition", partition)
    time = check_line_value("--time", time)
    extra = tuple(check_sbatch_arg(arg) for arg in sbatch_args)
    loaded = load_campaign(file)
    for warning in loaded.warnings:
        click.echo(warning.render(), err=True)
    check_gpus_fit(loaded, gpus_per_shard)
    experiments = list(order_experiments(loaded.configs, loaded.campaign))
    configs = config_order(e.config.config_id for e in experiments)
    if shards > len(configs):
        raise UsageProblem(
            f"--shards {shards}: the campaign has {len(configs)} configuration(s), and a shard "
            "holds whole configurations (every cycle of one runs in one shard)",
            hint=f"use --shards {len(configs)} or fewer",
        )
    cut = ShardMap(split_configs(configs, shards), loaded.campaign.project_name)
    if submit_it and not dry_run:
        require_sbatch()  # exit 3 before anything is written
    results = loaded.results_dir(results_dir)
    name = loaded.campaign.name
    spec_for = _spec_maker(
        loaded, shards, gpus_per_shard, partition=partition, time=time, extra=extra
    )
    if dry_run:
        root = results / name / new_run_id()
        click.echo(f"# dry run: nothing written; the run directory would be {root}")
        for k, block in enumerate(cut.shards):
            click.echo(
                f"# shard {k} ({cut.project_of(k)}): {len(block)} configuration(s): "
                + ", ".join(block)
            )
        click.echo(f"# {root / SCRIPT_NAME}:")
        click.echo(render_sbatch(spec_for(root)), nl=False)
        if submit_it:
            click.echo(f"# then: sbatch --parsable {root / SCRIPT_NAME}")
        return 0
    run = create_run_dir(results, name)
    atomic_write_text(run.campaign, loaded.text)
    write_whole_plan(run.plan, experiments)
    write_shard_map(run.root, cut)
    script = run.root / SCRIPT_NAME
    atomic_write_text(script, render_sbatch(spec_for(run.root)), mode=0o755)
    per_config = Counter(e.config.config_id for e in experiments)
    sizes = ", ".join(
        f"s{k}: {sum(per_config[c] for c in block)}" for k, block in enumerate(cut.shards)
    )
    out.info(f"{shards} shard(s) of {len(configs)} configuration(s), experiments per shard {sizes}")
    click.echo(str(script))
    if submit_it:
        job_id = submit(script)
        record_job(run.root, job_id)
        out.info(f"submitted job array {job_id}; follow it with: llem status {run.root}")
        click.echo(job_id)
    else:
        out.info(f"submit it with: sbatch {script}")
    return 0


def _spec_maker(
    loaded: LoadedCampaign,
    shards: int,
    gpus: int,
    *,
    partition: str | None,
    time: str | None,
    extra: tuple[str, ...],
) -> Callable[[Path], SbatchSpec]:
    """The script's spec for a run directory (the dry run's is not created)."""

    def make(root: Path) -> SbatchSpec:
        return SbatchSpec(
            job_name=f"llem-{loaded.campaign.name}",
            shards=shards,
            gpus_per_shard=gpus,
            run_dir=root,
            campaign_file=loaded.path.resolve(),
            llem_argv=llem_command(sys.executable),
            partition=partition,
            time=time,
            extra=extra,
        )

    return make


def check_gpus_fit(loaded: LoadedCampaign, gpus: int) -> None:
    """A shard's GPUs are the ones Slurm gives it: a backend pinned to host GPUs cannot run
    there, and one asking more GPUs than a shard gets never could (exit 2 now, not on the
    cluster hours later)."""
    campaign = loaded.campaign
    for name, backend in campaign.backends.items():
        if backend.pinned_gpus is not None:
            raise UsageProblem(
                f"backends.{name}.gpus: {backend.pinned_gpus} pins host GPUs, but on Slurm a "
                "shard runs on the GPUs the job is given",
                hint="give a count instead (gpus: 1) and --gpus-per-shard",
            )
        count = backend.gpu_count
        if gpus > 0 and count is not None and count > gpus:
            raise UsageProblem(
                f"backends.{name}.gpus: {count} GPUs per experiment, but a shard gets "
                f"{gpus} (--gpus-per-shard)",
                hint=f"use --gpus-per-shard {count} or more",
            )
    lanes = campaign.execution.lanes
    if gpus > 0 and isinstance(lanes, int) and lanes > 1:
        size = max((b.gpu_count or 1 for b in campaign.backends.values()), default=1)
        if lanes * size > gpus:
            raise UsageProblem(
                f"execution.lanes: {lanes} lanes of {size} GPU(s) need {lanes * size} GPUs, but "
                f"a shard gets {gpus} (--gpus-per-shard)",
                hint=f"use --gpus-per-shard {lanes * size}, or lanes: auto",
            )


def write_whole_plan(path: Path, experiments: list[Experiment]) -> None:
    """The run's ``plan.json``: every shard's experiments, in plan order."""
    parts: list[str] = []
    stream_json(experiments, parts.append)
    atomic_write_text(path, "".join(parts))


__all__ = ["check_gpus_fit", "write_slurm"]
