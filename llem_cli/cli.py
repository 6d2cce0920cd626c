"""The Click command tree. Only declarations live here; each command's work is in
``llem_cli.commands.<verb>``, imported when that command runs so start-up stays fast.
"""

from __future__ import annotations

from pathlib import Path

import click

from llem_cli import __version__
from llem_cli.error_handler import error_handler
from llem_cli.output import Output, configure_logging, get_output


class LlemGroup(click.Group):
    """Routes every command through the error handler and lists commands in file order."""

    def invoke(self, ctx: click.Context) -> object:
        """Run the command inside the one error handler."""
        with error_handler(ctx):
            return super().invoke(ctx)

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Commands in the order they are declared (the workflow order), not sorted."""
        return list(self.commands)


CONTEXT = {
    "help_option_names": ["-h", "--help"],
    "auto_envvar_prefix": "LLEM",
    "max_content_width": 100,
}
campaign_file = click.Path(exists=False, dir_okay=False, path_type=Path)


@click.group(cls=LlemGroup, context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="llem")
@click.option("-v", "--verbose", count=True, help="More detail (repeatable).")
@click.option("-q", "--quiet", is_flag=True, help="Only results and errors.")
@click.option("--no-color", is_flag=True, help="No colour (NO_COLOR is honoured too).")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool, no_color: bool) -> None:
    """Run campaigns of LLM inference energy experiments in Docker containers.

    Every option can also be set from the environment as LLEM_<OPTION>, or
    LLEM_<COMMAND>_<OPTION> for a command's own options (e.g. LLEM_PLAN_JSON=1).

    \b
    Examples:
      llem validate campaigns/demo.yaml
      llem plan campaigns/demo.yaml --json > plan.json
      llem schema > llem-campaign.schema.json
    """
    ctx.obj = Output.from_flags(verbose, quiet, no_color)
    configure_logging(ctx.obj)


@cli.command()
@click.argument("files", nargs=-1, required=True, type=campaign_file)
def validate(files: tuple[Path, ...]) -> None:
    """Check campaign files and print every problem as FILE:LINE:COL: field.path: message.

    Exit 0 when all files are valid (warnings allowed), 2 otherwise.

    \b
    Examples:
      llem validate campaigns/demo.yaml
      llem validate campaigns/*.yaml
    """
    from llem_cli.commands.validate import validate_files

    click.get_current_context().exit(validate_files(list(files), get_output()))


@cli.command()
@click.argument("file", type=campaign_file)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    envvar="LLEM_PLAN_JSON",
    help="Print the experiments as a JSON list.",
)
@click.option(
    "--limit",
    default=50,
    show_default=True,
    type=click.IntRange(min=0),
    help="Rows shown in the table (0: all).",
)
def plan(file: Path, as_json: bool, limit: int) -> None:
    """Show the expanded experiments in execution order, with totals.

    \b
    Examples:
      llem plan campaigns/demo.yaml
      llem plan campaigns/demo.yaml --json | jq length
    """
    from llem_cli.commands.plan import show_plan

    show_plan(file, as_json=as_json, limit=limit, out=get_output())


@cli.command()
@click.argument("file", required=False, type=campaign_file, metavar="FILE")
@click.option(
    "--dry-run", is_flag=True, help="Print the override file and docker commands; run nothing."
)
@click.option(
    "--resume",
    "resume_dir",
    envvar="LLEM_RUN_RESUME",
    is_flag=False,
    flag_value=".",
    default=None,
    type=click.Path(path_type=Path),
    metavar="[RUN_DIR]",
    help="Continue the newest unfinished run (or RUN_DIR); start one if there is none.",
)
@click.option(
    "--results-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where runs go (default: the campaign's `results`, relative to its file).",
)
@click.option(
    "--lanes",
    metavar="N|auto",
    help="Experiments at once, each on its own GPUs (overrides execution.lanes; "
    "auto: as many as the GPUs allow).",
)
@click.option(
    "--gpus",
    metavar="LIST",
    help="Host GPU indexes or UUIDs llem may use, comma-separated (default: every GPU).",
)
@click.option(
    "--shard",
    type=click.IntRange(min=0),
    metavar="K",
    help="Run shard K of a run made by 'llem slurm' (with --resume RUN_DIR; the job "
    "array's script passes it).",
)
@click.option("--no-progress", is_flag=True, help="Plain timestamped lines even on a terminal.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    envvar="LLEM_RUN_JSON",
    help="One JSON object per event on stdout.",
)
def run(
    file: Path | None,
    dry_run: bool,
    resume_dir: Path | None,
    results_dir: Path | None,
    lanes: str | None,
    gpus: str | None,
    shard: int | None,
    no_progress: bool,
    as_json: bool,
) -> None:
    """Run a campaign: one container per backend, every experiment journaled.

    FILE comes first: --resume takes an optional RUN_DIR, so write
    `llem run FILE --resume` (a lone `llem run --resume FILE` is read the same way).

    Exit 0 all ok, 1 some failed, 2 invalid campaign, 3 Docker problem,
    4 aborted by policy, 75 another run holds the lock, 130/143 interrupted.

    \b
    Examples:
      llem run campaigns/demo.yaml
      llem run campaigns/demo.yaml --dry-run
      llem run campaigns/demo.yaml --resume            # cron-safe: resumes or starts
      llem run campaigns/demo.yaml --resume results/demo/20261128T140500Z
      llem run campaigns/demo.yaml --lanes auto          # every GPU at once
      llem run campaigns/demo.yaml --lanes 2 --gpus 2,3  # two lanes on GPUs 2 and 3
    """
    from llem_cli.commands.run import run_campaign

    file, resume_dir = _campaign_and_resume(file, resume_dir)
    code = run_campaign(
        file,
        dry_run=dry_run,
        resume=resume_dir is not None,
        resume_dir=None if resume_dir in (None, Path(".")) else resume_dir,
        results_dir=results_dir,
        progress=not no_progress,
        as_json=as_json,
        out=get_output(),
        lanes=lanes,
        gpus=gpus,
        shard=shard,
    )
    click.get_current_context().exit(code)


def _campaign_and_resume(file: Path | None, resume_dir: Path | None) -> tuple[Path, Path | None]:
    """FILE and --resume's value; ``llem run --resume FILE`` means ``llem run FILE --resume``.

    --resume takes an optional value, so Click hands a campaign file written after it to
    --resume and leaves FILE empty. RUN_DIR is a directory: a regular file there is the
    campaign. Anything else without FILE is a usage error that shows the right order.
    """
    if file is not None:
        return file, resume_dir
    if resume_dir is not None and resume_dir != Path(".") and resume_dir.is_file():
        return resume_dir, Path(".")
    from llem_cli.errors import UsageProblem

    if resume_dir is None:
        raise UsageProblem("missing the campaign FILE", hint="usage: llem run FILE [OPTIONS]")
    if resume_dir == Path("."):
        raise UsageProblem("missing the campaign FILE", hint="usage: llem run FILE --resume")
    if not resume_dir.exists():
        raise UsageProblem(
            f"{resume_dir}: no such campaign file or run directory",
            hint="usage: llem run FILE --resume [RUN_DIR]",
        )
    raise UsageProblem(
        "missing the campaign FILE", hint=f"usage: llem run FILE --resume {resume_dir}"
    )


@cli.command()
@click.argument("target", required=False, type=click.Path(path_type=Path), metavar="[RUN_DIR|FILE]")
@click.option(
    "--json", "as_json", is_flag=True, envvar="LLEM_STATUS_JSON", help="Print the status as JSON."
)
def status(target: Path | None, as_json: bool) -> None:
    """Progress of a running or interrupted run, read from its journal.

    RUN_DIR: that run; FILE: the campaign's newest run; nothing: the newest under ./results.

    \b
    Examples:
      llem status
      llem status campaigns/demo.yaml --json
    """
    from llem_cli.commands.status import show_status

    click.get_current_context().exit(show_status(target, as_json=as_json, out=get_output()))


@cli.command()
@click.argument("target", type=click.Path(path_type=Path), metavar="FILE|RUN_DIR")
def down(target: Path) -> None:
    """Remove the containers and networks a run left behind (found by label).

    \b
    Examples:
      llem down campaigns/demo.yaml
      llem down results/demo/20261128T140500Z
    """
    from llem_cli.commands.down import bring_down

    click.get_current_context().exit(bring_down(target, get_output()))


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path), metavar="RUN_DIR|FILE")
@click.option(
    "--format",
    "fmt",
    envvar="LLEM_RESULTS_FORMAT",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
    help="table: statistics per group; csv/json: one record per experiment.",
)
@click.option("--group-by", help="Comma-separated axes to group by (default: each configuration).")
@click.option(
    "--per",
    multiple=True,
    help="Count metric to report energy per (repeatable; default: results.per of the "
    "campaign, else output_tokens if reported, else tokens if reported).",
)
@click.option(
    "--stats",
    "stats_only",
    envvar="LLEM_RESULTS_STATS",
    is_flag=True,
    help="With csv/json: the per-group statistics instead of the records.",
)
def results(
    run_dir: Path, fmt: str, group_by: str | None, per: tuple[str, ...], stats_only: bool
) -> None:
    """One record per experiment, and per-group statistics (mean, 95 % CI).

    RUN_DIR: that run; FILE: the campaign's newest run.

    \b
    Examples:
      llem results results/demo/20261128T140500Z
      llem results results/demo/20261128T140500Z --group-by backend
      llem results results/demo/20261128T140500Z --format csv > runs.csv
      llem results results/demo/20261128T140500Z --format json --stats
    """
    from llem_cli.commands.results import show_results

    axes = [a.strip() for a in group_by.split(",") if a.strip()] if group_by else None
    code = show_results(
        run_dir, fmt=fmt, group_by=axes, per=list(per), stats_only=stats_only, out=get_output()
    )
    click.get_current_context().exit(code)


@cli.command()
@click.argument(
    "run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="RUN_DIR..."
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help="The HTML file to write (default: RUN_DIR/report.html for one run, "
    "./report.html for several).",
)
@click.option(
    "--figures",
    "figures_dir",
    envvar="LLEM_REPORT_FIGURES",
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DIR",
    help="Also write each figure into DIR as SVG, PNG and PDF.",
)
def report(run_dirs: tuple[Path, ...], output: Path | None, figures_dir: Path | None) -> None:
    """A self-contained HTML report (figures and tables) of one or more runs.

    Energy per output token against throughput per configuration (95 % intervals on
    both axes, one colour per backend, the Pareto front), energy per configuration,
    the table of configurations and how each run measured. The page fetches nothing
    (inline SVG and CSS): it opens offline, mails and prints as it is. A run with no
    ok experiment gives a report that says so (exit 0). A campaign FILE stands for its
    newest run.

    \b
    Examples:
      llem report results/demo/20261128T140500Z
      llem report results/demo/20261128T140500Z results/demo/20261129T090000Z -o compare.html
      llem report results/demo/20261128T140500Z --figures figures/
    """
    from llem_cli.commands.report import write_report

    code = write_report(list(run_dirs), output=output, figures_dir=figures_dir, out=get_output())
    click.get_current_context().exit(code)


@cli.command()
@click.argument("file", type=campaign_file)
@click.option(
    "--shards",
    type=click.IntRange(min=1),
    required=True,
    metavar="N",
    help="Array tasks; the configurations are cut into N blocks (at most one per configuration).",
)
@click.option(
    "--gpus-per-shard",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    metavar="G",
    help="GPUs Slurm gives each task (--gres=gpu:G; 0: no GPU request).",
)
@click.option("--partition", metavar="P", help="Slurm partition (#SBATCH --partition).")
@click.option("--time", metavar="T", help="Time limit per task (#SBATCH --time).")
@click.option(
    "--sbatch-arg",
    "sbatch_args",
    envvar="LLEM_SLURM_SBATCH_ARG",
    multiple=True,
    metavar="ARG",
    help="One more #SBATCH option, e.g. --sbatch-arg=--mem=64G (repeatable).",
)
@click.option(
    "--results-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the run directory goes: a filesystem every node sees (default: the "
    "campaign's `results`).",
)
@click.option(
    "--submit",
    "submit_it",
    envvar="LLEM_SLURM_SUBMIT",
    is_flag=True,
    help="Also submit it (sbatch --parsable).",
)
@click.option("--dry-run", is_flag=True, help="Print the shards and the script; write nothing.")
def slurm(
    file: Path,
    shards: int,
    gpus_per_shard: int,
    partition: str | None,
    time: str | None,
    sbatch_args: tuple[str, ...],
    results_dir: Path | None,
    submit_it: bool,
    dry_run: bool,
) -> None:
    """Write a Slurm job array for the campaign: one task per shard.

    Creates the run directory, cuts the configurations into N shards (every cycle
    of a configuration in one shard, stable across resubmissions), writes
    RUN_DIR/slurm/llem.sbatch and prints its path; with --submit also submits it
    and prints the job id. Task k runs `llem run FILE --resume RUN_DIR --shard k`
    on the GPUs Slurm gave it. Submitting the script again (or a requeued task)
    runs only what is pending. `llem status RUN_DIR`, `results` and `report` read
    every shard. The run directory, the campaign and its compose files must be on
    a filesystem every node sees; Docker must run on the compute nodes.

    Exit 0 written (and submitted), 2 bad options or campaign, 3 sbatch missing
    or refusing.

    \b
    Examples:
      llem slurm campaigns/demo.yaml --shards 4 --dry-run
      llem slurm campaigns/demo.yaml --shards 4 --gpus-per-shard 2 --partition gpu \\
          --time 08:00:00 --sbatch-arg=--mem=64G --submit
      sbatch results/demo/20261128T140500Z/slurm/llem.sbatch     # resubmit: pending only
    """
    from llem_cli.commands.slurm import write_slurm

    code = write_slurm(
        file,
        shards=shards,
        gpus_per_shard=gpus_per_shard,
        partition=partition,
        time=time,
        sbatch_args=sbatch_args,
        results_dir=results_dir,
        submit_it=submit_it,
        dry_run=dry_run,
        out=get_output(),
    )
    click.get_current_context().exit(code)


@cli.command()
@click.argument("campaign", required=False, type=campaign_file, metavar="[FILE]")
@click.option(
    "--json", "as_json", is_flag=True, envvar="LLEM_DOCTOR_JSON", help="Print the checks as JSON."
)
def doctor(campaign: Path | None, as_json: bool) -> None:
    """Check docker, compose, the daemon, the NVIDIA runtime and host GPUs.

    With a campaign FILE, also each backend's image and GPU reservation.
    Exit 0 when llem can run (warnings allowed); 2 when FILE is invalid, or its
    compose files are refused or lack a backend's service; 3 when docker, compose
    or the daemon is missing or unreachable.

    \b
    Examples:
      llem doctor
      llem doctor campaigns/demo.yaml --json
    """
    from llem_cli.commands.doctor import run_doctor

    click.get_current_context().exit(run_doctor(campaign, as_json=as_json, out=get_output()))


@cli.command()
@click.argument(
    "path",
    required=False,
    default=Path("campaign.yaml"),
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="[PATH]",
)
@click.option(
    "-b",
    "--backend",
    "backends",
    envvar="LLEM_INIT_BACKEND",
    multiple=True,
    type=click.Choice(["pytorch", "vllm", "tensorrt", "sglang"]),
    help="An engine to include (repeatable; default: pytorch).",
)
@click.option(
    "--model",
    default="Qwen/Qwen2.5-0.5B-Instruct",
    show_default=True,
    help="Hugging Face model id for the grid.",
)
@click.option(
    "--compose",
    "with_compose",
    envvar="LLEM_INIT_COMPOSE",
    is_flag=True,
    help="Also write PATH's compose file (<stem>.compose.yml) and the scripts it mounts.",
)
@click.option(
    "--serve",
    is_flag=True,
    help="A serving campaign: each engine's server, a ready check and its serving benchmark "
    "as the client (vllm, sglang, tensorrt; default: vllm).",
)
@click.option("--force", is_flag=True, help="Overwrite files that already exist.")
def init(
    path: Path,
    backends: tuple[str, ...],
    model: str,
    with_compose: bool,
    serve: bool,
    force: bool,
) -> None:
    """Write a commented starting campaign (default PATH: campaign.yaml) that validates as written.

    Without --compose the campaign uses compose/<backend>.yml beside or above PATH (this
    repository's layout); where there is none (as after `pip install llem`), init writes the
    compose file and the scripts it mounts beside PATH, as --compose does, one output line per
    file. Existing files are never overwritten without --force (exit 2).

    With --serve each engine runs as a server (backend <engine>-serve: serve, ready, and its
    serving benchmark as each experiment's client), crossing the server's cap on running
    requests with the client's request rate; pytorch has no server (exit 2).

    \b
    Examples:
      llem init --backend vllm --compose                 # campaign.yaml + campaign.compose.yml
      llem init -b pytorch -b vllm --model meta-llama/Llama-3.2-1B my.yaml --compose
      llem init campaigns/mine.yaml -b sglang            # uses compose/sglang.yml if found
      llem init --serve -b vllm -b sglang serving.yaml   # servers + serving benchmarks
    """
    from llem_cli.commands.init import init_campaign

    code = init_campaign(
        path,
        backends=backends,
        model=model,
        with_compose=with_compose,
        force=force,
        out=get_output(),
        serve=serve,
    )
    click.get_current_context().exit(code)


@cli.command()
def schema() -> None:
    """Print the JSON Schema of the campaign file (for editors' YAML language servers).

    \b
    Example:
      llem schema > .llem-schema.json
      # then, first line of a campaign file:
      # yaml-language-server: $schema=.llem-schema.json
    """
    from llem_cli.commands.schema import print_schema

    print_schema()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="llem")
