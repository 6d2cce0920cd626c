"""Lanes: how much faster four lanes run a campaign than one, and what each path costs.

Method. Four stand-in GPUs: the stand-in ``libnvidia-ml.so.1`` (llem_testkit/nvml_stub, built
here) reports four GPUs, and the test image's ``nvidia-smi`` lists those its container may see
(``NVIDIA_VISIBLE_DEVICES``), as on a real host with the NVIDIA runtime. The campaign has
``-n`` (12) experiments of ``--secs`` (1 s) each, ``llem-fake-busy SECONDS`` from the test image
(it marks its GPUs busy for the stand-in NVML while it sleeps), gap 0, the probe before every
experiment, no idle baseline. Each round runs, in turn (the order rotating from round to round,
so drift favours no variant), three real ``llem run --no-progress`` processes of it:

* ``unpinned``: no ``--lanes``, no ``--gpus``: one container, unpinned, as before lanes;
* ``1 lane``: ``--lanes 1 --gpus 0,1,2,3``: one lane owning all four GPUs, pinned (the
  sequential baseline of the lanes path);
* ``4 lanes``: ``--lanes 4``: four lanes of one GPU, four containers, at once.

Wall time is the llem process's, start to exit (what a user waits for). Speed-up = wall(1 lane)
/ wall(4 lanes), per round, median over rounds (the limit is 4x; the goal >= 3.5x). Overhead per
experiment = (wall - n x secs) / n, for ``unpinned`` and ``1 lane``.

Then where the time goes, per run, from the journal (``ts``, millisecond resolution) and from
``docker events`` (container create/start/die/destroy, nanoseconds) recorded alongside:
process start -> ``run_started`` (interpreter, campaign, NVML, ``compose config``), -> each
lane's container created and started (``compose up``; are the lanes' ``up`` at once?), -> its
first ``experiment_started`` (the probe and pin check), the experiments' span, and the last
``experiment_finished`` -> process exit (teardown, ``results.csv``). Within a lane, the time
between one experiment's end and the next one's start (probe, journal, directory) and each
exec's time over ``secs`` (the ``compose exec``'s own cost).

Printed after the rounds: the speed-up over the experiments' span alone; a cost model, wall =
fixed + experiments per lane x cost per experiment in a lane (medians over rounds), with the
speed-up it tends to and the experiment length at which the goal would be met (estimates); the
last round's breakdown; and, unless ``--no-trace``, two more runs (1 lane, 4 lanes) not counted
in the ratios, with a logging ``docker`` shim first in ``PATH``: every docker command's start and
end, so ``compose up`` per lane (at once or one after another?), the probe, each exec and the
teardown show with their durations.

    .venv/bin/python bench/bench_lanes.py [-n 12] [--secs 1] [--rounds 2] [--goal 3.5] [--no-trace]

Exit 1 when the median speed-up is below ``--goal``. Needs a Docker engine, Compose, the test
image (scripts/engine.sh) and gcc (for the stand-in NVML).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from llem_testkit import TEST_IMAGE
from llem_testkit.nvml_stub import build_stub

GPUS = 4
IDLE_W = 50.0
BUSY_W = 1000.0

VARIANTS: dict[str, list[str]] = {
    "unpinned": [],
    "1 lane": ["--lanes", "1", "--gpus", ",".join(str(i) for i in range(GPUS))],
    "4 lanes": ["--lanes", str(GPUS)],
}


def llem_argv() -> list[str]:
    return [sys.executable, "-m", "llem_cli"]


def write_state(state_file: Path, busy: Path) -> None:
    """Four stand-in GPUs for the stand-in NVML: idle 50 W, 1 kW while busy."""
    state: dict[str, Any] = {"count": GPUS, "t0": time.time(), "busy_dir": busy}
    for i in range(GPUS):
        state[f"gpu{i}.energy_mj"] = 0
        state[f"gpu{i}.energy_rate_mw"] = int(IDLE_W * 1000)
        state[f"gpu{i}.power_mw"] = int(IDLE_W * 1000)
        state[f"gpu{i}.busy_power_mw"] = int(BUSY_W * 1000)
        state[f"gpu{i}.temp_c"] = 40
    tmp = state_file.with_suffix(".tmp")
    tmp.write_text("".join(f"{k}={v}\n" for k, v in state.items()))
    os.replace(tmp, state_file)


def write_campaign(
    root: Path, name: str, n: int, secs: float, state_file: Path, busy: Path, file_name: str
) -> Path:
    compose = {
        "services": {
            "bench": {
                "image": TEST_IMAGE,
                "network_mode": "none",
                "volumes": [f"{state_file.parent}:/llem/fake-nvml:ro", f"{busy}:/busy"],
                "environment": {
                    "LLEM_FAKE_NVML_STATE": f"/llem/fake-nvml/{state_file.name}",
                    "LLEM_FAKE_BUSY_DIR": "/busy",
                },
            }
        }
    }
    (root / "compose.yml").write_text(yaml.safe_dump(compose, sort_keys=False))
    campaign = {
        "name": name,
        "compose": "compose.yml",
        "backends": {"bench": {"command": ["llem-fake-busy", "{secs}"]}},
        "grid": {"secs": [secs], "i": list(range(n))},
        "execution": {"cycles": 1, "gap": 0},
        "health": {"every": 1, "restart_backoff": 0},
    }
    file = root / file_name
    file.write_text(yaml.safe_dump(campaign, sort_keys=False))
    return file


def ts(event: dict[str, Any]) -> float:
    return (
        datetime.strptime(event["ts"], "%Y-%m-%dT%H:%M:%S.%fZ")
        .replace(tzinfo=timezone.utc)
        .timestamp()
    )


class DockerEvents:
    """``docker events`` of containers, in the background, for the length of one llem run."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self._file = out.open("w")
        self.proc = subprocess.Popen(
            ["docker", "events", "--format", "{{json .}}", "--filter", "type=container"],
            stdin=subprocess.DEVNULL,
            stdout=self._file,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> list[dict[str, Any]]:
        time.sleep(0.3)  # the engine delivers the last events (destroy) a moment late
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self._file.close()
        out = []
        for line in self.out.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out


def llem_run(
    root: Path, file: Path, args: list[str], env: dict[str, str], project: str
) -> dict[str, Any]:
    """One ``llem run``; its wall time, journal events and the project's container events."""
    before = set(root.glob("results/*/*"))
    watch = DockerEvents(root / f"events-{uuid.uuid4().hex[:6]}.jsonl")
    time.sleep(0.2)  # docker events is subscribed before llem starts
    wall0 = time.time()
    t0 = time.perf_counter()
    done = subprocess.run(
        [*llem_argv(), "run", str(file), "--no-progress", *args],
        cwd=root,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    wall = time.perf_counter() - t0
    wall1 = wall0 + wall
    docker_events = watch.stop()
    if done.returncode != 0:
        raise SystemExit(
            f"llem run {' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]}"
        )
    (run_dir,) = set(root.glob("results/*/*")) - before
    events = [json.loads(line) for line in (run_dir / "journal.jsonl").open()]
    mine = [
        e
        for e in docker_events
        if str(
            e.get("Actor", {}).get("Attributes", {}).get("com.docker.compose.project", "")
        ).startswith(project)
    ]
    return {"wall": wall, "t0": wall0, "t1": wall1, "events": events, "docker": mine}


def breakdown(run: dict[str, Any], n: int, secs: float) -> dict[str, Any]:
    """Where one run's time went (seconds from the process's start)."""
    t0 = run["t0"]
    events = run["events"]
    first = {e["type"]: ts(e) - t0 for e in reversed(events)}  # first of each type
    started = [e for e in events if e["type"] == "experiment_started"]
    finished = [e for e in events if e["type"] == "experiment_finished"]
    lanes: dict[int, dict[str, Any]] = {}
    for e in started:
        lane = lanes.setdefault(int(e.get("lane", 0)), {"starts": [], "ends": [], "dur": []})
        lane["starts"].append(ts(e) - t0)
    for e in finished:
        rec = e["record"]
        lane = lanes.setdefault(int(rec.get("lane") or 0), {"starts": [], "ends": [], "dur": []})
        lane["ends"].append(ts(e) - t0)
        lane["dur"].append(float(rec["duration_s"]))
    # container events per lane project (``-l<n>``; unpinned: the campaign's own project)
    containers: dict[int, dict[str, float]] = {}
    for e in run["docker"]:
        attrs = e["Actor"]["Attributes"]
        project = attrs.get("com.docker.compose.project", "")
        found = re.search(r"-l(\d+)$", project)
        lane_no = int(found.group(1)) if found else 0
        action = str(e.get("Action", e.get("status", ""))).split(":")[0]
        when = int(e["timeNano"]) / 1e9 - t0
        slot = containers.setdefault(lane_no, {})
        if action in ("create", "start", "die", "destroy", "kill") and action not in slot:
            slot[action] = when
    gaps: list[float] = []  # within a lane: one experiment's end -> the next one's start
    for lane in lanes.values():
        for end, nxt in zip(sorted(lane["ends"]), sorted(lane["starts"])[1:], strict=False):
            gaps.append(nxt - end)
    exec_over = [d - secs for lane in lanes.values() for d in lane["dur"]]
    last_end = max((ts(e) - t0 for e in finished), default=float("nan"))
    first_start = min((ts(e) - t0 for e in started), default=float("nan"))
    return {
        "run_started": first.get("run_started", float("nan")),
        "containers": containers,
        "lanes": {
            k: {
                "first_start": min(v["starts"]),
                "last_end": max(v["ends"]),
                "count": len(v["ends"]),
                "exec_sum": sum(v["dur"]),
            }
            for k, v in sorted(lanes.items())
        },
        "first_start": first_start,
        "last_end": last_end,
        "span": last_end - first_start,
        "run_finished": first.get("run_finished", float("nan")),
        "wall": run["wall"],
        "gap_median": statistics.median(gaps) if gaps else float("nan"),
        "exec_over_median": statistics.median(exec_over) if exec_over else float("nan"),
        "per_experiment": (run["wall"] - n * secs) / n,
    }


def print_breakdown(name: str, b: dict[str, Any]) -> None:
    print(f"  {name}: wall {b['wall']:.2f} s")
    print(f"    process start -> run_started            {b['run_started']:6.2f} s")
    for lane, c in sorted(b["containers"].items()):
        lane_info = b["lanes"].get(lane, {})
        print(
            f"    lane {lane}: container create {c.get('create', float('nan')):6.2f}  "
            f"start {c.get('start', float('nan')):6.2f}  first experiment "
            f"{lane_info.get('first_start', float('nan')):6.2f}  last end "
            f"{lane_info.get('last_end', float('nan')):6.2f}  "
            f"({lane_info.get('count', 0)} exps, exec {lane_info.get('exec_sum', 0.0):5.2f} s)  "
            f"die {c.get('die', float('nan')):6.2f}  destroy {c.get('destroy', float('nan')):6.2f}"
        )
    span = b["span"]
    print(f"    first experiment_started -> last finished {span:6.2f} s "
          f"(from {b['first_start']:.2f} to {b['last_end']:.2f})")  # fmt: skip
    print(
        f"    last finished -> run_finished            {b['run_finished'] - b['last_end']:6.2f} s"
    )
    print(f"    run_finished -> process exit             {b['wall'] - b['run_finished']:6.2f} s")
    print(f"    within a lane, end -> next start (median) {b['gap_median']:6.3f} s; "
          f"exec duration_s - secs (median) {b['exec_over_median']:6.3f} s")  # fmt: skip


SHIM = """#!/bin/bash
# bench_lanes.py --trace: log each docker command's start, end and exit code, then its argv
s=$(date +%s.%N)
{docker} "$@"
rc=$?
e=$(date +%s.%N)
echo "$s $e $rc $*" >> {log}
exit $rc
"""

#: compose's global options that take a value (the verb follows them)
COMPOSE_VALUED = {"--project-name", "-p", "-f", "--file", "--project-directory", "--env-file",
                  "--profile", "--ansi", "--progress", "--parallel"}  # fmt: skip


def shim_env(root: Path, env: dict[str, str]) -> tuple[dict[str, str], Path]:
    """An environment whose ``docker`` is a logging shim in front of the real one."""
    real = shutil.which("docker", path=env.get("PATH"))
    if real is None:
        raise SystemExit("docker not found in PATH")
    folder = root / "shim"
    folder.mkdir(exist_ok=True)
    log = root / "shim.log"
    shim = folder / "docker"
    shim.write_text(SHIM.format(docker=real, log=log))
    shim.chmod(0o755)
    return {**env, "PATH": f"{folder}{os.pathsep}{env.get('PATH', '')}"}, log


def docker_commands(log: Path, t0: float) -> list[dict[str, Any]]:
    """The shim's log: each command's start and end (s from the llem process's start), what."""
    out = []
    for line in log.read_text().splitlines():
        start, end, rc, *argv = line.split()
        project, verb = "", argv[0] if argv else ""
        if argv and argv[0] == "compose":
            i = 1
            while i < len(argv) and argv[i].startswith("-"):
                if argv[i] in ("--project-name", "-p"):
                    project = argv[i + 1]
                i += 2 if argv[i] in COMPOSE_VALUED else 1
            verb = "compose " + (argv[i] if i < len(argv) else "")
        elif argv and argv[0] == "exec":
            verb = "docker exec (probe)"
        else:
            verb = "docker " + " ".join(argv[:1])
        found = re.search(r"-l(\d+)$", project)
        out.append({
            "start": float(start) - t0, "end": float(end) - t0, "rc": int(rc), "verb": verb,
            "lane": int(found.group(1)) if found else None,
        })  # fmt: skip
    return sorted(out, key=lambda c: c["start"])


def print_trace(
    name: str, run: dict[str, Any], commands: list[dict[str, Any]], secs: float
) -> None:
    """Where the docker time of one traced run went: start-up, ``compose up``, execs, teardown."""
    events = run["events"]
    t0 = run["t0"]
    started = ts(next(e for e in events if e["type"] == "run_started")) - t0
    firsts = [ts(e) - t0 for e in events if e["type"] == "experiment_started"]
    lasts = [ts(e) - t0 for e in events if e["type"] == "experiment_finished"]
    print(f"  {name}: wall {run['wall']:.2f} s, {len(commands)} docker commands")
    before = [c for c in commands if c["start"] < started]
    print(f"    before run_started ({started:.2f} s): "
          + ", ".join(f"{c['verb']} {c['end'] - c['start']:.3f}" for c in before))  # fmt: skip
    ups = [c for c in commands if c["verb"] == "compose up"]
    for c in ups:
        print(f"    compose up, lane {c['lane']}: {c['start']:.3f} -> {c['end']:.3f} "
              f"({c['end'] - c['start']:.3f} s)")  # fmt: skip
    if len(ups) > 1:
        spread = max(c["start"] for c in ups) - min(c["start"] for c in ups)
        overlap = min(c["end"] for c in ups) > max(c["start"] for c in ups)
        print(f"      the {len(ups)} ups began within {spread:.3f} s of each other: "
              f"{'at once' if overlap else 'one after another'}")  # fmt: skip
    first = min(firsts)
    setup = [c for c in commands if c["start"] >= started and c["end"] <= first + 0.5
             and c["verb"] not in ("compose up", "compose exec")]  # fmt: skip
    last_first = max(_firsts(events, t0))
    print(f"    first experiment_started at {first:.3f} s (the last lane's first at "
          f"{last_first:.3f} s); between up and it: "
          + ", ".join(sorted({c["verb"] for c in setup})))  # fmt: skip
    execs = [c["end"] - c["start"] for c in commands if c["verb"] == "compose exec"]
    probes = [c["end"] - c["start"] for c in commands if c["verb"] == "docker exec (probe)"]
    print(f"    per experiment: compose exec median {med(execs):.3f} s for {secs:g} s "
          f"(+{med(execs) - secs:.3f} s), max {max(execs):.3f} s; probe (docker exec) median "
          f"{med(probes):.3f} s")  # fmt: skip
    last = max(lasts)
    after = [c for c in commands if c["start"] >= last - 0.05]
    busy = sum(c["end"] - c["start"] for c in after)
    span = (max(c["end"] for c in after) - min(c["start"] for c in after)) if after else 0.0
    print(f"    after the last experiment_finished ({last:.3f} s): {len(after)} commands, "
          f"{busy:.3f} s of command time in {span:.3f} s of wall")  # fmt: skip
    for c in after:
        lane = "" if c["lane"] is None else f" lane {c['lane']}"
        print(f"      {c['start']:.3f} -> {c['end']:.3f}  {c['verb']}{lane}")


def _firsts(events: list[dict[str, Any]], t0: float) -> list[float]:
    """Each lane's first experiment_started."""
    out: dict[int, float] = {}
    for e in events:
        if e["type"] == "experiment_started":
            out.setdefault(int(e.get("lane", 0)), ts(e) - t0)
    return list(out.values())


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=12, help="experiments in the campaign")
    parser.add_argument("--secs", type=float, default=1.0, help="seconds each experiment runs")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--goal", type=float, default=3.5, help="speed-up 4 lanes / 1 lane")
    parser.add_argument("--no-trace", action="store_true", help="skip the traced runs")
    args = parser.parse_args()

    tag = uuid.uuid4().hex[:6]
    order = list(VARIANTS)
    rounds: list[dict[str, dict[str, Any]]] = []
    traced: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
    with tempfile.TemporaryDirectory(prefix="llem-bench-lanes-") as tmp:
        root = Path(tmp)
        lib = build_stub(root / "nvml")
        state_dir = root / "nvml-state"
        state_dir.mkdir()
        state_file = state_dir / "state"
        busy = root / "busy"
        busy.mkdir()
        write_state(state_file, busy)
        name = f"bench-lanes-{tag}"
        file = write_campaign(root, name, args.n, args.secs, state_file, busy, "campaign.yaml")
        warm = write_campaign(
            root, f"{name}-warm", GPUS, 0.1, state_file, busy, "warmup.yaml"
        )  # fmt: skip
        (root / "locks").mkdir()
        env = {
            **os.environ,
            "LLEM_LOCK_DIR": str(root / "locks"),
            "NO_COLOR": "1",
            "LD_LIBRARY_PATH": str(lib),
            "FAKE_NVML_STATE": str(state_file),
        }
        project = f"llem-{name}"
        # warm up (page cache, .pyc, the image's layers): each path once, on a short campaign
        for variant in order:
            llem_run(root, warm, VARIANTS[variant], env, f"{project}-warm")

        for r in range(args.rounds):
            row: dict[str, dict[str, Any]] = {}
            for variant in order[r % 3 :] + order[: r % 3]:
                run = llem_run(root, file, VARIANTS[variant], env, project)
                row[variant] = breakdown(run, args.n, args.secs)
            rounds.append(row)

        if not args.no_trace:
            shimmed, log = shim_env(root, env)
            for variant in ("1 lane", "4 lanes"):
                log.unlink(missing_ok=True)
                run = llem_run(root, file, VARIANTS[variant], shimmed, project)
                traced[variant] = (run, docker_commands(log, run["t0"]))

    print(f"{args.n} experiments of llem-fake-busy {args.secs:g} on {GPUS} stand-in GPUs, "
          f"image {TEST_IMAGE}, {os.cpu_count()} CPU(s), {args.rounds} round(s), "
          "variant order rotating")  # fmt: skip
    print(f"{'round':<6}{'unpinned':>10}{'1 lane':>10}{'4 lanes':>10}{'speed-up':>10}"
          f"{'ovh unp.':>10}{'ovh 1l':>10}   (wall s; overhead s/experiment)")  # fmt: skip
    for i, row in enumerate(rounds, 1):
        u, one, four = row["unpinned"], row["1 lane"], row["4 lanes"]
        print(f"{i:<6}{u['wall']:>10.2f}{one['wall']:>10.2f}{four['wall']:>10.2f}"
              f"{one['wall'] / four['wall']:>9.2f}x{u['per_experiment']:>10.3f}"
              f"{one['per_experiment']:>10.3f}")  # fmt: skip
    speedup = med([row["1 lane"]["wall"] / row["4 lanes"]["wall"] for row in rounds])
    span_speedup = med([row["1 lane"]["span"] / row["4 lanes"]["span"] for row in rounds])
    ovh_unpinned = med([row["unpinned"]["per_experiment"] for row in rounds])
    ovh_pinned = med([row["1 lane"]["per_experiment"] for row in rounds])
    print()
    print(f"speed-up, wall(1 lane) / wall(4 lanes) = {speedup:.2f}x (goal >= {args.goal:g}x, "
          f"limit {GPUS}x): {'ok' if speedup >= args.goal else 'MISSED'}")  # fmt: skip
    print(f"  the experiments' span alone (first experiment_started -> last "
          f"experiment_finished): {span_speedup:.2f}x")  # fmt: skip
    print(f"overhead per experiment, (wall - {args.n} x {args.secs:g} s) / {args.n}: unpinned "
          f"{ovh_unpinned:.3f} s, pinned 1 lane {ovh_pinned:.3f} s, pinned / unpinned "
          f"{ovh_pinned / ovh_unpinned:.2f}x")  # fmt: skip

    # a cost model from this run: wall = fixed + (experiments per lane) x (cost per experiment)
    per_lane = {"1 lane": args.n, "4 lanes": -(-args.n // GPUS)}
    fixed = {v: med([row[v]["wall"] - row[v]["span"] for row in rounds]) for v in per_lane}
    cost = {v: med([row[v]["span"] / per_lane[v] for row in rounds]) for v in per_lane}
    f1, f4, c1, c4 = fixed["1 lane"], fixed["4 lanes"], cost["1 lane"], cost["4 lanes"]
    print("\nwall = fixed + experiments per lane x cost per experiment in a lane (medians):")
    for v in per_lane:
        print(f"  {v:<8} fixed {fixed[v]:.2f} s (start-up, compose up, first probe, teardown), "
              f"{per_lane[v]} x {cost[v]:.3f} s (exec, probe, journal; lanes' skew)")  # fmt: skip
    limit = GPUS * c1 / c4
    print(f"  as experiments grow in number the speed-up tends to {GPUS} x {c1:.3f} / {c4:.3f} = "
          f"{limit:.2f}x")  # fmt: skip
    g = args.goal
    if c1 - g * c4 / GPUS > 0:
        need = (g * f4 - f1) / (c1 - g * c4 / GPUS)
        print(f"  estimate: {g:g}x from about {need:.0f} experiments of {args.secs:g} s")
    o1, o4 = c1 - args.secs, c4 - args.secs
    lanes_n = per_lane["4 lanes"]
    if args.n - g * lanes_n > 0:
        need_s = (g * f4 + g * lanes_n * o4 - f1 - args.n * o1) / (args.n - g * lanes_n)
        print(f"  estimate: {g:g}x for {args.n} experiments once each runs about "
              f"{need_s:.1f} s or longer")  # fmt: skip

    print("\nwhere the time went, last round (seconds from the llem process's start):")
    for variant in order:
        print_breakdown(variant, rounds[-1][variant])
    if traced:
        print("\ndocker commands of two more runs, through a logging shim in PATH (not in the "
              "figures above):")  # fmt: skip
        for variant, (run, commands) in traced.items():
            print_trace(variant, run, commands, args.secs)
    return 0 if speedup >= args.goal else 1


if __name__ == "__main__":
    raise SystemExit(main())
