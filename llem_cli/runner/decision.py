"""What the runner does next: one pure function over plain data, tested as a table.

Keeping the policy here, away from Docker and the loop, means every rule
("container_died -> restart + retry while retries remain", "GPU lost -> abort",
"a timeout restarts the container", ...) is one row of a test table, and the loop
only carries it out. The container layer never restarts anything by itself: every
restart, a timeout's included, is asked for here and counted against the budget.

The function is called twice per experiment: before it runs (``outcome`` None,
judging the probe) and after it ran (judging its outcome). A restart it asks for
is always followed by a fresh probe and a second call before anything runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from llem_cli.runs.record import OUTCOME_STATUSES

#: Outcomes of one experiment attempt, as the Docker layer classifies them.
OUTCOMES = OUTCOME_STATUSES

#: Probe error kinds; None is a probe that worked.
PROBE_ERRORS = frozenset(
    {None, "gpu_lost", "driver_not_loaded", "nvml_missing", "failed", "container_died", "timeout"}
)

#: Outcomes after which the container is suspect, so it is restarted and the
#: experiment tried again while retries remain. A timeout leaves the process
#: running inside the container (killing ``docker exec`` does not kill it) and
#: holding the GPU; a dead container cannot run anything. Both may be
#: transient, so a second attempt is worth its cost.
RETRYABLE = frozenset({"timeout", "container_died"})

#: Outcomes after which the container is restarted but the experiment is not
#: tried again: the failure is a property of the configuration (the same batch
#: does not fit the same GPU or memory limit twice), yet it may leave memory
#: held (a CUDA context, a half-dead server) or, for the kernel OOM killer,
#: other processes of the container killed.
RESTART_NO_RETRY = frozenset({"gpu_oom", "oom_killed"})


class Action(str, Enum):
    """What the runner does next."""

    #: Run the experiment (before) or go on to the next one (after).
    CONTINUE = "continue"
    #: Restart the container, probe again, then carry on: before the experiment
    #: it then runs; after it, its record is final and the next one comes.
    RESTART_THEN_CONTINUE = "restart_then_continue"
    #: Restart the container, probe again, then run the same experiment again
    #: with the attempt number raised; the outcome is not recorded as final.
    RETRY = "retry"
    #: The backend's command cannot run (exit 126/127): record this one
    #: ``not_runnable`` and the rest of the backend ``skipped``.
    SKIP_BACKEND = "skip_backend"
    #: Tear everything down and stop the run with exit code 4.
    ABORT = "abort"


@dataclass(frozen=True)
class Probe:
    """The last health probe: an error kind, or the highest memory use seen.

    ``max_memory_used_pct`` is the highest ``memory.used / memory.total`` over
    the probed GPUs in percent, None when unknown (``[N/A]`` values, or an error).
    """

    error: str | None = None
    max_memory_used_pct: float | None = None
    #: a serving backend's memory use right after its server was ready: the rule is then
    #: growth over it (``max_memory_growth_pct``), never the absolute level
    server_baseline_pct: float | None = None

    def __post_init__(self) -> None:
        if self.error not in PROBE_ERRORS:
            raise ValueError(f"unknown probe error {self.error!r}")


@dataclass(frozen=True)
class Policy:
    """The health and retry settings of the campaign that bear on the decision."""

    max_memory_used_pct: float = 90.0
    max_restarts: int = 3
    retries: int = 1
    max_memory_growth_pct: float = 5.0


@dataclass(frozen=True)
class Situation:
    """Everything the decision looks at.

    ``attempt`` is 1-based: the attempt that just ran (or is about to). With
    ``retries`` extra attempts allowed, attempt ``n`` may be retried while
    ``n <= retries``. ``after_restart`` says the probe was taken right after a
    restart, so a problem a restart should have cured is taken as permanent.
    ``work_left`` (after an experiment) says whether anything else is still to run
    in this container: a restart that would clean up for nobody is not worth a
    share of the budget, nor an abort when the budget is spent.
    """

    outcome: str | None
    probe: Probe | None
    policy: Policy
    restarts_used: int = 0
    attempt: int = 1
    daemon_reachable: bool = True
    after_restart: bool = False
    work_left: bool = True

    def __post_init__(self) -> None:
        if self.outcome is not None and self.outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {self.outcome!r}")
        if self.attempt < 1 or self.restarts_used < 0:
            raise ValueError("attempt counts from 1 and restarts_used from 0")


@dataclass(frozen=True)
class Decision:
    """The action, why (one line for the journal and the user), and its side effects.

    ``restart`` is True when the runner must restart the container before
    doing anything else (always with a backoff and a fresh probe); ``prune``
    when the not-yet-run larger configurations must be recorded ``pruned``;
    ``remove`` when the container is suspect (a timed-out process may still run
    in it) and nothing is left to run there: it is removed at once rather than
    left holding the GPU while other backends run.
    """

    action: Action
    reason: str
    restart: bool = False
    prune: bool = False
    remove: bool = False

    @property
    def final(self) -> bool:
        """Whether the outcome just seen is recorded as the experiment's final record."""
        return self.action is not Action.RETRY


def _restart(situation: Situation, action: Action, why: str, *, prune: bool = False) -> Decision:
    """A decision needing a restart, or ABORT when the restart budget is spent.

    After an experiment with nothing else to run in its container, no restart is
    needed: the container is removed anyway, so the outcome is recorded and the
    run goes on (a retry still restarts: its own experiment is the work left).
    """
    if situation.outcome is not None and not situation.work_left and action is not Action.RETRY:
        return Decision(
            Action.CONTINUE,
            f"{why}; nothing left to run in this container",
            prune=prune,
            remove=True,
        )
    used, budget = situation.restarts_used, situation.policy.max_restarts
    if used >= budget:
        return Decision(
            Action.ABORT,
            f"{why}; restart budget spent ({used} of max_restarts {budget})",
            prune=prune,
        )
    return Decision(action, f"{why}; restart {used + 1} of {budget}", restart=True, prune=prune)


def _before(situation: Situation) -> Decision:
    """Judge the probe taken before an experiment runs."""
    probe = situation.probe
    if probe is None:
        return Decision(Action.CONTINUE, "not probed")
    if probe.error == "gpu_lost":
        return Decision(Action.ABORT, "probe: GPU lost (nvidia-smi exit 15)")
    if probe.error == "driver_not_loaded":
        if situation.after_restart:
            return Decision(Action.ABORT, "probe: NVIDIA driver not loaded, even after a restart")
        return _restart(situation, Action.RESTART_THEN_CONTINUE, "probe: NVIDIA driver not loaded")
    if probe.error == "container_died":
        return _restart(situation, Action.RESTART_THEN_CONTINUE, "probe: container is not running")
    if probe.error == "timeout":
        # an nvidia-smi that does not answer is the sign of a wedged GPU or driver: an
        # experiment started now would likely hang as well, and cost its whole timeout
        return _restart(
            situation,
            Action.RESTART_THEN_CONTINUE,
            "probe: nvidia-smi timed out (health.probe_timeout); GPU or driver hung?",
        )
    if probe.error is not None:
        # nvml_missing / failed: the probe cannot see the GPU, but the experiment
        # may still run (a CPU backend, a probe-less image); blocking every
        # experiment on an unusable probe would stop the campaign for nothing.
        return Decision(Action.CONTINUE, f"probe: {probe.error}; GPU memory unknown")
    pct, limit = probe.max_memory_used_pct, situation.policy.max_memory_used_pct
    if pct is None or math.isnan(pct):
        return Decision(Action.CONTINUE, "probe: GPU memory use unknown")
    base = probe.server_baseline_pct
    if base is not None and not math.isnan(base):
        # a server holds most of the memory by design: only growth since it was ready counts
        growth, allowed = pct - base, situation.policy.max_memory_growth_pct
        if growth > allowed:
            return _restart(
                situation,
                Action.RESTART_THEN_CONTINUE,
                f"probe: GPU memory {pct:g}% used, {growth:g} points over the {base:g}% right "
                f"after the server was ready > max_memory_growth_pct {allowed:g}",
            )
        return Decision(Action.CONTINUE, f"probe: GPU memory {pct:g}% used (server: {base:g}%)")
    if pct > limit:
        return _restart(
            situation,
            Action.RESTART_THEN_CONTINUE,
            f"probe: GPU memory {pct:g}% used > max_memory_used_pct {limit:g}%",
        )
    return Decision(Action.CONTINUE, f"probe: GPU memory {pct:g}% used")


def _after(situation: Situation, outcome: str) -> Decision:
    """Judge the outcome of an experiment attempt."""
    probe = situation.probe
    if probe is not None and probe.error == "gpu_lost":
        return Decision(Action.ABORT, f"{outcome}; probe: GPU lost (nvidia-smi exit 15)")
    if outcome == "ok":
        return Decision(Action.CONTINUE, "ok")
    if outcome == "failed":
        # The command itself failed in a healthy container: deterministic, so
        # neither a restart nor a retry would change it.
        return Decision(Action.CONTINUE, "failed; container kept")
    if outcome == "not_runnable":
        return Decision(Action.SKIP_BACKEND, "command not runnable (exit 126/127)")
    if outcome in RESTART_NO_RETRY:
        return _restart(
            situation,
            Action.RESTART_THEN_CONTINUE,
            f"{outcome}; not retried",
            prune=outcome == "gpu_oom",
        )
    # RETRYABLE
    attempt, retries = situation.attempt, situation.policy.retries
    if attempt <= retries:
        return _restart(situation, Action.RETRY, f"{outcome}; retry {attempt} of {retries}")
    return _restart(
        situation, Action.RESTART_THEN_CONTINUE, f"{outcome}; retries spent ({retries})"
    )


def decide(situation: Situation) -> Decision:
    """Decide the runner's next step; pure, so the whole policy is one test table.

    Precedence: a gone daemon aborts whatever else is true (nothing can be
    run or restarted); a lost GPU aborts; then the probe (before) or the
    outcome (after) picks the action; a restart needed once ``max_restarts``
    are used turns into ABORT.
    """
    if not situation.daemon_reachable:
        return Decision(Action.ABORT, "Docker daemon unreachable")
    if situation.outcome is None:
        return _before(situation)
    return _after(situation, situation.outcome)


def backoff_seconds(restart_backoff: float, restarts_used: int, *, cap: float = 3600.0) -> float:
    """Seconds to wait before the next restart: ``restart_backoff`` doubled per earlier restart.

    The first restart of a run waits ``restart_backoff``, the second twice
    that, and so on, giving a GPU that is slow to free its memory more time
    each round; ``cap`` keeps a large budget from sleeping for days.
    """
    if restart_backoff < 0 or restarts_used < 0:
        raise ValueError("restart_backoff and restarts_used must not be negative")
    if restarts_used >= 64:
        return min(cap, math.inf if restart_backoff else 0.0)
    return min(cap, restart_backoff * 2.0**restarts_used)
