"""Phases measured by llem's own EnergyMonitor on the stand-in NVML (the real pynvml binding).

GPU 0 of the stub draws 100 W and, during a busy period known in advance (``gpu0.busy_file``),
250 W more; GPU 1 a steady 50 W. A window of about 1.5 s at the default sampling interval holds
the busy period; the phases the script names afterwards (as a client would in ``llem_phases``)
must come out as ``busy power x overlap + idle power x duration``. Where a phase's ends lie in
a stretch of constant power, linear interpolation of the counter is exact, so the tolerance is
the stub's whole-mJ truncation and the time between a sample's clock reading and its NVML call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llem_testkit.nvml_stub import NOT_SUPPORTED, Stub

IDLE_W = {0: 100.0, 1: 50.0}
BUSY_W = 250.0

# {interval}/{max_points}: the monitor's sampling; the busy period starts 0.3 s after the
# window opens and lasts 0.6 s; the phases are named after the window, as a report's would be.
SCRIPT = """
from llem_cli.telemetry import EnergyMonitor
from llem_cli.telemetry.phases import PhaseSource
mon = EnergyMonitor({interval}max_series_points={max_points})
set_state(t0=time.time())
b0 = time.time() + 0.3
b1 = b0 + 0.6
with open({busy!r}, "w") as f:
    f.write(f"{{b0:.6f}} {{b1:.6f}}\\n")
mon.begin_window("exp")
time.sleep(1.5)
m = mon.end_window("exp")
mon.close()
w0, w1 = m.started_at, m.ended_at
raw = {{
    "around": [b0 - 0.25, b1 + 0.25],
    "in_busy": {{"start": b0 + 0.15, "end": b1 - 0.15, "output_tokens": 40}},
    "idle_after": [b1 + 0.25, w1 - 0.02],
    "whole": [w0, w1],
    "late": [w1 + 1, w1 + 2],
}}
phases, reasons, note = PhaseSource(m).measure(raw)
curves = {{
    str(i): list(m.series.curve(i, m.per_gpu[i].method).points()[0]) for i in m.gpu_indices
}}
result = {{"m": m.to_dict(), "raw": raw, "phases": phases, "reasons": reasons, "note": note,
          "times": curves, "b": [b0, b1]}}
"""


def state(busy: Path, **extra: Any) -> dict[str, Any]:
    return {
        "count": 2,
        "gpu0.energy_rate_mw": 100_000,
        "gpu0.power_mw": 100_000,
        "gpu0.busy_file": busy,
        "gpu0.busy_power_mw": int(BUSY_W * 1000),
        "gpu1.energy_rate_mw": 50_000,
        "gpu1.power_mw": 50_000,
        **extra,
    }


def run(
    stub: Stub,
    tmp_path: Path,
    *,
    interval: float | None = None,
    max_points: int = 36_000,
    **extra: Any,
) -> dict[str, Any]:
    busy = tmp_path / "busy"
    shown = "" if interval is None else f"sample_interval_s={interval}, "
    script = SCRIPT.format(interval=shown, max_points=max_points, busy=str(busy))
    result: dict[str, Any] = stub.run(script, state(busy, **extra))
    return result


def expected_j(r: dict[str, Any], name: str) -> float:
    """Idle power of both GPUs over the phase, and GPU 0's busy power over its overlap."""
    phase = r["raw"][name]
    start, end = (phase["start"], phase["end"]) if isinstance(phase, dict) else phase
    b0, b1 = r["b"]
    overlap = max(0.0, min(end, b1) - max(start, b0))
    return sum(IDLE_W.values()) * (end - start) + BUSY_W * overlap


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in zip(times, times[1:], strict=False)]


def test_phase_energy_from_the_counter_at_ten_hertz_or_more(stub: Stub, tmp_path: Path) -> None:
    r = run(stub, tmp_path)  # the default sampling interval
    m = r["m"]
    assert m["method"] == "counter", m
    phases = r["phases"]
    for name in ("around", "in_busy", "idle_after"):
        assert phases[name] is not None, (name, r["reasons"])
        assert phases[name]["energy_j"] == pytest.approx(expected_j(r, name), rel=2e-3, abs=0.05)
        duration = phases[name]["duration_s"]
        assert phases[name]["avg_power_w"] == pytest.approx(
            phases[name]["energy_j"] / duration, rel=1e-5
        )
    # the busy period really is in them: 250 W x 0.6 s, and 0.3 s all busy
    assert phases["around"]["energy_j"] == pytest.approx(150 * 1.1 + 250 * 0.6, rel=0.01)
    assert phases["in_busy"]["avg_power_w"] == pytest.approx(400, rel=0.01)
    assert phases["in_busy"]["output_tokens"] == 40
    assert phases["in_busy"]["energy_per_output_token_j"] == pytest.approx(
        phases["in_busy"]["energy_j"] / 40
    )
    # the whole window is the window's energy, the counter's delta
    assert phases["whole"]["energy_j"] == pytest.approx(m["energy_j"], abs=1e-5)
    assert phases["late"] is None
    assert "is outside the window" in r["reasons"]["phases.late"]
    assert set(r["reasons"]) == {"phases.late"}
    assert "counter" in r["note"]
    # sampling: at least 10 Hz over the window on every GPU, no long gap
    for index, times in r["times"].items():
        assert times[0] == m["started_at"] and times[-1] == m["ended_at"], index
        rate = (len(times) - 1) / (times[-1] - times[0])
        assert rate >= 10.0, (index, rate)
        assert max(gaps(times)) < 0.25, (index, gaps(times))


def test_phase_energy_from_sampled_power(stub: Stub, tmp_path: Path) -> None:
    r = run(stub, tmp_path, **{"error.nvmlDeviceGetTotalEnergyConsumption": NOT_SUPPORTED})
    m = r["m"]
    assert m["method"] == "power_sampling", m
    times = r["times"]["0"]
    assert (len(times) - 1) / (times[-1] - times[0]) >= 10.0
    # the trapezoid spreads each step of power over the samples around it: at most busy power
    # times the gap around each of the two edges; away from the edges it is exact
    edge_error = BUSY_W * max(gaps(times))
    phases = r["phases"]
    assert phases["around"]["energy_j"] == pytest.approx(expected_j(r, "around"), abs=edge_error)
    assert phases["idle_after"]["energy_j"] == pytest.approx(
        expected_j(r, "idle_after"), rel=2e-3, abs=0.05
    )
    assert phases["in_busy"]["energy_j"] == pytest.approx(expected_j(r, "in_busy"), rel=0.01)
    assert phases["whole"]["energy_j"] == pytest.approx(m["energy_j"], abs=1e-5)


def test_a_long_window_keeps_a_bounded_series(stub: Stub, tmp_path: Path) -> None:
    # room for 16 points at 50 Hz: the series halves its resolution (about 75 samples to 16)
    # and still measures the phases whose ends lie in stretches of constant power
    r = run(stub, tmp_path, interval=0.02, max_points=16)
    assert r["m"]["method"] == "counter"
    for index, times in r["times"].items():
        assert len(times) <= 17, (index, len(times))
        assert max(gaps(times)) < 0.3, (index, gaps(times))
    for name in ("around", "idle_after"):
        phase = r["phases"][name]
        assert phase is not None, (name, r["reasons"])
        assert phase["energy_j"] == pytest.approx(expected_j(r, name), rel=2e-3, abs=0.05)


def test_windows_opening_as_others_close_are_all_sampled(stub: Stub) -> None:
    # as with lanes: one thread closes a window and opens the next while a long window on the
    # other GPU stays open, and at the end no window is open for a moment (the sampler stops
    # and starts again); every window's series must keep its rate
    r = stub.run(
        """
        import threading
        from llem_cli.telemetry import EnergyMonitor
        mon = EnergyMonitor()
        set_state(t0=time.time())
        short = []
        def lane():
            for n in range(4):
                mon.begin_window(f"short{n}", [0])
                time.sleep(0.25)
                short.append(mon.end_window(f"short{n}"))
        idle = mon.measure_idle(0.1)
        thread = threading.Thread(target=lane)
        mon.begin_window("long", [1])
        thread.start()
        time.sleep(1.0)
        long = mon.end_window("long")
        thread.join()
        mon.begin_window("after", [0, 1])
        time.sleep(0.3)
        after = mon.end_window("after")
        mon.close()
        def times(m):
            return {str(i): list(m.series.counter[i].points()[0]) for i in m.gpu_indices}
        result = {"windows": [times(m) for m in [*short, long, after]],
                  "idle_series": idle.measurement.series is None}
        """,
        {"count": 2, "gpu0.energy_rate_mw": 100_000, "gpu1.energy_rate_mw": 100_000},
    )
    assert r["idle_series"] is True  # the baseline keeps no series
    assert len(r["windows"]) == 6
    for window in r["windows"]:
        for index, times in window.items():
            rate = (len(times) - 1) / (times[-1] - times[0])
            assert rate >= 10.0, (index, rate, times)
            assert max(gaps(times)) < 0.25, (index, gaps(times))
