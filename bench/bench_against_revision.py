"""This tree's llem against an earlier revision's, in one run: no path may have become slower.

Made for the rebuild of the package layout (issue 11: "``make bench`` shows no slower path"),
and reusable for any refactor: ``--base REV`` (default: the last commit before that rebuild)
is extracted with ``git archive`` into a temporary folder and run as ``python -m llem_cli``
with that folder first on ``PYTHONPATH``; this tree runs the same way. Each variant prints
which ``llem_cli`` it imported, so a mix-up cannot pass unnoticed. Both run the same
campaigns, interleaved (base, this, base, this, ...), and every ratio is this / base, medians
over the repeats, raw numbers printed too:

* per-experiment overhead of ``llem run``: the median interval between consecutive
  ``experiment_finished`` events of a real run of ``-n`` no-op experiments (probe before each,
  journal fsynced), as ``bench_run_overhead.py`` measures it;
* a finished run of ``--records`` (100,000) records: ``llem run --resume RUN_DIR`` (nothing
  left to run: replay, plan check, no container), ``llem status`` and ``llem results
  --format json``, wall time and peak RSS of the process.

    .venv/bin/python bench/bench_against_revision.py [--base REV] [-n 30] [--rounds 4]
        [--records 100000] [--repeats 3]

Needs a Docker engine, Compose and the test image (scripts/engine.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench_resume_results import build_run, run_once
from bench_run_overhead import campaign, compose_file, finished_intervals

from llem_testkit import REPO_ROOT, TEST_IMAGE

#: the last commit before the layout was rebuilt (issue 11)
DEFAULT_BASE = "93008e8"


def extract(rev: str, into: Path) -> Path:
    """``llem_cli`` of ``rev`` under ``into`` (``git archive``: the repository is not touched)."""
    archive = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "archive", "--format=tar", rev, "llem_cli"],
        capture_output=True, check=True, timeout=120,
    )  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True, timeout=120)
    return into


def variant_env(source: Path, base_env: dict[str, str]) -> dict[str, str]:
    """The environment that makes ``python -m llem_cli`` import the package under ``source``."""
    return {**base_env, "PYTHONPATH": str(source)}


def imported_from(env: dict[str, str], cwd: Path) -> str:
    """Where ``llem_cli`` comes from, run from ``cwd`` as every variant is (the current folder
    is first on ``sys.path`` for ``-c`` and ``-m``: never the repository's)."""
    done = subprocess.run(
        [sys.executable, "-c", "import llem_cli; print(llem_cli.__file__)"],
        env=env, cwd=cwd, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return done.stdout.strip()


def llem(*args: str) -> list[str]:
    return [sys.executable, "-m", "llem_cli", *args]


def per_experiment(env: dict[str, str], root: Path, n: int) -> float:
    """Median seconds between experiment_finished events of one real ``llem run``."""
    name = f"cmp-{uuid.uuid4().hex[:6]}"
    folder = root / name
    folder.mkdir()
    (folder / "compose.yml").write_text(compose_file(TEST_IMAGE, gpu=False))
    file = folder / "campaign.yaml"
    file.write_text(campaign(name, n))
    done = subprocess.run(
        llem("run", str(file), "--no-progress"), cwd=folder, env=env,
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"llem run exited {done.returncode}: {done.stderr[-2000:]}")
    (run_dir,) = (folder / "results" / name).iterdir()
    events = [json.loads(line) for line in (run_dir / "journal.jsonl").open()]
    return statistics.median(finished_intervals(events)[1:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=DEFAULT_BASE, help="revision to compare against")
    parser.add_argument("-n", type=int, default=30, help="experiments per llem run")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    with tempfile.TemporaryDirectory(prefix="llem-bench-rev-") as tmp:
        root = Path(tmp)
        (root / "base").mkdir()
        base_src = extract(args.base, (root / "base").resolve())
        variants = {
            "base": variant_env(base_src, env),
            "this": variant_env(REPO_ROOT, env),
        }
        for name, venv in variants.items():
            print(f"{name}: llem_cli from {imported_from(venv, root)}")

        print(f"\nper-experiment overhead, {args.n} no-op experiments x {args.rounds} rounds")
        per: dict[str, list[float]] = {name: [] for name in variants}
        for round_ in range(args.rounds):
            order = list(variants) if round_ % 2 == 0 else list(reversed(variants))
            for name in order:
                per[name].append(per_experiment(variants[name], root, args.n))
        for name, values in per.items():
            print(f"  {name}: median {statistics.median(values) * 1000:.1f} ms "
                  f"(rounds: {', '.join(f'{v * 1000:.1f}' for v in values)})")  # fmt: skip
        ratio = statistics.median(per["this"]) / statistics.median(per["base"])
        print(f"  this / base: {ratio:.3f}x")

        print(f"\nfinished run of {args.records} records (wall s, peak RSS MiB; median of "
              f"{args.repeats})")  # fmt: skip
        t0 = time.perf_counter()
        work = root / "records"
        work.mkdir()
        file, run_dir = build_run(work, args.records)
        print(f"  built in {time.perf_counter() - t0:.1f} s")
        commands = {
            "run --resume (all done)": llem(
                "run", str(file), "--resume", str(run_dir), "--no-progress"
            ),
            "status": llem("status", str(run_dir)),
            "results --format json": llem("results", str(run_dir), "--format", "json"),
        }
        for label, argv in commands.items():
            samples: dict[str, list[tuple[float, int]]] = {name: [] for name in variants}
            for name in variants:  # warm-up: page cache, .pyc
                run_once(argv, work, variants[name])
            for _ in range(args.repeats):
                for name in variants:
                    samples[name].append(run_once(argv, work, variants[name]))
            walls = {n: statistics.median(s[0] for s in v) for n, v in samples.items()}
            rss = {n: statistics.median(s[1] for s in v) / 1024 for n, v in samples.items()}
            print(
                f"  {label}: base {walls['base']:.2f} s {rss['base']:.0f} MiB, "
                f"this {walls['this']:.2f} s {rss['this']:.0f} MiB; "
                f"this / base: time {walls['this'] / walls['base']:.3f}x, "
                f"memory {rss['this'] / rss['base']:.3f}x"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
