"""The stand-in NVML as several GPUs: distinct UUIDs, handles by UUID, and busy periods.

Each check runs the real pynvml binding on the compiled stub (``stub`` fixture). Busy periods
come from a file per GPU (``gpuI.busy_file`` or ``busy_dir``/<uuid>): lines ``START`` or
``START END``, Unix seconds; while busy a GPU draws ``gpuI.busy_power_mw`` more.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from llem_testkit.nvml_stub import Stub

NOT_FOUND = 6
IDLE_MW = 100_000  # energy_rate_mw and power_mw of the GPUs below: 100 W
BUSY_MW = 200_000  # the stub's default busy_power_mw

# Read GPU 0's counter twice, {gap} s apart (running {between} after the first read); t_*
# bracket each call on the wall clock.
COUNTER_TWICE = """
import pynvml as N
N.nvmlInit()
h = N.nvmlDeviceGetHandleByIndex(0)
t_a0 = time.time(); e_a = N.nvmlDeviceGetTotalEnergyConsumption(h); t_a1 = time.time()
{between}
time.sleep(max(0, {gap} - (time.time() - t_a1)))
t_b0 = time.time(); e_b = N.nvmlDeviceGetTotalEnergyConsumption(h); t_b1 = time.time()
result = {{"e_a": e_a, "e_b": e_b, "t_a0": t_a0, "t_a1": t_a1, "t_b0": t_b0, "t_b1": t_b1}}
"""

POWER = """
import pynvml as N
N.nvmlInit()
result = [N.nvmlDeviceGetPowerUsage(N.nvmlDeviceGetHandleByIndex(i))
          for i in range(N.nvmlDeviceGetCount())]
"""


def overlap(intervals: list[tuple[float, float]], lo: float, hi: float) -> float:
    """Seconds of the union of ``intervals`` inside [lo, hi]."""
    total, cur_s, cur_e = 0.0, None, 0.0
    for s, e in sorted(intervals):
        s, e = max(s, lo), min(e, hi)
        if e <= s:
            continue
        if cur_s is not None and s <= cur_e:
            cur_e = max(cur_e, e)
            continue
        if cur_s is not None:
            total += cur_e - cur_s
        cur_s, cur_e = s, e
    if cur_s is not None:
        total += cur_e - cur_s
    return total


def expected_delta_mj(r: dict, intervals: list[tuple[float, float]]) -> tuple[float, float]:
    """Bounds of the counter's advance between the two reads of COUNTER_TWICE."""

    def energy(t: float) -> float:  # mJ since any fixed origin before the intervals (t0)
        return IDLE_MW * t + BUSY_MW * overlap(intervals, 0.0, t)

    low = energy(r["t_b0"]) - energy(r["t_a1"])
    high = energy(r["t_b1"]) - energy(r["t_a0"])
    return low - 2, high + 2  # the stub truncates each reading to whole mJ


def busy_state(busy_file: Path, t0: float, **extra: object) -> dict[str, object]:
    return {
        "count": 1,
        "t0": t0,
        "gpu0.energy_rate_mw": IDLE_MW,
        "gpu0.power_mw": IDLE_MW,
        "gpu0.busy_file": busy_file,
        **extra,
    }


def test_gpus_have_distinct_default_uuids_and_handles_by_uuid(stub: Stub) -> None:
    result = stub.run(
        """
        import pynvml as N
        N.nvmlInit()
        n = N.nvmlDeviceGetCount()
        uuids = [N.nvmlDeviceGetUUID(N.nvmlDeviceGetHandleByIndex(i)) for i in range(n)]
        names = [N.nvmlDeviceGetName(N.nvmlDeviceGetHandleByUUID(u)) for u in uuids]
        ascii_v = [N.nvmlDeviceGetName(N.nvmlDeviceGetHandleByUUIDV(u, N.NVML_UUID_TYPE_ASCII))
                   for u in uuids]
        raw = bytes.fromhex(uuids[3][4:].replace("-", ""))
        binary = N.nvmlDeviceGetName(N.nvmlDeviceGetHandleByUUIDV(raw, N.NVML_UUID_TYPE_BINARY))
        missing = {}
        for u in ("GPU-nope", "GPU-00000000-0000-0000-0000-000000000004"):
            try:
                N.nvmlDeviceGetHandleByUUID(u)
            except N.NVMLError as exc:
                missing[u] = [exc.value, str(exc)]
        result = {"uuids": uuids, "names": names, "ascii_v": ascii_v, "binary": binary,
                  "missing": missing}
        """,
        {
            "count": 4,
            "gpu0.name": "A",
            "gpu1.name": "B",
            "gpu2.name": "C",
            "gpu2.uuid": "GPU-custom-2",
            "gpu3.name": "D",
        },
    )
    assert result["uuids"] == [
        "GPU-00000000-0000-0000-0000-000000000000",  # what the test image's nvidia-smi says
        "GPU-00000000-0000-0000-0000-000000000001",
        "GPU-custom-2",
        "GPU-00000000-0000-0000-0000-000000000003",
    ]
    assert result["names"] == result["ascii_v"] == ["A", "B", "C", "D"]
    assert result["binary"] == "D"
    # a UUID no GPU has, and the default UUID of a GPU beyond count
    assert result["missing"] == {
        "GPU-nope": [NOT_FOUND, "Not Found"],
        "GPU-00000000-0000-0000-0000-000000000004": [NOT_FOUND, "Not Found"],
    }


def test_handle_by_uuid_takes_injected_errors(stub: Stub) -> None:
    result = stub.run(
        """
        import pynvml as N
        N.nvmlInit()
        out = []
        for u in ("GPU-00000000-0000-0000-0000-000000000000",
                  "GPU-00000000-0000-0000-0000-000000000001"):
            try:
                N.nvmlDeviceGetHandleByUUID(u)
                out.append(0)
            except N.NVMLError as exc:
                out.append(exc.value)
        result = out
        """,
        {"count": 2, "gpu1.error.nvmlDeviceGetHandleByUUID": 15},
    )
    assert result == [0, 15]


def test_busy_periods_add_to_the_counter_over_a_window(stub: Stub, tmp_path: Path) -> None:
    # t0 10 s ago; intervals relative to t0: overlapping ones count once, one partly before t0
    t0 = time.time() - 10
    busy = tmp_path / "busy"
    rel = [(-5.0, 0.5), (1.0, 3.0), (2.0, 4.0)]
    busy.write_text(
        "\n".join(f"{t0 + s:.6f} {t0 + e:.6f}" for s, e in rel)
        + "\n# a comment, then noise\nnot a time\n7 3\n"
    )
    # one more, from 0.2 s to 0.6 s after the first read, appended after that read
    between = (
        f"with open({str(busy)!r}, 'a') as f:\n"
        "    f.write(f'{t_a1 + 0.2:.6f} {t_a1 + 0.6:.6f}\\n')\n"
    )
    r = stub.run(COUNTER_TWICE.format(gap=0.8, between=between), busy_state(busy, t0))
    rel.append((r["t_a1"] - t0 + 0.2, r["t_a1"] - t0 + 0.6))
    for k in ("t_a0", "t_a1", "t_b0", "t_b1"):
        r[k] -= t0
    low, high = expected_delta_mj(r, [(max(s, 0.0), e) for s, e in rel])
    assert low <= r["e_b"] - r["e_a"] <= high
    # so: the idle rate over the window plus 0.4 s busy at 200 W
    assert r["e_b"] - r["e_a"] >= IDLE_MW * (r["t_b0"] - r["t_a1"]) + BUSY_MW * 0.4 - 2
    # the first reading: the idle rate since t0 plus 0.5 + 3 s of busy time
    assert r["e_a"] == pytest.approx(IDLE_MW * r["t_a0"] + BUSY_MW * 3.5, abs=IDLE_MW * 0.1)


def test_busy_power_and_open_interval(stub: Stub, tmp_path: Path) -> None:
    start = time.time() - 1
    busy = tmp_path / "busy"
    busy.write_text(f"{start:.6f}\n")  # busy since start, still busy
    other = tmp_path / "other"
    other.write_text(f"{time.time() + 60:.6f}\n")  # starts in a minute: not busy yet
    state = {
        "count": 3,
        "t0": start - 1,
        "gpu0.power_mw": IDLE_MW,
        "gpu0.busy_file": busy,
        "gpu0.energy_rate_mw": IDLE_MW,
        "gpu1.power_mw": 50_000,
        "gpu1.busy_file": other,
        "gpu2.busy_file": busy,
        "gpu2.busy_power_mw": 1_000,
    }
    assert stub.run(POWER, state) == [IDLE_MW + BUSY_MW, 50_000, 100_000 + 1_000]

    # the open interval counts up to now
    r = stub.run(COUNTER_TWICE.format(gap=0.3, between=""))
    for k in ("t_a0", "t_a1", "t_b0", "t_b1"):
        r[k] -= start - 1
    low, high = expected_delta_mj(r, [(1.0, 1e9)])
    assert low <= r["e_b"] - r["e_a"] <= high
    assert r["e_b"] - r["e_a"] >= (IDLE_MW + BUSY_MW) * (r["t_b0"] - r["t_a1"]) - 2

    # a `START END` line with the same START closes it: idle again, energy up to END only
    end = time.time()
    with busy.open("a") as f:
        f.write(f"{start:.6f} {end:.6f}\n")
    assert stub.run(POWER) == [IDLE_MW, 50_000, 100_000]
    e = stub.run(
        """
        import pynvml as N
        N.nvmlInit()
        t = time.time()
        result = [N.nvmlDeviceGetTotalEnergyConsumption(N.nvmlDeviceGetHandleByIndex(0)), t]
        """
    )
    assert e[0] == pytest.approx(
        IDLE_MW * (e[1] - start + 1) + BUSY_MW * (end - start), abs=IDLE_MW * 0.1
    )


def test_counter_never_goes_back_when_an_open_interval_closes_in_the_past(
    stub: Stub, tmp_path: Path
) -> None:
    # read while open, then close it at an END before that read: the busy part stands still
    busy = tmp_path / "busy"
    start = time.time() - 0.5
    busy.write_text(f"{start:.6f}\n")
    result = stub.run(
        f"""
        import pynvml as N
        N.nvmlInit()
        h = N.nvmlDeviceGetHandleByIndex(0)
        readings = [N.nvmlDeviceGetTotalEnergyConsumption(h)]
        time.sleep(0.3)
        readings.append(N.nvmlDeviceGetTotalEnergyConsumption(h))
        with open({str(busy)!r}, "a") as f:
            f.write("{start:.6f} {start + 0.1:.6f}\\n")
        for _ in range(3):
            readings.append(N.nvmlDeviceGetTotalEnergyConsumption(h))
            time.sleep(0.05)
        result = readings
        """,
        busy_state(busy, start - 1, **{"gpu0.energy_rate_mw": 0}),
    )
    assert result[1] - result[0] >= BUSY_MW * 0.3 - 2  # busy all along while open
    assert result[2:] == [result[1]] * 3  # not back to 0.1 s of busy time


def test_missing_or_unreadable_busy_file_is_never_busy(stub: Stub, tmp_path: Path) -> None:
    t0 = time.time() - 5
    state = {
        "count": 3,
        "t0": t0,
        "gpu0.busy_file": tmp_path / "no-such-file",
        "gpu1.busy_file": tmp_path,  # a directory: opens, but reads nothing
        "gpu2.busy_file": tmp_path / "empty",
        **{f"gpu{i}.energy_rate_mw": IDLE_MW for i in range(3)},
        **{f"gpu{i}.power_mw": IDLE_MW for i in range(3)},
    }
    (tmp_path / "empty").write_text("")
    result = stub.run(
        """
        import pynvml as N
        N.nvmlInit()
        hs = [N.nvmlDeviceGetHandleByIndex(i) for i in range(3)]
        t = time.time()
        result = {"power": [N.nvmlDeviceGetPowerUsage(h) for h in hs],
                  "energy": [N.nvmlDeviceGetTotalEnergyConsumption(h) for h in hs], "t": t}
        """,
        state,
    )
    assert result["power"] == [IDLE_MW] * 3
    for e in result["energy"]:
        assert e == pytest.approx(IDLE_MW * (result["t"] - t0), abs=IDLE_MW * 0.1)


def test_many_lines_and_long_lines(stub: Stub, tmp_path: Path) -> None:
    # 3000 busy milliseconds spread over 6 s, and a 1000-character line (ignored whole: its
    # head alone would read as "busy since t0 + 1")
    t0 = time.time() - 10
    lines = [f"{t0 + 1 + i * 0.002:.6f} {t0 + 1 + i * 0.002 + 0.001:.6f}" for i in range(3000)]
    lines.insert(1500, f"{t0 + 1:.6f}" + " " * 1000 + "# too long")
    busy = tmp_path / "busy"
    busy.write_text("\n".join(lines) + "\n")
    result = stub.run(
        """
        import pynvml as N
        N.nvmlInit()
        h = N.nvmlDeviceGetHandleByIndex(0)
        t = time.time()
        result = [N.nvmlDeviceGetTotalEnergyConsumption(h), t, N.nvmlDeviceGetPowerUsage(h)]
        """,
        busy_state(busy, t0),
    )
    energy, t, power = result
    assert energy == pytest.approx(IDLE_MW * (t - t0) + BUSY_MW * 3.0, abs=IDLE_MW * 0.1)
    assert power == IDLE_MW


def test_busy_dir_names_each_gpus_file_by_uuid(stub: Stub, tmp_path: Path) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    now = time.time()
    (busy / "GPU-00000000-0000-0000-0000-000000000001").write_text(f"{now - 1:.6f}\n")
    (busy / "GPU-b").write_text(f"{now - 1:.6f} {now + 60:.6f}\n")
    (busy / "GPU-00000000-0000-0000-0000-000000000003").write_text(f"{now - 1:.6f}\n")
    (tmp_path / "idle").write_text("")
    state = {
        "count": 4,
        "busy_dir": busy,
        "gpu2.uuid": "GPU-b",
        "gpu3.busy_file": tmp_path / "idle",  # its own file wins over busy_dir's
        **{f"gpu{i}.power_mw": IDLE_MW for i in range(4)},
    }
    assert stub.run(POWER, state) == [IDLE_MW, IDLE_MW + BUSY_MW, IDLE_MW + BUSY_MW, IDLE_MW]


def test_llem_energy_window_sees_the_busy_time(stub: Stub, tmp_path: Path) -> None:
    # llem's own monitor over a 0.6 s window of which the middle 0.3 s is busy
    busy = tmp_path / "busy"
    m = stub.run(
        f"""
        from llem_cli.telemetry import EnergyMonitor
        mon = EnergyMonitor(sample_interval_s=0.02)
        set_state(t0=time.time())
        mon.begin_window("exp")
        time.sleep(0.15)
        start = time.time()
        with open({str(busy)!r}, "a") as f:
            f.write(f"{{start:.6f}}\\n")
        time.sleep(0.3)
        with open({str(busy)!r}, "a") as f:
            f.write(f"{{start:.6f}} {{time.time():.6f}}\\n")
        time.sleep(0.15)
        result = mon.end_window("exp").to_dict()
        """,
        busy_state(busy, time.time()),
    )
    assert m["method"] == "counter"
    expected_j = (IDLE_MW * m["duration_s"] + BUSY_MW * 0.3) / 1000
    assert m["energy_j"] == pytest.approx(expected_j, rel=0.1)
    assert m["sampled_energy_j"] == pytest.approx(expected_j, rel=0.15)
