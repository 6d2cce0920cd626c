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
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from llem_cli.campaign.model import Campaign
from llem_cli.campaign.servers import ready_argv, server_argv, server_id
from llem_cli.docker.probe import ProbeResult
from llem_cli.errors import EnvironmentProblem, RunAborted
from llem_cli.redaction import redact_argv, redact_text
from llem_cli.runner import decision as d
from llem_cli.runner.containers import Containers
from llem_cli.runner.experiment_command import experiment_argv, experiment_environment
from llem_cli.runner.faults import check_environment
from llem_cli.runner.gpu_settings_run import SettingRefused, SettingsKeeper
from llem_cli.runner.lanes import Dispatcher, HostGpu, Lane, service_gpus
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


def probe_for_decision(
    result: ProbeResult, gpus: list[int] | None, server_baseline_pct: float | None = None
) -> d.Probe:
    """The decision's view of a probe: an error kind, or the highest memory use (and, for a
    serving backend, the level right after its server was ready)."""
    if result.ok:
        return d.Probe(None, result.max_memory_used_pct(gpus), server_baseline_pct)
    return d.Probe(result.status if result.status in _PROBE_ERRORS else "failed")


#: seconds between two ``ready`` execs while a server loads, and between two "loading" lines
_READY_POLL_S = 1.0
_LOADING_NOTE_S = 10.0


@dataclass
class LoopState:
    """What the loop tracks between experiments (restarts, skipped backends, pruning).

    With lanes, one LoopState is shared by every lane's loop (a backend found not runnable is
    skipped everywhere; ``restarts_total`` numbers the run's restarts); ``lock`` guards it.
    """

    restarts_total: int
    skipped_backends: dict[str, str] = field(default_factory=dict)
    pruned: dict[str, str] = field(default_factory=dict)  # config_id -> why
    counts: Counter[str] = field(default_factory=Counter)
    settled: set[str] = field(default_factory=set)  # keys recorded (not interrupted) this session
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)


@dataclass
class LoopContext:
    """The run the loop works for: its id, plan and replayed state, and how an experiment's
    directory is prepared (created on disk by a run; only named by ``--dry-run``)."""

    campaign: Campaign
    run_id: str
    experiments: list[Experiment]
    replayed: RunState
    prepare_dir: Callable[[str], Path]
    #: the run's gpu_settings (None: the campaign has none, or a dry run: NVML untouched)
    settings: SettingsKeeper | None = None


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
        lane: Lane | None = None,
        dispatcher: Dispatcher | None = None,
        state: LoopState | None = None,
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
        replayed = context.replayed
        self.state = state or LoopState(restarts_total=replayed.restarts)
        self.settled = self.state.settled
        #: this loop's lane (None: a run without lanes, its containers not pinned)
        self.lane = lane
        self.lane_no = lane.number if lane is not None else 0
        self.restarts_session = 0  # against health.max_restarts: per lane, per session
        self.probes_due = 0
        if dispatcher is None:
            pending = [e for e in self.experiments if replayed.needs_run(e.key)]
            dispatcher = Dispatcher(pending, [lane] if lane is not None else [])
        self.dispatcher = dispatcher
        self.done_before = sum(1 for e in self.experiments if not replayed.needs_run(e.key))
        self.started_services: set[str] = set()
        self.pin_checked: set[str] = set()
        #: serving backends: the server configuration each service's container runs, and the
        #: GPU memory it used right after it was ready (the memory rule's reference)
        self.servers: dict[str, str] = {}
        self.server_baseline: dict[str, float | None] = {}
        #: the experiment taken and not yet recorded (a retired lane gives it back)
        self.current: Experiment | None = None
        self._prune_from_history()

    # ---- journal + display ----------------------------------------------------------------------

    def log(self, kind: str, /, **fields: Any) -> None:
        """Journal an event and show it."""
        self.emit(self.journal.append(kind, **fields))

    def _finish(
        self, experiment: Experiment, record: Record, kind: str = "experiment_finished"
    ) -> None:
        if self.lane is not None:
            record.lane = self.lane.number
            record.gpu_uuids = [g.uuid for g in self._gpus_of(experiment)]
        record.server_id = server_id(self.campaign, experiment.config)
        self.log(kind, key=record.key, record=record, **self._lane_fields())
        with self.state.lock:
            self.state.counts[record.status] += 1
            if record.status != "interrupted":
                self.settled.add(record.key)
        self.current = None
        self.dispatcher.settle(experiment)
        if record.status == "interrupted":
            return
        if not self.dispatcher.work_left(experiment.service, self.lane_no, runs=self._will_run):
            self._stop_service(experiment.service)

    def _lane_fields(self) -> dict[str, Any]:
        """``lane`` on a lane's events (nothing without lanes, as before)."""
        return {} if self.lane is None else {"lane": self.lane.number}

    def _gpus_of(self, experiment: Experiment) -> tuple[HostGpu, ...]:
        """The lane's GPUs this experiment uses (empty without lanes)."""
        if self.lane is None:
            return ()
        return self.lane.gpus_for(self.campaign.backends[experiment.config.backend])

    def _measured_gpus(self, experiment: Experiment) -> list[int] | None:
        """Host GPU indexes to measure: the lane's GPUs for it, else the backend's ``gpus``."""
        backend = self.campaign.backends[experiment.config.backend]
        if self.lane is None:
            count = backend.gpu_count
            if backend.pinned_gpus is None and count is not None:
                return list(range(count))
            return backend.pinned_gpus
        return [g.index for g in self._gpus_of(experiment) if g.index is not None]

    # ---- the loop -------------------------------------------------------------------------------

    def run_all(self) -> None:
        """Run every pending experiment; raises RunAborted or SignalReceived to stop early."""
        previous: Experiment | None = None
        total = len(self.experiments)
        if self.lane is None and self.dispatcher.pending():
            # with lanes the session announces and measures the baseline once, before them
            self.measuring.announce()
            self.measuring.measure_idle_baseline()
        while True:
            experiment = self.dispatcher.take(self.lane_no)
            if experiment is None:
                return
            self.current = experiment
            index = self.done_before + self.dispatcher.taken
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
                self.emit(
                    {
                        "type": "waiting",
                        **self._lane_fields(),
                        "seconds": seconds,
                        "why": "gap",
                        "setting": setting,
                    }
                )
                self.sleep(seconds)
            previous = experiment
            self._run_one(experiment, index, total)

    def _runs_left(self, service: str, current: Experiment) -> bool:
        """Whether another pending experiment this lane could take will run in ``service``."""
        return self.dispatcher.work_left(
            service, self.lane_no, besides=current, runs=self._will_run
        )

    def _will_run(self, experiment: Experiment) -> bool:
        """Whether a pending experiment needs its container (skipped and pruned ones do not)."""
        return (
            experiment.config.backend not in self.state.skipped_backends
            and experiment.config.config_id not in self.state.pruned
        )

    def _not_run(self, experiment: Experiment, status: str, why: str) -> Record:
        return record_not_run(experiment, status, why, self.state.restarts_total)

    def _environment(self, experiment: Experiment) -> dict[str, str]:
        env = experiment_environment(self.campaign, self.run_id, experiment)
        if self.lane is not None:
            env["LLEM_LANE"] = str(self.lane.number)
            env["LLEM_GPU_UUIDS"] = ",".join(g.uuid for g in self._gpus_of(experiment))
        return env

    def _run_one(self, experiment: Experiment, index: int, total: int) -> None:
        service = experiment.service
        backend = self.campaign.backends[experiment.config.backend]
        if backend.serving:
            self._ensure_server(experiment)
        else:
            self._ensure_started(service)
        attempt = 1
        after_restart = False
        while True:
            self._check_health(experiment, attempt, after_restart)
            after_restart = False
            lane_detail: dict[str, Any] = {}
            if self.lane is not None:
                lane_detail = {
                    "lane": self.lane.number,
                    "gpus": [g.label() for g in self._gpus_of(experiment)],
                }
            self.log(
                "experiment_started",
                key=experiment.key,
                backend=experiment.config.backend,
                service=service,
                attempt=attempt,
                index=index,
                total=total,
                **lane_detail,
            )
            restarts_before = self.state.restarts_total
            exp_dir = self.context.prepare_dir(experiment.key)
            gpus = self._measured_gpus(experiment)
            applied: dict[str, Any] | None = None
            if self.context.settings is not None:
                try:
                    applied = self.context.settings.apply(experiment.config, gpus)
                except SettingRefused as exc:
                    # nothing runs on GPUs that are not at the experiment's settings
                    record = self._not_run(
                        experiment, "failed", f"GPU settings not applied: {exc.reason}"
                    )
                    self._finish(experiment, record)
                    return
            mig = any(g.mig for g in self._gpus_of(experiment))
            thermal = None if mig else self.measuring.wait_until_cool(gpus)
            window = f"{experiment.key}#{attempt}"
            if not mig:
                self.measuring.begin(window, gpus)
            exec_started, exec_t0 = utc_now(), time.monotonic()
            try:
                outcome = self.containers.exec(
                    service,
                    experiment_argv(self.campaign, self.run_id, experiment),
                    env=self._environment(experiment),
                    timeout_s=self.campaign.execution.timeout,
                    stdout_path=exp_dir / "stdout.log",
                    stderr_path=exp_dir / "stderr.log",
                )
            except SignalReceived:
                ran_s = time.monotonic() - exec_t0
                record = record_interrupted(
                    experiment, attempt, restarts_before, started_at=exec_started, duration_s=ran_s
                )
                record.gpu_settings = applied
                self._finish(experiment, record)
                raise
            finally:
                # the window closes with the exec: a restart that follows is never in it
                measurement = None if mig else self.measuring.end(window)
            if not outcome.ok:
                # the host, not the experiment, may have failed (daemon gone, disk full): that
                # stops the run before anything is recorded, so --resume runs it again
                self.check_env(outcome, exp_dir)
            situation = d.Situation(
                outcome=outcome.status,
                probe=None,
                policy=self.policy,
                restarts_used=self.restarts_session,
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
            measured = record_fields(
                measurement, thermal, includes_model_load=backend.includes_model_load
            )
            if mig:
                measured = without_window_figures(
                    measured,
                    "a MIG device: NVML reports energy and power for the whole GPU, "
                    "not for this slice",
                    "mig_device",
                )
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
            record.gpu_settings = applied
            self._finish(experiment, record)
            if verdict.action is d.Action.SKIP_BACKEND:
                self.state.skipped_backends[experiment.config.backend] = (
                    f"backend command not runnable (experiment {experiment.key})"
                )
            elif verdict.action is d.Action.ABORT:
                raise RunAborted(verdict.reason)
            elif verdict.restart and self._runs_left(service, experiment):
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
        due = after_restart or self.probes_due % every == 0
        self.probes_due += 1
        return due

    def _check_health(self, experiment: Experiment, attempt: int, after_restart: bool) -> None:
        """Probe when due (and before a lane's first experiment in a container, to check its
        pin, whatever ``health.every`` says); restart or abort as decided."""
        service = experiment.service
        if not self.probe_due(after_restart) and not self._pin_unchecked(service):
            return
        gpus = self._probe_gpus(experiment)
        while True:
            result = self._probe(service)
            if result.ok and self._pin_unchecked(service):
                self._check_pinned(service, result)
            self.log(
                "probe",
                **self._lane_fields(),
                service=service,
                status=result.status,
                max_memory_used_pct=result.max_memory_used_pct(gpus) if result.ok else None,
                detail=redact_text(result.message()),
            )
            verdict = d.decide(
                d.Situation(
                    outcome=None,
                    probe=probe_for_decision(result, gpus, self._server_baseline(service)),
                    policy=self.policy,
                    restarts_used=self.restarts_session,
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

    def _server_baseline(self, service: str) -> float | None:
        """A running server's memory right after ready (None: no server, or not measured)."""
        return self.server_baseline.get(service) if service in self.servers else None

    def _probe_gpus(self, experiment: Experiment) -> list[int] | None:
        """The probe's GPU indexes (as the container numbers them) the memory rule looks at.

        A pinned container sees only its GPUs, numbered from 0; without lanes a pinned list
        names host indexes, as before.
        """
        if self.lane is None:
            return self.campaign.backends[experiment.config.backend].pinned_gpus
        return None

    def _probe(self, service: str) -> ProbeResult:
        health = self.campaign.health
        argv = None if health.probe == "nvidia-smi" else list(health.probe)
        return self.containers.probe(service, argv, timeout_s=health.probe_timeout)

    # ---- containers -----------------------------------------------------------------------------

    def _ensure_started(self, service: str, *, restart: bool = False) -> None:
        """Bring the service's container up (``restart``: again, for a new server command)."""
        if service in self.started_services and not restart:
            return
        lane = self._lane_fields()
        self.emit({"type": "container", **lane, "service": service, "state": "starting"})
        self.containers.start(service)
        self.started_services.add(service)
        self.emit({"type": "container", **lane, "service": service, "state": "running"})

    def _pin_unchecked(self, service: str) -> bool:
        """Whether a lane's container has yet to show, in a probe, that it sees its GPUs only."""
        return self.lane is not None and service not in self.pin_checked

    def _check_pinned(self, service: str, result: ProbeResult) -> None:
        """Before a lane's first experiment in ``service``: the container sees exactly the
        lane's GPUs, or it would measure (and load) the wrong ones: exit 3 naming the service.

        ``privileged: true``, or an NVIDIA_VISIBLE_DEVICES the image or entrypoint sets
        itself, defeats the override's pinning; only the probe inside can tell. Called with
        the first probe that answered (a failing probe is the health rules' to handle).
        A dry run's probe lists no GPU: nothing to compare.
        """
        assert self.lane is not None
        self.pin_checked.add(service)
        if not result.gpus:
            return
        want = [g.uuid for g in service_gpus(self.lane, self.campaign, service)]
        seen = [g.uuid for g in result.gpus]
        self.log(
            "pin_check",
            lane=self.lane.number,
            service=service,
            expected=want,
            seen=seen,
            status=result.status,
        )
        if any(u is None for u in seen) or sorted(u or "" for u in seen) != sorted(want):
            raise EnvironmentProblem(
                f"{self.lane.describe()}: service {service!r} is not pinned to its GPUs: it "
                f"sees {seen}, expected {want}",
                hint="remove 'privileged: true' or an NVIDIA_VISIBLE_DEVICES the image sets "
                "from the service, or run with --lanes 1",
            )

    # ---- servers (serving backends) -------------------------------------------------------------

    def _ensure_server(self, experiment: Experiment) -> None:
        """Run the experiment's server configuration in its service's container, ready.

        A new server configuration recreates the container with its ``serve`` argv as the
        main process: no restart (no budget, no ``restarts_before``). Then ``ready`` until it
        exits 0, and a probe for the memory the ready server holds.
        """
        service = experiment.service
        wanted = server_id(self.campaign, experiment.config)
        assert wanted is not None
        if self.servers.get(service) == wanted and service in self.started_services:
            return
        argv = server_argv(self.campaign, self.run_id, experiment.config)
        backend = self.campaign.backends[experiment.config.backend]
        self.containers.configure_server(service, argv, backend.env)
        self.log(
            "server_start",
            **self._lane_fields(),
            service=service,
            server_id=wanted,
            argv=redact_argv(argv, backend.env),
        )
        self.servers.pop(service, None)
        self._ensure_started(service, restart=True)
        self.servers[service] = wanted
        self._await_server(experiment)

    def _await_server(self, experiment: Experiment) -> None:
        """Wait for the service's server to be ready; a server that does not get ready in
        ``ready_timeout`` (or dies loading) is a failed start, counted as a restart; with
        the budget spent the experiment is recorded failed, with the server's last log
        lines, and the run (or lane) aborts."""
        service = experiment.service
        backend = self.campaign.backends[experiment.config.backend]
        sid = self.servers.get(service)
        argv = ready_argv(self.campaign, self.run_id, experiment.config)
        while True:
            t0 = time.monotonic()
            ready, why = self._wait_ready(service, argv, backend.ready_timeout, sid)
            if ready:
                result = self._probe(service)
                gpus = self._probe_gpus(experiment)
                pct = result.max_memory_used_pct(gpus) if result.ok else None
                self.server_baseline[service] = pct
                self.log(
                    "server_ready",
                    **self._lane_fields(),
                    service=service,
                    server_id=sid,
                    waited_s=round(time.monotonic() - t0, 3),
                    memory_used_pct=pct,
                )
                return
            reason = f"server {sid} ({service}) {why}"
            if self.restarts_session >= self.policy.max_restarts:
                lines = redact_text(self.containers.logs_tail(service), backend.env)
                tail = "; ".join(x.strip() for x in lines.splitlines()[-10:] if x.strip())
                error = f"{reason}; restart budget spent"
                record = record_not_run(
                    experiment,
                    "failed",
                    f"{error}; last server log lines: {tail or '(none)'}",
                    self.state.restarts_total,
                )
                self._finish(experiment, record)
                raise RunAborted(error)
            self._restart_container(service, reason)

    def _server_event(self, service: str, sid: str | None, waited_s: float) -> None:
        self.emit(
            {
                "type": "server",
                **self._lane_fields(),
                "service": service,
                "server_id": sid,
                "state": "loading",
                "waited_s": round(waited_s, 1),
            }
        )

    def _wait_ready(
        self, service: str, argv: list[str], timeout: float, sid: str | None
    ) -> tuple[bool, str]:
        """Exec ``ready`` until it exits 0 or ``timeout`` passes; (ready, why not)."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        noted = t0
        self._server_event(service, sid, 0.0)
        while True:
            remaining = deadline - time.monotonic()
            status, detail = self.containers.ready(
                service, argv, timeout_s=max(1.0, min(remaining, 60.0))
            )
            if status == "ready":
                return True, ""
            if status == "dead":
                return False, f"died while loading ({detail or 'container not running'})"
            now = time.monotonic()
            if now >= deadline:
                last = f"; ready said: {detail}" if detail else ""
                return False, f"not ready within ready_timeout {timeout:g}s{last}"
            if now - noted >= _LOADING_NOTE_S:
                noted = now
                self._server_event(service, sid, now - t0)
            self.sleep(min(_READY_POLL_S, max(0.0, deadline - now)))

    def _stop_service(self, service: str) -> None:
        """Remove a backend's container once none of its experiments remain."""
        if service not in self.started_services:
            return
        self.containers.stop(service)
        self.started_services.discard(service)
        self.servers.pop(service, None)
        self.emit(
            {
                "type": "container",
                **self._lane_fields(),
                "service": service,
                "state": "removed (no experiments left)",
            }
        )

    def _restart(self, service: str, reason: str) -> None:
        """Restart the container; a serving backend's server must then be ready again."""
        self._restart_container(service, reason)
        if service in self.servers and self.current is not None:
            self._await_server(self.current)

    def _restart_container(self, service: str, reason: str) -> None:
        """Back off, count the restart (journaled), restart; the caller probes again after."""
        backoff = d.backoff_seconds(self.campaign.health.restart_backoff, self.restarts_session)
        if backoff > 0:
            self.emit(
                {
                    "type": "waiting",
                    **self._lane_fields(),
                    "seconds": backoff,
                    "why": "restart backoff",
                }
            )
            self.sleep(backoff)
        with self.state.lock:
            self.state.restarts_total += 1
            total = self.state.restarts_total
        self.restarts_session += 1
        self.log("restart", **self._lane_fields(), service=service, reason=reason, restarts=total)
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
        configs = {e.config.config_id: e.config for e in self.experiments}
        hit = to_prune(backend, params, configs.values(), self.campaign.execution.prune_on_oom)
        for config in hit:
            with self.state.lock:
                self.state.pruned.setdefault(
                    config.config_id, f"pruned: {key} ran out of GPU memory"
                )
