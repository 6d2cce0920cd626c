"""Scenario: ``docker kill`` of one lane's container at random (seeded) moments of a 4-lane run.

The four stand-in GPUs and the campaign of chaos/lanes_kill9.py, larger: 16 experiments of 1 or
2 s (``secs: [1, 2]`` x 8), ``lanes: 4``, ``execution.retries: 10``, ``health.max_restarts:
200``. A killer thread waits a random delay (0.4-2.0 s), picks one running lane container at
random (label ``llem.project=<project>``) and ``docker kill``s it, until the run ends; should
a run end before all the kills were spent, another run takes the rest. ``docker events`` of the
lanes' containers are recorded alongside, as the engine's side of each kill.

Checked per run: exit 0, no lane retired; every key has exactly one ``experiment_finished``
(final) over the whole journal, and it is ok; no two experiments on one GPU at once; no
container left (the project's, a lane's, ``llem.project=<project>``). And per kill, from the
journal of its lane: a kill that cut an exec must be followed by that experiment's next attempt
and a journaled ``restart``; one between two experiments by a ``restart`` (the probe finds the
container dead); one during llem's own restart, before the lane's first experiment (``compose
up --wait`` sees it die and starts it again) or after the lane's last needs nothing journaled.
A kill passes when nothing it caused went wrong; a failure names the key, its record and the
engine's ``kill`` / ``exec_die`` / ``die`` events relative to the kill.
"""

from __future__ import annotations

import json
import random
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from chaos.common import (
    E2ECampaign,
    Row,
    log,
    of_type,
    plan_keys_of,
    scratch,
    wait_exit,
)
from chaos.lanes_kill9 import four_gpus, lane_containers_left, lanes_campaign, overlaps

NAME = "docker kill a lane's container, 4 lanes"
SECS = [1, 2]
CONFIGS_PER_SECS = 8  # 16 experiments: 4 per lane


@dataclass
class Kill:
    """One ``docker kill``: when (Unix seconds, just before the call) and which lane."""

    at: float
    lane: int
    container: str


def ts(event: dict[str, Any]) -> float:
    return (
        datetime.strptime(event["ts"], "%Y-%m-%dT%H:%M:%S.%fZ")
        .replace(tzinfo=timezone.utc)
        .timestamp()
    )


def running_lanes(c: E2ECampaign) -> list[tuple[str, int]]:
    """(container id, lane) of every running lane container of the campaign."""
    done = subprocess.run(
        [
            "docker", "ps", "--filter", f"label=llem.project={c.project}",
            "--format", '{{.ID}} {{.Label "llem.lane"}}',
        ],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    out = []
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            out.append((parts[0], int(parts[1])))
    return sorted(out, key=lambda x: x[1])


def check_kills(
    run_dir: Path, kills: list[Kill], docker_events: list[dict[str, Any]]
) -> tuple[list[str], Counter[str]]:
    """Each kill's consequence in the journal; the problems and a count per kind of moment.

    A problem about an experiment comes with the engine's side (``docker events`` recorded
    during the run): when the killed container's exec ended and when the engine saw the
    container ``die``.
    """
    events = of_type(run_dir, "experiment_started", "experiment_finished", "restart")
    problems: list[str] = []
    kinds: Counter[str] = Counter()
    for kill in kills:
        lane = [e for e in events if e.get("lane") == kill.lane]
        before = [e for e in lane if ts(e) <= kill.at]
        after = [e for e in lane if ts(e) >= kill.at - 0.01]
        restarted = [e for e in after if e["type"] == "restart"]
        more_work = any(e["type"] == "experiment_started" for e in after)
        last = before[-1] if before else None
        if last is not None and last["type"] == "experiment_started":
            # the kill came during this attempt: its exec, or just around it
            key, attempt = last["key"], last["attempt"]
            nxt = next(
                (e for e in after if e.get("key") == key and e["type"] != "restart"), None
            )  # fmt: skip
            if nxt is not None and nxt["type"] == "experiment_started":
                kinds["cut an exec (retried)"] += 1
                if not restarted:
                    problems.append(f"lane {kill.lane} kill at {kill.at:.3f} during {key} "
                                    f"(attempt {attempt}): retried, but no restart "
                                    "journaled")  # fmt: skip
                continue
            record = nxt["record"] if nxt is not None else None
            if record is None or record["status"] != "ok":
                what = "no record" if record is None else (
                    f"recorded {record['status']} ({record.get('error')}), final, not retried"
                )  # fmt: skip
                problems.append(
                    f"lane {kill.lane}: docker kill {kill.container} at {kill.at:.3f} during "
                    f"{key} attempt {attempt}: {what}" + engine_side(kill, record, docker_events)
                )
                continue
            kinds["in an experiment, after its exec"] += 1
            if more_work and not restarted:
                problems.append(f"lane {kill.lane} kill at {kill.at:.3f} after {key}'s exec: "
                                "the lane ran more, but no restart was journaled")  # fmt: skip
        elif last is not None and last["type"] == "restart":
            # during llem's restart of this lane's container: the restart waits for it to run
            # and starts it again if it does not (unjournaled; the restart was counted once)
            kinds["during a restart"] += 1
        elif more_work:
            # between two experiments (the probe finds the container dead), or before the
            # lane's first one (compose up --wait sees it die and starts it again, unjournaled,
            # or the pin check's probe finds it dead)
            kinds["between experiments" if before else "before the lane's first"] += 1
            if before and not restarted:
                problems.append(f"lane {kill.lane} kill at {kill.at:.3f}: the lane ran more, "
                                "but no restart was journaled after the kill")  # fmt: skip
        else:
            kinds["after the lane's last experiment"] += 1
    return problems, kinds


def iso_ts(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def engine_side(
    kill: Kill, record: dict[str, Any] | None, docker_events: list[dict[str, Any]]
) -> str:
    """The engine's events for the killed container, relative to the kill and the exec's end."""
    mine = [e for e in docker_events if str(e.get("id", "")).startswith(kill.container)]
    ended = iso_ts(record.get("ended_at")) if record else None
    parts = []
    if ended is not None:
        parts.append(f"exec ended (record ended_at) +{ended - kill.at:.3f} s")
    for e in mine:
        action = str(e.get("Action", e.get("status", "")))
        when = int(e["timeNano"]) / 1e9 - kill.at
        if action.startswith(("exec_die", "kill", "die")) and -1.0 < when < 1.5:
            code = e.get("Actor", {}).get("Attributes", {}).get("exitCode", "")
            parts.append(f"{action.split(':')[0]} {code} +{when:.3f} s".replace("  ", " "))
    return "; engine, from the kill: " + ", ".join(parts) if parts else ""


class DockerEvents:
    """``docker events`` of the campaign's lane containers, for the length of one run."""

    def __init__(self, c: E2ECampaign) -> None:
        self.path = c.root / "docker-events.jsonl"
        self._out = self.path.open("w")
        self.proc = subprocess.Popen(
            [
                "docker", "events", "--format", "{{json .}}", "--filter", "type=container",
                "--filter", f"label=llem.project={c.project}",
            ],
            stdin=subprocess.DEVNULL, stdout=self._out, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def stop(self) -> list[dict[str, Any]]:
        time.sleep(0.3)  # the last events arrive a moment late
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self._out.close()
        out = []
        for line in self.path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out


def run(quick: bool = False, seed: int = 20261128) -> Row:
    wanted = 4 if quick else 12
    rng = random.Random(seed + 17)
    row = Row(NAME, repeats=wanted)
    t0 = time.monotonic()
    kills_total = 0
    all_kinds: Counter[str] = Counter()
    restarts_total = 0
    runs = 0
    with scratch("lanes-dkill") as base:
        gpus = four_gpus(base)
        while kills_total < wanted:
            if runs >= 2 * wanted:
                row.fail(f"only {kills_total} kill(s) landed in {runs} runs")
                break
            c = lanes_campaign(
                base, f"ldk-{runs}", gpus, secs=SECS, configs=CONFIGS_PER_SECS,
                execution={"retries": 10}, health={"max_restarts": 200},
            )  # fmt: skip
            runs += 1
            watch: DockerEvents | None = None
            try:
                keys = plan_keys_of(c)
                watch = DockerEvents(c)
                time.sleep(0.2)  # subscribed before llem starts
                proc = c.start("run", c.file, "--no-progress")
                kills: list[Kill] = []
                stop = threading.Event()

                def killer(
                    c: E2ECampaign = c,
                    proc: subprocess.Popen[str] = proc,
                    stop: threading.Event = stop,
                    kills: list[Kill] = kills,
                    budget: int = wanted - kills_total,
                ) -> None:
                    while len(kills) < budget and proc.poll() is None:
                        if stop.wait(rng.uniform(0.4, 2.0)):
                            return
                        up = running_lanes(c)
                        if not up or proc.poll() is not None:
                            continue
                        cid, lane = rng.choice(up)
                        at = time.time()
                        done = subprocess.run(
                            ["docker", "kill", cid], capture_output=True, timeout=60, check=False
                        )
                        if done.returncode == 0:
                            kills.append(Kill(at, lane, cid))

                thread = threading.Thread(target=killer, daemon=True)
                thread.start()
                code = wait_exit(proc, timeout=600)
                stop.set()
                thread.join(timeout=120)
                engine = watch.stop()
                kills_total += len(kills)
                out, err = c.output()
                run_dir = c.run_dir()
                finished = of_type(run_dir, "experiment_finished")
                per_key = Counter(e["key"] for e in finished)
                not_ok = {
                    e["key"]: e["record"]["status"]
                    for e in finished
                    if e["record"]["status"] != "ok"
                }
                lost = [k for k in keys if per_key[k] == 0]
                duplicated = [k for k in keys if per_key[k] > 1]
                restarts = of_type(run_dir, "restart")
                retired = of_type(run_dir, "lane_retired")
                restarts_total += len(restarts)
                problems, kinds = check_kills(run_dir, kills, engine)
                all_kinds.update(kinds)
                both = overlaps(c.root / "busy")
                left = lane_containers_left(c)
                by_lane = Counter(k.lane for k in kills)
                log(f"  {c.name}: {len(kills)} kill(s) {dict(sorted(by_lane.items()))}, exit "
                    f"{code}, {len(restarts)} restart(s), {dict(kinds)}")  # fmt: skip
                failures = []
                if code != 0 or "Traceback" in out + err:
                    failures.append(f"exit {code}: {err[-400:]}")
                if lost or duplicated or not_ok:
                    failures.append(f"lost {lost}, duplicated {duplicated}, not ok {not_ok}")
                if retired:
                    failures.append(f"lanes retired: {[e['reason'] for e in retired]}")
                for problem in problems:
                    failures.append(problem)
                if both:
                    failures.append(f"two experiments on one GPU at once: {both}")
                if left:
                    failures.append(f"containers left {left}")
                for failure in failures:
                    row.fail(f"{c.name} ({run_dir}): {failure}")
                # a kill passed when nothing went wrong after it: the failed records and the
                # exit 1 that a wrongly settled experiment causes are that kill's problem
                explained = {k for k in not_ok if any(k in p for p in problems)}
                if not (lost or duplicated or retired or both or left or "Traceback" in out + err
                        or set(not_ok) - explained or (code != 0 and not problems)):  # fmt: skip
                    row.passed += len(kills) - len(problems)
                row.lost += len(lost)
                row.duplicated += len(duplicated)
                row.containers_left += len(left)
            finally:
                if watch is not None and watch.proc.poll() is None:
                    watch.proc.terminate()
                    watch.proc.wait(timeout=30)
                c.cleanup()
    row.seconds = time.monotonic() - t0
    where = ", ".join(f"{n} {k}" for k, n in sorted(all_kinds.items()))
    row.notes.append(
        f"{runs} run(s) of {len(SECS) * CONFIGS_PER_SECS} experiments (1 or 2 s, 4 lanes), "
        f"seed {seed + 17}; {restarts_total} restart(s) journaled; kills: {where}"
    )
    return row


if __name__ == "__main__":
    import sys

    from chaos.run_all import main

    sys.exit(main(["--only", "lanes_docker_kill", *sys.argv[1:]]))
