"""One ``llem run`` invocation: pick or create the run directory, lock, journal, loop, summarise.

Order matters for "never lose a result, never leave a container": the lock is
taken before anything is written, the journal records ``run_started`` before
the first container starts, and the ContainerManager context (inside the signal
handler) tears down on every way out, before the end event is journaled. What happens when
the environment fails under the run (disk full, daemon gone) lives in ``runner/faults.py``; which
run directory is used (new, or the one ``--resume`` continues) in ``runs/resolve.py``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import shutil
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from llem_cli.atomic import atomic_write_text
from llem_cli.campaign.load import LoadedCampaign
from llem_cli.docker.compose import discover_compose
from llem_cli.docker.daemon import require_daemon
from llem_cli.docker.manager import ContainerManager, StartFailed
from llem_cli.docker.proc import CommandFailed
from llem_cli.docker.sweep import teardown_by_label
from llem_cli.errors import (
    EXIT_ABORTED,
    EXIT_OK,
    EXIT_SOME_FAILED,
    EnvironmentProblem,
    Interrupted,
    RunAborted,
    UsageProblem,
)
from llem_cli.runner.faults import disk_problem, is_disk_error
from llem_cli.runner.gpu_settings_run import SettingsKeeper
from llem_cli.runner.lane_plan import LanePlan, LaneRequest, resolve_lanes
from llem_cli.runner.lane_run import LaneSetup, LanesOutcome, run_lanes
from llem_cli.runner.lanes import lane_gpu_indices
from llem_cli.runner.loop import CampaignLoop, LoopContext, LoopState
from llem_cli.runner.measuring import HostTelemetry
from llem_cli.runner.records import prepare_experiment_dir
from llem_cli.runner.reporter import Reporter
from llem_cli.runner.schedule import Experiment, order_experiments, stream_json
from llem_cli.runner.shard_task import ShardTask
from llem_cli.runs.journal import Journal
from llem_cli.runs.layout import RunDir, planned_keys
from llem_cli.runs.lock import RunLock
from llem_cli.runs.record import Record
from llem_cli.runs.resolve import run_to_use
from llem_cli.runs.results_csv import write_results_csv
from llem_cli.runs.shards import write_merged_results
from llem_cli.runs.state import RunState, replay
from llem_cli.signals import deferred, handle_signals


@dataclass
class RunRequest:
    """What the user asked ``llem run`` for."""

    resume: bool = False
    resume_dir: Path | None = None
    results_dir: Path | None = None
    lanes: LaneRequest = dataclasses.field(default_factory=LaneRequest)
    #: a job array's task (``--shard K``): its shard of a run made by ``llem slurm``
    shard: ShardTask | None = None


def check_resume_compatible(run: RunDir, experiments: list[Experiment]) -> list[str] | None:
    """Refuse a resume whose campaign no longer has keys the run already planned.

    Returns the planned keys (None without a readable plan), so an unchanged plan need not
    be written again.
    """
    old = planned_keys(run)
    if old is None:
        return None
    new_keys = {e.key for e in experiments}
    missing = [key for key in old if key not in new_keys]
    if missing:
        raise UsageProblem(
            f"cannot resume {run.root}: the campaign file changed {len(missing)} planned "
            f"experiment(s) (e.g. {missing[0]}); "
            "adding configurations is fine, changing them is not",
            hint="start a new run without --resume, or restore the campaign file",
        )
    return old


def write_plan(run: RunDir, experiments: list[Experiment]) -> None:
    """``plan.json``: the experiments in order (streamed into a string, then atomically written)."""
    parts: list[str] = []
    stream_json(experiments, parts.append)
    atomic_write_text(run.plan, "".join(parts))


def execute(loaded: LoadedCampaign, request: RunRequest, reporter: Reporter) -> int:
    """Run (or resume) the campaign; return the exit code (docs/design.md §3.2)."""
    campaign = loaded.campaign
    shard = request.shard
    if shard is not None:
        experiments = shard.experiments
    else:
        experiments = list(order_experiments(loaded.configs, campaign))
    compose = discover_compose()
    require_daemon()
    # bad lanes (more than the GPUs allow, an unknown --gpus entry) stop here: nothing written
    plan = resolve_lanes(loaded, experiments, request.lanes, compose)
    # gpu_settings: no permission (3) or a value NVML does not allow (2) stops here too
    preflight_settings(loaded, plan)
    results = loaded.results_dir(request.results_dir)
    try:
        if shard is not None:  # the run directory llem slurm made; the shard's own folder in it
            run, resumed = shard.run, shard.resumed
            run.own.mkdir(parents=True, exist_ok=True)
        else:
            run, resumed = run_to_use(
                results, campaign.name, resume=request.resume, resume_dir=request.resume_dir
            )
    except OSError as exc:
        if not is_disk_error(exc):
            raise
        raise disk_problem(exc, results) from None
    locks = [RunLock(campaign.project_name, run.own)]
    if shard is not None:
        # a shard also locks in the run directory, which every node sees: the same shard
        # started on two nodes (a resubmission while the first job still runs) would run its
        # experiments twice; the host's lock only keeps out a second run on this node
        locks.append(RunLock(campaign.project_name, run.own, directory=run.own))
    try:
        for lock in locks:
            lock.acquire()
    except BaseException:
        for lock in locks:
            lock.release()  # (a lock not taken: nothing to release)
        if not resumed and shard is None:  # a refused run leaves nothing: not its directory
            shutil.rmtree(run.root, ignore_errors=True)
            with contextlib.suppress(OSError):
                run.root.parent.rmdir()
        raise
    try:
        return _execute_locked(
            loaded, experiments, run, resumed, compose, reporter, plan, shard=shard
        )
    except OSError as exc:
        # the results filesystem filled up (or went read-only) before or after the loop
        if not is_disk_error(exc):
            raise
        raise disk_problem(exc, run.root) from None
    finally:
        for lock in reversed(locks):
            lock.release()


def _execute_locked(
    loaded: LoadedCampaign,
    experiments: list[Experiment],
    run: RunDir,
    resumed: bool,
    compose: Any,
    reporter: Reporter,
    plan: LanePlan | None = None,
    *,
    shard: ShardTask | None = None,
) -> int:
    # slim: what a resume needs (status per key; gpu_oom records in full for pruning)
    state = replay(run.journal, slim=True) if resumed else RunState()
    old_keys = check_resume_compatible(run, experiments) if resumed else None
    if shard is None:  # a shard's campaign.yaml is the run's, written by llem slurm
        atomic_write_text(run.campaign, loaded.text)
    if old_keys != [e.key for e in experiments]:  # a resume of an unchanged plan keeps it
        write_plan(run, experiments)
    journal = Journal(run.journal)
    pending = sum(1 for e in experiments if state.needs_run(e.key))
    base: dict[str, Any] = {"run_id": run.run_id, "run_dir": str(run.root)}
    started_extra: dict[str, Any] = {}
    if shard is not None:
        base["shard"] = shard.number
        started_extra = {"slurm": shard.slurm.journal_fields()}

    display_lock = threading.Lock()  # lanes report from several threads

    def emit(event: dict[str, Any]) -> None:
        with display_lock:
            reporter.event(event)

    emit(
        journal.append(
            "run_started",
            **base,
            campaign=loaded.campaign.name,
            resumed=resumed,
            total=len(experiments),
            pending=pending,
            argv=sys.argv[1:],
            **started_extra,
        )
    )
    loop_state: LoopState | None = None
    retired: dict[int, str] = {}
    keeper = None
    if loaded.campaign.gpu_settings is not None:
        keeper = SettingsKeeper(loaded.campaign, run.root)
    context = LoopContext(
        campaign=loaded.campaign,
        run_id=run.run_id,
        experiments=experiments,
        replayed=state,
        prepare_dir=functools.partial(prepare_experiment_dir, run),
        settings=keeper,
    )
    try:
        with handle_signals():
            try:
                if plan is not None and plan.lanes is not None:
                    outcome = _run_lanes(
                        loaded, context, plan, run, resumed, compose, journal, emit
                    )
                    loop_state, retired = outcome.state, outcome.retired
                else:
                    loop_state = _run_unpinned(
                        loaded, context, run, resumed, compose, journal, emit
                    ).state
            finally:
                if keeper is not None:
                    _restore_settings(keeper, journal, emit)
    except Interrupted as exc:
        signal_name = "SIGINT" if exc.exit_code == 130 else "SIGTERM"
        _journal_end(run, journal, emit, "interrupted", **base, signal=signal_name)
        raise
    except RunAborted as exc:
        _journal_end(run, journal, emit, "run_aborted", **base, reason=exc.one_line())
        raise
    except StartFailed as exc:
        # a container that cannot start (missing image, no GPU runtime) is the
        # environment's problem, not a policy decision: exit 3, resumable once fixed
        reason = exc.one_line()
        _journal_end(run, journal, emit, "run_aborted", **base, reason=reason)
        raise EnvironmentProblem(reason, hint="check with 'llem doctor FILE'") from None
    except EnvironmentProblem as exc:
        _journal_end(run, journal, emit, "run_aborted", **base, reason=exc.one_line())
        raise
    except OSError as exc:
        # a write to the run directory failed (ENOSPC...): the containers are already torn
        # down; journal the abort if it still fits (the experiment being recorded has no final
        # record, so --resume runs it again) and exit 3 with one line
        if not is_disk_error(exc):
            raise
        problem = disk_problem(exc, run.root)
        with contextlib.suppress(OSError, ValueError):
            emit(journal.append("run_aborted", **base, reason=problem.one_line()))
        with contextlib.suppress(OSError):
            _write_results(run)
        journal.close()
        raise problem from None
    # A session that recorded nothing (a resume of a finished plan) leaves the state it
    # replayed at the start as it was: no second replay, and results.csv is still current.
    unchanged = loop_state is not None and not loop_state.settled and not loop_state.counts
    final = state if unchanged and run.results_csv.exists() else replay(run.journal)
    counts = final.counts()
    restarts = loop_state.restarts_total if loop_state else 0
    ended: dict[str, Any] = {"counts": counts, "restarts": restarts}
    if retired:
        ended["lanes_retired"] = {str(n): why for n, why in sorted(retired.items())}
    emit(journal.append("run_finished", **base, **ended))
    journal.close()
    if final is not state:
        _write_results(run, final)  # run_finished carries no record: the replay is current
    if retired:  # the worst outcome: a lane stopped by policy, though the others ran it all
        return EXIT_ABORTED
    failed = sum(n for status, n in counts.items() if status != "ok")
    return EXIT_SOME_FAILED if failed else EXIT_OK


def preflight_settings(loaded: LoadedCampaign, plan: LanePlan | None) -> None:
    """``gpu_settings``: permission and values on the GPUs the run will use, before anything
    is written or started (exit 3 / 2)."""
    campaign = loaded.campaign
    if campaign.gpu_settings is None:
        return
    if plan is not None and plan.lanes is not None:
        indices: list[int] | None = lane_gpu_indices(plan.lanes)
    else:
        pinned = [b.pinned_gpus for b in campaign.backends.values()]
        indices = (
            None if any(p is None for p in pinned) else sorted({i for p in pinned for i in p or []})
        )
    checker = SettingsKeeper(campaign, Path("."))
    try:
        checker.preflight(indices, loaded.configs)
    finally:
        checker.restore()  # changed nothing; closes NVML


def _restore_settings(keeper: SettingsKeeper, journal: Journal, emit: Any) -> None:
    """Every GPU this run changed, back to its original, whatever ended the run; a signal that
    arrives meanwhile waits (or, when the run is already ending on an exception, is dropped)."""
    ending = sys.exc_info()[0] is not None
    with deferred(absorb=ending):
        changed = keeper.changed_any
        problems = keeper.restore()
        if not changed and not problems:
            return
        with contextlib.suppress(OSError, ValueError):
            emit(
                journal.append(
                    "gpu_settings_restored",
                    ok=not problems,
                    problems=problems,
                )
            )


def _run_unpinned(
    loaded: LoadedCampaign,
    context: LoopContext,
    run: RunDir,
    resumed: bool,
    compose: Any,
    journal: Journal,
    emit: Callable[[dict[str, Any]], None],
) -> CampaignLoop:
    """Without lanes: one loop, one container per backend, unpinned (as before lanes)."""
    campaign = loaded.campaign
    services = campaign.keepalive_services()

    def log(kind: str, /, **fields: Any) -> None:
        emit(journal.append(kind, **fields))

    with ContainerManager(
        campaign.project_name,
        loaded.compose_paths(),
        run_id=run.run_id,
        run_dir=run.root,
        services=services,
        compose=compose,
        override_dir=run.own,
    ) as manager:
        if resumed:
            _remove_leftovers(run, manager, emit)
        measuring = HostTelemetry(campaign, emit, log)
        loop = CampaignLoop(
            context, containers=manager, measuring=measuring, journal=journal, emit=emit
        )
        try:
            loop.run_all()
        finally:
            measuring.close()
    return loop


def _run_lanes(
    loaded: LoadedCampaign,
    context: LoopContext,
    plan: LanePlan,
    run: RunDir,
    resumed: bool,
    compose: Any,
    journal: Journal,
    emit: Callable[[dict[str, Any]], None],
) -> LanesOutcome:
    """With lanes: a loop per lane in its own thread, each lane's containers pinned."""
    campaign = loaded.campaign
    services = campaign.keepalive_services()

    def log(kind: str, /, **fields: Any) -> None:
        emit(journal.append(kind, **fields))

    assert plan.lanes is not None
    log("lanes", **plan.journal_fields(campaign.project_name), notes=plan.notes)
    setup = LaneSetup(
        campaign=campaign,
        context=context,
        lanes=plan.lanes,
        files=loaded.compose_paths(),
        run_dir=run.root,
        compose=compose,
        services=services,
        facts=plan.facts,
        one_lane_services=plan.one_lane_services,
        override_dir=run.own,
    )
    leftovers = None
    if resumed:
        leftovers = functools.partial(_remove_lane_leftovers, run, campaign.project_name, emit)
    return run_lanes(setup, journal=journal, emit=emit, log=log, on_managers=leftovers)


def _remove_lane_leftovers(
    run: RunDir, project: str, emit: Any, managers: list[ContainerManager]
) -> None:
    """A resume with lanes: what the stopped run left, in the campaign's project and in every
    lane's (whatever lanes its last session had)."""
    if managers:
        _remove_leftovers(run, managers[0], emit, project=project)


def _remove_leftovers(
    run: RunDir, manager: ContainerManager, emit: Any, *, project: str | None = None
) -> None:
    """A resume starts from fresh containers: remove those the stopped run left.

    A ``kill -9``ed llem leaves its containers up, the experiment it was running perhaps still
    running inside; ``compose up`` of the same run would reuse them as they are (same label, same
    config), so the re-run would share the container with its own ghost. And a resume with
    nothing left to run starts nothing, so its teardown would not remove them either.
    Containers are matched by run label AND compose project: a run id is a timestamp, so another
    campaign started in the same second carries the same ``llem.run`` label.
    """
    try:
        removed = teardown_by_label(
            run_id=run.run_id,
            project=project or manager.project.name,
            runner=manager.runner,
            docker=manager.docker,
            timeout=manager.timeouts.command_s,
            include_lanes=True,  # its last session may have run with lanes
        )
    except CommandFailed as exc:
        state = f"could not remove the stopped run's containers: {exc.one_line()}"
        emit({"type": "container", "service": "leftover", "state": state})
        return
    if removed:
        state = f"removed {len(removed)} container(s) of the stopped run"
        emit({"type": "container", "service": "leftover", "state": state})


def _journal_end(
    run: RunDir, journal: Journal, emit: Callable[[Any], Any], kind: str, **fields: Any
) -> None:
    """Journal how the run ended early, write ``results.csv`` from the journal, close it."""
    emit(journal.append(kind, **fields))
    _write_results(run)
    journal.close()


def _write_results(run: RunDir, state: RunState | None = None) -> None:
    """``results.csv`` from the journal (latest record per key)."""
    state = state if state is not None else replay(run.journal)
    # callers pass only full replays (never slim=True), so there is no Settled stand-in
    write_results_csv(run.results_csv, cast("Iterable[Record]", state.records.values()))
    if run.shard is not None:  # and the run's, every shard's records together
        write_merged_results(run.root, current=(run.shard, state))


__all__ = ["EXIT_ABORTED", "RunRequest", "execute"]
