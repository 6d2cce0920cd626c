"""Sharded runs (``llem slurm``) end to end without Slurm: the array tasks' own command,
``llem run FILE --resume RUN_DIR --shard K``, run as real processes with the environment slurmd
gives a batch script (``SLURM_JOB_GPUS`` as node indexes, ``CUDA_VISIBLE_DEVICES`` renumbered
from 0), on four stand-in GPUs whose energies tell which GPU a record was measured on. The same
runs under a real Slurm are in tests/slurm.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from llem_testkit.e2e import (
    LLEM,
    E2ECampaign,
    assert_no_containers,
    campaign_for,
    events,
    kill9,
    no_traceback,
    shard_containers,
    wait_for,
)
from llem_testkit.four_gpus import BUSY_W, IDLE_W, busy_campaign, overlaps, uuid_of
from llem_testkit.nvml_stub import Stub

pytestmark = pytest.mark.docker

SECS = 1.0


def task_env(shard: int, gpus: str, job: str = "4242", node: str | None = None) -> dict[str, str]:
    """What slurmd sets for array task ``shard`` of job ``job`` given node GPUs ``gpus``, on
    this node unless ``node`` names another."""
    return {
        "SLURM_JOB_ID": str(int(job) + shard + 1),
        "SLURM_ARRAY_JOB_ID": job,
        "SLURM_ARRAY_TASK_ID": str(shard),
        "SLURM_JOB_GPUS": gpus,
        "CUDA_VISIBLE_DEVICES": ",".join(str(i) for i in range(len(gpus.split(",")))),
        "SLURMD_NODENAME": node or socket.gethostname(),
    }


def make_sharded(c: E2ECampaign, shards: int = 2) -> Path:
    """``llem slurm`` the campaign; the run directory."""
    done = c.llem("slurm", c.file, "--shards", str(shards), "--gpus-per-shard", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    script = Path(done.stdout.strip().splitlines()[-1])
    assert script.name == "llem.sbatch" and script.is_file()
    return script.parent.parent


def start_shard(c: E2ECampaign, run: Path, shard: int, gpus: str) -> subprocess.Popen[str]:
    env = {**c.env, **task_env(shard, gpus)}
    return subprocess.Popen(
        [*LLEM, "run", str(c.file), "--resume", str(run), "--shard", str(shard), "--no-progress"],
        cwd=c.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def merged_records(c: E2ECampaign, run: Path) -> list[dict[str, Any]]:
    done = c.llem("results", run, "--format", "json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    return list(data["records"] if isinstance(data, dict) else data)


def test_two_shards_run_at_once_each_on_the_gpu_slurm_gave_it(tmp_path: Path, stub: Stub) -> None:
    c = campaign_for(tmp_path, "shards two")
    busy = busy_campaign(c, stub, secs=[SECS], configs=4, cycles=2)
    try:
        run = make_sharded(c)
        cut = json.loads((run / "slurm" / "shards.json").read_text())
        assert [len(s["configs"]) for s in cut["shards"]] == [2, 2]
        procs = {0: start_shard(c, run, 0, "1"), 1: start_shard(c, run, 1, "3")}
        for shard, proc in procs.items():
            out, err = proc.communicate(timeout=240)
            assert proc.returncode == 0, f"shard {shard}: {out}{err}"
            no_traceback(out, err)
        recs = merged_records(c, run)
        keys = [r["key"] for r in recs]
        assert len(keys) == 8 and len(set(keys)) == 8
        gpu_of_shard = {0: 1, 1: 3}
        for rec in recs:
            assert rec["status"] == "ok", rec
            config = rec["key"].rpartition("-c")[0]
            shard = next(s["shard"] for s in cut["shards"] if config in s["configs"])
            gpu = gpu_of_shard[shard]
            assert rec["gpu_uuids"] == [uuid_of(gpu)], rec
            window = rec["measurement"]["window_s"]
            excess = rec["energy_j"] - IDLE_W * window
            assert excess == pytest.approx(BUSY_W[gpu] * SECS, rel=0.15), rec
        assert overlaps(busy) == []
        # each shard journaled in its own folder, with its Slurm job and its own project
        for shard in (0, 1):
            journal = run / "shards" / f"s{shard}" / "journal.jsonl"
            started = [json.loads(x) for x in journal.read_text().splitlines()]
            first = next(e for e in started if e["type"] == "run_started")
            assert first["shard"] == shard
            assert first["slurm"]["array_task"] == shard
            assert first["slurm"]["gpus"] == [str(gpu_of_shard[shard])]
            lanes = next(e for e in started if e["type"] == "lanes")
            assert [x["project"] for x in lanes["lanes"]] == [f"{c.project}-s{shard}-l0"]
        # the run's results.csv holds every shard's rows
        rows = (run / "results.csv").read_text().splitlines()
        assert len(rows) == 1 + 8
        status = json.loads(c.llem("status", run, "--json").stdout)
        assert status["state"] == "finished"
        assert status["done"] == 8 and status["pending"] == 0
        assert [s["state"] for s in status["shards"]] == ["finished", "finished"]
        # a finished shard submitted again: exit 0 at once, nothing journaled
        before = (run / "shards" / "s0" / "journal.jsonl").read_bytes()
        t0 = time.monotonic()
        again = start_shard(c, run, 0, "1")
        out, err = again.communicate(timeout=60)
        assert again.returncode == 0, out + err
        assert "finished, nothing pending" in err
        assert time.monotonic() - t0 < 10
        assert (run / "shards" / "s0" / "journal.jsonl").read_bytes() == before
        # the report reads every shard
        report = c.llem("report", run, "-o", tmp_path / "r.html")
        assert report.returncode == 0, report.stderr
        html = (tmp_path / "r.html").read_text()
        assert all(s["configs"][0] in html for s in cut["shards"])
        assert shard_containers(c, 2) == []
    finally:
        if "run" in locals():
            c.llem("down", run, timeout=180)
        c.cleanup()
    assert_no_containers(c)
    assert shard_containers(c, 2) == []


def test_a_run_directory_the_node_does_not_see_is_one_line_exit_3(
    tmp_path: Path, stub: Stub
) -> None:
    c = campaign_for(tmp_path, "shards unseen")
    busy_campaign(c, stub, secs=[SECS], configs=2)
    missing = tmp_path / "elsewhere" / "results" / "x" / "20261130T000000Z"
    done = c.llem(
        "run", c.file, "--resume", missing, "--shard", "0", env=task_env(0, "0", node="node-test")
    )
    assert done.returncode == 3, done.stdout + done.stderr
    assert f"run directory {missing} is not visible on node node-test" in done.stderr
    assert len(done.stderr.strip().splitlines()) <= 2
    no_traceback(done.stdout, done.stderr)


def test_a_killed_task_leaves_containers_down_removes_and_a_second_node_is_refused(
    tmp_path: Path, stub: Stub
) -> None:
    c = campaign_for(tmp_path, "shards killed")
    busy_campaign(c, stub, secs=[2.0], configs=4)
    run = None
    try:
        run = make_sharded(c)
        journal = run / "shards" / "s0" / "journal.jsonl"
        first = start_shard(c, run, 0, "0")
        wait_for(
            lambda: journal.exists() and b'"experiment_started"' in journal.read_bytes(),
            120,
            "shard 0's first experiment",
        )
        # the same shard started on another node (its own host lock directory): the run
        # directory's shard lock refuses it before it touches anything
        other_node = {**c.env, **task_env(0, "2"), "LLEM_LOCK_DIR": str(tmp_path / "node2")}
        second = subprocess.run(
            [*LLEM, "run", str(c.file), "--resume", str(run), "--shard", "0", "--no-progress"],
            env=other_node,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert second.returncode == 75, second.stdout + second.stderr
        assert f"compose project '{c.project}-s0'" in second.stderr
        no_traceback(second.stdout, second.stderr)
        running = json.loads(c.llem("status", run, "--json").stdout)
        assert running["state"] == "running"
        assert [x["state"] for x in running["shards"]] == ["running", "not_started"]
        kill9(first)
        assert shard_containers(c, 2) != []  # a crash leaves its containers up
        crashed = c.llem("status", run)
        assert crashed.returncode == 0, crashed.stderr
        lines = crashed.stdout.splitlines()
        # (the job id the task journaled: the Slurm of this test knows no such job)
        assert lines[0] == f"run {run.name}: crashed (2 shards, Slurm job 4242)", lines
        assert any(
            line.strip().startswith("shard 0:") and "was running" in line and "sbatch" in line
            for line in lines
        )
        assert any(line.strip().startswith("shard 1:") and "not started" in line for line in lines)
        down = c.llem("down", run, timeout=180)
        assert down.returncode == 0, down.stderr
        assert "of 2 shard(s)" in down.stdout
        assert shard_containers(c, 2) == []
        again = start_shard(c, run, 0, "0")
        out, err = again.communicate(timeout=240)
        assert again.returncode == 0, out + err
        oks = [
            e["record"]["key"]
            for e in events(run / "shards" / "s0")  # a torn line from the kill is skipped
            if e["type"] == "experiment_finished" and e["record"]["status"] == "ok"
        ]
        assert len(oks) == len(set(oks)) == 2  # shard 0's two experiments, each once
    finally:
        if run is not None:
            c.llem("down", run, timeout=180)
        c.cleanup()
    assert shard_containers(c, 2) == []


def test_a_task_with_two_gpus_runs_lanes_over_them_and_docker_never_sees_cuda_numbers(
    tmp_path: Path, stub: Stub
) -> None:
    c = campaign_for(tmp_path, "shards lanes")
    # the compose file passes CUDA_VISIBLE_DEVICES through, as many do: in a Slurm job it
    # numbers the job's GPUs from 0, which would point a container at the wrong GPU
    busy_campaign(
        c,
        stub,
        secs=[1.0],
        configs=4,
        execution={"lanes": "auto"},
        service={
            "environment": {
                "LLEM_FAKE_NVML_STATE": f"/llem/fake-nvml/{stub.state_file.name}",
                "LLEM_FAKE_BUSY_DIR": "/busy",
                "CUDA_VISIBLE_DEVICES": "${CUDA_VISIBLE_DEVICES:-unset}",
            }
        },
    )
    text = c.file.read_text().replace(
        "- llem-fake-busy\n",
        '- sh\n    - -c\n    - \'echo "{\\"cvd\\": \\"$CUDA_VISIBLE_DEVICES\\"}" > '
        '$LLEM_EXPERIMENT_DIR/result.json; exec llem-fake-busy "$0"\'\n',
    )
    c.file.write_text(text)
    run = None
    try:
        done = c.llem("slurm", c.file, "--shards", "1", "--gpus-per-shard", "2")
        assert done.returncode == 0, done.stderr
        run = Path(done.stdout.strip()).parent.parent
        task = start_shard(c, run, 0, "1,3")  # CUDA_VISIBLE_DEVICES=0,1 in the job
        out, err = task.communicate(timeout=240)
        assert task.returncode == 0, out + err
        recs = merged_records(c, run)
        assert len(recs) == 4
        assert {tuple(r["gpu_uuids"]) for r in recs} == {(uuid_of(1),), (uuid_of(3),)}
        assert {r["lane"] for r in recs} == {0, 1}
        assert {r["metrics"]["cvd"] for r in recs} == {"unset"}
        lanes = [e for e in events(run / "shards" / "s0") if e["type"] == "lanes"]
        assert [x["project"] for x in lanes[0]["lanes"]] == [
            f"{c.project}-s0-l0",
            f"{c.project}-s0-l1",
        ]
    finally:
        if run is not None:
            c.llem("down", run, timeout=180)
        c.cleanup()
    assert shard_containers(c, 1) == []
