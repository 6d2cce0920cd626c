"""Scenario: ``kill -9`` of llem at random (seeded) moments of a 4-lane run, then ``--resume``.

Four stand-in GPUs, as in tests/e2e/test_lanes_e2e.py: the stand-in ``libnvidia-ml.so.1``
(llem_testkit/nvml_stub, built into the scenario's folder) reports four GPUs, the service mounts
its state file's folder at ``/llem/fake-nvml`` and a busy folder at ``/busy``, and each
experiment is ``llem-fake-busy SECONDS`` from the test image (it marks its lane's GPU busy while
it sleeps). The campaign: 8 experiments of 1 or 2 s (``secs: [1, 2]`` x 4), ``lanes: 4``.

Each round starts ``llem run FILE --resume`` and SIGKILLs the llem process after a random delay
(start-up, the four lanes' ``compose up``, probes and pin checks, execs in four threads, journal
writes from four threads, teardown); its docker children live on, as after a real crash. The
next round resumes. After the last kill a final ``--resume`` finishes the campaign; a campaign
that finished before the kills were spent is accounted and a new one takes the rest. Checked per
campaign: every ``--resume`` continued the one run; each key has exactly one ok
``experiment_finished`` over the whole journal (lost: none, duplicated: more than one); replay
finds no defect; no container is left, neither of the campaign's project nor of a lane's
(``<project>-l<n>``, label ``llem.project=<project>``); and no two experiments ever ran on one
GPU at once, across sessions (a killed session's experiment still running in its container while
the resumed one runs there would show as overlapping busy intervals).

The four-GPU helpers here are shared with chaos/lanes_docker_kill.py.
"""

from __future__ import annotations

import random
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from chaos.common import (
    E2ECampaign,
    Row,
    containers,
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
from llem_testkit.four_gpus import busy_campaign, overlaps
from llem_testkit.nvml_stub import Stub, build_stub, new_stub

NAME = "kill -9 llem, 4 lanes + --resume"
LANES = 4
SECS = [1, 2]  # seconds per experiment (a grid axis)
CONFIGS_PER_SECS = 4  # 8 experiments: 2 per lane


def four_gpus(base: Path) -> Stub:
    """Build the stand-in NVML under ``base``; each campaign writes the four GPUs' state
    (llem_testkit/four_gpus: 50 W idle, 1 to 4 kW busy) with its own busy folder."""
    (base / "nvml-state").mkdir(exist_ok=True)
    return new_stub(build_stub(base / "nvml"), base / "nvml-state")


def lanes_campaign(
    base: Path,
    label: str,
    gpus: Stub,
    *,
    secs: Sequence[float],
    configs: int,
    execution: dict[str, Any] | None = None,
    health: dict[str, Any] | None = None,
) -> E2ECampaign:
    """A 4-lane campaign of ``llem-fake-busy {secs}`` on the four stand-in GPUs; the
    experiments mark their GPU busy in the campaign's own ``busy`` folder (for
    :func:`overlaps`)."""
    c = new_campaign(base, label)
    busy_campaign(
        c,
        gpus,
        secs=secs,
        configs=configs,
        execution={"lanes": LANES, **(execution or {})},
        health=health,
    )
    return c


def lane_containers_left(c: E2ECampaign) -> list[str]:
    """Every container (running or not) of the campaign: its project, each lane's project
    (``<project>-l<n>``) and anything labelled ``llem.project=<project>``."""
    ids = set(containers(f"llem.project={c.project}")) | set(project_containers(c.project))
    for lane in range(LANES):
        ids |= set(project_containers(f"{c.project}-l{lane}"))
    return sorted(ids)


def phase_of_kill(run_dir: Path | None, sessions_before: int, keys: list[str]) -> str:
    """Where in its session a kill landed, from the journal it left."""
    if run_dir is None:
        return "start-up"
    events = of_type(
        run_dir, "run_started", "experiment_started", "experiment_finished", "pin_check"
    )
    starts = [i for i, e in enumerate(events) if e["type"] == "run_started"]
    if len(starts) <= sessions_before:
        return "start-up"
    session = events[starts[-1] :]
    if not any(e["type"] == "experiment_started" for e in session):
        return "containers starting" if session[-1]["type"] == "run_started" else "pin check"
    if not tally(run_dir, keys).lost:
        return "teardown"
    return "experiments"


def first_run(c: E2ECampaign) -> Path | None:
    runs = [r for r in c.run_dirs() if of_type(r, "run_started")]
    return runs[0] if runs else None


def check_campaign(c: E2ECampaign, keys: list[str], row: Row, kills: int) -> None:
    """Account one campaign's keys; ``kills`` rounds were spent on it."""
    started = [run for run in c.run_dirs() if of_type(run, "run_started")]
    if len(started) != 1:
        row.fail(f"{c.name}: {len(started)} runs with run_started (resume must continue one)")
    if not started:
        row.lost += len(keys)
        return
    run = started[0]
    t = tally(run, keys)
    row.lost += len(t.lost)
    row.duplicated += len(t.duplicated)
    if t.lost or t.duplicated:
        row.fail(f"{c.name}: lost {t.lost}, duplicated {t.duplicated} ({run})")
    if t.defects:
        row.fail(f"{c.name}: journal defects {t.defects}")
    if not t.finished:
        row.fail(f"{c.name}: run not finished")
    both = overlaps(c.root / "busy")
    if both:
        row.fail(f"{c.name}: two experiments on one GPU at once: {both}")
    left = lane_containers_left(c)
    if left:
        row.fail(f"{c.name}: containers left {left}")
    row.containers_left += len(left)
    if t.ok and len(started) == 1 and not both and not left:
        row.passed += kills


def run(quick: bool = False, seed: int = 20261128) -> Row:
    kills_wanted = 4 if quick else 12
    rng = random.Random(seed + 13)
    row = Row(NAME, repeats=kills_wanted)
    t0 = time.monotonic()
    phases: dict[str, int] = {}
    campaigns = 0
    with scratch("lanes-kill9") as base:
        gpus = four_gpus(base)

        def make(index: int) -> tuple[E2ECampaign, list[str]]:
            c = lanes_campaign(base, f"lk9-{index}", gpus, secs=SECS, configs=CONFIGS_PER_SECS)
            keys = plan_keys_of(c)
            assert len(keys) == len(SECS) * CONFIGS_PER_SECS
            return c, keys

        c, keys = make(0)
        campaigns = 1
        kills_here = 0
        try:
            kills = 0
            round_no = 0
            while kills < kills_wanted:
                round_no += 1
                run_dir = first_run(c)
                sessions = len(of_type(run_dir, "run_started")) if run_dir else 0
                proc = c.start("run", c.file, "--resume", "--no-progress", tag=f"r{round_no}")
                # from the interpreter's start-up to the teardown of a full 4-lane session
                delay = rng.uniform(0.3, 7.0)
                try:
                    code = proc.wait(timeout=delay)
                except subprocess.TimeoutExpired:
                    kill9(proc)
                    kills += 1
                    kills_here += 1
                    phase = phase_of_kill(first_run(c), sessions, keys)
                    phases[phase] = phases.get(phase, 0) + 1
                    log(f"  {c.name}: kill {kills} after {delay:.2f}s ({phase})")
                    continue
                out, err = c.output(f"r{round_no}")
                if code != 0 or not no_traceback(out, err):
                    row.fail(f"{c.name}: round {round_no} exited {code}: {err[-500:]}")
                check_campaign(c, keys, row, kills_here)
                log(f"  {c.name} finished after {kills_here} kill(s); next campaign")
                c.cleanup()
                c, keys = make(campaigns)
                campaigns += 1
                kills_here = 0
            run_dir = first_run(c)
            if run_dir is not None:
                ok = len(keys) - len(tally(run_dir, keys).lost)
                row.notes.append(
                    f"{c.name}: {ok} of {len(keys)} ok when the last kill came, "
                    f"{len(of_type(run_dir, 'run_started'))} sessions"
                )
            # resume until done (a resume that is itself fine exits 0 the first time)
            done = c.llem("run", c.file, "--resume", "--no-progress", timeout=300)
            if done.returncode != 0 or not no_traceback(done.stdout, done.stderr):
                row.fail(f"{c.name}: final --resume exited {done.returncode}: {done.stderr[-500:]}")
            check_campaign(c, keys, row, kills_here)
        finally:
            c.cleanup()
    row.seconds = time.monotonic() - t0
    where = ", ".join(f"{n} in {p}" for p, n in sorted(phases.items()))
    row.notes.append(
        f"{campaigns} campaign(s) of {len(SECS) * CONFIGS_PER_SECS} experiments "
        f"({'/'.join(map(str, SECS))} s, {LANES} lanes), seed {seed + 13}; kills: {where}"
    )
    return row


if __name__ == "__main__":
    import sys

    from chaos.run_all import main

    sys.exit(main(["--only", "lanes_kill9", *sys.argv[1:]]))
