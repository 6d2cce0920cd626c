"""Running the lanes of one session: a thread per lane, one queue, one journal, one teardown.

Each lane is a :class:`~llem_cli.runner.loop.CampaignLoop` over its own
:class:`~llem_cli.docker.manager.ContainerManager` (its own compose project and override,
pinned to its GPUs) in a thread of its own; the lanes share the
:class:`~llem_cli.runner.lanes.Dispatcher`, the journal, the host measurement and one
:class:`~llem_cli.docker.proc.SubprocessRunner`. The main thread only waits: signals arrive
there, and it stops the lanes by cancelling the runner (every command in flight is killed,
each lane records its experiment ``interrupted``), then the managers tear every lane down.

A lane whose restart budget is spent or whose GPU is lost retires (journaled
``lane_retired``): its containers go, the experiment it had not run goes back to the queue,
and the other lanes go on. Anything else a lane meets (Docker gone, a container not pinned,
a full disk) stops the whole run, as it would without lanes.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llem_cli.campaign.model import Campaign
from llem_cli.docker.compose import ComposeCLI
from llem_cli.docker.manager import ContainerManager
from llem_cli.docker.override import LanePin
from llem_cli.docker.proc import SubprocessRunner
from llem_cli.docker.service_facts import ServiceFacts
from llem_cli.errors import LlemError, RunAborted
from llem_cli.runner.containers import Containers
from llem_cli.runner.faults import check_environment
from llem_cli.runner.lanes import Dispatcher, Lane, lane_gpu_indices, service_gpus
from llem_cli.runner.loop import CampaignLoop, EventLog, LoopContext, LoopState
from llem_cli.runner.measuring import HostTelemetry, LogEvent, Measuring
from llem_cli.signals import Cancelled, SignalReceived, deferred

Emit = Callable[[dict[str, Any]], None]

#: how often the main thread looks up from waiting on the lanes (signals are handled at once)
_JOIN_POLL_S = 0.2


def lane_project(project: str, lane: int) -> str:
    """The compose project of a lane: ``<project>-l<lane>`` (its containers never collide)."""
    return f"{project}-l{lane}"


def lane_pins(campaign: Campaign, lane: Lane, services: Sequence[str]) -> dict[str, LanePin]:
    """Each service's pin in this lane: the lane's GPUs its backends use (by UUID)."""
    return {
        service: LanePin(
            lane.number,
            tuple(g.uuid for g in service_gpus(lane, campaign, service)),
            base_project=campaign.project_name,
        )
        for service in services
    }


def cancellable_sleep(runner: SubprocessRunner) -> Callable[[float], None]:
    """A lane's sleep (gap, backoff, thermal poll): wakes and raises Cancelled when stopped."""

    def sleep(seconds: float) -> None:
        if runner.cancel_event.wait(max(0.0, seconds)):
            runner.raise_if_cancelled()

    return sleep


@dataclass
class _Worker:
    """One lane's thread and how it ended."""

    lane: Lane
    loop: CampaignLoop
    thread: threading.Thread | None = None
    retired: str | None = None
    fatal: BaseException | None = None


@dataclass
class LanesOutcome:
    """What the lanes did: their shared loop state and the lanes retired (number -> why)."""

    state: LoopState
    retired: dict[int, str] = field(default_factory=dict)


@dataclass
class LaneSetup:
    """What the session hands over to run its lanes."""

    campaign: Campaign
    context: LoopContext
    lanes: Sequence[Lane]
    files: Sequence[Path]
    run_dir: Path
    compose: ComposeCLI
    services: Mapping[str, bool]
    facts: Mapping[str, ServiceFacts]
    one_lane_services: frozenset[str] = frozenset()
    #: where the lanes' override files go (a shard's own folder; None: ``run_dir``)
    override_dir: Path | None = None


#: builds a lane's container layer (a context manager: leaving it tears the lane down)
ContainersFor = Callable[[Lane, SubprocessRunner], contextlib.AbstractContextManager[Containers]]


def run_lanes(
    setup: LaneSetup,
    *,
    journal: EventLog,
    emit: Emit,
    log: LogEvent,
    on_managers: Callable[[list[Any]], None] | None = None,
    containers_for: ContainersFor | None = None,
    measuring: Measuring | None = None,
    check_env: Callable[..., None] | None = None,
) -> LanesOutcome:
    """Run every pending experiment over the lanes; raise what stops the whole run.

    Raises :class:`RunAborted` when every lane retired with experiments left, a lane's
    environment error as it is, and :class:`SignalReceived` (after every lane has stopped and
    recorded its experiment) when the main thread gets SIGINT/SIGTERM. ``containers_for``,
    ``measuring`` and ``check_env`` stand in for Docker and NVML in the lanes' table tests.
    """
    campaign = setup.campaign
    context = setup.context
    runner = SubprocessRunner()
    pending = [e for e in context.experiments if context.replayed.needs_run(e.key)]

    def can_run(experiment: Any, lane: Lane) -> bool:
        backend = campaign.backends[experiment.config.backend]
        if experiment.service in setup.one_lane_services and lane.number != setup.lanes[0].number:
            return False
        return lane.holds(backend)

    dispatcher = Dispatcher(pending, setup.lanes, can_run=can_run)
    state = LoopState(restarts_total=context.replayed.restarts)
    sleep = cancellable_sleep(runner)
    if measuring is None:
        lane_gpus = lane_gpu_indices(setup.lanes)
        measuring = HostTelemetry(campaign, emit, log, lane_gpus=lane_gpus, sleep=sleep)
    services = list(setup.services)

    def manager_for(lane: Lane, runner: SubprocessRunner) -> ContainerManager:
        return ContainerManager(
            lane_project(campaign.project_name, lane.number),
            setup.files,
            run_id=context.run_id,
            run_dir=setup.run_dir,
            services=setup.services,
            compose=setup.compose,
            runner=runner,
            pins=lane_pins(campaign, lane, services),
            facts=setup.facts or None,
            override_dir=setup.override_dir,
        )

    make = containers_for or manager_for
    with contextlib.ExitStack() as stack:
        managers: list[Any] = []
        workers: list[_Worker] = []
        for lane in setup.lanes:
            containers = stack.enter_context(make(lane, runner))
            managers.append(containers)
            loop = CampaignLoop(
                context,
                containers=containers,
                measuring=measuring,
                journal=journal,
                emit=emit,
                sleep=sleep,
                check_env=check_env or check_environment,
                lane=lane,
                dispatcher=dispatcher,
                state=state,
            )
            workers.append(_Worker(lane, loop))
        if on_managers is not None:
            on_managers(managers)
        stack.callback(measuring.close)
        if pending:
            measuring.announce()
            measuring.measure_idle_baseline()
        _run_threads(workers, dispatcher, runner, log)
        _teardown_together(managers)
        retired = {w.lane.number: w.retired for w in workers if w.retired is not None}
        left = dispatcher.pending()
        if retired and left:
            reasons = "; ".join(f"lane {n}: {why}" for n, why in sorted(retired.items()))
            raise RunAborted(
                f"every lane that could run the {len(left)} experiment(s) left retired ({reasons})"
            )
        return LanesOutcome(state, retired)


def _teardown_together(managers: list[Any]) -> None:
    """Tear every lane down at once (each is a few docker calls that mostly wait): the
    sequential teardown of the ExitStack then finds nothing left to do. Signals are held by
    the main thread for the whole of it; a lane whose teardown failed is torn down again,
    alone, by the ExitStack."""
    tearing = [m for m in managers if callable(getattr(m, "teardown", None))]
    if len(tearing) < 2:
        return
    with deferred():
        threads = [
            threading.Thread(target=_quiet_teardown, args=(m,), name="llem-teardown")
            for m in tearing
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


def _quiet_teardown(manager: Any) -> None:
    try:
        manager.teardown(shield=False)
    except Exception as exc:  # noqa: BLE001 - the ExitStack tears this lane down again
        logging.getLogger(__name__).warning("lane teardown failed, retrying: %s", exc)


def _run_threads(
    workers: list[_Worker], dispatcher: Dispatcher, runner: SubprocessRunner, log: LogEvent
) -> None:
    """Start a thread per lane and wait for them; stop them all on a signal or a fatal error."""
    for worker in workers:
        worker.thread = threading.Thread(
            target=_lane_main,
            args=(worker, dispatcher, log),
            name=f"llem-lane-{worker.lane.number}",
            daemon=True,
        )
        worker.thread.start()
    try:
        while any(w.thread is not None and w.thread.is_alive() for w in workers):
            for worker in workers:
                if worker.thread is not None:
                    worker.thread.join(_JOIN_POLL_S)
            fatal = next((w.fatal for w in workers if w.fatal is not None), None)
            if fatal is not None:
                _stop(workers, dispatcher, runner, signal.SIGTERM)
                raise fatal
    except SignalReceived as exc:
        _stop(workers, dispatcher, runner, exc.signum)
        raise
    fatal = next((w.fatal for w in workers if w.fatal is not None), None)
    if fatal is not None:
        raise fatal


def _stop(
    workers: list[_Worker], dispatcher: Dispatcher, runner: SubprocessRunner, signum: int
) -> None:
    """Stop every lane: no more experiments, every command in flight killed; wait for them."""
    dispatcher.stop()
    runner.cancel(signum)
    for worker in workers:
        if worker.thread is not None:
            worker.thread.join()
    runner.reset()  # the teardown that follows runs docker commands through this runner


def _lane_main(worker: _Worker, dispatcher: Dispatcher, log: LogEvent) -> None:
    """A lane's thread: run until the queue is empty, the lane retires or the run stops."""
    loop = worker.loop
    try:
        loop.run_all()
    except RunAborted as exc:
        given_back = None
        if loop.current is not None:
            given_back = loop.current.key
            dispatcher.give_back(loop.current)
        dispatcher.retire(worker.lane.number)
        worker.retired = exc.one_line()
        try:
            log(
                "lane_retired",
                lane=worker.lane.number,
                reason=exc.one_line(),
                given_back=given_back,
            )
            for service in sorted(loop.started_services):
                loop.containers.stop(service)
        except LlemError as err:
            worker.fatal = err
        except BaseException as err:  # noqa: BLE001 - handed to the main thread
            worker.fatal = err
    except Cancelled:
        pass  # the run is stopping: the main thread knows why
    except BaseException as exc:  # noqa: BLE001 - handed to the main thread, raised there
        worker.fatal = exc


__all__ = [
    "LaneSetup",
    "LanesOutcome",
    "cancellable_sleep",
    "lane_pins",
    "lane_project",
    "run_lanes",
]
