"""Serving backends end to end: real ``llem run`` processes and a stand-in server.

The test image's ``llem-fake-server`` loads for a while, then answers requests that
``llem-fake-client`` drops in a spool folder; it reports most of the GPU memory used (the
image's ``nvidia-smi`` shows it) and can crash after K requests. So the tests check, with real
containers, what a user relies on: each client talks to the server of its own params, grouped
order starts each server configuration once, a crashed server restarts and the client retries,
a server's own memory is no reason to restart, and a server that never gets ready ends the run
with exit 4 and its last log lines in the record.
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
    no_traceback,
    records,
)
from llem_testkit.nvml_stub import Stub

pytestmark = pytest.mark.docker


def serving_campaign(
    tmp_path: Path,
    name: str,
    *,
    server: list[str] | None = None,
    ready: list[str] | None = None,
    health: dict[str, Any] | None = None,
    execution: dict[str, Any] | None = None,
    ready_timeout: str = "60s",
) -> E2ECampaign:
    c = campaign_for(tmp_path, name)
    backend = {
        "serve": server
        or ["llem-fake-server", "--load-s", "1", "--memory-pct", "90", "seqs={max_num_seqs}"],
        "ready": ready or ["llem-fake-ready"],
        "ready_timeout": ready_timeout,
        "command": ["llem-fake-client", "seqs={max_num_seqs}", "rate={request_rate}"],
    }
    c.write(
        {"srv": backend},
        grid={"max_num_seqs": [64, 256], "request_rate": [1, 4]},
        execution={"cycles": 2, "order": "grouped", **(execution or {})},
        health={"every": 1, "max_memory_used_pct": 50, **(health or {})},
    )
    return c


def result_of(run: Path, key: str) -> dict[str, Any]:
    return dict(json.loads((run / "experiments" / key / "result.json").read_text()))


def test_each_server_configuration_starts_once_and_clients_hit_their_own(
    tmp_path: Path,
) -> None:
    c = serving_campaign(tmp_path, "serve grouped")
    try:
        done = c.llem("run", c.file, "--no-progress", timeout=240)
        assert done.returncode == 0, done.stdout + done.stderr
        run = c.run_dir()
        recs = records(run)
        assert len(recs) == 8 and all(r["status"] == "ok" for r in recs.values())
        starts = [e for e in events(run) if e["type"] == "server_start"]
        assert len(starts) == 2  # grouped: one start per server configuration
        assert [e for e in events(run) if e["type"] == "restart"] == []  # 90 % is no reason
        for key, rec in recs.items():
            result = result_of(run, key)
            assert result["server_params"]["seqs"] == result["client_params"]["seqs"]
            assert result["server_params"]["seqs"] == str(rec["params"]["max_num_seqs"])
            assert result["server_start"] == 1  # never restarted
            assert rec["server_id"] is not None
            assert rec["measurement"]["includes_model_load"] is False
        by_server: dict[str, set[int]] = {}
        for rec in recs.values():
            by_server.setdefault(rec["server_id"], set()).add(rec["params"]["max_num_seqs"])
        assert sorted(by_server.values(), key=min) == [{64}, {256}]
        ready = [e for e in events(run) if e["type"] == "server_ready"]
        assert len(ready) == 2 and all(e["memory_used_pct"] >= 89 for e in ready)
    finally:
        c.cleanup()
    assert_no_containers(c)


@pytest.mark.parametrize("every", [0, 1])
def test_a_crashed_server_restarts_and_the_client_retries(tmp_path: Path, every: int) -> None:
    """Probing before each client (every: 1) usually finds the dead server first; without
    probes (every: 0) the next client finds it, and is retried on the restarted server."""
    server = [
        "llem-fake-server",
        "--load-s",
        "0.5",
        "--crash-after",
        "3",
        "seqs={max_num_seqs}",
    ]
    c = serving_campaign(
        tmp_path,
        f"serve crash {every}",
        server=server,
        execution={"retries": 1},
        health={"every": every},
    )
    try:
        done = c.llem("run", c.file, "--no-progress", timeout=240)
        assert done.returncode == 0, done.stdout + done.stderr
        run = c.run_dir()
        recs = records(run)
        assert len(recs) == 8 and all(r["status"] == "ok" for r in recs.values())
        restarts = [e for e in events(run) if e["type"] == "restart"]
        assert len(restarts) == 2  # each server crashes after its 3rd of 4 requests
        fourth = [r for r in recs.values() if result_of(run, r["key"])["server_start"] == 2]
        assert len(fourth) == 2  # the 4th client of each server was served by the restart
        if every == 0:
            assert all(r["attempts"] == 2 for r in fourth)
            assert all("container_died" in e["reason"] for e in restarts)
        else:
            # the probe before the 4th client usually finds the server gone; when the server
            # is still on its way out then, the client finds it and is retried instead
            for rec, restart in zip(
                sorted(fourth, key=lambda r: r["started_at"]), restarts, strict=True
            ):
                expected = "probe" if rec["attempts"] == 1 else "container_died"
                assert expected in restart["reason"], (rec, restart)
    finally:
        c.cleanup()
    assert_no_containers(c)


def test_memory_growth_over_the_ready_level_restarts_the_server(tmp_path: Path) -> None:
    server = [
        "llem-fake-server",
        "--load-s",
        "0.5",
        "--memory-pct",
        "80",
        "--grow-pct-per-request",
        "4",
        "seqs={max_num_seqs}",
    ]
    c = serving_campaign(tmp_path, "serve grow", server=server, health={"max_memory_growth_pct": 6})
    try:
        done = c.llem("run", c.file, "--no-progress", timeout=240)
        assert done.returncode == 0, done.stdout + done.stderr
        run = c.run_dir()
        restarts = [e for e in events(run) if e["type"] == "restart"]
        # 80 % after ready; +4 per request: the probe before the 3rd client sees +8 > 6
        assert restarts and all("max_memory_growth_pct" in e["reason"] for e in restarts)
    finally:
        c.cleanup()
    assert_no_containers(c)


def test_a_server_that_never_gets_ready_fails_with_its_log_and_exit_4(tmp_path: Path) -> None:
    c = serving_campaign(
        tmp_path,
        "serve never",
        ready=["sh", "-c", "echo still loading >&2; exit 1"],
        ready_timeout="2s",
        health={"max_restarts": 1},
    )
    try:
        done = c.llem("run", c.file, "--no-progress", timeout=180)
        assert done.returncode == 4, done.stdout + done.stderr
        no_traceback(done.stdout, done.stderr)
        run = c.run_dir()
        (rec,) = records(run).values()
        assert rec["status"] == "failed"
        assert "not ready within ready_timeout 2s" in rec["error"]
        assert "llem-fake-server" in rec["error"]  # the server's last log lines
        assert len([e for e in events(run) if e["type"] == "restart"]) == 1
    finally:
        c.cleanup()
    assert_no_containers(c)


def test_dry_run_shows_the_server_start_and_ready_commands(tmp_path: Path) -> None:
    c = serving_campaign(tmp_path, "serve dry")
    done = c.llem("run", c.file, "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "llem-fake-server --load-s 1 --memory-pct 90 seqs=64" in done.stdout
    assert "llem-fake-ready" in done.stdout
    plan = c.llem("plan", c.file)
    assert "server starts: 2 for 2 server configuration(s)" in plan.stdout


def test_a_clients_steady_phase_is_measured_on_the_host(tmp_path: Path, stub: Stub) -> None:
    """The stand-in NVML: 100 W idle, +500 W while the client marks the GPU busy (1.2 s, its
    ``steady`` phase): the phase's energy is what the GPU drew in it, not the whole window's."""
    busy = tmp_path / "busy"
    busy.mkdir()
    uuid = "GPU-00000000-0000-0000-0000-000000000000"
    stub.write_state(
        {
            "count": 1,
            "t0": time.time(),
            "busy_dir": busy,
            "gpu0.energy_mj": 0,
            "gpu0.energy_rate_mw": 100_000,
            "gpu0.power_mw": 100_000,
            "gpu0.busy_power_mw": 500_000,
        }
    )
    c = campaign_for(tmp_path, "serve phases")
    c.env.update(LD_LIBRARY_PATH=str(stub.lib_dir), FAKE_NVML_STATE=str(stub.state_file))
    c.write(
        {
            "srv": {
                "serve": ["llem-fake-server", "--load-s", "0.5"],
                "ready": ["llem-fake-ready"],
                "command": ["llem-fake-client", "--busy-s", "1.2", "rate={request_rate}"],
                "env": {"LLEM_GPU_UUIDS": uuid, "LLEM_FAKE_BUSY_DIR": "/busy"},
            }
        },
        services={"srv": {"volumes": [f"{busy}:/busy"]}},
        grid={"request_rate": [1]},
        execution={"cycles": 2},
    )
    try:
        done = c.llem("run", c.file, "--no-progress", timeout=180)
        assert done.returncode == 0, done.stdout + done.stderr
        for rec in records(c.run_dir()).values():
            steady = rec["phases"]["steady"]
            assert steady["duration_s"] >= 1.15  # the client slept 1.2 s (longer on a busy host)
            assert steady["energy_j"] == pytest.approx(600.0 * steady["duration_s"], rel=0.03)
            assert steady["avg_power_w"] == pytest.approx(600.0, rel=0.03)
            assert rec["energy_j"] > steady["energy_j"]  # the window holds more than the phase
    finally:
        c.cleanup()
    assert_no_containers(c)


def test_the_server_gets_the_backend_env_and_the_secret_is_written_nowhere(
    tmp_path: Path,
) -> None:
    secret = "hf_SeRvErSeCrEt123"
    c = campaign_for(tmp_path, "serve env")
    c.write(
        {
            "srv": {
                # ${HF_TOKEN} is the container shell's: the server writes what it sees
                "serve": ["sh", "-c", 'echo "$HF_TOKEN" > /llem/run/seen; exec llem-fake-server'],
                "ready": ["llem-fake-ready"],
                "command": ["llem-fake-client", "rate={request_rate}"],
                "env": {"HF_TOKEN": secret},
            }
        },
        grid={"request_rate": [1]},
    )
    try:
        done = c.llem("run", c.file, "--no-progress", timeout=180)
        assert done.returncode == 0, done.stdout + done.stderr
        run = c.run_dir()
        assert (run / "seen").read_text().strip() == secret
        for path in run.rglob("*"):
            if path.is_file() and path.name not in ("seen", "campaign.yaml"):
                assert secret not in path.read_text(errors="replace"), path
        assert secret not in done.stdout + done.stderr
    finally:
        c.cleanup()
    assert_no_containers(c)
