"""The Slurm the tests run on (``scripts/slurm.sh``), as llem will use it: array jobs on GPU gres,
``scancel`` and ``scontrol requeue`` of a running task, through :mod:`llem_testkit.slurm`.

Every job is a batch script in ``tmp_path`` that writes what it sees to files there; a finalizer
cancels whatever a test left queued or running.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from llem_testkit.slurm import (
    cancel,
    job_states,
    requeue,
    slurm_config,
    submit,
    wait_for,
    wait_running,
)

# Docker too: tests/slurm is where llem runs under Slurm, and llem needs an engine
pytestmark = [pytest.mark.docker, pytest.mark.slurm]

#: what a task records: "TASK|SLURM_JOB_GPUS|SLURM_STEP_GPUS|CUDA_VISIBLE_DEVICES|RESTARTS"
#: (``-`` where the variable is unset)
RECORD = (
    'printf "%s|%s|%s|%s|%s\\n" "${SLURM_ARRAY_TASK_ID--}" "${SLURM_JOB_GPUS--}" '
    '"${SLURM_STEP_GPUS--}" "${CUDA_VISIBLE_DEVICES--}" "${SLURM_RESTART_COUNT--}"'
)


@pytest.fixture
def batch(tmp_path: Path, jobs: list[str]) -> Callable[..., str]:
    """Submit a bash batch script (its body given) with sbatch options; return the job id."""

    def run(body: str, *options: str, name: str = "job") -> str:
        script = tmp_path / f"{name}.sh"
        script.write_text(f"#!/bin/bash\nset -u\n{body}\n")
        job_id = submit(
            script,
            options=[f"--output={tmp_path}/{name}-%A_%a.out", "--time=5", *options],
            cwd=tmp_path,
        )
        jobs.append(job_id)
        return job_id

    return run


def read_records(path: Path) -> list[list[str]]:
    """The RECORD lines of ``path`` split into their fields."""
    if not path.exists():
        return []
    return [line.split("|") for line in path.read_text().splitlines() if line.count("|") == 4]


def wait_file(path: Path, lines: int, timeout_s: float = 30.0) -> list[list[str]]:
    """Wait until ``path`` holds ``lines`` RECORD lines; return them."""
    deadline = time.monotonic() + timeout_s
    while True:
        records = read_records(path)
        if len(records) >= lines:
            return records
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"{path}: {len(records)} records after {timeout_s:g}s, not {lines}"
            )
        time.sleep(0.1)


def kill_wait_s() -> float:
    """The cluster's KillWait ("10 sec"): seconds between SIGTERM and SIGKILL."""
    return float(slurm_config()["KillWait"].split()[0])


def test_array_tasks_run_at_once_on_different_gpus(tmp_path: Path, batch: Callable[..., str]):
    # each task records, then waits for the other's record: both must run at the same time
    body = f"""{RECORD} > {tmp_path}/task.$SLURM_ARRAY_TASK_ID
for _ in $(seq 300); do
    [ -e {tmp_path}/task.0 ] && [ -e {tmp_path}/task.1 ] && exit 0
    sleep 0.1
done
exit 3"""
    job_id = batch(body, "--array=0-1", "--gres=gpu:1", "--cpus-per-task=1")
    states = wait_for(job_id, timeout_s=60)
    assert states == {"0": "COMPLETED", "1": "COMPLETED"}, states
    gpus = []
    for task in ("0", "1"):
        [record] = read_records(tmp_path / f"task.{task}")
        task_id, job_gpus, step_gpus, cuda, restarts = record
        assert task_id == task
        # one GPU, by its index in the node's gres list; no step: no SLURM_STEP_GPUS
        assert job_gpus in {"0", "1", "2", "3"}, record
        assert cuda == job_gpus, record
        assert step_gpus == "-", record
        assert restarts == "-", record
        gpus.append(job_gpus)
    assert gpus[0] != gpus[1]


def test_four_gpu_job_gets_all_four(tmp_path: Path, batch: Callable[..., str]):
    job_id = batch(f"{RECORD} > {tmp_path}/task.all", "--gres=gpu:4")
    assert wait_for(job_id, timeout_s=60) == {job_id: "COMPLETED"}
    [record] = read_records(tmp_path / "task.all")
    assert record == ["-", "0,1,2,3", "-", "0,1,2,3", "-"]


SIGNAL_RECORDER = """
import os, signal, sys, time
out = sys.argv[1]
def record(signum, frame):
    with open(out, "a") as f:
        f.write(f"{os.getpid()} {signum} {time.time():.3f}\\n")
    if signum == signal.SIGTERM:
        sys.exit(0)
signal.signal(signal.SIGTERM, record)
signal.signal(signal.SIGINT, record)
with open(out + ".ready", "w") as f:
    f.write(f"{os.getpid()}\\n")
while True:
    time.sleep(0.05)
"""


def test_scancel_sends_sigterm_to_the_execed_process(tmp_path: Path, batch: Callable[..., str]):
    recorder = tmp_path / "recorder.py"
    recorder.write_text(SIGNAL_RECORDER)
    signals = tmp_path / "signals"
    # exec: the batch shell becomes the recorder (the llem process of a real job)
    job_id = batch(f"exec {sys.executable} {recorder} {signals}")
    wait_running(job_id, timeout_s=60)
    ready = Path(f"{signals}.ready")
    deadline = time.monotonic() + 30
    while not ready.exists() or not ready.read_text().strip():
        assert time.monotonic() < deadline, "the recorder did not start"
        time.sleep(0.05)
    pid = ready.read_text().strip()
    sent = time.time()
    cancel(job_id)
    deadline = time.monotonic() + kill_wait_s()
    while not signals.exists() or not signals.read_text().strip():
        assert time.monotonic() < deadline, f"no signal within KillWait ({kill_wait_s():g}s)"
        time.sleep(0.05)
    received_pid, signum, at = signals.read_text().split("\n")[0].split()
    assert (received_pid, signum) == (pid, "15")
    assert float(at) - sent < kill_wait_s()
    assert wait_for(job_id, timeout_s=30) == {job_id: "CANCELLED"}


def test_requeue_runs_the_task_again(tmp_path: Path, batch: Callable[..., str]):
    body = f"{RECORD} >> {tmp_path}/task.$SLURM_ARRAY_TASK_ID\nexec sleep 300"
    job_id = batch(body, "--array=0-1", "--gres=gpu:1")
    wait_running(job_id, 0, timeout_s=60)
    wait_running(job_id, 1, timeout_s=60)
    [first] = wait_file(tmp_path / "task.1", 1)
    assert first[4] == "-"
    started = time.monotonic()
    # (Slurm alone would hold the task ~120 s: requeue moves its begin time to now)
    requeue(f"{job_id}_1")
    records = wait_file(tmp_path / "task.1", 2, timeout_s=30)
    took = time.monotonic() - started
    # restart 1, or more where slurmd refused a launch and requeue() requeued it again
    assert records[1][0] == "1" and int(records[1][4]) >= 1, records
    assert records[1][1] in {"0", "1", "2", "3"}
    assert took < 15, f"the requeued task took {took:.1f}s to run again"
    # the other task went on untouched
    assert len(read_records(tmp_path / "task.0")) == 1
    assert job_states(job_id) == {"0": "RUNNING", "1": "RUNNING"}
    cancel(job_id)
    assert wait_for(job_id, timeout_s=30) == {"0": "CANCELLED", "1": "CANCELLED"}
