"""The stand-in NVML's settings: power limit and locked clocks, as the real driver keeps them.

Each check runs the real pynvml binding on the compiled stub (``stub`` fixture) in fresh
processes. What a setter changes goes to the settings file next to the state file
(``Stub.settings_file``) and outlives the process; ``no_permission`` refuses every setter; the
power drawn and the energy counter are capped by the limit in force.
"""

from __future__ import annotations

import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from llem_testkit.nvml_stub import Stub

INVALID_ARGUMENT = 2
NO_PERMISSION = 4
NOT_FOUND = 6
GPU_IS_LOST = 15
NVML_CLOCK_GRAPHICS, NVML_CLOCK_SM, NVML_CLOCK_MEM = 0, 1, 2

# pynvml, a helper giving the NVML error code of a call (0: success), and _v2 setter's own
# return code (pynvml's nvmlDeviceSetPowerManagementLimit_v2 drops it)
PRELUDE = """
import ctypes
import pynvml as N
N.nvmlInit()
H = [N.nvmlDeviceGetHandleByIndex(i) for i in range(N.nvmlDeviceGetCount())]

def code(f, *args):
    try:
        f(*args)
        return 0
    except N.NVMLError as exc:
        return exc.value

def set_v2(h, mw, scope=0, version=N.nvmlPowerValue_v2):
    v = N.c_nvmlPowerValue_v2_t()
    v.version, v.powerScope, v.powerValueMw = version, scope, mw
    return N._nvmlGetFunctionPointer("nvmlDeviceSetPowerManagementLimit_v2")(h, ctypes.byref(v))
"""

LIMITS = """
result = [{"limit": N.nvmlDeviceGetPowerManagementLimit(h),
           "enforced": N.nvmlDeviceGetEnforcedPowerLimit(h),
           "default": N.nvmlDeviceGetPowerManagementDefaultLimit(h),
           "constraints": N.nvmlDeviceGetPowerManagementLimitConstraints(h)} for h in H]
"""

CLOCKS = """
result = [[N.nvmlDeviceGetClockInfo(h, N.NVML_CLOCK_SM),
           N.nvmlDeviceGetClockInfo(h, N.NVML_CLOCK_GRAPHICS),
           N.nvmlDeviceGetClockInfo(h, N.NVML_CLOCK_MEM)] for h in H]
"""


def run(stub: Stub, script: str, state: dict[str, Any] | None = None) -> Any:
    return stub.run(PRELUDE + textwrap.dedent(script), state)


def settings_lines(stub: Stub) -> list[str]:
    return [
        line for line in stub.settings_file.read_text().splitlines() if not line.startswith("#")
    ]


def limit_changes(stub: Stub, gpu: int) -> list[tuple[float, int]]:
    """GPU ``gpu``'s ``gpuI.power_limit=T MW`` lines, oldest first."""
    out = []
    for line in settings_lines(stub):
        key, _, value = line.partition("=")
        if key == f"gpu{gpu}.power_limit":
            t, mw = value.split()
            out.append((float(t), int(mw)))
    return out


def test_power_limit_set_in_one_process_is_seen_by_the_next(stub: Stub) -> None:
    state = {"count": 3, "gpu1.power_limit_mw": 350_000, "gpu2.power_limit_default_mw": 500_000}
    before = run(stub, LIMITS, state)
    assert [(g["limit"], g["enforced"], g["default"]) for g in before] == [
        (700_000, 700_000, 700_000),  # before any is set: the default, itself the max
        (350_000, 350_000, 700_000),  # gpuI.power_limit_mw
        (500_000, 500_000, 500_000),  # gpuI.power_limit_default_mw
    ]
    assert [g["constraints"] for g in before] == [[100_000, 700_000]] * 3
    state_text = stub.state_file.read_text()
    t = time.time()
    assert run(
        stub,
        """
        N.nvmlDeviceSetPowerManagementLimit(H[0], 300_000)
        result = [set_v2(H[1], 250_000), N.nvmlDeviceGetPowerManagementLimit(H[1]),
                  set_v2(H[1], 250_000, scope=1), set_v2(H[1], 250_000, version=1)]
        N.nvmlDeviceSetPowerManagementLimit_v2(H[2], 0, 400_000)  # pynvml's own wrapper
        """,
    ) == [0, 250_000, 3, 25]  # the _v2 struct: GPU scope only, its version checked
    after = run(stub, LIMITS)  # a second process sees what the first one set
    assert [(g["limit"], g["enforced"]) for g in after] == [
        (300_000, 300_000),
        (250_000, 250_000),
        (400_000, 400_000),
    ]
    assert [g["default"] for g in after] == [700_000, 700_000, 500_000]
    # the state file is the test's: untouched; the settings file holds the changes
    assert stub.state_file.read_text() == state_text
    assert stub.settings_file.read_text().startswith("# ")
    for gpu, mw in ((0, 300_000), (1, 250_000), (2, 400_000)):
        [(when, got)] = limit_changes(stub, gpu)
        assert got == mw
        assert t <= when <= time.time()
    # setting the limit in force again changes nothing (no new line)
    assert run(stub, "result = code(N.nvmlDeviceSetPowerManagementLimit, H[0], 300_000)") == 0
    assert len(limit_changes(stub, 0)) == 1


def test_limit_outside_the_constraints_is_refused(stub: Stub) -> None:
    result = run(
        stub,
        """
        h = H[0]
        result = {
            "low": code(N.nvmlDeviceSetPowerManagementLimit, h, 149_999),
            "high": code(N.nvmlDeviceSetPowerManagementLimit, h, 400_001),
            "v2_high": set_v2(h, 400_001),
            "still": N.nvmlDeviceGetPowerManagementLimit(h),
            "min": code(N.nvmlDeviceSetPowerManagementLimit, h, 150_000),
            "at_min": N.nvmlDeviceGetPowerManagementLimit(h),
            "max": code(N.nvmlDeviceSetPowerManagementLimit, h, 400_000),
            "at_max": N.nvmlDeviceGetPowerManagementLimit(h),
        }
        """,
        {
            "count": 1,
            "gpu0.power_limit_min_mw": 150_000,
            "gpu0.power_limit_max_mw": 400_000,
            "gpu0.power_limit_mw": 300_000,
        },
    )
    assert result == {
        "low": INVALID_ARGUMENT,
        "high": INVALID_ARGUMENT,
        "v2_high": INVALID_ARGUMENT,
        "still": 300_000,
        "min": 0,
        "at_min": 150_000,
        "max": 0,
        "at_max": 400_000,
    }
    assert [mw for _, mw in limit_changes(stub, 0)] == [150_000, 400_000]


SETTERS = """
def setters(h):
    return [code(N.nvmlDeviceSetPowerManagementLimit, h, 300_000),
            code(N.nvmlDeviceSetPowerManagementLimit, h, N.nvmlDeviceGetPowerManagementLimit(h)),
            set_v2(h, 300_000),
            code(N.nvmlDeviceSetGpuLockedClocks, h, 1410, 1410),
            code(N.nvmlDeviceResetGpuLockedClocks, h),
            code(N.nvmlDeviceSetMemoryLockedClocks, h, 2619, 2619),
            code(N.nvmlDeviceResetMemoryLockedClocks, h)]

def getters(h):
    return [N.nvmlDeviceGetPowerManagementLimit(h), N.nvmlDeviceGetEnforcedPowerLimit(h),
            N.nvmlDeviceGetPowerManagementLimitConstraints(h),
            N.nvmlDeviceGetPowerManagementDefaultLimit(h),
            N.nvmlDeviceGetClockInfo(h, N.NVML_CLOCK_SM),
            N.nvmlDeviceGetClockInfo(h, N.NVML_CLOCK_MEM),
            N.nvmlDeviceGetMaxClockInfo(h, N.NVML_CLOCK_SM),
            N.nvmlDeviceGetMaxClockInfo(h, N.NVML_CLOCK_MEM),
            len(N.nvmlDeviceGetSupportedGraphicsClocks(h, 2619)),
            N.nvmlDeviceGetSupportedMemoryClocks(h),
            N.nvmlDeviceGetPowerUsage(h)]

result = {"setters": [setters(h) for h in H], "getters": [getters(h) for h in H]}
"""

GETTERS_DEFAULT = [
    700_000,
    700_000,
    [100_000, 700_000],
    700_000,
    1980,
    2619,
    1980,
    2619,
    110,
    [2619],
    100_000,
]


def test_no_permission_refuses_every_setter_and_getters_still_work(stub: Stub) -> None:
    # everywhere; gpu1.no_permission=0 permits GPU 1 anyway
    refused = [NO_PERMISSION] * 7
    result = run(stub, SETTERS, {"count": 2, "no_permission": 1, "gpu1.no_permission": 0})
    assert result["setters"] == [refused, [0] * 7]
    assert result["getters"][0] == GETTERS_DEFAULT
    assert not any(line.startswith("gpu0.") for line in settings_lines(stub))
    # on one GPU only; the current value set again is refused too (llem's permission check)
    stub.settings_file.unlink()
    result = run(stub, SETTERS, {"count": 2, "gpu0.no_permission": 1})
    assert result["setters"] == [refused, [0] * 7]
    assert result["getters"][0] == GETTERS_DEFAULT
    assert result["getters"][1][:2] == [300_000, 300_000]


def test_injected_errors_reach_the_new_functions(stub: Stub) -> None:
    result = run(
        stub,
        """
        result = [[code(N.nvmlDeviceSetPowerManagementLimit, h, 300_000),
                   code(N.nvmlDeviceSetGpuLockedClocks, h, 1410, 1410),
                   code(N.nvmlDeviceGetClockInfo, h, N.NVML_CLOCK_SM),
                   code(N.nvmlDeviceGetSupportedMemoryClocks, h),
                   code(N.nvmlDeviceGetPowerManagementLimit, h)] for h in H]
        """,
        {
            "count": 2,
            "gpu1.error.nvmlDeviceSetPowerManagementLimit": GPU_IS_LOST,
            "error.nvmlDeviceGetSupportedMemoryClocks": 3,
            "gpu0.error.nvmlDeviceSetGpuLockedClocks": NO_PERMISSION,
        },
    )
    assert result == [[0, NO_PERMISSION, 0, 3, 0], [GPU_IS_LOST, 0, 0, 3, 0]]
    assert [mw for _, mw in limit_changes(stub, 0)] == [300_000]
    assert limit_changes(stub, 1) == []


def test_locked_clocks_set_reset_and_read_back(stub: Stub) -> None:
    state = {
        "count": 2,
        "gpu1.sm_clocks": "1800, 210-1410:15,x,1500",
        "gpu1.mem_clocks": "1593,877",
        "gpu1.sm_clock_mhz": 1755,
        "gpu1.mem_clock_mhz": 1593,
    }
    lists = run(
        stub,
        """
        result = [[N.nvmlDeviceGetSupportedMemoryClocks(h),
                   N.nvmlDeviceGetSupportedGraphicsClocks(
                       h, N.nvmlDeviceGetSupportedMemoryClocks(h)[-1]),
                   N.nvmlDeviceGetMaxClockInfo(h, N.NVML_CLOCK_SM),
                   N.nvmlDeviceGetMaxClockInfo(h, N.NVML_CLOCK_MEM)] for h in H]
        """,
        state,
    )
    assert lists[0] == [[2619], list(range(1980, 344, -15)), 1980, 2619]
    assert lists[1] == [[1593, 877], [1800, 1500, *range(1410, 209, -15)], 1800, 1593]
    assert run(stub, CLOCKS) == [[1980, 1980, 2619], [1755, 1755, 1593]]

    run(
        stub,
        """
        N.nvmlDeviceSetGpuLockedClocks(H[0], 1410, 1410)
        N.nvmlDeviceSetMemoryLockedClocks(H[0], 2619, 2619)
        N.nvmlDeviceSetGpuLockedClocks(H[1], 1200, 1500)  # below the unlocked 1755: at most 1500
        N.nvmlDeviceSetMemoryLockedClocks(H[1], 877, 877)
        """,
    )
    assert run(stub, CLOCKS) == [[1410, 1410, 2619], [1500, 1500, 877]]  # in a later process
    assert sorted(settings_lines(stub)) == [
        "gpu0.mem_locked=2619 2619",
        "gpu0.sm_locked=1410 1410",
        "gpu1.mem_locked=877 877",
        "gpu1.sm_locked=1200 1500",
    ]
    run(stub, "N.nvmlDeviceSetGpuLockedClocks(H[1], 210, 1410)")  # above 1755 the other way
    assert run(stub, CLOCKS)[1] == [1410, 1410, 877]

    run(
        stub,
        """
        N.nvmlDeviceResetGpuLockedClocks(H[0])
        N.nvmlDeviceResetMemoryLockedClocks(H[1])
        N.nvmlDeviceResetMemoryLockedClocks(H[1])  # nothing locked: fine
        """,
    )
    assert run(stub, CLOCKS) == [[1980, 1980, 2619], [1410, 1410, 1593]]
    assert sorted(settings_lines(stub)) == ["gpu0.mem_locked=2619 2619", "gpu1.sm_locked=210 1410"]


def test_unsupported_clocks_are_refused(stub: Stub) -> None:
    result = run(
        stub,
        """
        h = H[0]
        N.nvmlDeviceSetGpuLockedClocks(h, 1410, 1410)
        result = {
            "sm_off_list": code(N.nvmlDeviceSetGpuLockedClocks, h, 1411, 1411),
            "sm_max_off_list": code(N.nvmlDeviceSetGpuLockedClocks, h, 345, 2000),
            "sm_min_gt_max": code(N.nvmlDeviceSetGpuLockedClocks, h, 1500, 1410),
            "mem_off_list": code(N.nvmlDeviceSetMemoryLockedClocks, h, 2000, 2000),
            "mem_min_gt_max": code(N.nvmlDeviceSetMemoryLockedClocks, h, 2619, 877),
            "graphics_for_unknown_mem": code(N.nvmlDeviceGetSupportedGraphicsClocks, h, 1234),
            "clocks": [N.nvmlDeviceGetClockInfo(h, N.NVML_CLOCK_SM),
                       N.nvmlDeviceGetClockInfo(h, N.NVML_CLOCK_MEM)],
        }
        """,
    )
    assert result == {
        "sm_off_list": INVALID_ARGUMENT,
        "sm_max_off_list": INVALID_ARGUMENT,
        "sm_min_gt_max": INVALID_ARGUMENT,
        "mem_off_list": INVALID_ARGUMENT,
        "mem_min_gt_max": INVALID_ARGUMENT,
        "graphics_for_unknown_mem": NOT_FOUND,
        "clocks": [1410, 2619],  # the refused calls changed nothing
    }
    assert settings_lines(stub) == ["gpu0.sm_locked=1410 1410"]


def test_power_usage_is_capped_by_the_limit(stub: Stub, tmp_path: Path) -> None:
    busy = tmp_path / "busy"
    busy.write_text(f"{time.time() - 1:.6f}\n")  # GPU 1 busy: 100 W + 200 W
    state = {
        "count": 3,
        "gpu0.power_mw": 300_000,
        "gpu1.power_mw": 100_000,
        "gpu1.busy_file": busy,
        "gpu2.power_mw": 100_000,
        "gpu2.power_limit_mw": 90_000,  # the state's own initial limit caps it too
        "gpu2.power_limit_min_mw": 50_000,
    }
    power = "result = [N.nvmlDeviceGetPowerUsage(h) for h in H]"
    assert run(stub, power, state) == [300_000, 300_000, 90_000]
    run(
        stub,
        """
        for h in H:
            N.nvmlDeviceSetPowerManagementLimit(h, 200_000)
        """,
    )
    assert run(stub, power) == [200_000, 200_000, 100_000]  # a cap, never a floor
    run(stub, "N.nvmlDeviceSetPowerManagementLimit(H[1], 250_000)")
    assert run(stub, power) == [200_000, 250_000, 100_000]


def test_energy_over_a_window_under_a_200_w_cap(stub: Stub) -> None:
    state = {"count": 1, "t0": time.time(), "gpu0.energy_rate_mw": 300_000}
    state["gpu0.power_mw"] = 300_000
    r = run(
        stub,
        """
        N.nvmlDeviceSetPowerManagementLimit(H[0], 200_000)
        t_a0 = time.time(); e_a = N.nvmlDeviceGetTotalEnergyConsumption(H[0]); t_a1 = time.time()
        time.sleep(0.5)
        t_b0 = time.time(); e_b = N.nvmlDeviceGetTotalEnergyConsumption(H[0]); t_b1 = time.time()
        result = {"e_a": e_a, "e_b": e_b, "t_a0": t_a0, "t_a1": t_a1, "t_b0": t_b0, "t_b1": t_b1,
                  "power": N.nvmlDeviceGetPowerUsage(H[0])}
        """,
        state,
    )
    delta = r["e_b"] - r["e_a"]
    assert delta <= 200_000 * (r["t_b1"] - r["t_a0"]) + 2  # at most 200 W x the window
    assert delta >= 200_000 * (r["t_b0"] - r["t_a1"]) - 2  # and no less: it draws 300 W
    assert r["power"] == 200_000


def capped_energy_mj(
    t: float,
    t0: float,
    changes: list[tuple[float, int]],
    initial_mw: int,
    idle_mw: int,
    busy_mw: int,
    busy: list[tuple[float, float]],
) -> float:
    """mJ from t0 to t of min(idle_mw (+ busy_mw while busy), limit in force), exactly."""
    points = sorted({t0, t, *(c for c, _ in changes), *(x for iv in busy for x in iv)})
    points = [p for p in points if t0 <= p <= t]
    total = 0.0
    for a, b in zip(points, points[1:], strict=False):
        mid = (a + b) / 2
        cap = initial_mw
        for when, mw in changes:
            if when <= mid:
                cap = mw
        draw = idle_mw + (busy_mw if any(s <= mid < e for s, e in busy) else 0)
        total += min(draw, cap) * (b - a)
    return total


def test_energy_is_exact_and_monotonic_when_another_process_changes_the_limit(
    stub: Stub, tmp_path: Path
) -> None:
    # one process reads the counter all along; another makes GPU 0 busy (100 W + 200 W) and
    # changes its limit twice meanwhile: 700 W (none), 150 W (cuts the busy draw), 80 W (cuts
    # even the idle draw), then 250 W after the busy period ends
    busy, started, done = tmp_path / "busy", tmp_path / "started", tmp_path / "done"
    t0 = time.time()
    state = {
        "count": 1,
        "t0": t0,
        "gpu0.energy_rate_mw": 100_000,
        "gpu0.power_mw": 100_000,
        "gpu0.busy_file": busy,
        "gpu0.power_limit_min_mw": 50_000,
    }
    stub.write_state(state)
    reader = f"""
    h = H[0]
    readings = []
    def read():
        t_before = time.time()
        e = N.nvmlDeviceGetTotalEnergyConsumption(h)
        readings.append([t_before, e, time.time()])
    read()
    open({str(started)!r}, "w").close()
    deadline = time.time() + 20
    while not os.path.exists({str(done)!r}) and time.time() < deadline:
        read()
        time.sleep(0.005)
    end = time.time() + 0.1
    while time.time() < end:
        read()
        time.sleep(0.005)
    result = readings
    """
    setter = f"""
    h = H[0]
    deadline = time.time() + 20
    while not os.path.exists({str(started)!r}) and time.time() < deadline:
        time.sleep(0.005)
    # each busy line is in the file before its time comes (a reader must not see it late)
    start = time.time() + 0.05
    with open({str(busy)!r}, "a") as f:
        f.write(f"{{start:.6f}}\\n")
    time.sleep(0.1)
    N.nvmlDeviceSetPowerManagementLimit(h, 150_000)
    time.sleep(0.15)
    N.nvmlDeviceSetPowerManagementLimit(h, 80_000)
    time.sleep(0.05)
    with open({str(busy)!r}, "a") as f:
        f.write(f"{{start:.6f}} {{time.time() + 0.05:.6f}}\\n")
    time.sleep(0.1)
    N.nvmlDeviceSetPowerManagementLimit(h, 250_000)
    time.sleep(0.1)
    open({str(done)!r}, "w").close()
    """
    with ThreadPoolExecutor(2) as pool:
        reading = pool.submit(run, stub, reader)
        time.sleep(0.05)
        setting = pool.submit(run, stub, setter)
        readings = reading.result()
        setting.result()

    changes = limit_changes(stub, 0)
    assert [mw for _, mw in changes] == [150_000, 80_000, 250_000]
    start, end = map(float, busy.read_text().splitlines()[1].split())  # as the stub reads them
    assert start < changes[0][0] < changes[1][0] < end < changes[2][0]
    assert readings[0][2] < start and readings[-1][0] > changes[2][0]  # the window spans them

    def expected(t: float) -> float:
        return capped_energy_mj(t, t0, changes, 700_000, 100_000, 200_000, [(start, end)])

    values = [e for _, e, _ in readings]
    assert values == sorted(values)  # monotonic across the other process's changes
    for t_before, e, t_after in readings:  # and exact: within the call's own time
        assert expected(t_before) - 2 <= e <= expected(t_after) + 2
    # the window as a whole: far from what an uncapped 300 W busy draw would give
    first, last = readings[0], readings[-1]
    uncapped = 100_000 * (last[0] - first[2]) + 200_000 * (end - start)
    assert last[1] - first[1] <= expected(last[2]) - expected(first[0]) + 2
    assert last[1] - first[1] < uncapped - 200_000 * 0.1


def test_two_processes_setting_different_gpus_lose_no_update(stub: Stub, tmp_path: Path) -> None:
    stub.write_state({"count": 2})
    # each process on its own GPU, both starting together (each waits for the other's flag)
    script = """
    i = {gpu}
    h = H[i]
    open(os.path.join({dir!r}, f"ready{{i}}"), "w").close()
    deadline = time.time() + 20
    while not os.path.exists(os.path.join({dir!r}, f"ready{{1 - i}}")) and time.time() < deadline:
        time.sleep(0.001)
    limits = []
    for k in range(60):
        mw = 200_000 + 1_000 * (k % 2) + 10_000 * i
        N.nvmlDeviceSetPowerManagementLimit(h, mw)
        N.nvmlDeviceSetGpuLockedClocks(h, 1410 - 15 * (k % 3), 1410)
        limits.append(mw)
    N.nvmlDeviceSetMemoryLockedClocks(h, 2619, 2619)
    result = limits
    """
    flags = tmp_path / "flags"
    flags.mkdir()
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(run, stub, script.format(gpu=i, dir=str(flags))) for i in (0, 1)]
        limits = [f.result() for f in futures]
    for i in (0, 1):
        changes = limit_changes(stub, i)
        assert [mw for _, mw in changes] == limits[i]  # every change of every process kept
        assert [t for t, _ in changes] == sorted(t for t, _ in changes)
    assert [g["limit"] for g in run(stub, LIMITS)] == [201_000, 211_000]
    assert run(stub, CLOCKS) == [[1410, 1410, 2619], [1410, 1410, 2619]]
    assert sorted(line for line in settings_lines(stub) if "locked" in line) == [
        "gpu0.mem_locked=2619 2619",
        "gpu0.sm_locked=1380 1410",  # the last lock: k = 59
        "gpu1.mem_locked=2619 2619",
        "gpu1.sm_locked=1380 1410",
    ]
    leftovers = sorted(p.name for p in stub.settings_file.parent.iterdir() if p.is_file())
    assert leftovers == ["nvml_state", "nvml_state.settings"]
