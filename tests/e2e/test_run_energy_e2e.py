"""Energy in real ``llem run`` processes: the real pynvml on the compiled stub NVML.

The stub's counters advance with wall time, so the energy a record reports can be
checked against rate x window. Without any NVML the same run records nulls and
says so once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from llem_testkit.nvml_stub import NOT_SUPPORTED

pytestmark = pytest.mark.docker

COMPOSE = """services:
  bench:
    image: llem-test-busybox:latest
    network_mode: none
"""


def write_campaign(tmp: Path, name: str, execution: str) -> Path:
    (tmp / "compose.yml").write_text(COMPOSE)
    campaign = tmp / "campaign.yaml"
    campaign.write_text(
        f"""name: {name}
compose: compose.yml
backends:
  bench:
    command: [sh, -c, "sleep {{secs}}"]
grid:
  secs: [0.6, 1.2]
execution:
{execution}
health:
  every: 0
"""
    )
    return campaign


def llem_run(
    campaign: Path, env: dict[str, str], *, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llem_cli", "run", str(campaign), "--no-progress"],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def records(campaign: Path) -> list[dict]:
    (journal,) = campaign.parent.glob("results/*/*/journal.jsonl")
    events = [json.loads(line) for line in journal.read_text().splitlines()]
    return [e["record"] for e in events if e["type"] == "experiment_finished"], events


def stub_env(lib_dir: Path, state: Path, tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        LD_LIBRARY_PATH=str(lib_dir),
        FAKE_NVML_STATE=str(state),
        LLEM_LOCK_DIR=str(tmp / "locks"),
    )
    return env


def left_containers(project: str) -> list[str]:
    done = subprocess.run(
        ["docker", "ps", "-a", "-q", "--filter", f"label=com.docker.compose.project={project}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return done.stdout.split()


def test_energy_power_and_thermal_gate_recorded_from_nvml(
    nvml_stub_dir: Path, tmp_path: Path
) -> None:
    name = f"energy-{uuid.uuid4().hex[:6]}"
    campaign = write_campaign(
        tmp_path,
        name,
        "  idle_baseline: 0.5s\n  thermal: {max_temp_c: 45, max_wait: 20s}",
    )
    state = tmp_path / "nvml_state"
    # 250 W, counter and power agree; the GPU starts at 60 C and cools 2 C/s: 45 C after 7.5 s
    state.write_text(
        f"count=1\nt0={time.time()}\ngpu0.energy_rate_mw=250000\ngpu0.power_mw=250000\n"
        "gpu0.temp_c=60\ngpu0.cool_c_per_s=2\ngpu0.temp_floor_c=30\n"
    )
    done = llem_run(campaign, stub_env(nvml_stub_dir, state, tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    recs, events = records(campaign)
    assert len(recs) == 2
    for rec in recs:
        detail = rec["measurement"]
        assert detail["method"] == "counter"
        window = detail["window_s"]
        assert rec["energy_j"] == pytest.approx(250.0 * window, rel=0.1)
        assert rec["avg_power_w"] == pytest.approx(250.0, rel=0.05)
        assert rec["idle_power_w"] == pytest.approx(250.0, rel=0.05)
        assert rec["net_energy_j"] == pytest.approx(
            rec["energy_j"] - rec["idle_power_w"] * window, abs=0.5
        )
        assert rec["max_temp_c"] is not None and rec["max_temp_c"] <= 46
        # the window covers the exec: never shorter than the experiment's own sleep
        assert window >= rec["params"]["secs"]
    first = recs[0]["measurement"]["thermal"]
    assert first["timed_out"] is False
    assert first["start_temp_c"] > 45 and first["waited_s"] > 0
    assert first["end_temp_c"] <= 45
    notes = [e for e in events if e["type"] == "telemetry"]
    assert notes[0]["gpus"] == [0]
    assert any("idle_power_w" in e for e in notes)
    assert left_containers(f"llem-{name}") == []


def test_thermal_wait_that_times_out_is_flagged_and_the_run_goes_on(
    nvml_stub_dir: Path, tmp_path: Path
) -> None:
    name = f"hot-{uuid.uuid4().hex[:6]}"
    campaign = write_campaign(tmp_path, name, "  thermal: {max_temp_c: 40, max_wait: 1s}")
    state = tmp_path / "nvml_state"
    state.write_text("count=1\ngpu0.energy_rate_mw=100000\ngpu0.power_mw=100000\ngpu0.temp_c=80\n")
    done = llem_run(campaign, stub_env(nvml_stub_dir, state, tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    recs, _ = records(campaign)
    assert len(recs) == 2  # secs 0.6 and 1.2, one cycle
    for rec in recs:
        assert rec["status"] == "ok"
        assert rec["measurement"]["thermal"]["timed_out"] is True
        assert "thermal_timeout" in rec["measurement"]["flags"]
        assert rec["max_temp_c"] == 80


def test_counter_not_supported_falls_back_to_sampled_power(
    nvml_stub_dir: Path, tmp_path: Path
) -> None:
    name = f"sampled-{uuid.uuid4().hex[:6]}"
    campaign = write_campaign(tmp_path, name, "  cycles: 1")
    state = tmp_path / "nvml_state"
    state.write_text(
        "count=1\ngpu0.power_mw=120000\ngpu0.temp_c=40\n"
        f"error.nvmlDeviceGetTotalEnergyConsumption={NOT_SUPPORTED}\n"
    )
    done = llem_run(campaign, stub_env(nvml_stub_dir, state, tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    recs, _ = records(campaign)
    assert len(recs) == 2  # secs 0.6 and 1.2, one cycle
    for rec in recs:
        detail = rec["measurement"]
        assert detail["method"] == "power_sampling"
        assert detail["counter_energy_j"] is None
        assert rec["energy_j"] == pytest.approx(120.0 * detail["window_s"], rel=0.15)


def test_no_gpu_records_null_never_zero_and_says_so_once(no_nvml_dir: Path, tmp_path: Path) -> None:
    name = f"nogpu-{uuid.uuid4().hex[:6]}"
    campaign = write_campaign(tmp_path, name, "  idle_baseline: 1s\n  thermal: {max_temp_c: 40}")
    env = stub_env(no_nvml_dir, tmp_path / "absent", tmp_path)
    done = llem_run(campaign, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("no host GPU measurement") == 1
    recs, events = records(campaign)
    assert len(recs) == 2  # secs 0.6 and 1.2, one cycle
    assert [rec["status"] for rec in recs] == ["ok", "ok"]
    for rec in recs:
        for field in ("energy_j", "avg_power_w", "idle_power_w", "net_energy_j", "max_temp_c"):
            assert rec[field] is None, field
        assert rec["measurement"]["reasons"]["energy_j"]
    assert sum(e["type"] == "telemetry" for e in events) == 1


def test_timed_out_experiment_carries_no_energy_of_the_restart(
    nvml_stub_dir: Path, tmp_path: Path
) -> None:
    """A timed-out exec's window runs on through the container restart: not its energy."""
    name = f"energy-to-{uuid.uuid4().hex[:6]}"
    (tmp_path / "compose.yml").write_text(COMPOSE)
    campaign = tmp_path / "campaign.yaml"
    campaign.write_text(
        f"""name: {name}
compose: compose.yml
backends:
  bench:
    command: [sh, -c, "sleep {{secs}}"]
grid:
  secs: [0.2, 30]
execution:
  timeout: 1s
  retries: 0
health:
  every: 0
  restart_backoff: 0
"""
    )
    state = tmp_path / "nvml_state"
    state.write_text(
        f"count=1\nt0={time.time()}\ngpu0.energy_rate_mw=200000\ngpu0.power_mw=200000\n"
    )
    try:
        done = llem_run(campaign, stub_env(nvml_stub_dir, state, tmp_path))
        assert done.returncode == 1, done.stdout + done.stderr
        recs, _ = records(campaign)
        assert len(recs) == 2
        by_secs = {rec["params"]["secs"]: rec for rec in recs}
        ok, cut = by_secs[0.2], by_secs[30]
        assert ok["status"] == "ok" and ok["energy_j"] == pytest.approx(
            200.0 * ok["measurement"]["window_s"], rel=0.1
        )
        assert cut["status"] == "timeout"
        for field in ("energy_j", "avg_power_w", "net_energy_j", "max_temp_c"):
            assert cut[field] is None, (field, cut)
        detail = cut["measurement"]
        assert "window_cut_by_timeout" in detail["flags"]
        assert "execution.timeout" in detail["reasons"]["energy_j"]
        assert detail["counter_energy_j"] is None and detail["sampled_energy_j"] is None
        # the window closed with the exec, before the restart the decision asked for
        assert detail["window_s"] < cut["duration_s"] + 0.5
    finally:
        subprocess.run(
            [sys.executable, "-m", "llem_cli", "down", str(campaign)],
            capture_output=True, timeout=120, check=False, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    assert left_containers(f"llem-{name}") == []
