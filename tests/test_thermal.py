"""Thermal gating on the real pynvml over the compiled stub."""

from __future__ import annotations

from nvml_stub import fixtures
from nvml_stub.fixtures import NOT_SUPPORTED

WAIT = """
from dataclasses import asdict
from llem_cli.telemetry import open_gpus, wait_until_cool
seen = []
gs = open_gpus()
set_state(t0=time.time())
w = wait_until_cool(gs, max_temp_c=45, max_wait_s={max_wait}, poll_interval_s=0.02,
                    idle_power_w={idle}, on_progress=lambda s: seen.append(asdict(s)))
result = {{**asdict(w), "flags": w.flags, "seen": seen}}
"""

# The stub's fixtures, made visible to pytest in this module.
no_nvml_dir = fixtures.no_nvml_dir
nvml_stub_dir = fixtures.nvml_stub_dir
stub = fixtures.stub


def wait(max_wait=2.0, idle=None):
    return WAIT.format(max_wait=max_wait, idle=idle)


def test_wait_ends_when_the_gpus_have_cooled(stub):
    # GPU 0 cools from 80 C at 200 C/s; GPU 1 is already cool.
    w = stub.run(
        wait(),
        {
            "count": 2,
            "gpu0.temp_c": 80,
            "gpu0.cool_c_per_s": 200,
            "gpu0.temp_floor_c": 30,
            "gpu1.temp_c": 35,
        },
    )
    assert w["timed_out"] is False
    assert w["flags"] == []
    assert 0.1 < w["waited_s"] < 1.5
    assert w["start_temp_c"] >= 70
    assert w["end_temp_c"] <= 45
    assert w["start_temps_c"]["1"] == 35
    assert w["reason"] is None
    temps = [s["temps_c"]["0"] for s in w["seen"]]
    assert temps == sorted(temps, reverse=True)
    assert w["seen"][-1]["ready"] is True and not any(s["ready"] for s in w["seen"][:-1])
    assert w["seen"][0]["target_temp_c"] == 45


def test_wait_times_out_and_flags(stub):
    w = stub.run(
        wait(max_wait=0.3), {"gpu0.temp_c": 80, "gpu0.cool_c_per_s": 100, "gpu0.temp_floor_c": 60}
    )
    assert w["timed_out"] is True
    assert w["flags"] == ["thermal_timeout"]
    assert 0.3 <= w["waited_s"] < 1.0
    assert w["end_temp_c"] == 60


def test_cool_gpu_passes_at_once(stub):
    w = stub.run(wait(), {"gpu0.temp_c": 40})
    assert w["timed_out"] is False
    assert w["waited_s"] < 0.1
    assert len(w["seen"]) == 1


def test_power_must_be_back_near_idle_when_asked(stub):
    busy = stub.run(
        wait(max_wait=0.2, idle={0: 60.0}), {"gpu0.temp_c": 40, "gpu0.power_mw": 200_000}
    )
    assert busy["timed_out"] is True
    assert busy["seen"][-1]["power_w"] == {"0": 200.0}
    near = stub.run(
        wait(max_wait=0.2, idle={0: 60.0}), {"gpu0.temp_c": 40, "gpu0.power_mw": 65_000}
    )
    assert near["timed_out"] is False


def test_unreadable_power_drops_only_the_power_condition(stub):
    w = stub.run(
        wait(idle={0: 60.0}), {"gpu0.temp_c": 40, "error.nvmlDeviceGetPowerUsage": NOT_SUPPORTED}
    )
    assert w["timed_out"] is False
    assert w["notes"] == ["GPU 0: power not readable, only temperature gated"]


def test_unreadable_temperature_cannot_gate(stub):
    w = stub.run(wait(), {"error.nvmlDeviceGetTemperature": NOT_SUPPORTED})
    assert w["timed_out"] is False
    assert w["waited_s"] == 0.0
    assert w["start_temp_c"] is None
    assert w["reason"] == "no GPU temperature can be read; not gated"
    assert w["notes"] == ["GPU 0: temperature not readable, not gated"]


def test_no_gpu_is_not_gated(stub, no_nvml_dir):
    w = stub.run(wait(), lib_dir=no_nvml_dir)
    assert w["timed_out"] is False
    assert w["reason"].startswith("NVML library libnvidia-ml.so.1 not found")


def test_injected_clock_makes_a_ten_minute_timeout_instant(stub):
    # NVML (the stub) is real; only the waiting is simulated.
    w = stub.run(
        """
        from llem_cli.telemetry import open_gpus, wait_until_cool
        now = [0.0]
        sleeps = []
        def sleep(s):
            sleeps.append(s)
            now[0] += s
        start = time.monotonic()
        w = wait_until_cool(open_gpus(), max_temp_c=45, max_wait_s=600, poll_interval_s=5,
                            clock=lambda: now[0], sleep=sleep)
        result = {"timed_out": w.timed_out, "waited_s": w.waited_s, "polls": len(sleeps),
                  "real_s": time.monotonic() - start}
        """,
        {"gpu0.temp_c": 70},
    )
    assert w == {"timed_out": True, "waited_s": 600.0, "polls": 120, "real_s": w["real_s"]}
    assert w["real_s"] < 2
