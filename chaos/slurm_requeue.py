"""Scenario: a Slurm array task's llem killed (``kill -9``) at random (seeded) moments, then the
task requeued (``scontrol requeue``), on the one-node Slurm of ``scripts/slurm.sh``.

A sharded campaign (``llem slurm --shards 2 --gpus-per-shard 1 --submit``) of 8 experiments of 1
or 2 s on the four stand-in GPUs (llem_testkit/four_gpus). Each round picks a running task, waits
a random delay (the task's start-up, ``compose up``, the pin check, experiments, teardown), sends
SIGKILL to that task's llem (the batch script's own process: the script ``exec``s it), waits for
Slurm to see the task end, then requeues it (its begin time moved to now, as
``llem_testkit.slurm.requeue`` does). The requeued task resumes its shard: the killed session's
containers are removed, its in-flight experiment runs again, nothing settled runs twice. A
campaign that finishes before the kills are spent is accounted and a new one takes the rest.

Checked per campaign once every task completed: each key has exactly one ok
``experiment_finished`` over every shard's journal (lost: none; duplicated: more than one); the
replay finds no defect; every shard finished; no container is left in any shard's project or
its lanes'; and no two experiments ever ran on one GPU at once.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

from chaos.common import E2ECampaign, Row, log, new_campaign, plan_keys_of, scratch, tally
from llem_testkit.e2e import events, shard_containers
from llem_testkit.four_gpus import busy_campaign, overlaps
from llem_testkit.nvml_stub import build_stub, new_stub
from llem_testkit.slurm import END_STATES, job_states, requeue, slurm_problem
from llem_testkit.slurm import wait_for as wait_job

NAME = "kill -9 a Slurm task's llem + scontrol requeue"
SHARDS = 2
SECS = [1.0, 2.0]
CONFIGS = 4  # x 2 durations: 8 experiments, 4 per shard


def task_pids(run: Path, shard: int) -> list[int]:
    """Pids of the llem processes running shard ``shard`` of ``run`` (from /proc's cmdlines)."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            argv = Path(entry.path, "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [w.decode(errors="replace") for w in argv]
        if "llem_cli" in words and "--shard" in words and str(run) in words:
            at = words.index("--shard")
            if at + 1 < len(words) and words[at + 1] == str(shard):
                found.append(int(entry.name))
    return found


def shard_journal_events(run: Path, shard: int) -> list[dict[str, Any]]:
    return events(run / "shards" / f"s{shard}")


def phase_of(run: Path, shard: int, sessions_before: int) -> str:
    """Where in its session the kill landed, from the journal it left."""
    evs = shard_journal_events(run, shard)
    starts = [i for i, e in enumerate(evs) if e["type"] == "run_started"]
    if len(starts) <= sessions_before:
        return "start-up"
    session = evs[starts[-1] :]
    if not any(e["type"] == "experiment_started" for e in session):
        return "containers starting"
    if session[-1]["type"] in ("run_finished", "interrupted"):
        return "teardown"
    return "experiments"


def ended(states: dict[str, str]) -> bool:
    return bool(states) and all(v in END_STATES for v in states.values())


def check(c: E2ECampaign, run: Path, keys: list[str], row: Row, kills: int) -> None:
    """Account one campaign's keys over every shard's journal."""
    t = tally(run, keys)
    row.lost += len(t.lost)
    row.duplicated += len(t.duplicated)
    if t.lost or t.duplicated:
        row.fail(f"{c.name}: lost {t.lost}, duplicated {t.duplicated} ({run})")
    if t.defects:
        row.fail(f"{c.name}: journal defects {t.defects}")
    if not t.finished:
        row.fail(f"{c.name}: not every shard finished")
    both = overlaps(c.root / "busy")
    if both:
        row.fail(f"{c.name}: two experiments on one GPU at once: {both}")
    left = shard_containers(c, SHARDS)
    if left:
        row.fail(f"{c.name}: containers left {left}")
    row.containers_left += len(left)
    if t.ok and not both and not left:
        row.passed += kills


def run(quick: bool = False, seed: int = 20261128) -> Row:
    kills_wanted = 4 if quick else 12
    rng = random.Random(seed + 17)
    row = Row(NAME, repeats=kills_wanted)
    t0 = time.monotonic()
    problem = slurm_problem()
    if problem is not None:
        row.fail(f"no usable Slurm ({problem}): start one with scripts/slurm.sh (make slurm)")
        return row
    phases: Counter[str] = Counter()
    campaigns = 0
    with scratch("slurm-requeue") as base:
        lib = build_stub(base / "nvml")
        (base / "nvml-state").mkdir()
        stub = new_stub(lib, base / "nvml-state")

        def make(index: int) -> tuple[E2ECampaign, Path, str, list[str]]:
            c = new_campaign(base, f"srq-{index}")
            busy_campaign(c, stub, secs=SECS, configs=CONFIGS)
            keys = plan_keys_of(c)
            done = c.llem(
                "slurm",
                c.file,
                "--shards",
                str(SHARDS),
                "--gpus-per-shard",
                "1",
                "--time",
                "30",
                "--submit",
            )
            if done.returncode != 0:
                raise RuntimeError(f"llem slurm --submit exited {done.returncode}: {done.stderr}")
            script, job_id = done.stdout.strip().splitlines()
            return c, Path(script).parent.parent, job_id, keys

        c, run_dir, job_id, keys = make(0)
        campaigns, kills, kills_here, relaunches = 1, 0, 0, 0
        try:
            while kills < kills_wanted:
                states = job_states(job_id)
                if states and all(s in END_STATES for s in states.values()):
                    if set(states.values()) != {"COMPLETED"}:
                        row.fail(f"{c.name}: tasks ended {states} without a kill pending")
                    check(c, run_dir, keys, row, kills_here)
                    log(f"  {c.name} finished after {kills_here} kill(s); next campaign")
                    c.cleanup()
                    c, run_dir, job_id, keys = make(campaigns)
                    campaigns, kills_here = campaigns + 1, 0
                    continue
                running = [int(t) for t, s in states.items() if s == "RUNNING"]
                targets = [k for k in running if task_pids(run_dir, k)]
                if not targets:
                    time.sleep(0.1)
                    continue
                shard = rng.choice(targets)
                sessions = sum(
                    e["type"] == "run_started" for e in shard_journal_events(run_dir, shard)
                )
                time.sleep(rng.uniform(0.0, 5.0))
                alive = task_pids(run_dir, shard)
                if not alive:
                    continue  # it finished meanwhile: no kill this round
                for pid in alive:
                    os.kill(pid, signal.SIGKILL)
                kills += 1
                kills_here += 1
                phase = phase_of(run_dir, shard, sessions)
                phases[phase] += 1
                task = f"{job_id}_{shard}"
                wait_job(task, ended)  # Slurm saw the task end
                relaunches += requeue(task)
                log(f"  {c.name}: kill {kills} of shard {shard} ({phase}), requeued")
            states = wait_job(job_id, timeout_s=600)
            if set(states.values()) != {"COMPLETED"}:
                row.fail(f"{c.name}: tasks ended {states}")
            check(c, run_dir, keys, row, kills_here)
        finally:
            for k in range(SHARDS):
                for pid in task_pids(run_dir, k):
                    os.kill(pid, signal.SIGKILL)
            c.llem("down", run_dir, timeout=180)
            c.cleanup()
    row.seconds = time.monotonic() - t0
    where = ", ".join(f"{n} in {p}" for p, n in sorted(phases.items()))
    row.notes.append(
        f"{campaigns} campaign(s) of {len(SECS) * CONFIGS} experiments in {SHARDS} shards, "
        f"seed {seed + 17}; kills: {where}; requeues Slurm failed to launch and that were "
        f"requeued again: {relaunches}"
    )
    return row


if __name__ == "__main__":
    import sys

    from chaos.run_all import main

    sys.exit(main(["--only", "slurm_requeue", *sys.argv[1:]]))
