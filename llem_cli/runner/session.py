"""One ``llem run`` invocation: pick or create the run directory, lock, journal, loop, summarise.

Order matters for "never lose a result, never leave a container": the lock is
taken before anything is written, the journal records ``run_started`` before
the first container starts, and the ContainerManager context (inside the signal
handler) tears down on every way out, before the end event is journaled.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from llem_cli.campaign.load import LoadedCampaign
from llem_cli.docker.compose import daemon_problem, discover_compose
from llem_cli.docker.manager import ContainerManager, StartFailed, teardown_by_label
from llem_cli.docker.proc import CommandFailed
from llem_cli.docker.signals import handle_signals
from llem_cli.errors import (
    EXIT_ABORTED,
    EXIT_OK,
    EXIT_SOME_FAILED,
    EnvironmentProblem,
    Interrupted,
    RunAborted,
    UsageProblem,
)
from llem_cli.plan import Experiment, order_experiments, stream_json
from llem_cli.run.journal import Journal, Record, RunState, iter_events, replay
from llem_cli.run.lock import RunLock
from llem_cli.run.rundir import (
    RunDir,
    atomic_write_text,
    create_run_dir,
    find_newest_unfinished,
    planned_keys,
)
from llem_cli.runner.loop import CampaignLoop
from llem_cli.runner.records import write_results_csv
from llem_cli.runner.reporter import Reporter

log = logging.getLogger(__name__)

#: errors writing the run directory that the user fixes outside llem (then ``--resume``)
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO})


@dataclass
class RunRequest:
    """What the user asked ``llem run`` for."""

    resume: bool = False
    resume_dir: Path | None = None
    results_dir: Path | None = None


def check_daemon() -> None:
    """Fail early with exit 3 when Docker or its daemon is not there."""
    why = daemon_problem()
    if why is not None:
        raise EnvironmentProblem(
            f"the Docker daemon is not reachable: {why}",
            hint="start it (sudo systemctl start docker) or run 'llem doctor'",
        )


def select_run_dir(loaded: LoadedCampaign, request: RunRequest) -> tuple[RunDir, bool]:
    """The run directory to use and whether it is a resume (DESIGN.md's --resume rules)."""
    name = loaded.campaign.name
    results = loaded.results_dir(request.results_dir)
    if request.resume_dir is not None:
        run = RunDir(request.resume_dir.resolve())
        if not run.journal.exists():
            raise UsageProblem(
                f"{request.resume_dir}: not a run directory (no journal.jsonl)",
                hint="give a directory under <results>/<name>/, or --resume alone",
            )
        return run, True
    if request.resume:
        found = find_newest_unfinished(results, name)
        if found is not None:
            return found, True
    return create_run_dir(results, name), False


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


def disk_problem(exc: OSError, where: Path) -> EnvironmentProblem:
    """A full (or read-only, or failing) results filesystem as an exit-3 environment problem."""
    why = exc.strerror or str(exc)
    return EnvironmentProblem(
        f"cannot write the run directory {where}: {why}",
        hint="free space on that filesystem, then run again with --resume",
    )


def write_plan(run: RunDir, experiments: list[Experiment]) -> None:
    """``plan.json``: the experiments in order (streamed into a string, then atomically written)."""
    parts: list[str] = []
    stream_json(experiments, parts.append)
    atomic_write_text(run.plan, "".join(parts))


def execute(loaded: LoadedCampaign, request: RunRequest, reporter: Reporter) -> int:
    """Run (or resume) the campaign; return the exit code of DESIGN.md."""
    campaign = loaded.campaign
    experiments = list(order_experiments(loaded.configs, campaign))
    compose = discover_compose()
    check_daemon()
    try:
        run, resumed = select_run_dir(loaded, request)
    except OSError as exc:
        if exc.errno not in DISK_ERRNOS:
            raise
        raise disk_problem(exc, loaded.results_dir(request.results_dir)) from None
    lock = RunLock(campaign.project_name, run.root)
    try:
        lock.acquire()
    except BaseException:
        if not resumed:
            shutil.rmtree(run.root, ignore_errors=True)
        raise
    try:
        return _execute_locked(loaded, experiments, run, resumed, compose, reporter)
    except OSError as exc:
        # the results filesystem filled up (or went read-only) before or after the loop
        if exc.errno not in DISK_ERRNOS:
            raise
        raise disk_problem(exc, run.root) from None
    finally:
        lock.release()


def _execute_locked(
    loaded: LoadedCampaign,
    experiments: list[Experiment],
    run: RunDir,
    resumed: bool,
    compose: Any,
    reporter: Reporter,
) -> int:
    # slim: what a resume needs (status per key; gpu_oom records in full for pruning)
    state = replay(run.journal, slim=True) if resumed else RunState()
    old_keys = check_resume_compatible(run, experiments) if resumed else None
    atomic_write_text(run.campaign, loaded.text)
    if old_keys != [e.key for e in experiments]:  # a resume of an unchanged plan keeps it
        write_plan(run, experiments)
    services = {
        loaded.campaign.service_of(name): backend.keepalive
        for name, backend in loaded.campaign.backends.items()
    }
    journal = Journal(run.journal)
    pending = sum(1 for e in experiments if state.needs_run(e.key))
    base = {"run_id": run.run_id, "run_dir": str(run.root)}

    def emit(event: dict[str, Any]) -> None:
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
        )
    )
    loop: CampaignLoop | None = None
    try:
        with (
            handle_signals(),
            ContainerManager(
                loaded.campaign.project_name,
                loaded.compose_paths(),
                run_id=run.run_id,
                run_dir=run.root,
                services=services,
                compose=compose,
            ) as manager,
        ):
            if resumed:
                _remove_leftovers(run, manager, emit)
            loop = CampaignLoop(loaded, run, experiments, state, journal, manager, emit)
            try:
                loop.run_all()
            finally:
                loop.telemetry.close()
    except Interrupted as exc:
        emit(
            journal.append(
                "interrupted", **base, signal="SIGINT" if exc.exit_code == 130 else "SIGTERM"
            )
        )
        _write_results(run)
        journal.close()
        raise
    except RunAborted as exc:
        emit(journal.append("run_aborted", **base, reason=exc.one_line()))
        _write_results(run)
        journal.close()
        raise
    except StartFailed as exc:
        # a container that cannot start (missing image, no GPU runtime) is the
        # environment's problem, not a policy decision: exit 3, resumable once fixed
        reason = exc.one_line()
        _unsettle_last_failure(run, journal, emit)
        emit(journal.append("run_aborted", **base, reason=reason))
        _write_results(run)
        journal.close()
        raise EnvironmentProblem(reason, hint="check with 'llem doctor FILE'") from None
    except EnvironmentProblem as exc:
        _unsettle_last_failure(run, journal, emit)
        emit(journal.append("run_aborted", **base, reason=exc.one_line()))
        _write_results(run)
        journal.close()
        raise
    except OSError as exc:
        # a write to the run directory failed (ENOSPC...): the containers are already torn
        # down; journal the abort if it still fits (the experiment being recorded has no final
        # record, so --resume runs it again) and exit 3 with one line
        if exc.errno not in DISK_ERRNOS:
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
    unchanged = loop is not None and not loop.settled and not loop.state.counts
    final = state if unchanged and run.results_csv.exists() else replay(run.journal)
    counts = final.counts()
    restarts = loop.state.restarts_total if loop else 0
    emit(journal.append("run_finished", **base, counts=counts, restarts=restarts))
    journal.close()
    if final is not state:
        _write_results(run, final)  # run_finished carries no record: the replay is current
    failed = sum(n for status, n in counts.items() if status != "ok")
    return EXIT_SOME_FAILED if failed else EXIT_OK


#: failures an environment going away (daemon stopped, its containers killed) produces; a
#: graceful daemon stop can even make ``exec`` exit 126 ("cannot exec in a stopped container"),
#: which reads as not_runnable and skips the rest of the backend
_COLLATERAL = frozenset({"failed", "container_died", "timeout", "oom_killed", "not_runnable"})
#: how recent (seconds before the abort) such a failure must be to be blamed on the environment
_COLLATERAL_WINDOW_S = 60.0


def _unsettle_last_failure(run: RunDir, journal: Journal, emit: Any) -> None:
    """Let ``--resume`` run again the experiments whose failure the environment caused.

    When the daemon stops, the experiment running then fails first (exit 137 when a graceful
    stop kills the container, 255 when the connection drops, 126 when the exec cannot start in
    the stopping container) and is recorded ``failed``, ``container_died`` or ``not_runnable``
    (which also records the rest of its backend ``skipped``); only a later restart, probe or exec
    finds the daemon gone. Those records would settle the experiments for good. So when the run
    stops on an environment problem, this session's last recorded experiment, if it failed that
    way within the last minute, and the ``skipped`` records it caused, are superseded by
    ``interrupted`` records (not final: a resume runs them again). At worst a genuine failure
    just before an outage runs once more.
    """
    pid = os.getpid()
    last: dict[str, Any] | None = None
    after: list[dict[str, Any]] = []  # skipped records written after ``last``
    for event in iter_events(run.journal):
        if event.get("pid") != pid:
            continue
        kind = event.get("type")
        if kind == "experiment_finished":
            last, after = event, []
        elif kind == "skipped" and last is not None:
            after.append(event)
    data = last.get("record") if last else None
    if not isinstance(data, dict):
        return
    try:
        record = Record.from_json(data)
        ended = datetime.fromisoformat(str(record.ended_at).replace("Z", "+00:00"))
    except (TypeError, ValueError):
        return
    age = (datetime.now(timezone.utc) - ended).total_seconds()
    if record.status not in _COLLATERAL or age > _COLLATERAL_WINDOW_S:
        return
    caused = [record]
    if record.status == "not_runnable":
        for event in after:
            try:
                skipped = Record.from_json(event["record"])
            except (KeyError, TypeError, ValueError):
                continue
            if f"(experiment {record.key})" in str(skipped.error):
                caused.append(skipped)
    for item in caused:
        item.error = (
            f"interrupted: the environment failed during this run ({item.status}: "
            f"{item.error}); runs again on --resume"
        )
        item.status = "interrupted"
        emit(journal.append("experiment_finished", key=item.key, record=item))


def _remove_leftovers(run: RunDir, manager: ContainerManager, emit: Any) -> None:
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
            project=manager.project.name,
            runner=manager.runner,
            docker=manager.docker,
            timeout=manager.timeouts.command_s,
        )
    except CommandFailed as exc:
        state = f"could not remove the stopped run's containers: {exc.one_line()}"
        emit({"type": "container", "service": "leftover", "state": state})
        return
    if removed:
        state = f"removed {len(removed)} container(s) of the stopped run"
        emit({"type": "container", "service": "leftover", "state": state})


def _write_results(run: RunDir, state: RunState | None = None) -> None:
    """``results.csv`` from the journal (latest record per key)."""
    state = state if state is not None else replay(run.journal)
    write_results_csv(run.results_csv, state.records.values())


__all__ = ["EXIT_ABORTED", "RunRequest", "execute"]
