"""GPU settings through NVML (llem_cli.telemetry.gpu_settings) on the stand-in library.

Each check runs the real pynvml binding on the compiled stub in a fresh process (``stub``
fixture, llem_testkit.nvml_stub). What a setter changes lives in the stub's settings file,
so it outlives the process, as on a real driver. ``no_permission`` makes every setter answer
NVML_ERROR_NO_PERMISSION; ``error.FUNC=N`` makes FUNC answer N.
"""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from llem_cli.telemetry.gpu_settings import GpuSettings, Original
from llem_testkit.nvml_stub import Stub

UUID = "GPU-00000000-0000-0000-0000-00000000000{}"
HINT = (
    "run llem as root on the host; inside a container root also needs CAP_SYS_ADMIN "
    "(docker run --cap-add SYS_ADMIN)"
)

SETUP = """
from llem_cli.telemetry import GpuSettings, NvmlGpuLost, Original, SettingRefused
from llem_cli.telemetry import SettingsControl, open_gpus
gs = open_gpus()
control = SettingsControl(gs)

def refused(call):
    try:
        call()
    except SettingRefused as exc:
        return exc.reason
    return None
"""


def run(stub: Stub, body: str, state: dict[str, object] | None = None) -> Any:
    """Run ``body`` after SETUP on the stub."""
    return stub.run(SETUP + textwrap.dedent(body), state)


# ---- the plain types -------------------------------------------------------------------------


def test_settings_and_original_round_trip() -> None:
    s = GpuSettings(power_limit_w=312.5, sm_clock_mhz=1410)
    assert s.as_dict() == {"power_limit_w": 312.5, "sm_clock_mhz": 1410, "mem_clock_mhz": None}
    assert GpuSettings.from_dict({**s.as_dict(), "model": "gpt2"}) == s
    assert GpuSettings().empty and not s.empty
    for bad in ({"power_limit_w": 0}, {"sm_clock_mhz": 1410.5}, {"mem_clock_mhz": True}):
        with pytest.raises(ValueError):
            GpuSettings(**bad)

    o = Original(power_limit_w=700.0, reset_sm_clocks=True, reset_mem_clocks=False)
    assert o.to_json() == {
        "power_limit_w": 700.0,
        "reset_sm_clocks": True,
        "reset_mem_clocks": False,
    }
    assert Original.from_json(o.to_json()) == o
    assert o.describe() == "power limit 700 W, SM clock unlocked"
    assert Original(None).describe() == "clocks unlocked"
    with pytest.raises(ValueError, match="power_limit_w"):
        Original.from_json({"power_limit_w": "700"})


# ---- permission ------------------------------------------------------------------------------


def test_permission_is_nvmls_answer(stub: Stub) -> None:
    r = run(
        stub,
        """
        before = [control.read(i)["power_limit_w"] for i in range(3)]
        result = {
            "permitted": control.permission_problem([0, 2]),
            "refused": control.permission_problem([0, 1, 2]),
            "missing": control.permission_problem([0, 7]),
            "unchanged": [control.read(i)["power_limit_w"] for i in range(3)] == before,
            "apply": refused(lambda: control.apply(1, GpuSettings(power_limit_w=300))),
            "lock": refused(lambda: control.apply(1, GpuSettings(sm_clock_mhz=1410))),
        }
        """,
        {"count": 3, "gpu1.no_permission": 1, "gpu1.power_limit_mw": 450_000},
    )
    assert r == {
        "permitted": None,
        "refused": "no permission to change the settings of GPU 1 ("
        + UUID.format(1)
        + "): NVML refused to set its power limit (no permission (Insufficient Permissions)); "
        + HINT,
        "missing": "GPU 7 not found by NVML (the host has 3)",
        "unchanged": True,
        "apply": "GPU 1 (Fake GPU): NVML refused power_limit_w 300: no permission "
        "(Insufficient Permissions); " + HINT,
        "lock": "GPU 1 (Fake GPU): NVML refused sm_clock_mhz 1410: no permission "
        "(Insufficient Permissions); " + HINT,
    }


def test_no_permission_anywhere_and_power_management_unsupported(stub: Stub) -> None:
    # the first GPU refused is named; a GPU that cannot report a power limit is not judged
    r = run(
        stub,
        """
        result = [control.permission_problem([0, 1]), control.permission_problem([0])]
        """,
        {
            "count": 2,
            "no_permission": 1,
            "gpu0.error.nvmlDeviceGetPowerManagementLimit": 3,
        },
    )
    assert r[0].startswith(f"no permission to change the settings of GPU 1 ({UUID.format(1)})")
    assert r[1] is None


# ---- values against NVML's constraints -------------------------------------------------------


def test_value_problems_name_value_gpu_and_what_is_allowed(stub: Stub) -> None:
    settings = [
        GpuSettings(power_limit_w=250, sm_clock_mhz=1410, mem_clock_mhz=1593),  # fine
        GpuSettings(power_limit_w=800),
        GpuSettings(power_limit_w=99.9995),  # 99999.5 mW rounds to 100000: the minimum
        GpuSettings(power_limit_w=99.5),
        GpuSettings(sm_clock_mhz=1411),
        GpuSettings(sm_clock_mhz=1500, mem_clock_mhz=1593),  # not at the lower memory clock
        GpuSettings(sm_clock_mhz=1500, mem_clock_mhz=1000),  # only the memory clock is wrong
        GpuSettings(power_limit_w=800),  # a duplicate says nothing new
    ]
    r = run(
        stub,
        f"""
        settings = [GpuSettings(**d) for d in {[s.as_dict() for s in settings]!r}]
        result = {{
            "fine": control.value_problems([0, 1], settings[:1]),
            "problems": control.value_problems([0, 1, 4], settings),
        }}
        """,
        {
            "count": 2,
            "gpu0.mem_clocks": "2619,1593",
            "gpu1.name": "Big GPU",
            "gpu1.power_limit_max_mw": 1_000_000,
            "gpu1.mem_clocks": "1593,2619",
            "gpu1.sm_clocks": "1410,1500-1980:15",
        },
    )
    assert r["fine"] == []
    g0, g1 = "GPU 0 (Fake GPU)", "GPU 1 (Big GPU)"
    assert r["problems"] == [
        f"power_limit_w 800 is out of range for {g0}: allowed 100 W to 700 W",
        f"power_limit_w 99.5 is out of range for {g0}: allowed 100 W to 700 W",
        f"sm_clock_mhz 1411 is not a supported SM clock of {g0} at any memory clock: "
        "supported 345 to 1980 MHz (110 values; nearest 1410 and 1425)",
        f"mem_clock_mhz 1000 is not a supported memory clock of {g0}: supported 1593, 2619 MHz",
        f"power_limit_w 99.5 is out of range for {g1}: allowed 100 W to 1000 W",
        f"sm_clock_mhz 1411 is not a supported SM clock of {g1} at any memory clock: "
        "supported 1410 to 1980 MHz (34 values; nearest 1410 and 1500)",
        f"mem_clock_mhz 1000 is not a supported memory clock of {g1}: supported 1593, 2619 MHz",
        "GPU 4 not found by NVML (the host has 2)",
    ]


def test_value_problems_when_nvml_cannot_list(stub: Stub) -> None:
    r = run(
        stub,
        """
        s = GpuSettings(power_limit_w=300, sm_clock_mhz=1410, mem_clock_mhz=2619)
        first = control.value_problems([0], [s])
        set_state(error__nvmlDeviceGetPowerManagementLimitConstraints=0,
                  error__nvmlDeviceGetSupportedMemoryClocks=0,
                  error__nvmlDeviceGetSupportedGraphicsClocks=3)
        result = [first, control.value_problems([0], [s, GpuSettings(sm_clock_mhz=1410)])]
        """,
        {
            "error.nvmlDeviceGetPowerManagementLimitConstraints": 3,
            "error.nvmlDeviceGetSupportedMemoryClocks": 3,
        },
    )
    unsupported = "not supported (Not Supported)"
    assert r == [
        [
            f"power_limit_w 300: GPU 0 (Fake GPU) cannot report its power limit range: "
            f"{unsupported}",
            f"mem_clock_mhz 2619: GPU 0 (Fake GPU) cannot list its memory clocks: {unsupported}",
        ],
        [
            "sm_clock_mhz 1410: GPU 0 (Fake GPU) cannot list its SM clocks at memory clock "
            f"2619 MHz: {unsupported}",
        ],
    ]


# ---- apply, read back, skip ------------------------------------------------------------------

NO_SETTERS = {
    "error__nvmlDeviceSetPowerManagementLimit": 999,
    "error__nvmlDeviceSetGpuLockedClocks": 999,
    "error__nvmlDeviceSetMemoryLockedClocks": 999,
    "error__nvmlDeviceResetGpuLockedClocks": 999,
    "error__nvmlDeviceResetMemoryLockedClocks": 999,
}
SETTERS_BACK = {k: 0 for k in NO_SETTERS}


def test_apply_reads_back_and_skips_what_the_gpu_has(stub: Stub) -> None:
    r = run(
        stub,
        f"""
        want = GpuSettings(power_limit_w=312.5, sm_clock_mhz=1410, mem_clock_mhz=1593)
        before = control.read(0)
        original = control.original(0)
        first = control.apply(0, want).as_dict()
        # every setter now fails: applying what the GPU has must call none
        set_state(**{NO_SETTERS!r})
        again = control.apply(0, want).as_dict()
        # a fresh control is told what llem applied; the power limit it reads itself
        told = SettingsControl(gs).apply(0, want, current=want).as_dict()
        set_state(**{SETTERS_BACK!r})
        # None after a change: back to the original (power limit as read, clocks unlocked)
        back = control.apply(0, GpuSettings()).as_dict()
        result = {{"before": before, "original": original.to_json(), "first": first,
                   "again": again, "told": told, "back": back, "gpu1": control.read(1)}}
        """,
        {"count": 2, "gpu0.mem_clocks": "2619,1593", "gpu0.power_limit_mw": 650_000},
    )
    untouched = {
        "power_limit_w": 650.0,
        "enforced_power_limit_w": 650.0,
        "sm_clock_mhz": 1980,
        "mem_clock_mhz": 2619,
    }
    assert r["before"] == untouched
    assert r["original"] == {
        "power_limit_w": 650.0,
        "reset_sm_clocks": True,
        "reset_mem_clocks": True,
    }
    applied = {"power_limit_w": 312.5, "sm_clock_mhz": 1410, "mem_clock_mhz": 1593}
    readback = {
        "power_limit_w": 312.5,
        "enforced_power_limit_w": 312.5,
        "sm_clock_mhz": 1410,
        "mem_clock_mhz": 1593,
    }
    assert r["first"] == {**applied, "changed": True, "readback": readback, "warnings": []}
    assert r["again"] == {**applied, "changed": False, "readback": readback, "warnings": []}
    assert r["told"] == r["again"]
    assert r["back"] == {
        "power_limit_w": None,
        "sm_clock_mhz": None,
        "mem_clock_mhz": None,
        "changed": True,
        "readback": untouched,
        "warnings": [],
    }
    assert r["gpu1"]["power_limit_w"] == 700.0  # another GPU is not touched


def test_only_what_differs_is_set(stub: Stub) -> None:
    # the power limit changes, the clock lock stays: no clock setter may be called
    r = run(
        stub,
        """
        control.apply(0, GpuSettings(power_limit_w=300, sm_clock_mhz=1410))
        set_state(
            error__nvmlDeviceSetGpuLockedClocks=999, error__nvmlDeviceResetGpuLockedClocks=999
        )
        second = control.apply(0, GpuSettings(power_limit_w=400, sm_clock_mhz=1410))
        # the power limit is read, not remembered: changed behind llem's back, it is set again
        other = SettingsControl(gs)
        other.apply(0, GpuSettings(power_limit_w=500))
        third = control.apply(0, GpuSettings(power_limit_w=400, sm_clock_mhz=1410))
        result = [second.changed, second.readback, third.changed, third.readback["power_limit_w"]]
        """,
    )
    assert r == [
        True,
        {
            "power_limit_w": 400.0,
            "enforced_power_limit_w": 400.0,
            "sm_clock_mhz": 1410,
            "mem_clock_mhz": 2619,
        },
        True,
        400.0,
    ]


def test_refusals_raise_one_line(stub: Stub) -> None:
    r = run(
        stub,
        """
        out = {}
        out["range"] = refused(lambda: control.apply(0, GpuSettings(power_limit_w=800)))
        out["clock"] = refused(lambda: control.apply(0, GpuSettings(sm_clock_mhz=1411)))
        set_state(error__nvmlDeviceSetMemoryLockedClocks=3)
        out["mem"] = refused(lambda: control.apply(0, GpuSettings(mem_clock_mhz=2619)))
        set_state(error__nvmlDeviceSetMemoryLockedClocks=0, error__nvmlDeviceGetClockInfo=3)
        a = control.apply(0, GpuSettings(mem_clock_mhz=2619))
        out["unread"] = [a.changed, list(a.warnings)]
        # a lock NVML failed leaves the clock unknown: None then resets it (here refused)
        set_state(error__nvmlDeviceGetClockInfo=0, error__nvmlDeviceSetGpuLockedClocks=999)
        out["unknown"] = refused(lambda: control.apply(0, GpuSettings(sm_clock_mhz=1410)))
        set_state(error__nvmlDeviceResetGpuLockedClocks=4)
        out["reset"] = refused(lambda: control.apply(0, GpuSettings()))
        out["missing"] = refused(lambda: control.apply(3, GpuSettings(power_limit_w=300)))
        set_state(gpu0__error__nvmlDeviceGetPowerManagementLimit=15)
        try:
            control.apply(0, GpuSettings(power_limit_w=300))
        except NvmlGpuLost as exc:
            out["lost"] = exc.message
        result = out
        """,
        {"count": 1},
    )
    assert r == {
        "range": "GPU 0 (Fake GPU): NVML refused power_limit_w 800: NVML error 2 "
        "(Invalid Argument)",
        "clock": "GPU 0 (Fake GPU): NVML refused sm_clock_mhz 1411: NVML error 2 "
        "(Invalid Argument)",
        "mem": "GPU 0 (Fake GPU): NVML refused mem_clock_mhz 2619: not supported (Not Supported)",
        "unread": [
            True,
            [
                "GPU 0 (Fake GPU): memory clock locked at 2619 MHz but not read back: "
                "not supported (Not Supported)"
            ],
        ],
        "unknown": "GPU 0 (Fake GPU): NVML refused sm_clock_mhz 1410: NVML error 999 (Unknown "
        "Error)",
        "reset": "GPU 0 (Fake GPU): NVML refused to unlock the SM clock: no permission "
        "(Insufficient Permissions); " + HINT,
        "missing": "GPU 3 not found by NVML (the host has 1)",
        "lost": "GPU lost (GPU is lost)",
    }


# ---- restore ---------------------------------------------------------------------------------


def test_restore_puts_back_and_never_raises(stub: Stub) -> None:
    r = run(
        stub,
        """
        originals = [control.original(i) for i in range(3)]
        for i in range(3):
            control.apply(i, GpuSettings(power_limit_w=200, sm_clock_mhz=1410, mem_clock_mhz=2619))
        # GPU 0 may not be changed any more, GPU 1 is lost; GPU 2 must still be restored
        set_state(gpu0__no_permission=1, gpu1__error__nvmlDeviceGetName=15,
                  gpu1__error__nvmlDeviceGetUUID=15)
        problems = [control.restore(i, originals[i]) for i in range(3)]
        set_state(gpu0__no_permission=0, gpu1__error__nvmlDeviceGetName=0,
                  gpu1__error__nvmlDeviceGetUUID=0)
        result = {"problems": problems, "after": [control.read(i) for i in range(3)],
                  "again": control.restore(0, originals[0]),
                  "after0": control.read(0)}
        """,
        {"count": 3, "gpu2.power_limit_mw": 555_000},
    )
    g0 = f"GPU 0 ({UUID.format(0)})"
    assert r["problems"] == [
        [
            f"{g0}: power limit not restored to 700 W: no permission (Insufficient "
            "Permissions); " + HINT,
            f"{g0}: SM clock not unlocked: no permission (Insufficient Permissions); " + HINT,
            f"{g0}: memory clock not unlocked: no permission (Insufficient Permissions); " + HINT,
        ],
        ["GPU 1: settings not restored: GPU lost (GPU is lost)"],
        [],
    ]
    assert r["after"][2] == {
        "power_limit_w": 555.0,
        "enforced_power_limit_w": 555.0,
        "sm_clock_mhz": 1980,
        "mem_clock_mhz": 2619,
    }
    assert r["after"][0]["power_limit_w"] == 200.0  # refused: still changed
    assert r["again"] == []  # permitted again: restored
    assert r["after0"] == {
        "power_limit_w": 700.0,
        "enforced_power_limit_w": 700.0,
        "sm_clock_mhz": 1980,
        "mem_clock_mhz": 2619,
    }


def test_restore_resets_only_flagged_clocks_and_tolerates_unsupported_reset(stub: Stub) -> None:
    r = run(
        stub,
        """
        control.apply(0, GpuSettings(sm_clock_mhz=1410))
        # memory clocks: never locked by this run, and the GPU cannot lock them (pre-Ampere)
        set_state(error__nvmlDeviceResetMemoryLockedClocks=3)
        a = control.restore(0, Original(None, reset_sm_clocks=True, reset_mem_clocks=True))
        set_state(error__nvmlDeviceResetMemoryLockedClocks=999)
        control.apply(0, GpuSettings(sm_clock_mhz=1410))
        b = control.restore(0, Original(None, reset_sm_clocks=True, reset_mem_clocks=False))
        result = [a, b, control.read(0)["sm_clock_mhz"], control.restore(5, Original(300.0))]
        """,
    )
    assert r == [
        [],
        [],
        1980,
        ["GPU 5 not found by NVML (the host has 1); its settings were not restored"],
    ]
