"""Lanes end to end: real ``llem run`` processes, real containers, four stand-in GPUs.

The stand-in NVML (``libnvidia-ml.so.1`` compiled by the tests) reports four GPUs, each with
its own idle power and its own busy power; an experiment (``llem-fake-busy`` in the test
image) marks the GPUs named by ``LLEM_GPU_UUIDS`` busy while it runs, and the image's
``nvidia-smi`` lists only the GPUs ``NVIDIA_VISIBLE_DEVICES`` names, as the NVIDIA runtime
does. So a record's energy tells on which GPU it was measured, and whether a neighbour's
work leaked into it.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from llem_testkit.e2e import (
    E2ECampaign,
    assert_no_containers,
    campaign_for,
    containers,
    events,
    kill9,
    no_traceback,
    records,
    wait_exit,
    wait_for,
)
from llem_testkit.four_gpus import BUSY_W, IDLE_W, busy_campaign, busy_intervals, uuid_of
from llem_testkit.nvml_stub import Stub

pytestmark = pytest.mark.docker

SECS = 1.0


def lanes_campaign(
    tmp_path: Path,
    stub: Stub,
    name: str,
    *,
    lanes: int | str = 4,
    secs: float = SECS,
    configs: int = 4,
    cycles: int = 2,
    service: dict[str, Any] | None = None,
) -> E2ECampaign:
    c = campaign_for(tmp_path, name)
    busy_campaign(
        c,
        stub,
        secs=[secs],
        configs=configs,
        cycles=cycles,
        execution={"lanes": lanes},
        service=service,
    )
    return c


def test_four_lanes_measure_each_experiment_on_its_own_gpu(tmp_path: Path, stub: Stub) -> None:
    c = lanes_campaign(tmp_path, stub, "lanes four")
    try:
        done = c.llem("run", c.file, "--no-progress", timeout=240)
        assert done.returncode == 0, done.stdout + done.stderr
        run = c.run_dir()
        recs = records(run)
        assert len(recs) == 8
        for rec in recs.values():
            lane = rec["lane"]
            assert rec["status"] == "ok"
            assert rec["gpu_uuids"] == [uuid_of(lane)]  # lane n owns GPU n (4 lanes of 1)
            window = rec["measurement"]["window_s"]
            # the window holds its own GPU's idle draw and its own busy second, nothing else:
            # a neighbour's busy second would add at least 1000 J more
            excess = rec["energy_j"] - IDLE_W * window
            assert excess == pytest.approx(BUSY_W[lane] * SECS, rel=0.15), rec
            neighbours = rec["measurement"]["neighbours"]
            assert 1 <= neighbours["lanes_busy"] <= 4
            assert neighbours["other_gpus"] == 3
        # no two experiments ever shared a GPU, and they did run at once
        spans = busy_intervals(c.root / "busy")
        assert sorted(spans) == [uuid_of(i) for i in range(4)]
        for uuid, found in spans.items():
            found.sort()
            for (_, end), (start, _) in zip(found, found[1:], strict=False):
                assert start >= end, f"two experiments on {uuid} at once"
        # the lanes ran at once: some moment had experiments busy on several GPUs
        edges = sorted(
            (t, step) for found in spans.values() for a, b in found for t, step in ((a, 1), (b, -1))
        )
        busy = most = 0
        for _, step in edges:
            busy += step
            most = max(most, busy)
        assert most >= 2, "no two lanes ever ran at once"
        # each lane's container was checked for its pin, and each lane has its own project
        checks = [e for e in events(run) if e["type"] == "pin_check"]
        assert sorted(e["lane"] for e in checks) == [0, 1, 2, 3]
        assert all(e["seen"] == e["expected"] for e in checks)
        (lanes_event,) = [e for e in events(run) if e["type"] == "lanes"]
        assert [x["project"] for x in lanes_event["lanes"]] == [
            f"{c.project}-l{n}" for n in range(4)
        ]
        # results group by GPU
        by_gpu = c.llem("results", run, "--group-by", "gpu", "--format", "json")
        assert by_gpu.returncode == 0, by_gpu.stderr
        status = c.llem("status", run, "--json")
        assert status.returncode == 0
        assert assert_lanes_done(status.stdout) == {0: 2, 1: 2, 2: 2, 3: 2}
    finally:
        c.cleanup()
    assert_no_containers(c)


def assert_lanes_done(text: str) -> dict[int, int]:
    import json

    data = json.loads(text)
    return {lane["lane"]: lane["done"] for lane in data["lanes"]}


def test_a_container_that_sees_every_gpu_stops_the_run_naming_the_service(
    tmp_path: Path, stub: Stub
) -> None:
    # what a privileged container sees: every GPU, whatever NVIDIA_VISIBLE_DEVICES says
    c = lanes_campaign(tmp_path, stub, "lanes unpinned", lanes=2, configs=2, cycles=1)
    compose = (c.root / "compose.yml").read_text()
    (c.root / "compose.yml").write_text(
        compose.replace(
            "LLEM_FAKE_BUSY_DIR: /busy",
            "LLEM_FAKE_BUSY_DIR: /busy\n      LLEM_FAKE_SMI_ALL_GPUS: '1'",
        )
    )
    try:
        done = c.llem("run", c.file, "--no-progress", timeout=180)
        assert done.returncode == 3, done.stdout + done.stderr
        assert "service 'bench' is not pinned to its GPUs" in done.stderr
        no_traceback(done.stdout, done.stderr)
        assert records(c.run_dir()) == {}
    finally:
        c.cleanup()
    assert_no_containers(c)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--lanes", "5"], 2, "lanes: 5 lanes of 1 GPU(s) need 5 GPUs, but llem may use 4"),
        (["--lanes", "2", "--gpus", "0,9"], 2, "--gpus 9: NVML knows no GPU with that index"),
        (["--lanes", "two"], 2, "--lanes 'two': expected a whole number"),
    ],
)
def test_impossible_lanes_are_one_line_before_anything_is_written(
    tmp_path: Path, stub: Stub, args: list[str], code: int, message: str
) -> None:
    c = lanes_campaign(tmp_path, stub, "lanes bad")
    done = c.llem("run", c.file, "--no-progress", *args)
    assert done.returncode == code, done.stdout + done.stderr
    assert message in done.stderr
    no_traceback(done.stdout, done.stderr)
    assert not c.results.exists()


def test_lanes_without_a_host_gpu_is_an_environment_problem(
    tmp_path: Path, stub: Stub, no_nvml_dir: Path
) -> None:
    c = lanes_campaign(tmp_path, stub, "lanes nogpu", lanes=2)
    done = c.llem("run", c.file, "--no-progress", env={"LD_LIBRARY_PATH": str(no_nvml_dir)})
    assert done.returncode == 3, done.stdout + done.stderr
    assert "NVML reports none" in done.stderr
    no_traceback(done.stdout, done.stderr)


def test_dry_run_shows_each_lanes_pinned_override_and_commands(tmp_path: Path, stub: Stub) -> None:
    c = lanes_campaign(tmp_path, stub, "lanes dry", lanes=2, configs=2, cycles=1)
    done = c.llem("run", c.file, "--dry-run", "--lanes", "2", "--gpus", "3,1")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "2 lane(s), at once: lane 0 (GPU 3); lane 1 (GPU 1)" in out
    assert f"NVIDIA_VISIBLE_DEVICES: {uuid_of(3)}" in out
    assert f"NVIDIA_VISIBLE_DEVICES: {uuid_of(1)}" in out
    assert f"--project-name {c.project}-l0" in out and f"--project-name {c.project}-l1" in out
    assert "compose.override.l0.yaml" in out and "compose.override.l1.yaml" in out
    assert "LLEM_GPU_UUIDS" in out
    assert not c.results.exists() and containers(f"llem.project={c.project}") == []


def test_sigterm_stops_every_lane_and_resume_runs_the_rest_once(tmp_path: Path, stub: Stub) -> None:
    c = lanes_campaign(tmp_path, stub, "lanes term", lanes=2, secs=2.0, configs=2, cycles=3)
    try:
        proc = c.start("run", c.file, "--no-progress")
        run = c.wait_run_dir(60)
        wait_for(
            lambda: len([e for e in events(run) if e["type"] == "experiment_started"]) >= 3,
            120,
            "three experiments started",
        )
        proc.send_signal(signal.SIGTERM)
        assert wait_exit(proc, 120) == 143
        assert_no_containers(c)
        interrupted = [r for r in records(run).values() if r["status"] == "interrupted"]
        assert interrupted and all(r["lane"] in (0, 1) for r in interrupted)
        done = c.llem("run", c.file, "--resume", "--no-progress", timeout=240)
        assert done.returncode == 0, done.stdout + done.stderr
        finals = [
            e["record"]["key"]
            for e in events(run)
            if e["type"] == "experiment_finished" and e["record"]["status"] == "ok"
        ]
        assert sorted(finals) == sorted(set(finals)) and len(finals) == 6
    finally:
        c.cleanup()
    assert_no_containers(c)


def test_kill9_then_down_removes_every_lane_and_resume_runs_each_key_once(
    tmp_path: Path, stub: Stub
) -> None:
    c = lanes_campaign(tmp_path, stub, "lanes kill", lanes=2, secs=2.0, configs=2, cycles=3)
    try:
        proc = c.start("run", c.file, "--no-progress")
        run = c.wait_run_dir(60)
        wait_for(lambda: len(containers(f"llem.project={c.project}")) >= 2, 120, "both lanes up")
        kill9(proc)
        assert len(containers(f"llem.project={c.project}")) >= 2  # left behind by kill -9
        down = c.llem("down", c.file)
        assert down.returncode == 0, down.stderr
        assert containers(f"llem.project={c.project}") == []
        done = c.llem("run", c.file, "--resume", "--no-progress", timeout=240)
        assert done.returncode == 0, done.stdout + done.stderr
        oks = [
            e["record"]["key"]
            for e in events(run)
            if e["type"] == "experiment_finished" and e["record"]["status"] == "ok"
        ]
        assert len(oks) == len(set(oks)) == 6
    finally:
        c.cleanup()
    assert_no_containers(c)
