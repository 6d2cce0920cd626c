"""max_temp_c follows energy's rules: full coverage of the window, and every GPU measured.

The real pynvml on the compiled stub (llem_testkit.nvml_stub), plus the pure helper.
"""

from __future__ import annotations

import pytest

from llem_cli.telemetry.windows import MIN_SAMPLE_COVERAGE, _max_temp
from llem_testkit.nvml_stub import GPU_IS_LOST, NOT_SUPPORTED

# Every reading a lost GPU answers with NVML_ERROR_GPU_IS_LOST (15).
_READINGS = (
    "nvmlDeviceGetTotalEnergyConsumption",
    "nvmlDeviceGetPowerUsage",
    "nvmlDeviceGetTemperature",
    "nvmlDeviceGetCurrentClocksEventReasons",
)

# A window of about 1 s on all GPUs in which GPU {lose} is lost after about 0.1 s.
LOST_MID_WINDOW = """
from llem_cli.telemetry import EnergyMonitor
mon = EnergyMonitor(sample_interval_s=0.02)
set_state(t0=time.time())
mon.begin_window("exp")
time.sleep(0.1)
set_state(**{{f"gpu{lose}__error__{{fn}}": {code} for fn in {readings!r}}})
time.sleep(0.9)
m = mon.end_window("exp")
mon.close()
result = m.to_dict()
"""

WINDOW = """
from llem_cli.telemetry import EnergyMonitor
mon = EnergyMonitor(sample_interval_s=0.02)
set_state(t0=time.time())
mon.begin_window("exp")
time.sleep(0.3)
m = mon.end_window("exp")
mon.close()
result = m.to_dict()
"""


def gpu(index=0, **values):
    return {f"gpu{index}.{k}": v for k, v in values.items()}


def lost_mid_window(lose: int) -> str:
    return LOST_MID_WINDOW.format(lose=lose, code=GPU_IS_LOST, readings=_READINGS)


def test_gpu_lost_mid_window_gives_no_max_temp(stub):
    m = stub.run(
        lost_mid_window(0),
        gpu(energy_rate_mw=300_000, power_mw=300_000, temp_c=50),
    )
    assert "gpu_lost" in m["flags"]
    # energy and temperature come from the same readings: neither counts
    assert m["energy_j"] is None
    assert m["max_temp_c"] is None
    assert m["per_gpu"]["0"]["max_temp_c"] is None
    why = m["reasons"]["max_temp_c"]
    assert why.startswith("GPU 0: temperature: samples cover ")
    assert f"of the {m['duration_s']:.3f} s window" in why
    assert "GPU lost" in why
    assert m["per_gpu"]["0"]["reasons"]["max_temp_c"] == why.removeprefix("GPU 0: ")


def test_second_gpu_lost_mid_window_gives_no_max_temp(stub):
    state = {
        "count": 2,
        **gpu(0, energy_rate_mw=300_000, power_mw=300_000, temp_c=45),
        **gpu(1, energy_rate_mw=300_000, power_mw=300_000, temp_c=80),
    }
    m = stub.run(lost_mid_window(1), state)
    assert m["max_temp_c"] is None
    assert m["per_gpu"]["0"]["max_temp_c"] == 45  # GPU 0 alone was measured throughout
    assert m["per_gpu"]["1"]["max_temp_c"] is None
    assert m["reasons"]["max_temp_c"].startswith("GPU 1: temperature: samples cover ")
    assert "GPU 0" not in m["reasons"]["max_temp_c"]


def test_one_of_two_gpus_without_temperature_gives_no_max_temp(stub):
    state = {
        "count": 2,
        **gpu(0, energy_rate_mw=300_000, power_mw=300_000, temp_c=66),
        **gpu(1, energy_rate_mw=100_000, power_mw=100_000, temp_c=40),
        "gpu1.error.nvmlDeviceGetTemperature": NOT_SUPPORTED,
    }
    m = stub.run(WINDOW, state)
    assert m["energy_j"] is not None  # the rest of the window is measured
    assert m["max_temp_c"] is None
    assert m["reasons"]["max_temp_c"].startswith("GPU 1: temperature: not supported")
    assert "GPU 0" not in m["reasons"]["max_temp_c"]
    assert m["per_gpu"]["0"]["max_temp_c"] == 66
    assert m["per_gpu"]["1"]["max_temp_c"] is None
    assert not any("temperature" in w for w in m["warnings"])


def test_all_gpus_measured_gives_the_highest_temperature(stub):
    state = {
        "count": 2,
        **gpu(0, energy_rate_mw=300_000, power_mw=300_000, temp_c=58),
        **gpu(1, energy_rate_mw=100_000, power_mw=100_000, temp_c=73),
    }
    m = stub.run(WINDOW, state)
    assert m["max_temp_c"] == 73
    assert m["per_gpu"]["0"]["max_temp_c"] == 58
    assert m["per_gpu"]["1"]["max_temp_c"] == 73
    assert "max_temp_c" not in m["reasons"]
    assert m["warnings"] == []


def test_max_temp_over_time_within_a_gpu(stub):
    # GPU 0 cools from 90 C at 50 C/s to a floor of 60 C: its hottest reading is the first.
    state = gpu(energy_rate_mw=300_000, power_mw=300_000, temp_c=90, cool_c_per_s=50)
    state["gpu0.temp_floor_c"] = 60
    m = stub.run(WINDOW, state)
    assert 85 <= m["max_temp_c"] <= 90
    assert "max_temp_c" not in m["reasons"]


def test_max_temp_needs_samples_covering_the_window():
    full = [(0.0, 50), (0.5, 70), (1.0, 60)]
    assert _max_temp(full, 0.0, 1.0, None) == (70, "")
    edge = [(0.0, 50), (MIN_SAMPLE_COVERAGE, 55)]
    assert _max_temp(edge, 0.0, 1.0, None) == (55, "")
    value, why = _max_temp([(0.0, 50), (0.1, 52)], 0.0, 1.114, "temperature: GPU lost (x)")
    assert value is None
    assert why == "temperature: samples cover 0.100 s of the 1.114 s window (GPU lost (x))"
    assert _max_temp([], 0.0, 1.0, None) == (None, "temperature: no samples")
    unsupported = "temperature: not supported (Not Supported)"
    assert _max_temp([], 0.0, 1.0, unsupported) == (None, unsupported)
    # one reading of a zero-length window is the whole window
    assert _max_temp([(2.0, 41)], 2.0, 2.0, None) == (41, "")


@pytest.mark.parametrize("readings", [1, 2])
def test_max_temp_single_reading_of_a_real_window_is_not_enough(readings):
    points = [(0.0, 50)] * readings
    value, why = _max_temp(points, 0.0, 1.0, None)
    assert value is None
    assert why == "temperature: samples cover 0.000 s of the 1.000 s window"


EMPTY_WINDOW = """
from llem_cli.telemetry import EnergyMonitor
mon = EnergyMonitor(sample_interval_s=0.02)
set_state(t0=time.time())
mon.begin_window("exp", [])
time.sleep(0.1)
m = mon.end_window("exp")
mon.close()
result = m.to_dict()
"""


def test_a_window_over_no_gpu_measures_nothing_not_zero(stub):
    # a backend with ``gpus: []`` (the model allows it): a sum over no GPU is not 0 J
    m = stub.run(EMPTY_WINDOW, gpu(energy_rate_mw=300_000, power_mw=300_000, temp_c=50))
    for name in ("energy_j", "counter_energy_j", "sampled_energy_j", "avg_power_w", "max_temp_c"):
        assert m[name] is None, (name, m)
    assert m["reasons"]["energy_j"] == "no GPU in the window"
