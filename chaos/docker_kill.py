"""Scenario 2: ``docker kill`` of the backend container at random (seeded) moments of a run.

A killer thread waits a random delay, finds the service's running container and ``docker
kill``s it, until the run ends; ``execution.retries`` and ``health.max_restarts`` are set high
enough for every kill. Checked per run: exit 0, every key ok exactly once, nothing left. Should a
run end before all the kills were spent, another run takes the rest.
"""

from __future__ import annotations

import random
import subprocess
import threading
import time
from pathlib import Path

from chaos.common import (
    E2ECampaign,
    Row,
    log,
    new_campaign,
    no_traceback,
    of_type,
    plan_keys_of,
    project_containers,
    scratch,
    service_container,
    tally,
    wait_exit,
)
from llem_cli.runs.state import replay

NAME = "docker kill backend container"
EXPERIMENTS = 40


def make_campaign(base: Path, index: int) -> E2ECampaign:
    c = new_campaign(base, f"dk-{index}")
    c.write(
        {"app": {"command": ["sh", "-c", "sleep 0.4"]}},
        grid={"i": list(range(1, EXPERIMENTS // 2 + 1))},
        execution={"cycles": 2, "retries": 10},
        health={"max_restarts": 200},
    )
    return c


def run(quick: bool = False, seed: int = 20261128) -> Row:
    wanted = 6 if quick else 20
    rng = random.Random(seed + 2)
    row = Row(NAME, repeats=wanted)
    t0 = time.monotonic()
    kills = 0
    with scratch("dkill") as base:
        index = 0
        while kills < wanted:
            c = make_campaign(base, index)
            index += 1
            try:
                keys = plan_keys_of(c)
                proc = c.start("run", c.file, "--no-progress")
                here = 0
                stop = threading.Event()

                def killer(
                    c: E2ECampaign = c,
                    proc: subprocess.Popen[str] = proc,
                    stop: threading.Event = stop,
                ) -> None:
                    nonlocal kills, here
                    while kills < wanted and proc.poll() is None and not stop.is_set():
                        if stop.wait(rng.uniform(0.3, 2.5)):
                            return
                        cid = service_container(c, "app")
                        if cid is None or proc.poll() is not None:
                            continue
                        done = subprocess.run(
                            ["docker", "kill", cid], capture_output=True, timeout=60, check=False
                        )
                        if done.returncode == 0:
                            kills += 1
                            here += 1

                thread = threading.Thread(target=killer, daemon=True)
                thread.start()
                code = wait_exit(proc, timeout=600)
                stop.set()
                thread.join(timeout=120)
                out, err = c.output()
                run_dir = c.run_dir()
                t = tally(run_dir, keys)
                restarts = len(of_type(run_dir, "restart"))
                log(f"  {c.name}: {here} kill(s), exit {code}, {restarts} restart(s)")
                good = code == 0 and t.ok and no_traceback(out, err)
                if not good:
                    latest = replay(run_dir / "journal.jsonl").records
                    why = {k: (latest[k].status, latest[k].error) for k in t.lost if k in latest}
                    row.fail(
                        f"{c.name}: exit {code}, lost {t.lost}, dup {t.duplicated}, "
                        f"defects {t.defects}, lost keys' records {why}: {err[-400:]}"
                    )
                else:
                    row.passed += here
                row.lost += len(t.lost)
                row.duplicated += len(t.duplicated)
                row.containers_left += len(project_containers(c.project))
            finally:
                c.cleanup()
    row.seconds = time.monotonic() - t0
    row.notes.append(f"{index} run(s) of {EXPERIMENTS} experiments, seed {seed + 2}")
    return row


if __name__ == "__main__":
    import sys

    from chaos.run_all import main

    sys.exit(main(["--only", "docker_kill", *sys.argv[1:]]))
