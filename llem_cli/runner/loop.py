"""The campaign loop: gap, probe, exec, record, decide — for each experiment in plan order.

The loop runs over three small interfaces and nothing else: a container layer
(:class:`~llem_cli.runner.containers.Containers`), host measurement
(:class:`~llem_cli.runner.measuring.Measuring`) and an event log (the journal, whose every
event is on disk before the next step). Every choice between continue / restart / retry /
skip / abort is made by :func:`llem_cli.runner.decision.decide`, which this module only carries
out; before a failed experiment is recorded, :func:`llem_cli.runner.faults.check_environment`
makes sure the failure was the experiment's and not the host's. ``llem run``, ``llem run
--dry-run`` and the loop's table tests (``tests/unit/test_loop.py``) all drive this one loop.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from llem_cli.campaign.model import Campaign
from llem_cli.docker.probe import ProbeResult
from llem_cli.errors import RunAborted
from llem_cli.redaction import redact_text
from llem_cli.runner import decision as d
from llem_cli.runner.containers import Containers
from llem_cli.runner.experiment_command import experiment_argv, experiment_environment
from llem_cli.runner.faults import check_environment
from llem_cli.runner.measuring import Measuring, record_fields, without_window_figures
from llem_cli.runner.prune import to_prune
from llem_cli.runner.records import record_from_outcome, record_interrupted, record_not_run
from llem_cli.runner.schedule import Experiment, pause
from llem_cli.runs.record import Record
from llem_cli.runs.state import RunState
from llem_cli.signals import SignalReceived
from llem_cli.timestamps import utc_now

#: Probe statuses the decision knows by name; any other failed probe is "failed".
_PROBE_ERRORS = d.PROBE_ERRORS - {None, "failed"}

Emit = Callable[[dict[str, Any]], None]


class EventLog(Protocol):
    """Where the loop's events go: the run's journal (or ``--dry-run``'s unwritten one)."""

    def append(self, kind: str, /, **fields: Any) -> dict[str, Any]:
        """Record one event durably and return it as written."""
        ...


def probe_for_decision(result: ProbeResult, gpus: list[int] | None) -> d.Probe:
    """The decision's view of a probe: an error kind, or the highest memory use."""
    if result.ok:
        return d.Probe(None, result.max_memory_used_pct(gpus))
    return d.Probe(result.status if result.status in _PROBE_ERRORS else "failed")


@dataclass
class LoopState:
    """What the loop tracks between experiments (restarts, skipped backends, pruning)."""

    restarts_total: int
    restarts_session: int = 0
    probes_due: int = 0
    skipped_backends: dict[str, str] = field(default_factory=dict)
    pruned: dict[str, str] = field(default_factory=dict)  # config_id -> why
    counts: Counter[str] = field(default_factory=Counter)


@dataclass
class LoopContext:
    """The run the loop works for: its id, plan and replayed state, and how an experiment's
    directory is prepared (created on disk by a run; only named by ``--dry-run``)."""

    campaign: Campaign
    run_id: str
    experiments: list[Experiment]
    replayed: RunState
    prepare_dir: Callable[[str], Path]


class CampaignLoop:
    """Runs the pending experiments of one run over a started container layer."""

    def __init__(
        self,
        context: LoopContext,
        *,
        containers: Containers,
        measuring: Measuring,
        journal: EventLog,
        emit: Emit,
        sleep: Callable[[float], None] = time.sleep,
        check_env: Callable[..., None] = check_environment,
    ) -> None:
        self.context = context
        self.campaign = context.campaign
        self.run_id = context.run_id
        self.experiments = context.experiments
        self.replayed = context.replayed
        self.containers = containers
        self.measuring = measuring
        self.journal = journal
        self.emit = emit
        self.sleep = sleep
        self.check_env = check_env
        health = self.campaign.health
        self.policy = d.Policy(
            max_memory_used_pct=health.max_memory_used_pct,
            max_restarts=health.max_restarts,
            retries=self.campaign.execution.retries,
        )
        state = context.replayed
        self.state = LoopState(restarts_total=state.restarts)
        self.pending = [e for e in self.experiments if state.needs_run(e.key)]
        self.remaining_per_service = Counter(e.service for e in self.pending)
        self.started_services: set[str] = set()
        self.settled: set[str] = set()  # keys recorded (not interrupted) in this session
        self._position: int | None = None  # index in self.pending of the experiment running
        self._prune_from_history()

    # ---- journal + display ----------------------------------------------------------------------

    def log(self, kind: str, /, **fields: Any) -> None:
        """Journal an event and show it."""
        self.emit(self.journal.append(kind, **fields))

    def _finish(
        self, experiment: Experiment, record: Record, kind: str = "experiment_finished"
    ) -> None:
        self.log(kind, key=record.key, record=record)
        self.state.counts[record.status] += 1
        if record.status == "interrupted":
            return
        self.settled.add(record.key)
        self.remaining_per_service[experiment.service] -= 1
        if self.remaining_per_service[experiment.service] <= 0:
            self._stop_service(experiment.service)

    # ---- the loop -------------------------------------------------------------------------------

    def run_all(self) -> None:
        """Run every pending experiment; raises RunAborted or SignalReceived to stop early."""
        previous: Experiment | None = None
        total = len(self.experiments)
        done_before = total - len(self.pending)
        if self.pending:
            self.measuring.announce()
            self.measuring.measure_idle_baseline()
        for position, experiment in enumerate(self.pending):
            index = done_before + 1 + position
            self._position = position
            backend = experiment.config.backend
            if backend in self.state.skipped_backends:
                why = self.state.skipped_backends[backend]
                self._finish(experiment, self._not_run(experiment, "skipped", why), "skipped")
                continue
            if experiment.config.config_id in self.state.pruned:
                why = self.state.pruned[experiment.config.config_id]
                self._finish(experiment, self._not_run(experiment, "pruned", why), "pruned")
                continue
            seconds, setting = pause(previous, experiment, self.campaign)
            if seconds > 0:
                self.emit({"type": "waiting", "seconds": seconds, "why": "gap", "setting": setting})
                self.sleep(seconds)
            previous = experiment
            self._run_one(experiment, index, total)

    def _runs_left(self, service: str, current: Experiment) -> bool:
        """Whether another pending experiment will still run in ``service``'s container.

        Every pending experiment before the current one is settled by the time this is asked
        (each is recorded before the loop moves on, or the loop ends), so the scan starts after
        the current one: a scan from the start made a campaign of n experiments O(n^2).
        """
        state = self.state
        pending = self.pending
        start = 0
        position = self._position
        if position is not None and pending[position] is current:
            start = position + 1
        return any(
            e.service == service
            and e.key != current.key
            and e.key not in self.settled
            and e.config.backend not in state.skipped_backends
            and e.config.config_id not in state.pruned
            for e in (pending[i] for i in range(start, len(pending)))
        )

    def _not_run(self, experiment: Experiment, status: str, why: str) -> Record:
        return record_not_run(experiment, status, why, self.state.restarts_total)

    def _run_one(self, experiment: Experiment, index: int, total: int) -> None:
        service = experiment.service
        backend = self.campaign.backends[experiment.config.backend]
        self._ensure_started(service)
        attempt = 1
        after_restart = False
        while True:
            self._check_health(experiment, attempt, after_restart)
            after_restart = False
            self.log(
                "experiment_started",
                key=experiment.key,
                backend=experiment.config.backend,
                service=service,
                attempt=attempt,
                index=index,
                total=total,
            )
            restarts_before = self.state.restarts_total
            exp_dir = self.context.prepare_dir(experiment.key)
            thermal = self.measuring.wait_until_cool(backend.gpus)
            window = f"{experiment.key}#{attempt}"
            self.measuring.begin(window, backend.gpus)
            exec_started, exec_t0 = utc_now(), time.monotonic()
            try:
                outcome = self.containers.exec(
                    service,
                    experiment_argv(self.campaign, self.run_id, experiment),
                    env=experiment_environment(self.campaign, self.run_id, experiment),
                    timeout_s=self.campaign.execution.timeout,
                    stdout_path=exp_dir / "stdout.log",
                    stderr_path=exp_dir / "stderr.log",
                )
            except SignalReceived:
                ran_s = time.monotonic() - exec_t0
                record = record_interrupted(
                    experiment, attempt, restarts_before, started_at=exec_started, duration_s=ran_s
                )
                self._finish(experiment, record)
                raise
            finally:
                # the window closes with the exec: a restart that follows is never in it
                measurement = self.measuring.end(window)
            if not outcome.ok:
                # the host, not the experiment, may have failed (daemon gone, disk full): that
                # stops the run before anything is recorded, so --resume runs it again
                self.check_env(outcome, exp_dir)
            situation = d.Situation(
                outcome=outcome.status,
                probe=None,
                policy=self.policy,
                restarts_used=self.state.restarts_session,
                attempt=attempt,
                work_left=self._runs_left(service, experiment),
            )
            verdict = d.decide(situation)
            if verdict.prune:  # pruning may leave nothing to restart for: decide again
                self._prune_after(experiment)
                work_left = self._runs_left(service, experiment)
                verdict = d.decide(dataclasses.replace(situation, work_left=work_left))
            if verdict.action is d.Action.RETRY:
                self._restart(service, verdict.reason)
                attempt += 1
                after_restart = True
                continue
            measured = record_fields(measurement, thermal, includes_model_load=backend.loads_model)
            if outcome.status == "timeout" and measurement is not None:
                measured = without_window_figures(
                    measured,
                    "the experiment did not finish within execution.timeout: "
                    "the window holds only part of it",
                    "window_cut_by_timeout",
                )
            record = record_from_outcome(
                experiment,
                outcome,
                attempts=attempt,
                restarts_before=restarts_before,
                experiment_dir=exp_dir,
                measured=measured,
                secret_env=backend.env,
                metrics_map=backend.metrics.mapped(),
            )
            self._finish(experiment, record)
            if verdict.action is d.Action.SKIP_BACKEND:
                self.state.skipped_backends[experiment.config.backend] = (
                    f"backend command not runnable (experiment {experiment.key})"
                )
            elif verdict.action is d.Action.ABORT:
                raise RunAborted(verdict.reason)
            elif verdict.restart and self.remaining_per_service[service] > 0:
                self._restart(service, verdict.reason)
            elif verdict.remove:
                self._stop_service(service)
            return

    # ---- health ---------------------------------------------------------------------------------

    def probe_due(self, after_restart: bool) -> bool:
        """Whether the next experiment is probed first: every ``health.every``-th, and always
        right after a restart (``every: 0`` turns probing off)."""
        every = self.campaign.health.every
        if every <= 0:
            return False
        due = after_restart or self.state.probes_due % every == 0
        self.state.probes_due += 1
        return due

    def _check_health(self, experiment: Experiment, attempt: int, after_restart: bool) -> None:
        """Probe when due; restart or abort as decided."""
        if not self.probe_due(after_restart):
            return
        service = experiment.service
        gpus = self.campaign.backends[experiment.config.backend].gpus
        while True:
            result = self._probe(service)
            self.log(
                "probe",
                service=service,
                status=result.status,
                max_memory_used_pct=result.max_memory_used_pct(gpus) if result.ok else None,
                detail=redact_text(result.message()),
            )
            verdict = d.decide(
                d.Situation(
                    outcome=None,
                    probe=probe_for_decision(result, gpus),
                    policy=self.policy,
                    restarts_used=self.state.restarts_session,
                    attempt=attempt,
                    after_restart=after_restart,
                )
            )
            if verdict.action is d.Action.ABORT:
                raise RunAborted(verdict.reason)
            if not verdict.restart:
                return
            self._restart(service, verdict.reason)
            after_restart = True

    def _probe(self, service: str) -> ProbeResult:
        health = self.campaign.health
        argv = None if health.probe == "nvidia-smi" else list(health.probe)
        return self.containers.probe(service, argv, timeout_s=health.probe_timeout)

    # ---- containers -----------------------------------------------------------------------------

    def _ensure_started(self, service: str) -> None:
        if service in self.started_services:
            return
        self.emit({"type": "container", "service": service, "state": "starting"})
        self.containers.start(service)
        self.started_services.add(service)
        self.emit({"type": "container", "service": service, "state": "running"})

    def _stop_service(self, service: str) -> None:
        """Remove a backend's container once none of its experiments remain."""
        if service not in self.started_services:
            return
        self.containers.stop(service)
        self.started_services.discard(service)
        self.emit(
            {"type": "container", "service": service, "state": "removed (no experiments left)"}
        )

    def _restart(self, service: str, reason: str) -> None:
        """Back off, count the restart (journaled), restart; the caller probes again after."""
        backoff = d.backoff_seconds(
            self.campaign.health.restart_backoff, self.state.restarts_session
        )
        if backoff > 0:
            self.emit({"type": "waiting", "seconds": backoff, "why": "restart backoff"})
            self.sleep(backoff)
        self.state.restarts_total += 1
        self.state.restarts_session += 1
        self.log("restart", service=service, reason=reason, restarts=self.state.restarts_total)
        self.containers.restart(service)

    # ---- pruning --------------------------------------------------------------------------------

    def _prune_from_history(self) -> None:
        """A resumed run prunes what earlier gpu_oom records imply."""
        axes = self.campaign.execution.prune_on_oom
        if not axes:
            return
        for record in self.replayed.records.values():
            # a slim replay keeps gpu_oom records in full: a Settled stand-in is never one
            if isinstance(record, Record) and record.status == "gpu_oom":
                self._mark_pruned(record.backend, record.params, record.key)

    def _prune_after(self, experiment: Experiment) -> None:
        self._mark_pruned(experiment.config.backend, experiment.config.params, experiment.key)

    def _mark_pruned(self, backend: str, params: dict[str, Any], key: str) -> None:
        configs = {e.config.config_id: e.config for e in self.pending}
        hit = to_prune(backend, params, configs.values(), self.campaign.execution.prune_on_oom)
        for config in hit:
            self.state.pruned.setdefault(config.config_id, f"pruned: {key} ran out of GPU memory")
