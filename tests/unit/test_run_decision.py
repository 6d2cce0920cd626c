"""The runner's decision, as a table: every outcome and probe against the budget edges."""

from __future__ import annotations

import itertools

import pytest

from llem_cli.runner.decision import (
    OUTCOMES,
    Action,
    Decision,
    Policy,
    Probe,
    Situation,
    backoff_seconds,
    decide,
)

C, R, RT, SK, AB = (
    Action.CONTINUE,
    Action.RESTART_THEN_CONTINUE,
    Action.RETRY,
    Action.SKIP_BACKEND,
    Action.ABORT,
)
POLICY = Policy(max_memory_used_pct=90, max_restarts=3, retries=1)
NO_RESTARTS = Policy(max_memory_used_pct=90, max_restarts=0, retries=1)
NO_RETRIES = Policy(max_memory_used_pct=90, max_restarts=3, retries=0)
TWO_RETRIES = Policy(max_memory_used_pct=90, max_restarts=3, retries=2)
HEALTHY = Probe(max_memory_used_pct=10)


def S(
    outcome=None, probe=None, policy=POLICY, used=0, attempt=1, daemon=True, after=False, left=True
):
    return Situation(
        outcome=outcome,
        probe=probe,
        policy=policy,
        restarts_used=used,
        attempt=attempt,
        daemon_reachable=daemon,
        after_restart=after,
        work_left=left,
    )


# (id, situation, action, restart, prune)
TABLE = [
    # --- before the experiment: the probe ---------------------------------------------
    ("before-no-probe", S(), C, False, False),
    ("before-healthy", S(probe=HEALTHY), C, False, False),
    ("before-at-threshold", S(probe=Probe(max_memory_used_pct=90)), C, False, False),
    ("before-over-threshold", S(probe=Probe(max_memory_used_pct=90.5)), R, True, False),
    ("before-over-last-restart", S(probe=Probe(max_memory_used_pct=99), used=2), R, True, False),
    ("before-over-budget-spent", S(probe=Probe(max_memory_used_pct=99), used=3), AB, False, False),
    ("before-over-budget-over", S(probe=Probe(max_memory_used_pct=99), used=7), AB, False, False),
    (
        "before-over-max-restarts-0",
        S(probe=Probe(max_memory_used_pct=99), policy=NO_RESTARTS),
        AB,
        False,
        False,
    ),
    (
        "before-over-after-restart",
        S(probe=Probe(max_memory_used_pct=99), used=1, after=True),
        R,
        True,
        False,
    ),
    ("before-memory-unknown", S(probe=Probe(max_memory_used_pct=None)), C, False, False),
    # a serving backend: growth over the level right after ready (default 5 points) counts
    (
        "before-server-holds-most-memory",
        S(probe=Probe(max_memory_used_pct=95, server_baseline_pct=92)),
        C,
        False,
        False,
    ),
    (
        "before-server-grew-at-limit",
        S(probe=Probe(max_memory_used_pct=97, server_baseline_pct=92)),
        C,
        False,
        False,
    ),
    (
        "before-server-grew-over",
        S(probe=Probe(max_memory_used_pct=97.5, server_baseline_pct=92)),
        R,
        True,
        False,
    ),
    (
        "before-server-grew-budget-spent",
        S(probe=Probe(max_memory_used_pct=99, server_baseline_pct=90), used=3),
        AB,
        False,
        False,
    ),
    (
        "before-server-baseline-nan",
        S(probe=Probe(max_memory_used_pct=95, server_baseline_pct=float("nan"))),
        R,
        True,
        False,
    ),
    ("before-memory-nan", S(probe=Probe(max_memory_used_pct=float("nan"))), C, False, False),
    ("before-gpu-lost", S(probe=Probe(error="gpu_lost")), AB, False, False),
    ("before-gpu-lost-budget-left", S(probe=Probe(error="gpu_lost"), used=0), AB, False, False),
    ("before-driver-not-loaded", S(probe=Probe(error="driver_not_loaded")), R, True, False),
    (
        "before-driver-not-loaded-after-restart",
        S(probe=Probe(error="driver_not_loaded"), used=1, after=True),
        AB,
        False,
        False,
    ),
    (
        "before-driver-not-loaded-budget-spent",
        S(probe=Probe(error="driver_not_loaded"), used=3),
        AB,
        False,
        False,
    ),
    ("before-probe-container-died", S(probe=Probe(error="container_died")), R, True, False),
    (
        "before-probe-container-died-budget-spent",
        S(probe=Probe(error="container_died"), used=3),
        AB,
        False,
        False,
    ),
    ("before-probe-timeout", S(probe=Probe(error="timeout")), R, True, False),
    (
        "before-probe-timeout-after-restart",
        S(probe=Probe(error="timeout"), used=1, after=True),
        R,
        True,
        False,
    ),
    ("before-probe-timeout-spent", S(probe=Probe(error="timeout"), used=3), AB, False, False),
    ("before-nvml-missing", S(probe=Probe(error="nvml_missing")), C, False, False),
    ("before-probe-failed", S(probe=Probe(error="failed")), C, False, False),
    ("before-daemon-gone", S(probe=HEALTHY, daemon=False), AB, False, False),
    ("before-daemon-gone-no-probe", S(daemon=False), AB, False, False),
    # --- after the experiment: the outcome ----------------------------------------------
    ("ok", S("ok"), C, False, False),
    ("ok-budget-spent", S("ok", used=3), C, False, False),
    ("ok-probe-over-threshold-ignored", S("ok", Probe(max_memory_used_pct=99)), C, False, False),
    ("ok-daemon-gone", S("ok", daemon=False), AB, False, False),
    ("failed", S("failed"), C, False, False),
    ("failed-budget-spent", S("failed", used=3), C, False, False),
    ("failed-retries-left-not-retried", S("failed", policy=TWO_RETRIES), C, False, False),
    ("failed-probe-gpu-lost", S("failed", Probe(error="gpu_lost")), AB, False, False),
    ("not-runnable", S("not_runnable"), SK, False, False),
    ("not-runnable-budget-spent", S("not_runnable", used=3), SK, False, False),
    ("gpu-oom", S("gpu_oom"), R, True, True),
    ("gpu-oom-last-restart", S("gpu_oom", used=2), R, True, True),
    ("gpu-oom-budget-spent", S("gpu_oom", used=3), AB, False, True),
    ("gpu-oom-retries-left-not-retried", S("gpu_oom", policy=TWO_RETRIES), R, True, True),
    ("oom-killed", S("oom_killed"), R, True, False),
    ("oom-killed-budget-spent", S("oom_killed", used=3), AB, False, False),
    ("oom-killed-max-restarts-0", S("oom_killed", policy=NO_RESTARTS), AB, False, False),
    ("timeout-retry", S("timeout", attempt=1), RT, True, False),
    ("timeout-retry-last-restart", S("timeout", used=2), RT, True, False),
    ("timeout-retry-budget-spent", S("timeout", used=3), AB, False, False),
    ("timeout-retries-spent", S("timeout", attempt=2), R, True, False),
    ("timeout-retries-spent-budget-spent", S("timeout", attempt=2, used=3), AB, False, False),
    ("timeout-no-retries", S("timeout", policy=NO_RETRIES), R, True, False),
    ("timeout-second-of-two-retries", S("timeout", policy=TWO_RETRIES, attempt=2), RT, True, False),
    ("timeout-third-of-two-retries", S("timeout", policy=TWO_RETRIES, attempt=3), R, True, False),
    ("timeout-max-restarts-0", S("timeout", policy=NO_RESTARTS), AB, False, False),
    ("container-died-retry", S("container_died"), RT, True, False),
    ("container-died-retry-budget-spent", S("container_died", used=3), AB, False, False),
    ("container-died-retries-spent", S("container_died", attempt=2), R, True, False),
    ("container-died-no-retries", S("container_died", policy=NO_RETRIES), R, True, False),
    (
        "container-died-retries-spent-budget-spent",
        S("container_died", attempt=2, used=3),
        AB,
        False,
        False,
    ),
    ("container-died-daemon-gone", S("container_died", daemon=False), AB, False, False),
    ("container-died-gpu-lost", S("container_died", Probe(error="gpu_lost")), AB, False, False),
    ("gpu-oom-daemon-gone", S("gpu_oom", daemon=False), AB, False, False),
    # --- nothing left to run in the container: no restart needed, so no abort either ----
    ("gpu-oom-nothing-left", S("gpu_oom", left=False), C, False, True),
    ("gpu-oom-nothing-left-budget-spent", S("gpu_oom", used=3, left=False), C, False, True),
    ("oom-killed-nothing-left", S("oom_killed", policy=NO_RESTARTS, left=False), C, False, False),
    ("timeout-retries-spent-nothing-left", S("timeout", attempt=2, left=False), C, False, False),
    # a retry's work is its own experiment: it still restarts
    ("timeout-retry-nothing-else-left", S("timeout", left=False), RT, True, False),
    ("gpu-lost-nothing-left", S("ok", Probe(error="gpu_lost"), left=False), AB, False, False),
]


@pytest.mark.parametrize(
    ("situation", "action", "restart", "prune"),
    [row[1:] for row in TABLE],
    ids=[row[0] for row in TABLE],
)
def test_decision_table(situation, action, restart, prune):
    decision = decide(situation)
    assert (decision.action, decision.restart, decision.prune) == (action, restart, prune)
    assert decision.reason


def test_table_covers_every_outcome_and_probe_error():
    outcomes = {row[1].outcome for row in TABLE}
    assert outcomes == OUTCOMES | {None}
    errors = {row[1].probe.error for row in TABLE if row[1].probe is not None}
    assert errors == {None, "gpu_lost", "driver_not_loaded", "nvml_missing", "failed"} | {
        "container_died",
        "timeout",
    }


GRID = list(
    itertools.product(
        sorted(OUTCOMES | {"before-over"}), [0, 1, 2, 3, 4], [0, 1, 3], [1, 2, 3], [0, 1, 2]
    )
)


def test_invariants_over_the_whole_grid():
    for case in GRID:
        _check_invariants(*case)


def _check_invariants(outcome, used, max_restarts, attempt, retries):
    policy = Policy(max_memory_used_pct=90, max_restarts=max_restarts, retries=retries)
    if outcome == "before-over":
        situation = S(None, Probe(max_memory_used_pct=95), policy, used, attempt)
    else:
        situation = S(outcome, None, policy, used, attempt)
    decision = decide(situation)
    case = (outcome, used, max_restarts, attempt, retries, decision)
    # A restart is asked for only by the two actions that restart, and only within budget.
    assert decision.restart == (decision.action in (R, RT)), case
    if decision.restart:
        assert used < max_restarts, case
    # Retries happen only for suspect containers, and only while retries remain.
    if decision.action is RT:
        assert outcome in ("timeout", "container_died"), case
        assert attempt <= retries, case
    # Whatever needs a restart aborts once the budget is spent.
    needs_restart = outcome in ("before-over", "gpu_oom", "oom_killed", "timeout", "container_died")
    if needs_restart and used >= max_restarts:
        assert decision.action is AB, case
        assert "budget spent" in decision.reason, case
    if not needs_restart:
        assert decision.action in (C, SK), case
    assert decision.prune == (outcome == "gpu_oom"), case


def test_reasons_carry_the_numbers():
    over = decide(S(probe=Probe(max_memory_used_pct=95.5), used=1))
    assert over.reason == "probe: GPU memory 95.5% used > max_memory_used_pct 90%; restart 2 of 3"
    spent = decide(S("timeout", used=3))
    assert spent.reason == "timeout; retry 1 of 1; restart budget spent (3 of max_restarts 3)"
    assert decide(S("container_died", attempt=2)).reason == (
        "container_died; retries spent (1); restart 1 of 3"
    )
    assert "15" in decide(S(probe=Probe(error="gpu_lost"))).reason


def test_only_retry_is_not_final():
    assert not Decision(RT, "x", restart=True).final
    for action in (C, R, SK, AB):
        assert Decision(action, "x").final


@pytest.mark.parametrize(
    "kwargs",
    [
        {"outcome": "exploded", "probe": None, "policy": POLICY},
        {"outcome": None, "probe": None, "policy": POLICY, "attempt": 0},
        {"outcome": None, "probe": None, "policy": POLICY, "restarts_used": -1},
    ],
    ids=["unknown-outcome", "attempt-0", "negative-restarts"],
)
def test_bad_situations_are_refused(kwargs):
    with pytest.raises(ValueError):
        Situation(**kwargs)


def test_unknown_probe_error_is_refused():
    with pytest.raises(ValueError):
        Probe(error="on_fire")


@pytest.mark.parametrize(
    ("base", "used", "expected"),
    [(5, 0, 5), (5, 1, 10), (5, 2, 20), (5, 3, 40), (0, 5, 0), (0.5, 1, 1.0), (5, 20, 3600)],
    ids=["first", "second", "third", "fourth", "zero-base", "fractional", "capped"],
)
def test_backoff_doubles(base, used, expected):
    assert backoff_seconds(base, used) == expected


def test_backoff_huge_count_is_capped_not_overflowing():
    assert backoff_seconds(5, 5000) == 3600
    assert backoff_seconds(5, 5000, cap=60) == 60
    assert backoff_seconds(0, 5000) == 0


@pytest.mark.parametrize(("base", "used"), [(-1, 0), (5, -1)])
def test_backoff_refuses_negatives(base, used):
    with pytest.raises(ValueError):
        backoff_seconds(base, used)
