"""Scenario 1: ``kill -9`` of llem at random (seeded) moments of a 40-experiment campaign.

Each round starts ``llem run FILE --resume`` and SIGKILLs the llem process after a random delay
(its docker children live on, as after a real crash); the next round resumes. After the last kill
a final ``--resume`` finishes the campaign. Should the campaign finish before all the kills were
spent, a new campaign takes over, so every kill lands in a live run. Checked: each key has
exactly one ok ``experiment_finished`` over the whole journal, every resume continued the one
run, no container of the project is left.
"""

from __future__ import annotations

import random
import subprocess
import time
from pathlib import Path

from chaos.common import (
    E2ECampaign,
    Row,
    kill9,
    log,
    new_campaign,
    no_traceback,
    of_type,
    plan_keys_of,
    project_containers,
    scratch,
    tally,
)

NAME = "kill -9 llem + --resume"
EXPERIMENTS = 40  # 20 configurations x 2 cycles


def make_campaign(base: Path, index: int) -> E2ECampaign:
    c = new_campaign(base, f"k9-{index}")
    c.write(
        {"app": {"command": ["sh", "-c", "echo {key} >> /llem/run/executions.log; sleep 0.3"]}},
        grid={"i": list(range(1, EXPERIMENTS // 2 + 1))},
        execution={"cycles": 2},
    )
    return c


def check_campaign(c: E2ECampaign, keys: list[str], row: Row, kills: int) -> None:
    """Account one campaign's keys; ``kills`` rounds were spent on it."""
    started = [run for run in c.run_dirs() if of_type(run, "run_started")]
    if len(started) != 1:
        row.fail(f"{c.name}: {len(started)} runs with run_started (resume must continue one)")
    if not started:
        row.lost += len(keys)
        return
    t = tally(started[0], keys)
    row.lost += len(t.lost)
    row.duplicated += len(t.duplicated)
    if t.defects:
        row.fail(f"{c.name}: journal defects {t.defects}")
    if not t.finished:
        row.fail(f"{c.name}: run not finished")
    if t.ok and len(started) == 1:
        row.passed += kills
    left = project_containers(c.project)
    row.containers_left += len(left)


def finish(c: E2ECampaign, row: Row) -> None:
    done = c.llem("run", c.file, "--resume", "--no-progress", timeout=300)
    if done.returncode != 0 or not no_traceback(done.stdout, done.stderr):
        row.fail(f"{c.name}: final --resume exited {done.returncode}: {done.stderr[-500:]}")


def run(quick: bool = False, seed: int = 20261128) -> Row:
    kills_wanted = 8 if quick else 30
    rng = random.Random(seed)
    row = Row(NAME, repeats=kills_wanted)
    t0 = time.monotonic()
    with scratch("kill9") as base:
        index = 0
        c = make_campaign(base, index)
        keys = plan_keys_of(c)
        assert len(keys) == EXPERIMENTS
        kills_here = 0
        try:
            kills = 0
            round_no = 0
            while kills < kills_wanted:
                round_no += 1
                proc = c.start("run", c.file, "--resume", "--no-progress", tag=f"r{round_no}")
                # from the interpreter's start-up to deep in the campaign loop
                delay = rng.uniform(0.2, 4.0)
                try:
                    code = proc.wait(timeout=delay)
                except subprocess.TimeoutExpired:
                    kill9(proc)
                    kills += 1
                    kills_here += 1
                    continue
                out, err = c.output(f"r{round_no}")
                if code != 0 or not no_traceback(out, err):
                    row.fail(f"{c.name}: round {round_no} exited {code}: {err[-500:]}")
                # finished before the kill: account it, go on with a new campaign
                check_campaign(c, keys, row, kills_here)
                log(f"  {c.name} finished after {kills_here} kill(s); next campaign")
                c.cleanup()
                index += 1
                c = make_campaign(base, index)
                keys = plan_keys_of(c)
                kills_here = 0
            runs = [r for r in c.run_dirs() if of_type(r, "run_started")]
            if runs:
                done = len(tally(runs[0], keys).lost)
                row.notes.append(
                    f"{c.name}: {len(keys) - done} of {len(keys)} ok when the last kill came, "
                    f"{len(of_type(runs[0], 'run_started'))} sessions"
                )
            finish(c, row)
            check_campaign(c, keys, row, kills_here)
        finally:
            c.cleanup()
    row.seconds = time.monotonic() - t0
    row.notes.append(f"{index + 1} campaign(s) of {EXPERIMENTS} experiments, seed {seed}")
    return row


if __name__ == "__main__":
    import sys

    from chaos.run_all import main

    sys.exit(main(["--only", "kill9", *sys.argv[1:]]))
