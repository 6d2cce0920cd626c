"""Thermal gating on the real pynvml over the compiled stub.

Nothing here really waits: ``wait_until_cool`` gets an injected clock and sleep, and each
simulated sleep moves the stub's ``t0`` back by the same amount, so the stub's temperature
(``temp_c - cool_c_per_s * elapsed``) follows the simulated clock. Temperatures start at
X.5 C so the stub's truncation to whole degrees gives the same reading whatever few
milliseconds of real time pass between two polls.
"""

from __future__ import annotations

from llem_testkit.nvml_stub import NOT_SUPPORTED

WAIT = """
from dataclasses import asdict
from llem_cli.telemetry import open_gpus, wait_until_cool
now = [0.0]
sleeps = []
seen = []
def sleep(s):
    sleeps.append(s)
    now[0] += s
    set_state(t0=time.time() - now[0])
gs = open_gpus()
set_state(t0=time.time())
w = wait_until_cool(gs, max_temp_c=45, max_wait_s={max_wait}, poll_interval_s=5,
                    idle_power_w={idle}, on_progress=lambda s: seen.append(asdict(s)),
                    clock=lambda: now[0], sleep=sleep)
result = {{**asdict(w), "flags": w.flags, "seen": seen, "sleeps": sleeps}}
"""


def wait(max_wait=60.0, idle=None):
    return WAIT.format(max_wait=max_wait, idle=idle)


def test_wait_ends_when_the_gpus_have_cooled(stub):
    # GPU 0 cools from 80 C at 2 C/s, 10 C per 5 s poll; GPU 1 is already cool.
    w = stub.run(
        wait(),
        {
            "count": 2,
            "gpu0.temp_c": 80.5,
            "gpu0.cool_c_per_s": 2,
            "gpu0.temp_floor_c": 30,
            "gpu1.temp_c": 35,
        },
    )
    assert w["timed_out"] is False
    assert w["flags"] == []
    assert w["sleeps"] == [5, 5, 5, 5]
    assert w["waited_s"] == 20.0
    assert (w["start_temp_c"], w["end_temp_c"]) == (80, 40)
    assert w["start_temps_c"] == {"0": 80, "1": 35}
    assert w["reason"] is None
    assert [s["temps_c"]["0"] for s in w["seen"]] == [80, 70, 60, 50, 40]
    assert [s["waited_s"] for s in w["seen"]] == [0.0, 5.0, 10.0, 15.0, 20.0]
    assert [s["ready"] for s in w["seen"]] == [False, False, False, False, True]
    assert w["seen"][0]["target_temp_c"] == 45


def test_wait_times_out_and_flags(stub):
    # cools to a 60 C floor, never to 45 C: the last sleep is cut to what is left of max_wait
    w = stub.run(
        wait(max_wait=12.5),
        {"gpu0.temp_c": 80.5, "gpu0.cool_c_per_s": 2, "gpu0.temp_floor_c": 60},
    )
    assert w["timed_out"] is True
    assert w["flags"] == ["thermal_timeout"]
    assert w["sleeps"] == [5, 5, 2.5]
    assert w["waited_s"] == 12.5
    assert [s["temps_c"]["0"] for s in w["seen"]] == [80, 70, 60, 60]
    assert w["end_temp_c"] == 60


def test_cool_gpu_passes_at_once(stub):
    w = stub.run(wait(), {"gpu0.temp_c": 40})
    assert w["timed_out"] is False
    assert w["sleeps"] == []  # one poll, no sleep
    assert w["waited_s"] == 0.0
    assert len(w["seen"]) == 1


def test_power_must_be_back_near_idle_when_asked(stub):
    busy = stub.run(
        wait(max_wait=0.2, idle={0: 60.0}), {"gpu0.temp_c": 40, "gpu0.power_mw": 200_000}
    )
    assert busy["timed_out"] is True
    assert busy["sleeps"] == [0.2]
    assert busy["seen"][-1]["power_w"] == {"0": 200.0}
    near = stub.run(
        wait(max_wait=0.2, idle={0: 60.0}), {"gpu0.temp_c": 40, "gpu0.power_mw": 65_000}
    )
    assert near["timed_out"] is False
    assert near["sleeps"] == []


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
    # NVML (the stub) is real; only the waiting is simulated. Were the injected sleep ignored,
    # the script would really wait 600 s and the stub runner's 30 s subprocess timeout would
    # fail the test.
    w = stub.run(
        """
        from llem_cli.telemetry import open_gpus, wait_until_cool
        now = [0.0]
        sleeps = []
        def sleep(s):
            sleeps.append(s)
            now[0] += s
        w = wait_until_cool(open_gpus(), max_temp_c=45, max_wait_s=600, poll_interval_s=5,
                            clock=lambda: now[0], sleep=sleep)
        result = {"timed_out": w.timed_out, "waited_s": w.waited_s, "sleeps": sleeps}
        """,
        {"gpu0.temp_c": 70},
    )
    assert w == {"timed_out": True, "waited_s": 600.0, "sleeps": [5] * 120}
