"""Phases (issue 14): a client's ``llem_phases`` measured against a window's energy time series.

Pure tables on hand-computed series (telemetry/phases.py, telemetry/series.py), then the record's
side (runner/records.py ``with_phases``, ``record_from_outcome``); the same on the stand-in NVML
is in test_phases_nvml.py.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from llem_cli.campaign.expansion import Config
from llem_cli.docker.outcome import ExecOutcome
from llem_cli.runner.measuring import PHASE_SOURCE, record_fields, without_window_figures
from llem_cli.runner.records import record_from_outcome
from llem_cli.runner.schedule import Experiment
from llem_cli.runs.record import RECORD_FIELDS, Record
from llem_cli.telemetry.measurement import GpuMeasurement, Measurement
from llem_cli.telemetry.phases import PhaseSource, measure_phases, parse_phases
from llem_cli.telemetry.series import Curve, EnergySeries, select_curves

# A window from t=10 to t=13 (Unix seconds). GPU 0 draws 100 W, then 200 W, then 300 W (one
# second each); GPU 1 a steady 50 W. Cumulative joules at each sample, one sample a second.
WINDOW = (10.0, 13.0)
T = [10.0, 11.0, 12.0, 13.0]
GPU0 = (T, [0.0, 100.0, 300.0, 600.0])
GPU1 = (T, [0.0, 50.0, 100.0, 150.0])
ONE = {0: GPU0}
TWO = {0: GPU0, 1: GPU1}


def figures(energy: float, duration: float, **more: Any) -> dict[str, Any]:
    return {"energy_j": energy, "duration_s": duration, "avg_power_w": energy / duration, **more}


# (case, curves, the phase as written, its figures or None, the reason's expected text)
TABLE: list[tuple[str, Any, Any, dict[str, Any] | None, str | None]] = [
    # inside: E(12.5) - E(10.5) = (300 + 150) - 50, interpolated linearly between samples
    ("inside", ONE, [10.5, 12.5], figures(400.0, 2.0), None),
    ("on samples", ONE, [11, 12], figures(200.0, 1.0), None),
    ("the whole window", ONE, [10, 13], figures(600.0, 3.0), None),
    ("an object", ONE, {"start": 11, "end": 13, "extra": "ignored"}, figures(500.0, 2.0), None),
    (
        "with tokens",
        ONE,
        {"start": 11, "end": 13, "output_tokens": 50},
        figures(500.0, 2.0, output_tokens=50, energy_per_output_token_j=10.0),
        None,
    ),
    # several GPUs: the sum, each interpolated on its own curve: 400 + (125 - 25)
    ("two GPUs", TWO, [10.5, 12.5], figures(500.0, 2.0), None),
    (
        "partly before",
        ONE,
        [9.5, 11],
        None,
        "phase 'p' [9.500, 11.000] is partly outside the window [10.000, 13.000]",
    ),
    (
        "partly after",
        ONE,
        [12, 13.5],
        None,
        "phase 'p' [12.000, 13.500] is partly outside the window [10.000, 13.000]",
    ),
    (
        "after",
        ONE,
        [14, 15],
        None,
        "phase 'p' [14.000, 15.000] is outside the window [10.000, 13.000]",
    ),
    ("ends as it opens", ONE, [9, 10], None, "is outside the window"),
    (
        "between two samples",
        ONE,
        [11.2, 11.8],
        None,
        "phase 'p' [11.200, 11.800] covers 0 sample(s) of GPU 0; at least 2 are needed",
    ),
    ("one sample", ONE, [10.5, 11.5], None, "covers 1 sample(s) of GPU 0"),
    (
        "a GPU whose readings stopped",
        {0: GPU0, 1: ([10.0, 11.0, 12.0], [0.0, 50.0, 100.0])},
        [11, 12.5],
        None,
        "phase 'p' [11.000, 12.500]: the readings of GPU 1 cover [10.000, 12.000] only",
    ),
    ("end before start", ONE, [12, 11], None, "phase 'p' ends before it starts (11.000 < 12.000)"),
    ("zero length", ONE, [11, 11], None, "phase 'p' has zero length (starts and ends at 11.000)"),
    ("a text", ONE, ["11", 12], None, "phase 'p' start is a string ('11'), not a number"),
    ("a bool", ONE, [11, True], None, "phase 'p' end is true, not a number of seconds"),
    ("null", ONE, [None, 12], None, "phase 'p' start is null, not a number of seconds"),
    ("NaN", ONE, [math.nan, 12], None, "phase 'p' start is nan, not a number of seconds"),
    ("infinite", ONE, [11, math.inf], None, "phase 'p' end is inf, not a number of seconds"),
    ("three values", ONE, [10, 11, 12], None, "phase 'p' is a list of 3 values, not [start, end]"),
    ("one value", ONE, [10], None, "is a list of 1 values"),
    ("a number", ONE, 11, None, "phase 'p' is 11, not [start, end] or {start, end}"),
    ("a text phase", ONE, "soon", None, "phase 'p' is a string ('soon'), not [start, end]"),
    ("no end", ONE, {"start": 11}, None, "phase 'p' has no end (an object needs start and end)"),
    ("no ends", ONE, {}, None, "phase 'p' has no start or end"),
]


@pytest.mark.parametrize(
    ("curves", "phase", "expected", "why"), [row[1:] for row in TABLE], ids=[r[0] for r in TABLE]
)
def test_a_phase(curves: Any, phase: Any, expected: dict | None, why: str | None) -> None:
    phases, reasons = measure_phases({"p": phase}, curves, WINDOW)
    assert phases is not None
    if expected is None:
        assert phases == {"p": None}
        assert why is not None and why in reasons["phases.p"], reasons
        assert set(reasons) == {"phases.p"}
    else:
        assert phases["p"] == pytest.approx(expected)
        assert list(phases["p"]) == list(expected)  # and in this order
        assert reasons == {}


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ([[10, 11]], "llem_phases is a list, not an object of phases"),
        ("load", "llem_phases is a string ('load'), not an object of phases"),
        (None, "llem_phases is null, not an object of phases"),
        (3, "llem_phases is 3, not an object of phases"),
    ],
)
def test_phases_that_are_no_object_are_null_with_the_reason(raw: Any, why: str) -> None:
    assert measure_phases(raw, ONE, WINDOW) == (None, {"phases": why})
    assert parse_phases(raw) == (None, why)


def test_phases_keep_their_order_and_each_its_own_reason() -> None:
    raw = {"load": [10, 11], "warmup": [12, 11], "generate": [11, 13], "late": [12, 20]}
    phases, reasons = measure_phases(raw, TWO, WINDOW)
    assert phases == {
        "load": figures(150.0, 1.0),
        "warmup": None,
        "generate": figures(600.0, 2.0),
        "late": None,
    }
    assert list(phases) == ["load", "warmup", "generate", "late"]
    assert set(reasons) == {"phases.warmup", "phases.late"}
    assert measure_phases({}, TWO, WINDOW) == ({}, {})


def test_bad_token_counts_keep_the_energy() -> None:
    raw = {
        "zero": {"start": 11, "end": 12, "output_tokens": 0},
        "text": {"start": 11, "end": 12, "output_tokens": "many"},
        "negative": {"start": 11, "end": 12, "output_tokens": -3},
        "null": {"start": 11, "end": 12, "output_tokens": None},
        "half": {"start": 11, "end": 12, "output_tokens": 400.0},
    }
    phases, reasons = measure_phases(raw, ONE, WINDOW)
    assert phases is not None
    for name in raw:
        assert phases[name] is not None and phases[name]["energy_j"] == 200.0, name
    assert phases["zero"]["output_tokens"] == 0
    assert phases["zero"]["energy_per_output_token_j"] is None
    assert reasons["phases.zero.energy_per_output_token_j"] == "0 output tokens"
    for name in ("text", "negative", "null"):
        assert phases[name]["output_tokens"] is None
        assert phases[name]["energy_per_output_token_j"] is None
    assert reasons["phases.text.output_tokens"] == "output_tokens is a string ('many'), not a count"
    assert reasons["phases.negative.output_tokens"] == "output_tokens is -3, not a count"
    assert reasons["phases.null.output_tokens"] == "output_tokens is null, not a count"
    assert phases["half"]["output_tokens"] == 400  # a whole float is a count
    assert phases["half"]["energy_per_output_token_j"] == 0.5
    assert "output_tokens" not in measure_phases({"p": [11, 12]}, ONE, WINDOW)[0]["p"]


def test_without_curves_every_phase_is_null_with_the_window_reason() -> None:
    raw = {"load": [10, 11], "bad": [2, 1]}
    phases, reasons = measure_phases(raw, None, None, unavailable="GPU 0: not supported")
    assert phases == {"load": None, "bad": None}
    assert reasons["phases.load"] == "GPU 0: not supported"
    assert reasons["phases.bad"].startswith("phase 'bad' ends before it starts")  # its own


def test_a_large_series_with_a_busy_stretch() -> None:
    # 10 Hz over 100 s: 100 W, with 300 W from t=40 to t=60 (a sample falls on each edge)
    times = [i / 10 for i in range(1001)]
    cumulative, energy = [], 0.0
    for i, t in enumerate(times):
        if i:
            watts = 300.0 if 40 < t <= 60 else 100.0
            energy += watts * 0.1
        cumulative.append(energy)
    phases, _ = measure_phases(
        {"busy": [40, 60], "around": [35.05, 65.05]}, {0: (times, cumulative)}, (0.0, 100.0)
    )
    assert phases is not None
    assert phases["busy"]["energy_j"] == pytest.approx(300 * 20)
    assert phases["around"]["energy_j"] == pytest.approx(300 * 20 + 100 * 10)


# ---- the bounded series -------------------------------------------------------------------------


def test_a_curve_halves_its_resolution_when_full_and_keeps_its_ends() -> None:
    curve = Curve(max_points=10)
    for i in range(1000):  # 10 Hz for 100 s, 100 W
        curve.add(i / 10, i * 10.0)
    times, joules = curve.points()
    assert len(times) <= 11  # at most max_points stored, and the latest sample
    assert times[0] == 0.0 and times[-1] == pytest.approx(99.9)
    assert all(j == pytest.approx(t * 100) for t, j in zip(times, joules, strict=True))
    assert list(times) == sorted(times)
    assert curve.samples == 1000 and curve.stride >= 64
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert max(gaps) <= 2 * min(gaps) + 1e-9  # still about even
    assert curve.spacing_s() == pytest.approx(99.9 / (len(times) - 1))


def test_a_curve_never_goes_back_in_time() -> None:
    curve = Curve()
    for t, j in ((5.0, 0.0), (6.0, 10.0), (5.5, 20.0), (7.0, 30.0)):  # the clock stepped back
        curve.add(t, j)
    assert list(curve.points()[0]) == [5.0, 6.0, 6.0, 7.0]
    phases, _ = measure_phases({"p": [5, 7]}, {0: curve.points()}, (5.0, 7.0))
    assert phases == {"p": figures(30.0, 2.0)}


def test_curves_follow_each_gpus_method_and_all_gpus_are_needed() -> None:
    series = EnergySeries()
    for t in (10.0, 11.0):
        series.add_counter(0, t, (t - 10) * 100)
        series.add_sampled(0, t, (t - 10) * 90)
        series.add_sampled(1, t, (t - 10) * 50)
    curves, why = select_curves(series, {0: "counter", 1: "power_sampling"})
    assert why is None and curves is not None
    assert list(curves[0][1]) == [0.0, 100.0] and list(curves[1][1]) == [0.0, 50.0]
    curves, why = select_curves(series, {0: "power_sampling", 1: "counter"})
    assert curves is None and why == "GPU 1: no energy readings over time (counter)"
    assert select_curves(None, {0: "counter"}) == (None, "no energy time series for this window")


# ---- from a measurement to the record -----------------------------------------------------------


def measurement(*, energy: bool = True) -> Measurement:
    """A window 10 -> 13 s on GPUs 0 (counter) and 1 (sampled power) with the curves above."""
    series = EnergySeries()
    for t, j0, j1 in zip(T, GPU0[1], GPU1[1], strict=True):
        series.add_counter(0, t, j0)
        series.add_sampled(0, t, j0 * 2)  # a different reading: the counter must be the one used
        series.add_sampled(1, t, j1)
    m = Measurement("k#1", [0, 1], 10.0, 13.0, 3.0, series=series)
    if energy:
        m.energy_j, m.method, m.avg_power_w = 750.0, "power_sampling", 250.0
        m.per_gpu = {
            0: GpuMeasurement(0, energy_j=600.0, method="counter"),
            1: GpuMeasurement(1, energy_j=150.0, method="power_sampling"),
        }
    else:
        m.reasons["energy_j"] = "GPU 1: power reading: not supported"
        m.per_gpu = {0: GpuMeasurement(0, energy_j=600.0, method="counter"), 1: GpuMeasurement(1)}
    return m


def test_the_series_is_never_serialized() -> None:
    data = measurement().to_dict()
    assert "series" not in data
    json.dumps(data)
    assert "series" not in repr(measurement())


def test_a_phase_source_uses_the_window_and_its_methods() -> None:
    phases, reasons, note = PhaseSource(measurement()).measure({"p": [10.5, 12.5]})
    assert phases == {"p": figures(500.0, 2.0)} and reasons == {}
    assert note is not None and "interpolated linearly" in note and "1.000 s" in note
    phases, reasons, note = PhaseSource(measurement(energy=False)).measure({"p": [10.5, 12.5]})
    assert phases == {"p": None} and note is None
    assert reasons == {"phases.p": "GPU 1: power reading: not supported"}
    assert PhaseSource().measure({"p": [1, 2]})[1] == {"phases.p": "no host measurement"}
    assert PhaseSource(measurement(), unavailable="cut").measure({"p": [11, 12]})[1] == {
        "phases.p": "cut"
    }


def experiment() -> Experiment:
    config = Config(backend="client", params={}, config_id="abc123abc123", origin=("grid",))
    return Experiment(config=config, cycle=1, service="client")


def build(
    tmp_path: Path, report: dict[str, Any] | None, measured: Any, status: str = "ok"
) -> Record:
    if report is not None:
        (tmp_path / "result.json").write_text(json.dumps(report))
    now = datetime.now(UTC)
    outcome = ExecOutcome(status=status, exit_code=0, started_at=now, ended_at=now, duration_s=3.0)
    return record_from_outcome(
        experiment(),
        outcome,
        attempts=1,
        restarts_before=0,
        experiment_dir=tmp_path,
        measured=measured,
    )


def test_the_record_gets_its_phases_right_after_server_id(tmp_path: Path) -> None:
    report = {
        "tokens": 99,
        "llem_phases": {
            "load": [10.0, 11.0],
            "generate": {"start": 11.0, "end": 13.0, "output_tokens": 100},
            "late": [12.0, 14.0],
        },
    }
    measured = record_fields(measurement(), None, includes_model_load=True)
    assert PHASE_SOURCE in measured
    record = build(tmp_path, report, measured)
    assert record.phases == {
        "load": figures(150.0, 1.0),
        "generate": figures(600.0, 2.0, output_tokens=100, energy_per_output_token_j=6.0),
        "late": None,
    }
    assert record.measurement is not None
    assert record.measurement["reasons"]["phases.late"] == (
        "phase 'late' [12.000, 14.000] is partly outside the window [10.000, 13.000]"
    )
    assert "interpolated linearly" in record.measurement["computed"]["phases"]
    assert record.metrics is not None and record.metrics["llem_phases"] == report["llem_phases"]
    assert RECORD_FIELDS.index("phases") == RECORD_FIELDS.index("server_id") + 1
    data = record.to_json()
    assert PHASE_SOURCE not in data and PHASE_SOURCE not in (data["measurement"] or {})
    assert Record.from_json(json.loads(json.dumps(data))) == record
    assert PHASE_SOURCE in measured  # the caller's dict is left as it was


def test_no_phases_reported_means_null_without_a_reason(tmp_path: Path) -> None:
    measured = record_fields(measurement(), None)
    record = build(tmp_path, {"tokens": 1}, measured)
    assert record.phases is None
    assert record.measurement is not None
    assert not any(k.startswith("phases") for k in record.measurement["reasons"])
    no_report = tmp_path / "no_report"
    no_report.mkdir()
    assert build(no_report, None, measured).phases is None


def test_malformed_phases_in_the_record_never_crash(tmp_path: Path) -> None:
    record = build(tmp_path, {"llem_phases": [[10, 11]]}, record_fields(measurement(), None))
    assert record.phases is None
    assert record.measurement["reasons"]["phases"] == (  # type: ignore[index]
        "llem_phases is a list, not an object of phases"
    )


def test_a_window_cut_by_a_timeout_measures_no_phase(tmp_path: Path) -> None:
    measured = without_window_figures(
        record_fields(measurement(), None), "the window holds only part of it", "window_cut"
    )
    record = build(tmp_path, {"llem_phases": {"load": [10, 11]}}, measured, status="timeout")
    assert record.phases == {"load": None}
    assert record.measurement["reasons"]["phases.load"] == "the window holds only part of it"  # type: ignore[index]
    assert record.energy_j is None


def test_without_a_measurement_each_phase_says_so(tmp_path: Path) -> None:
    record = build(tmp_path, {"llem_phases": {"load": [10, 11]}}, None)
    assert record.phases == {"load": None}
    assert record.measurement == {"reasons": {"phases.load": "no host measurement"}}
    # a MIG slice: the loop measures nothing and nulls the window's figures
    measured = without_window_figures(record_fields(None, None), "a MIG device", "mig_device")
    record = build(tmp_path, {"llem_phases": {"load": [10, 11]}}, measured)
    assert record.measurement["reasons"]["phases.load"] == "a MIG device"  # type: ignore[index]
