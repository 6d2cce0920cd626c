"""Serving backends: server starts against the least the order allows, and the time they save.

Method. One campaign of 2 server configurations x 6 client configurations (12 experiments,
one cycle) runs, in one invocation of this script:

* as a serving backend in ``grouped`` order: the test image's ``llem-fake-server`` takes
  ``--load-s`` (5 s) to load, each client (``llem-fake-client``) runs ``--client-s`` (0.3 s).
  Server starts are counted from the journal (``server_start`` events) and compared with the
  number of distinct server configurations, the least any order allows: they must be equal;
* the same campaign in ``shuffled`` order (seed 0), for the starts a less careful order costs;
* as an offline backend, as llem ran before serving backends existed (and as a run that
  restarts the server per experiment does): every experiment loads for ``--load-s`` itself,
  then does the client's work (``sh -c "sleep LOAD; llem-fake-busy CLIENT"``).

Printed: starts per order against the minimum, the wall time of each run, and the ratio
offline / serving (how many times faster the served campaign is), all measured in this run.

    .venv/bin/python bench/bench_serving.py [--load-s 5] [--client-s 0.3]

Needs a Docker engine, Compose and the test image (scripts/engine.sh). Exit 1 when the
grouped order starts more servers than the minimum.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from llem_testkit import TEST_IMAGE

SERVERS = [64, 256]
CLIENTS = [1, 2, 4, 8, 16, 32]


def write(root: Path, name: str, backend: dict[str, Any], order: str) -> Path:
    compose = {"services": {"srv": {"image": TEST_IMAGE, "network_mode": "none"}}}
    (root / "compose.yml").write_text(yaml.safe_dump(compose))
    campaign = {
        "name": name,
        "compose": "compose.yml",
        "backends": {"srv": backend},
        "grid": {"max_num_seqs": SERVERS, "request_rate": CLIENTS},
        "execution": {"cycles": 1, "order": order},
        "health": {"every": 1, "restart_backoff": 0},
    }
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(campaign, sort_keys=False))
    return path


def run(path: Path) -> tuple[float, list[dict[str, Any]]]:
    env = dict(os.environ, LLEM_LOCK_DIR=str(path.parent / "locks"))
    t0 = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "llem_cli", "run", str(path), "--no-progress"],
        cwd=path.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    wall = time.monotonic() - t0
    if done.returncode != 0:
        raise SystemExit(f"llem run {path.name} exited {done.returncode}:\n{done.stderr}")
    (journal,) = path.parent.glob(f"results/{path.stem}/*/journal.jsonl")
    return wall, [json.loads(line) for line in journal.read_text().splitlines()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--load-s", type=float, default=5.0)
    parser.add_argument("--client-s", type=float, default=0.3)
    args = parser.parse_args()
    load, client = f"{args.load_s:g}", f"{args.client_s:g}"
    serving = {
        "serve": ["llem-fake-server", "--load-s", load, "seqs={max_num_seqs}"],
        "ready": ["llem-fake-ready"],
        "command": ["llem-fake-client", "--busy-s", client, "rate={request_rate}"],
        "env": {"LLEM_GPU_UUIDS": "GPU-bench", "LLEM_FAKE_BUSY_DIR": "/tmp/busy"},
    }
    offline = {
        "command": ["sh", "-c", f"sleep {load}; llem-fake-busy {client}"],
        "env": {"LLEM_GPU_UUIDS": "GPU-bench", "LLEM_FAKE_BUSY_DIR": "/tmp/busy"},
    }
    minimum = len(SERVERS)
    experiments = len(SERVERS) * len(CLIENTS)
    tag = uuid.uuid4().hex[:6]
    with tempfile.TemporaryDirectory(prefix="llem-bench-serving-") as tmp:
        root = Path(tmp)
        results: dict[str, tuple[float, int]] = {}
        for label, backend, order in (
            ("grouped", serving, "grouped"),
            ("shuffled", serving, "shuffled"),
            ("offline", offline, "grouped"),
        ):
            folder = root / label
            folder.mkdir()
            wall, events = run(write(folder, f"bench-serving-{label}-{tag}", backend, order))
            starts = sum(1 for e in events if e["type"] == "server_start")
            results[label] = (wall, starts)
    print(
        f"serving bench: {len(SERVERS)} server configurations x {len(CLIENTS)} clients = "
        f"{experiments} experiments; server load {load}s, client {client}s"
    )
    for label, (wall, starts) in results.items():
        what = (
            f"{starts} server start(s) (minimum {minimum})"
            if label != "offline"
            else (f"{experiments} model loads (one per experiment)")
        )
        print(f"  {label:<12} wall {wall:7.1f}s  {what}")
    grouped_wall, grouped_starts = results["grouped"]
    offline_wall, _ = results["offline"]
    print(
        f"  offline / serving (grouped) wall time: {offline_wall / grouped_wall:.2f}x "
        f"({offline_wall - grouped_wall:.1f}s saved)"
    )
    if grouped_starts != minimum:
        print(f"FAIL: grouped order started {grouped_starts} servers, minimum {minimum}")
        return 1
    print(f"OK: grouped order starts each server configuration once ({grouped_starts})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
