"""``llem report``'s figure data from known records: points, intervals, the Pareto front."""

from __future__ import annotations

import math

import pytest

from llem_cli.results.report_data import (
    RunInput,
    build_report,
    energy_groups,
    pareto_front,
    run_facts,
)
from llem_cli.runs.record import Record

T_975_DF2 = 4.302652729911275  # Student t quantile, 97.5 %, 2 degrees of freedom
NAN = float("nan")


@pytest.mark.parametrize(
    ("points", "front"),
    [
        ([], []),
        ([(1.0, 10.0)], [0]),  # a single point is its own front
        ([(1.0, 10.0), (2.0, 5.0)], [0]),  # worse on both: dominated
        ([(1.0, 5.0), (2.0, 10.0)], [0, 1]),  # a trade-off: both
        ([(1.0, 10.0), (1.0, 10.0)], [0, 1]),  # equal points: neither is better
        ([(1.0, 10.0), (1.0, 5.0)], [0]),  # same energy, less throughput: dominated
        ([(1.0, 10.0), (2.0, 10.0)], [0]),  # same throughput, more energy: dominated
        ([(3.0, 30.0), (1.0, 10.0), (2.0, 20.0), (2.5, 15.0)], [0, 1, 2]),
        ([(None, 10.0), (2.0, 5.0)], [1]),  # None skipped, dominates nothing
        ([(1.0, NAN), (2.0, 5.0)], [1]),  # NaN skipped
        ([(1.0, math.inf), (2.0, 5.0)], [1]),  # an infinity is no measurement either
        ([(None, None)], []),
        ([(0.5, 1.0), (1.0, 4.0), (1.0, 4.0), (0.7, 2.0), (2.0, 3.0)], [0, 1, 2, 3]),
    ],
)
def test_pareto_front(points: list[tuple[float | None, float | None]], front: list[int]) -> None:
    assert pareto_front(points) == front


def rec(
    config: str,
    cycle: int,
    backend: str = "pytorch",
    status: str = "ok",
    *,
    energy: float | None = None,
    tokens: float | None = None,
    rate: float | None = None,
    duration: float | None = 10.0,
    params: dict | None = None,
    measurement: dict | None = None,
    **fields: object,
) -> Record:
    metrics = {}
    if tokens is not None:
        metrics["output_tokens"] = tokens
    if rate is not None:
        metrics["output_tokens_per_s"] = rate
    return Record(
        key=f"{config}-c{cycle}",
        config_id=config,
        cycle=cycle,
        backend=backend,
        service=backend,
        params=params if params is not None else {"batch_size": 8},
        status=status,
        energy_j=energy,
        duration_s=duration,
        metrics=metrics or None,
        measurement=measurement,
        **fields,  # type: ignore[arg-type]
    )


def run(*records: Record, run_id: str = "r1", telemetry: list | None = None) -> RunInput:
    return RunInput(run_id, "demo", list(records), telemetry or [])


def test_energy_per_token_and_throughput_with_t_intervals() -> None:
    # energy per token 0.10, 0.12, 0.14 J; rates 50, 60, 70 tokens/s
    data = build_report(
        [
            run(
                *(
                    rec("a", c, energy=e, tokens=100, rate=r)
                    for c, (e, r) in enumerate([(10, 50), (12, 60), (14, 70)], start=1)
                ),
                rec("a", 4, status="failed", energy=1000.0, tokens=100, rate=1.0),
            )
        ]
    )
    assert data.energy_axis.name == "energy_per_output_token_j"
    assert data.energy_axis.note is None and data.throughput_axis.note is None
    (point,) = data.points
    assert point.n_ok == 3 and point.statuses == {"ok": 3, "failed": 1}
    assert point.energy.mean == pytest.approx(0.12)
    half = T_975_DF2 * 0.02 / math.sqrt(3)
    assert point.energy.ci == pytest.approx((0.12 - half, 0.12 + half))
    assert point.throughput.mean == pytest.approx(60.0)
    half = T_975_DF2 * 10.0 / math.sqrt(3)
    low, high = point.throughput.ci or (None, None)
    assert low == pytest.approx(max(0.0, 60.0 - half)) and high == pytest.approx(60.0 + half)
    assert point.energy_j.mean == pytest.approx(12.0)
    assert data.front == [point]


def test_below_three_experiments_no_interval() -> None:
    data = build_report(
        [
            run(
                rec("a", 1, energy=10, tokens=100, rate=5),
                rec("a", 2, energy=12, tokens=100, rate=7),
            )
        ]
    )
    (point,) = data.points
    assert point.energy.mean == pytest.approx(0.11)
    assert point.energy.ci is None and point.energy.ci_note == "needs n >= 3"
    assert point.throughput.ci is None


def test_throughput_derived_from_tokens_and_duration_says_so() -> None:
    data = build_report(
        [
            run(
                rec("a", 1, energy=10, tokens=100, duration=4.0),
                rec("b", 1, energy=10, tokens=100, rate=30.0),
            )
        ]
    )
    a, b = data.points
    assert a.throughput.mean == pytest.approx(25.0) and a.throughput_derived == 1
    assert b.throughput.mean == pytest.approx(30.0) and b.throughput_derived == 0
    assert data.throughput_axis.note is not None
    assert "output_tokens / duration_s" in data.throughput_axis.note


def test_no_tokens_falls_back_to_energy_per_experiment_and_says_why() -> None:
    data = build_report(
        [
            run(
                *(
                    rec("a", c, energy=e, duration=d)
                    for c, (e, d) in enumerate([(10, 2.0), (20, 4.0), (30, 5.0)], 1)
                )
            )
        ]
    )
    assert data.energy_axis.name == "energy_j"
    assert "no ok experiment reports output_tokens" in (data.energy_axis.note or "")
    assert data.throughput_axis.name == "experiments_per_s"
    assert "1 / duration_s" in (data.throughput_axis.note or "")
    (point,) = data.points
    assert point.energy.mean == pytest.approx(20.0)
    assert point.throughput.mean == pytest.approx((0.5 + 0.25 + 0.2) / 3)


def test_configuration_without_energy_is_left_out_with_its_reason() -> None:
    data = build_report(
        [
            run(
                rec("a", 1, energy=10, tokens=100, rate=5),
                rec(
                    "b",
                    1,
                    tokens=100,
                    rate=9,
                    measurement={"reasons": {"energy_j": "no NVML on this host"}},
                ),
                rec("c", 1, status="gpu_oom"),
            )
        ]
    )
    assert [p.config_id for p in data.plotted] == ["a"]
    reasons = {p.config_id: why for p, why in data.left_out}
    assert reasons == {
        "b": "energy: energy not measured (no NVML on this host)",
        "c": "no ok experiment",
    }
    assert [p.config_id for p in data.front] == ["a"]


def test_front_over_configurations_and_several_runs() -> None:
    # energy per token: a 0.1, b 0.2, c 0.3 J; throughput: a 10, b 30, c 20 tokens/s
    first = run(
        rec("a", 1, energy=10, tokens=100, rate=10),
        rec("b", 1, energy=20, tokens=100, rate=30),
        run_id="r1",
    )
    second = run(
        rec("c", 1, "vllm", energy=30, tokens=100, rate=20),
        rec("a", 1, energy=5, tokens=100, rate=5),
        run_id="r2",
    )
    data = build_report([first, second])
    assert [p.point_id for p in data.points] == ["r1/a", "r1/b", "r2/c", "r2/a"]
    # r2/a (0.05 J, 5/s) is on the front too: least energy of all; r2/c is dominated by r1/b
    assert [p.point_id for p in data.front] == ["r2/a", "r1/a", "r1/b"]
    assert data.points[0].label(with_run=True) == "r1: pytorch batch_size=8"


def test_energy_groups_by_backend_power_limit_and_gpu() -> None:
    data = build_report(
        [
            run(
                rec("a", 1, energy=10, tokens=100, params={"power_limit_w": 300}),
                rec("b", 1, energy=10, tokens=100, params={"power_limit_w": 500}),
                rec("c", 1, "vllm", energy=10, tokens=100, params={}, gpu_uuids=["GPU-1"], lane=0),
                rec("d", 1, energy=10, tokens=100, params={"power_limit_w": 300}),
            )
        ]
    )
    groups = [
        (name, [p.config_id for p in members]) for name, members in energy_groups(data.points)
    ]
    assert groups == [
        ("pytorch · 300 W", ["a", "d"]),
        ("pytorch · 500 W", ["b"]),
        ("vllm · GPU GPU-1", ["c"]),
    ]


def test_run_facts_methods_flags_reasons_thermal_idle_and_gpus() -> None:
    records = [
        rec(
            "a",
            1,
            energy=10,
            measurement={
                "method": "counter",
                "flags": ["short_window"],
                "thermal": {"waited_s": 12.5, "timed_out": False},
            },
        ),
        rec(
            "a",
            2,
            energy=11,
            measurement={
                "method": "power_sampling",
                "flags": ["short_window", "thermal_timeout"],
                "thermal": {"waited_s": 600, "timed_out": True},
            },
        ),
        rec("a", 3, measurement={"reasons": {"energy_j": "no NVML"}, "simulated": True}),
        rec("a", 4, status="failed", measurement={"reasons": {"energy_j": "no NVML"}}),
    ]
    telemetry = [
        {
            "type": "telemetry",
            "gpus": [0],
            "note": "measuring host GPUs [0] with NVML",
            "gpu_name": "NVIDIA H100",
            "driver_version": "550.54",
        },
        {"type": "telemetry", "idle_power_w": {"0": 61.5}, "reasons": {}, "note": "idle"},
    ]
    facts = run_facts(run(*records, telemetry=telemetry))
    assert facts.methods == {"counter": 1, "none": 1, "power_sampling": 1}
    assert facts.flags == {"short_window": 2, "thermal_timeout": 1}
    assert facts.null_reasons == {("energy_j", "no NVML"): 2}
    assert (facts.thermal_waits, facts.thermal_waited_s, facts.thermal_timeouts) == (2, 612.5, 1)
    assert facts.idle_baseline_w == {"0": 61.5}
    assert facts.gpus == [
        "measuring host GPUs [0] with NVML; gpu_name: NVIDIA H100; driver_version: 550.54"
    ]
    assert facts.simulated == 1
    assert build_report([run(*records)]).simulated


def test_no_ok_experiment() -> None:
    data = build_report([run(rec("a", 1, status="failed"), rec("b", 1, status="timeout"))])
    assert not data.has_ok and data.plotted == [] and data.front == []
    assert all(why == "no ok experiment" for _, why in data.left_out)
