"""GPU settings end to end: real ``llem run`` processes on the stand-in NVML, real containers.

The stand-in ``libnvidia-ml.so.1`` keeps what llem sets (power limit, locked clocks) in a
settings file beside its state file, so a second process (``llem down``, the next run, this
test) sees it, and caps the power it reports by the limit in force. So a power-limit campaign
shows each record's power under its own cap, and what a killed llem left changed is visible,
then restored.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from llem_testkit.e2e import (
    E2ECampaign,
    assert_no_containers,
    campaign_for,
    events,
    kill9,
    no_traceback,
    records,
    wait_for,
)
from llem_testkit.nvml_stub import Stub

pytestmark = pytest.mark.docker

ORIGINAL_W = 700.0
BUSY_W = 500.0  # + 100 W idle: 600 W drawn when uncapped


def gpu_state(stub: Stub, busy: Path, **extra: Any) -> None:
    stub.write_state(
        {
            "count": 1,
            "t0": time.time(),
            "busy_dir": busy,
            "gpu0.energy_mj": 0,
            "gpu0.energy_rate_mw": 100_000,
            "gpu0.power_mw": 100_000,
            "gpu0.busy_power_mw": int(BUSY_W * 1000),
            "gpu0.power_limit_mw": int(ORIGINAL_W * 1000),
            "gpu0.power_limit_min_mw": 100_000,
            "gpu0.power_limit_max_mw": 700_000,
            **extra,
        }
    )


def power_limit_w(stub: Stub) -> float:
    """The stand-in GPU's power limit now, as another process (llem) left it."""
    return float(
        stub.run(
            "import pynvml\n"
            "pynvml.nvmlInit()\n"
            "h = pynvml.nvmlDeviceGetHandleByIndex(0)\n"
            "result = pynvml.nvmlDeviceGetPowerManagementLimit(h) / 1000\n"
        )
    )


def settings_campaign(
    tmp_path: Path, stub: Stub, name: str, *, limits: list[Any], secs: float = 1.0, **extra: Any
) -> E2ECampaign:
    busy = tmp_path / "busy"
    busy.mkdir(exist_ok=True)
    gpu_state(stub, busy, **extra)
    c = campaign_for(tmp_path, name)
    c.env.update(
        LD_LIBRARY_PATH=str(stub.lib_dir),
        FAKE_NVML_STATE=str(stub.state_file),
        LLEM_STATE_DIR=str(tmp_path / "state"),
    )
    c.write(
        {
            "bench": {
                "command": ["llem-fake-busy", "{secs}"],
                "env": {
                    "LLEM_GPU_UUIDS": "GPU-00000000-0000-0000-0000-000000000000",
                    "LLEM_FAKE_BUSY_DIR": "/busy",
                },
            }
        },
        services={"bench": {"volumes": [f"{busy}:/busy"]}},
        grid={"secs": [secs]},
        gpu_settings={"power_limit_w": limits},
        execution={"cycles": 2},
    )
    return c


def state_entries(tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "state" / "gpu-state.json"
    return dict(json.loads(path.read_text())["gpus"]) if path.exists() else {}


def test_each_record_runs_under_its_limit_and_the_original_comes_back(
    tmp_path: Path, stub: Stub
) -> None:
    c = settings_campaign(tmp_path, stub, "settings two", limits=[200, 300])
    try:
        done = c.llem("run", c.file, "--no-progress", timeout=240)
        assert done.returncode == 0, done.stdout + done.stderr
        recs = records(c.run_dir())
        assert len(recs) == 4
        for rec in recs.values():
            limit = rec["params"]["power_limit_w"]
            assert rec["gpu_settings"]["power_limit_w"] == limit
            assert rec["gpu_settings"]["gpus"]["0"]["power_limit_w"] == limit  # read back
            # drawn: 600 W uncapped while busy; the cap holds it at the limit
            assert rec["avg_power_w"] <= limit * 1.01
            assert rec["avg_power_w"] >= min(limit, 100.0) * 0.9
        assert power_limit_w(stub) == ORIGINAL_W  # restored
        assert state_entries(tmp_path) == {}  # and the entry cleared
        restored = [e for e in events(c.run_dir()) if e["type"] == "gpu_settings_restored"]
        assert restored and restored[-1]["ok"] is True
        grouped = c.llem("results", c.run_dir(), "--group-by", "power_limit_w")
        assert grouped.returncode == 0 and "power_limit_w" in grouped.stdout
    finally:
        c.cleanup()
    assert_no_containers(c)


def test_kill9_leaves_the_limit_then_down_restores_it(tmp_path: Path, stub: Stub) -> None:
    c = settings_campaign(tmp_path, stub, "settings kill", limits=[250], secs=30)
    try:
        proc = c.start("run", c.file, "--no-progress")
        run = c.wait_run_dir(60)
        wait_for(
            lambda: any(e["type"] == "experiment_started" for e in events(run)),
            60,
            "an experiment started",
        )
        # the limit is set just after experiment_started is journaled: wait until it is
        wait_for(lambda: power_limit_w(stub) == 250.0, 60, "the 250 W limit applied")
        kill9(proc)
        assert power_limit_w(stub) == 250.0  # left changed by the killed llem
        assert list(state_entries(tmp_path).values())[0]["original"]["power_limit_w"] == 700.0
        down = c.llem("down", c.file)
        assert down.returncode == 0, down.stderr
        assert "restored GPU 0" in down.stdout and "700 W" in down.stdout
        assert power_limit_w(stub) == ORIGINAL_W
        assert state_entries(tmp_path) == {}
    finally:
        c.cleanup()
    assert_no_containers(c)


def test_the_next_run_restores_what_a_crashed_one_left(tmp_path: Path, stub: Stub) -> None:
    c = settings_campaign(tmp_path, stub, "settings next", limits=[250], secs=30)
    other = campaign_for(tmp_path, "settings other")
    other.env.update(c.env)
    other.write({"bench": {"command": ["true"]}}, grid={"n": [1]})
    try:
        proc = c.start("run", c.file, "--no-progress")
        run = c.wait_run_dir(60)
        wait_for(
            lambda: any(e["type"] == "experiment_started" for e in events(run)),
            60,
            "an experiment started",
        )
        wait_for(lambda: power_limit_w(stub) == 250.0, 60, "the 250 W limit applied")
        kill9(proc)
        assert power_limit_w(stub) == 250.0
        # another campaign, without gpu_settings, on the same host: it restores first
        done = other.llem("run", other.file, "--no-progress", timeout=180)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "restored GPU 0" in done.stderr and "700 W" in done.stderr
        assert power_limit_w(stub) == ORIGINAL_W
        assert state_entries(tmp_path) == {}
    finally:
        other.cleanup()
        c.cleanup()
    assert_no_containers(other)
    c.llem("down", c.file)
    assert_no_containers(c)


def test_without_permission_the_run_exits_3_before_any_container(
    tmp_path: Path, stub: Stub
) -> None:
    c = settings_campaign(tmp_path, stub, "settings noperm", limits=[200], no_permission=1)
    done = c.llem("run", c.file, "--no-progress")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "no permission" in done.stderr.lower() or "permission" in done.stderr
    no_traceback(done.stdout, done.stderr)
    assert not c.results.exists()
    assert_no_containers(c)
    assert power_limit_w(stub) == ORIGINAL_W


def test_a_limit_nvml_does_not_allow_is_a_campaign_error(tmp_path: Path, stub: Stub) -> None:
    c = settings_campaign(tmp_path, stub, "settings range", limits=[50, 300, 900])
    done = c.llem("run", c.file, "--no-progress")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "50" in done.stderr and "900" in done.stderr
    no_traceback(done.stdout, done.stderr)
    assert not c.results.exists()
