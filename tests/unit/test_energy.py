"""Energy windows: the real pynvml on the compiled stub, plus the pure arithmetic."""

from __future__ import annotations

import pytest

from llem_cli.telemetry.windows import (
    COUNTER_MODULUS,
    _counter_energy,
    _disagree,
    _integrate,
)
from llem_testkit.nvml_stub import NOT_SUPPORTED

# A window of about 0.3 s. t0 is set just before the window so counters start now.
# "slept_s" (the sleep inside the window) and "called_s" (begin_window's call to end_window's
# return) bracket the window on the same monotonic clock: slept_s <= duration_s <= called_s.
WINDOW = """
from llem_cli.telemetry import EnergyMonitor
mon = EnergyMonitor(sample_interval_s=0.02)
set_state(t0=time.time())
called = time.monotonic()
mon.begin_window("exp", {indices}, allowed_pids={allowed})
slept = time.monotonic()
time.sleep({seconds})
slept = time.monotonic() - slept
m = mon.end_window("exp")
called = time.monotonic() - called
mon.close()
result = {{**m.to_dict(), "slept_s": slept, "called_s": called}}
"""


def window(indices=None, seconds=0.3, allowed=()):
    return WINDOW.format(indices=indices, seconds=seconds, allowed=set(allowed) or "()")


def gpu(index=0, **values):
    return {f"gpu{index}.{k}": v for k, v in values.items()}


def approx_energy(m, watts):
    return pytest.approx(watts * m["duration_s"], rel=0.05)


def test_counter_delta_gives_energy_both_methods_agree(stub):
    m = stub.run(
        window(), gpu(energy_mj=5_000_000, energy_rate_mw=300_000, power_mw=300_000, temp_c=61)
    )
    assert m["method"] == "counter"
    assert m["energy_j"] == approx_energy(m, 300)
    assert m["counter_energy_j"] == m["energy_j"]
    assert m["sampled_energy_j"] == approx_energy(m, 300)
    assert m["avg_power_w"] == pytest.approx(300, rel=0.05)
    assert m["max_temp_c"] == 61
    # the window is the time between the two calls: it spans the sleep, and no more
    assert m["slept_s"] <= m["duration_s"] <= m["called_s"]
    assert m["flags"] == []
    assert m["warnings"] == []
    assert m["idle_power_w"] is None
    assert m["net_energy_j"] is None
    assert m["reasons"]["net_energy_j"] == "no idle baseline measured"
    assert "energy_j" not in m["reasons"]


def test_gpus_are_summed_and_a_window_can_take_a_subset(stub):
    state = {
        "count": 2,
        **gpu(0, energy_rate_mw=300_000, power_mw=300_000),
        **gpu(1, energy_rate_mw=100_000, power_mw=100_000, temp_c=70),
    }
    both = stub.run(window(), state)
    assert both["gpu_indices"] == [0, 1]
    assert both["avg_power_w"] == pytest.approx(400, rel=0.05)
    assert both["per_gpu"]["1"]["avg_power_w"] == pytest.approx(100, rel=0.05)
    assert both["max_temp_c"] == 70
    one = stub.run(window(indices=[1]))
    assert one["gpu_indices"] == [1]
    assert one["avg_power_w"] == pytest.approx(100, rel=0.05)


def test_power_sampling_when_counter_not_supported(stub):
    m = stub.run(
        window(),
        {
            **gpu(power_mw=250_000),
            "error.nvmlDeviceGetTotalEnergyConsumption": NOT_SUPPORTED,
        },
    )
    assert m["method"] == "power_sampling"
    assert m["energy_j"] == approx_energy(m, 250)
    assert m["counter_energy_j"] is None
    assert m["flags"] == []


def test_methods_disagree_is_flagged(stub):
    m = stub.run(window(), gpu(energy_rate_mw=300_000, power_mw=200_000))
    assert m["method"] == "counter"
    assert m["energy_j"] == approx_energy(m, 300)
    assert m["sampled_energy_j"] == approx_energy(m, 200)
    assert m["flags"] == ["methods_disagree"]


def test_counter_wrap_is_a_normal_delta(stub):
    # Counter 30 J below 2**64 at t0, 300 W: it wraps 0.1 s into the window.
    m = stub.run(
        """
        from llem_cli.telemetry import EnergyMonitor
        mon = EnergyMonitor(sample_interval_s=0.02)
        set_state(t0=time.time())
        g = mon.gpu_set.gpus[0]
        before = g.energy_mj()
        mon.begin_window("exp")
        time.sleep(0.3)
        m = mon.end_window("exp")
        after = g.energy_mj()
        result = {**m.to_dict(), "wrapped": after < before}
        """,
        gpu(energy_mj=COUNTER_MODULUS - 30_000, energy_rate_mw=300_000, power_mw=300_000),
    )
    assert m["wrapped"] is True
    assert m["method"] == "counter"
    assert m["energy_j"] == approx_energy(m, 300)
    assert m["flags"] == []


def test_counter_reset_falls_back_to_sampled_power(stub):
    m = stub.run(
        """
        from llem_cli.telemetry import EnergyMonitor
        mon = EnergyMonitor(sample_interval_s=0.02)
        set_state(t0=time.time())
        mon.begin_window("exp")
        time.sleep(0.15)
        set_state(gpu0__energy_mj=0, t0=time.time())   # driver reloaded: counter restarts
        time.sleep(0.15)
        result = mon.end_window("exp").to_dict()
        """,
        gpu(energy_mj=10**9, energy_rate_mw=300_000, power_mw=300_000),
    )
    assert "counter_reset" in m["flags"]
    assert m["method"] == "power_sampling"
    assert m["counter_energy_j"] is None
    assert m["energy_j"] == approx_energy(m, 300)
    assert m["reasons"]["counter_energy_j"].startswith("GPU 0: energy counter: went from ")
    assert m["reasons"]["counter_energy_j"].endswith(" mJ, a reset rather than a wrap")
    assert "energy_j" not in m["reasons"]


def test_short_window_is_flagged_and_uses_sampled_power(stub):
    # The counter moves only every 100 ms; a 10 ms window would read 0 J from it.
    m = stub.run(
        window(seconds=0.01), gpu(energy_rate_mw=300_000, energy_update_ms=100, power_mw=300_000)
    )
    assert "short_window" in m["flags"]
    assert m["method"] == "power_sampling"
    assert m["energy_j"] > 0
    assert m["energy_j"] == approx_energy(m, 300)


def test_short_window_without_power_is_none_not_zero(stub):
    m = stub.run(
        window(seconds=0.01),
        {
            **gpu(energy_rate_mw=300_000, energy_update_ms=1000),
            "error.nvmlDeviceGetPowerUsage": NOT_SUPPORTED,
        },
    )
    assert "short_window" in m["flags"]
    assert m["energy_j"] is None
    assert m["avg_power_w"] is None
    assert "shorter than the energy counter's update period" in m["reasons"]["energy_j"]


def test_stalled_counter_over_a_long_window_is_not_zero(stub):
    m = stub.run(window(), gpu(energy_mj=123, energy_rate_mw=0, power_mw=150_000))
    assert "counter_stalled" in m["flags"]
    assert m["method"] == "power_sampling"
    assert m["energy_j"] == approx_energy(m, 150)


def test_nothing_supported_gives_none_with_reasons(stub):
    state = {"count": 1}
    for fn in (
        "nvmlDeviceGetTotalEnergyConsumption",
        "nvmlDeviceGetPowerUsage",
        "nvmlDeviceGetTemperature",
        "nvmlDeviceGetCurrentClocksEventReasons",
        "nvmlDeviceGetComputeRunningProcesses_v3",
    ):
        state[f"error.{fn}"] = NOT_SUPPORTED
    m = stub.run(
        """
        from llem_cli.telemetry import EnergyMonitor
        mon = EnergyMonitor(sample_interval_s=0.02)
        idle = mon.measure_idle(0.1)
        mon.begin_window("exp")
        time.sleep(0.15)
        result = {**mon.end_window("exp").to_dict(), "idle": idle.power_w,
                  "idle_reasons": idle.reasons, "caps": mon.capabilities()}
        """,
        state,
    )
    for name in (
        "energy_j",
        "method",
        "counter_energy_j",
        "sampled_energy_j",
        "avg_power_w",
        "max_temp_c",
        "idle_power_w",
        "net_energy_j",
    ):
        assert m[name] is None, name
    reasons = m["reasons"]
    assert "energy counter: not supported" in reasons["energy_j"]
    assert "power reading: not supported" in reasons["energy_j"]
    assert "temperature: not supported" in reasons["max_temp_c"]
    assert "could not list compute processes" in reasons["foreign_processes"]
    assert reasons["idle_power_w"].startswith("no idle power for GPU 0: ")
    assert m["idle"] == {}
    assert set(m["caps"]["0"]) == {"energy", "power", "temperature", "events"}
    assert all(m["caps"]["0"].values())
    assert m["flags"] == []


def test_no_library_measures_nothing_and_says_why(stub, no_nvml_dir):
    m = stub.run(
        window(seconds=0.05) + "\nresult['why'] = mon.unavailable_reason", lib_dir=no_nvml_dir
    )
    assert m["why"].startswith("NVML library libnvidia-ml.so.1 not found")
    assert m["flags"] == ["no_gpu"]
    assert m["gpu_indices"] == []
    assert m["energy_j"] is None and m["avg_power_w"] is None and m["max_temp_c"] is None
    assert m["reasons"]["energy_j"] == m["why"]
    assert m["slept_s"] <= m["duration_s"] <= m["called_s"]  # the window is timed anyway


def test_other_compute_processes_are_a_warning(stub):
    m = stub.run(
        window(allowed=[777]),
        gpu(energy_rate_mw=300_000, power_mw=300_000, procs="4242:1048576000,777:0"),
    )
    assert m["flags"] == ["foreign_processes"]
    assert m["foreign_pids"] == {"0": [4242]}
    assert m["warnings"] == [
        "GPU 0: other compute processes at the start of the measurement (pid 4242 (1000 MiB));"
        " their energy is counted too"
    ]
    assert m["energy_j"] == approx_energy(m, 300)


def test_idle_baseline_gives_net_energy(stub):
    m = stub.run(
        """
        from llem_cli.telemetry import EnergyMonitor
        mon = EnergyMonitor(sample_interval_s=0.02)
        set_state(t0=time.time())
        idle = mon.measure_idle(0.2)
        set_state(gpu0__energy_rate_mw=300000, gpu0__power_mw=300000, gpu0__energy_mj=10**9,
                  t0=time.time())
        mon.begin_window("exp")
        time.sleep(0.3)
        result = {**mon.end_window("exp").to_dict(), "idle": idle.power_w}
        """,
        gpu(energy_rate_mw=60_000, power_mw=60_000),
    )
    assert m["idle"]["0"] == pytest.approx(60, rel=0.05)
    assert m["idle_power_w"] == m["idle"]["0"]
    assert m["net_energy_j"] == pytest.approx(m["energy_j"] - m["idle_power_w"] * m["duration_s"])
    assert m["net_energy_j"] == pytest.approx(240 * m["duration_s"], rel=0.05)
    assert "net_energy_j" not in m["reasons"]


def test_throttle_reasons_seen_in_the_window(stub):
    m = stub.run(window(), gpu(energy_rate_mw=300_000, power_mw=300_000, throttle="0x24"))
    assert m["clock_events"] == ["sw_power_cap", "sw_thermal_slowdown"]
    assert m["flags"] == ["thermal_throttled"]


def test_overlapping_windows_and_misuse(stub):
    m = stub.run(
        """
        from llem_cli.telemetry import EnergyMonitor
        mon = EnergyMonitor(sample_interval_s=0.02)
        set_state(t0=time.time())
        mon.begin_window("outer")
        time.sleep(0.15)
        mon.begin_window("inner")
        try:
            mon.begin_window("inner")
            dup = "accepted"
        except ValueError as exc:
            dup = str(exc)
        time.sleep(0.15)
        inner = mon.end_window("inner")
        time.sleep(0.15)
        outer = mon.end_window("outer")
        try:
            mon.end_window("outer")
            again = "accepted"
        except KeyError:
            again = "KeyError"
        mon.close()
        result = {"inner": inner.to_dict(), "outer": outer.to_dict(), "dup": dup, "again": again}
        """,
        gpu(energy_rate_mw=200_000, power_mw=200_000),
    )
    assert m["dup"] == "measurement window 'inner' is already open"
    assert m["again"] == "KeyError"
    for key in ("inner", "outer"):
        assert m[key]["energy_j"] == approx_energy(m[key], 200)
        assert m[key]["flags"] == []
    assert m["outer"]["duration_s"] > m["inner"]["duration_s"] + 0.25


# -- the arithmetic, without NVML ------------------------------------------------------------


def test_counter_delta_modulo_2_64():
    assert _counter_energy(COUNTER_MODULUS - 1000, 2000, 1.0) == (3.0, "", None)
    assert _counter_energy(1000, 301_000, 1.0) == (300.0, "", None)


def test_counter_going_backwards_is_a_reset():
    joules, why, flag = _counter_energy(10**9, 5, 1.0)
    assert joules is None and flag == "counter_reset"
    assert why == "energy counter: went from 1000000000 to 5 mJ, a reset rather than a wrap"


def test_counter_standing_still_is_not_zero():
    joules, why, flag = _counter_energy(42, 42, 5.0)
    assert joules is None and flag == "counter_stalled"
    assert "did not advance" in why


def test_trapezoid_integral():
    energy, _ = _integrate([(0.0, 100.0), (1.0, 200.0), (3.0, 200.0)], 0.0, 3.0, "")
    assert energy == pytest.approx(150.0 + 400.0)


def test_integral_needs_samples_covering_the_window():
    assert _integrate([(0.0, 100.0)], 0.0, 1.0, "no samples") == (None, "no samples")
    energy, why = _integrate([(0.0, 100.0), (0.5, 100.0)], 0.0, 1.0, "")
    assert energy is None
    assert why == "power reading: samples cover 0.500 s of the 1.000 s window"


def test_disagreement_threshold_is_five_percent():
    assert not _disagree(100.0, 95.5)
    assert not _disagree(100.0, 104.9)
    assert _disagree(100.0, 94.0)
    assert _disagree(100.0, 105.5)
