"""Resume, ``llem status`` and ``llem results`` on run directories of 10k and 100k experiments.

For each size the bench builds a synthetic but realistic run directory: a campaign whose grid
expands to N experiments, its ``plan.json`` (written by llem's own ``stream_json``), and a
``journal.jsonl`` written through llem's ``Journal.append`` (fsync skipped: the bench measures
reading) holding, per experiment, what a real run writes: a ``probe``, an ``experiment_started`` and
an ``experiment_finished`` carrying a full ``Record`` (params, metrics, measurement details).

Then it times real processes, the variants interleaved (A B C D A B C D ...), ``--repeats`` rounds,
and reports the median wall time and the largest peak RSS (``wait4``'s ``ru_maxrss``):

* ``replay+pending``: ``python -c`` that does what a resume does before it can start a container:
  load the campaign, expand and order its experiments, replay the journal, compute the pending
  experiments (the issue's "100k records resume in under 2 s and 200 MB");
* ``llem run FILE --resume RUN_DIR``: the real resume of a campaign whose experiments are all done.
  It checks the daemon, replays, rewrites plan.json, journals run_started/run_finished, writes
  results.csv and starts no container (the bench checks that none carries the run's label);
* ``llem status RUN_DIR`` and ``llem results RUN_DIR --format json [--stats]``, stdout to /dev/null.

    .venv/bin/python bench/bench_resume_results.py [--sizes 10000,100000] [--repeats 3]

Needs Docker only for the ``llem run --resume`` variant (``docker version`` and a label sweep).
Exit status 1 when replay+pending of the largest size misses 2 s or 200 MB.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from llem_cli.campaign.load import load_campaign
from llem_cli.runner.schedule import order_experiments, stream_json
from llem_cli.runs.journal import Journal
from llem_cli.runs.record import Record
from llem_cli.timestamps import utc_now_iso
from llem_testkit import TEST_IMAGE

TARGET_S = 2.0
TARGET_MB = 200.0
IMAGE = TEST_IMAGE
CYCLES = 5  # experiments per configuration: what the per-configuration statistics work on

REPLAY_PENDING = """\
import sys
from pathlib import Path
from llem_cli.campaign.load import load_campaign
from llem_cli.runner.schedule import order_experiments
from llem_cli.runs.state import replay
loaded = load_campaign(Path(sys.argv[1]))
experiments = list(order_experiments(loaded.configs, loaded.campaign))
state = replay(Path(sys.argv[2]) / "journal.jsonl", slim=True)
pending = [e for e in experiments if state.needs_run(e.key)]
assert len(state.records) == len(experiments), (len(state.records), len(experiments))
assert not pending, len(pending)
"""


class UnsyncedJournal(Journal):
    """llem's journal writer, minus the per-line fsync (building 300k lines durably takes long)."""

    def _write(self, data: bytes) -> None:
        if self._fd is None:
            raise ValueError("journal is closed")
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]


def llem_argv() -> list[str]:
    script = Path(sys.executable).parent / "llem"
    return [str(script)] if script.exists() else [sys.executable, "-m", "llem_cli"]


def campaign_text(name: str, total: int) -> str:
    """A one-backend campaign of exactly ``total`` experiments: 5 cycles of a grid of axes of 10."""
    axes: list[int] = []
    rest, cycles = divmod(total, CYCLES)
    assert cycles == 0, f"{total} is not a multiple of {CYCLES}"
    while rest % 10 == 0 and rest > 1:
        axes.append(10)
        rest //= 10
    if rest > 1:
        axes.append(rest)
    names = [f"p{i}" for i in range(len(axes))]
    command = ", ".join(f'"--{n}={{{n}}}"' for n in names)
    grid = "\n".join(
        f"  {n}: [{', '.join(str(v) for v in range(size))}]"
        for n, size in zip(names, axes, strict=True)
    )
    return (
        f"name: {name}\ncompose: compose.yml\nbackends:\n"
        f"  bench:\n    service: bench\n    command: ['true', {command}]\n"
        f"grid:\n{grid}\nexecution:\n  cycles: {CYCLES}\n  gap: 0\nhealth:\n  restart_backoff: 0\n"
    )


def measurement(i: int) -> dict[str, Any]:
    """A measurement block like one from a GPU host (NVML energy counter)."""
    return {
        "method": "counter",
        "gpus": [0],
        "counter_energy_j": 4567.8 + i % 7,
        "sampled_energy_j": 4571.2,
        "window_s": 12.41,
        "flags": [],
        "warnings": [],
        "reasons": {},
        "clock_events": [],
    }


def build_run(root: Path, total: int) -> tuple[Path, Path]:
    """Write the campaign, compose file and a finished run directory; return (file, run_dir)."""
    name = f"bench-resume-{total}"
    (root / "compose.yml").write_text(
        f"services:\n  bench:\n    image: {IMAGE}\n    network_mode: none\n"
    )
    file = root / "campaign.yaml"
    file.write_text(campaign_text(name, total))
    loaded = load_campaign(file)
    experiments = list(order_experiments(loaded.configs, loaded.campaign))
    assert len(experiments) == total, len(experiments)
    run_id = "20260101T000000Z"
    run_dir = root / "results" / name / run_id
    run_dir.mkdir(parents=True)
    (run_dir / "campaign.yaml").write_text(loaded.text)
    parts: list[str] = []
    stream_json(experiments, parts.append)
    (run_dir / "plan.json").write_text("".join(parts))
    base = {"run_id": run_id, "run_dir": str(run_dir)}
    with UnsyncedJournal(run_dir / "journal.jsonl") as journal:
        journal.append(
            "run_started", **base, campaign=name, resumed=False, total=total, pending=total,
            argv=["run", str(file)],
        )  # fmt: skip
        for index, e in enumerate(experiments, 1):
            journal.append(
                "probe", service="bench", status="ok", max_memory_used_pct=1.25,
                detail="1 GPU(s) ok",
            )  # fmt: skip
            journal.append(
                "experiment_started", key=e.key, backend="bench", service="bench", attempt=1,
                index=index, total=total,
            )  # fmt: skip
            now = utc_now_iso()
            record = Record(
                key=e.key, config_id=e.config.config_id, cycle=e.cycle, backend="bench",
                service="bench", params=e.config.params, status="ok", attempts=1, exit_code=0,
                started_at=now, ended_at=now, duration_s=12.345678, energy_j=4567.8,
                avg_power_w=370.1, idle_power_w=60.2, net_energy_j=3800.4, max_temp_c=61.0,
                restarts_before=0,
                metrics={"tokens_per_s": 1234.5 + index % 13, "latency_ms_p50": 12.1,
                         "latency_ms_p99": 40.2, "tokens": 65536},
                error=None, measurement=measurement(index),
            )  # fmt: skip
            journal.append("experiment_finished", key=e.key, record=record)
        journal.append("run_finished", **base, counts={"ok": total}, restarts=0)
    return file, run_dir


def run_once(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one process; stdout to /dev/null; fails loudly."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        cwd=cwd, env=env,
    )  # fmt: skip
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code
    if code != 0:
        raise SystemExit(f"{' '.join(argv)} exited {code}: {err.decode(errors='replace')[-2000:]}")
    return elapsed, usage.ru_maxrss


def labelled_containers(run_id: str) -> list[str]:
    done = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=llem.run={run_id}"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    return done.stdout.split()


def bench_size(total: int, repeats: int, env: dict[str, str], docker: bool) -> dict[str, Any]:
    llem = llem_argv()
    with tempfile.TemporaryDirectory(prefix="llem-bench-resume-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        file, run_dir = build_run(root, total)
        build_s = time.perf_counter() - t0
        journal_mb = (run_dir / "journal.jsonl").stat().st_size / 1e6
        variants: dict[str, list[str]] = {
            "replay+pending": [sys.executable, "-c", REPLAY_PENDING, str(file), str(run_dir)],
            "status": [*llem, "status", str(run_dir)],
            "results json --stats": [
                *llem,
                "results",
                str(run_dir),
                "--format",
                "json",
                "--stats",
            ],  # fmt: skip
            "results json": [*llem, "results", str(run_dir), "--format", "json"],
        }
        if docker:
            variants["run --resume (all done)"] = [
                *llem, "run", str(file), "--resume", str(run_dir), "--no-progress",
            ]  # fmt: skip
        samples: dict[str, list[tuple[float, int]]] = {name: [] for name in variants}
        for argv in variants.values():  # warm-up: page cache, .pyc
            run_once(argv, root, env)
        for _ in range(repeats):
            for name, argv in variants.items():
                samples[name].append(run_once(argv, root, env))
        if docker:
            left = labelled_containers(run_dir.name)
            if left:
                raise SystemExit(f"the all-done resume left containers: {left}")
            journal = (run_dir / "journal.jsonl").read_text()
            started = journal.count('"type":"experiment_started"')
            if started != total:
                raise SystemExit(f"the all-done resume ran experiments ({started} started)")
    return {"build_s": build_s, "journal_mb": journal_mb, "samples": samples}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-docker", action="store_true", help="skip the llem run --resume row")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="llem-bench-locks-") as locks:
        env["LLEM_LOCK_DIR"] = locks
        env.setdefault("NO_COLOR", "1")
        results = {n: bench_size(n, args.repeats, env, not args.no_docker) for n in sizes}

    print(f"python {sys.version.split()[0]}   repeats {args.repeats} (interleaved), medians")
    print(f"{'experiments':>11}  {'command':<26}{'median s':>9}{'min s':>8}{'max s':>8}"
          f"{'peak RSS MiB':>14}   raw s")  # fmt: skip
    verdict = 0
    for total, res in results.items():
        print(f"{total:>11,}  journal {res['journal_mb']:.1f} MB, built in {res['build_s']:.1f} s")
        for name, values in res["samples"].items():
            times = [t for t, _ in values]
            rss = max(r for _, r in values) / 1024
            med = statistics.median(times)
            raw = " ".join(f"{t:.3f}" for t in times)
            print(f"{'':>11}  {name:<26}{med:>9.3f}{min(times):>8.3f}{max(times):>8.3f}"
                  f"{rss:>14.1f}   {raw}")  # fmt: skip
            if name == "replay+pending" and total == max(results):
                ok = med < TARGET_S and rss < TARGET_MB
                verdict = 0 if ok else 1
                print(f"{'':>11}  -> target < {TARGET_S:.0f} s and < {TARGET_MB:.0f} MB: "
                      f"{'ok' if ok else 'MISSED'}")  # fmt: skip
    return verdict


if __name__ == "__main__":
    raise SystemExit(main())
