"""llem under a real Slurm: ``llem slurm --submit`` on the one-node cluster of
``scripts/slurm.sh`` (four GPUs in ``gres.conf``), its tasks running ``llem run --shard`` against
the real Docker engine on the four stand-in GPUs (energies tell which GPU a record covered).

The job's tasks inherit the submitter's environment (``--export=ALL``): the stand-in NVML's
library and state reach them as they reach a plain ``llem run`` in the e2e tests.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from llem_testkit.e2e import (
    E2ECampaign,
    assert_no_containers,
    campaign_for,
    shard_containers,
    wait_for,
)
from llem_testkit.four_gpus import BUSY_W, IDLE_W, busy_campaign, overlaps, uuid_of
from llem_testkit.nvml_stub import Stub
from llem_testkit.slurm import cancel, submit
from llem_testkit.slurm import wait_for as wait_job

pytestmark = [pytest.mark.docker, pytest.mark.slurm]


def submit_sharded(c: E2ECampaign, shards: int, jobs: list[str]) -> tuple[Path, str]:
    """``llem slurm --submit``: the run directory and the job id it printed."""
    done = c.llem(
        "slurm",
        c.file,
        "--shards",
        str(shards),
        "--gpus-per-shard",
        "1",
        "--time",
        "10",
        "--submit",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    script_line, job_id = done.stdout.strip().splitlines()
    jobs.append(job_id)
    return Path(script_line).parent.parent, job_id


def shard_events(run: Path, shard: int) -> list[dict[str, Any]]:
    journal = run / "shards" / f"s{shard}" / "journal.jsonl"
    if not journal.exists():
        return []
    return [json.loads(line) for line in journal.read_text().splitlines() if line.strip()]


def all_events(run: Path, shards: int) -> list[dict[str, Any]]:
    return [e for k in range(shards) for e in shard_events(run, k)]


def ok_records(run: Path, shards: int) -> Counter[str]:
    """How many ``ok`` records each key has across every shard's journal."""
    return Counter(
        e["record"]["key"]
        for e in all_events(run, shards)
        if e["type"] == "experiment_finished" and e["record"]["status"] == "ok"
    )


def cleanup(c: E2ECampaign, run: Path | None) -> None:
    if run is not None:
        c.llem("down", run, timeout=180)
    c.cleanup()


def test_a_two_shard_array_runs_every_key_once_each_shard_on_its_own_gpu(
    tmp_path: Path, stub: Stub, jobs: list[str]
) -> None:
    c = campaign_for(tmp_path, "slurm array")
    busy = busy_campaign(c, stub, secs=[1.0], configs=4)
    run = None
    try:
        run, job_id = submit_sharded(c, 2, jobs)
        states = wait_job(job_id, timeout_s=300)
        assert states == {"0": "COMPLETED", "1": "COMPLETED"}, states
        plan = json.loads((run / "plan.json").read_text())
        assert ok_records(run, 2) == Counter({item["key"]: 1 for item in plan})
        gpus = {}
        for shard in (0, 1):
            started = [e for e in shard_events(run, shard) if e["type"] == "run_started"]
            assert len(started) == 1
            slurm = started[0]["slurm"]
            assert slurm["job_id"] == job_id and slurm["array_task"] == shard
            (index,) = slurm["gpus"]  # the node index Slurm gave the task, from gres.conf
            gpus[shard] = int(index)
            for e in shard_events(run, shard):
                if e["type"] != "experiment_finished":
                    continue
                rec = e["record"]
                assert rec["gpu_uuids"] == [uuid_of(gpus[shard])], rec
                excess = rec["energy_j"] - IDLE_W * rec["measurement"]["window_s"]
                assert excess == pytest.approx(BUSY_W[gpus[shard]], rel=0.15), rec
        assert gpus[0] != gpus[1], "two tasks running at once got the same GPU"
        assert overlaps(busy) == []
        output = (run / "slurm" / "task-0.out").read_text()
        assert "llem: shard 0 of job" in output
        status = json.loads(c.llem("status", run, "--json").stdout)
        assert status["state"] == "finished" and status["job_id"] == job_id
        assert [s["slurm_state"] for s in status["shards"]] == ["COMPLETED", "COMPLETED"]
        assert shard_containers(c, 2) == []

        # the whole run submitted again: every task exits 0 at once, nothing is journaled
        before = [(run / "shards" / f"s{k}" / "journal.jsonl").read_bytes() for k in (0, 1)]
        again = submit(run / "slurm" / "llem.sbatch", env=c.env)
        jobs.append(again)
        assert wait_job(again, timeout_s=120) == {"0": "COMPLETED", "1": "COMPLETED"}
        after = [(run / "shards" / f"s{k}" / "journal.jsonl").read_bytes() for k in (0, 1)]
        assert after == before
        for shard in (0, 1):  # each task's output: the first attempt, then this one
            text = (run / "slurm" / f"task-{shard}.out").read_text()
            second = text.index(f"llem: shard {shard} of job {again}")
            assert f"shard {shard} of {run}: finished, nothing pending" in text[second:]
    finally:
        cleanup(c, run)
    assert_no_containers(c)
    assert shard_containers(c, 2) == []


def test_scancel_mid_run_tears_down_and_a_resubmission_runs_the_rest_exactly_once(
    tmp_path: Path, stub: Stub, jobs: list[str]
) -> None:
    c = campaign_for(tmp_path, "slurm scancel")
    busy_campaign(c, stub, secs=[2.0], configs=8)  # 4 per shard
    run = None
    try:
        run, job_id = submit_sharded(c, 2, jobs)

        def finished_in(shard: int) -> int:
            return sum(e["type"] == "experiment_finished" for e in shard_events(run, shard))

        # both shards mid-way: some experiments recorded, some still to run
        wait_for(
            lambda: all(1 <= finished_in(k) <= 3 for k in (0, 1)),
            240,
            "each shard between its first and its last experiment",
        )
        cancel(job_id)  # SIGTERM to every process of both tasks
        states = wait_job(job_id, timeout_s=60)
        assert set(states.values()) == {"CANCELLED"}, states
        # each task's llem recorded the cut and removed its containers before SIGKILL
        for shard in (0, 1):
            kinds = [e["type"] for e in shard_events(run, shard)]
            assert kinds[-1] == "interrupted" and "run_finished" not in kinds, kinds
        wait_for(lambda: shard_containers(c, 2) == [], 30, "no shard container left")
        first = ok_records(run, 2)
        assert 2 <= len(first) < 8

        again = submit(run / "slurm" / "llem.sbatch", env=c.env)
        jobs.append(again)
        assert wait_job(again, timeout_s=300) == {"0": "COMPLETED", "1": "COMPLETED"}
        plan = json.loads((run / "plan.json").read_text())
        assert ok_records(run, 2) == Counter({item["key"]: 1 for item in plan})
        started = Counter(e["key"] for e in all_events(run, 2) if e["type"] == "experiment_started")
        for key in first:  # settled before the cancel: never started again
            assert started[key] == 1, key
        status = json.loads(c.llem("status", run, "--json").stdout)
        assert status["state"] == "finished" and status["done"] == 8
        assert status["job_id"] == again
    finally:
        cleanup(c, run)
    assert_no_containers(c)
    assert shard_containers(c, 2) == []
