"""Start-up and planning speed of llem, measured on real processes.

Prints:
  * `llem --help` and `llem validate FILE` wall time (median of N runs) against
    `python -c "import click"`, as a ratio;
  * `llem plan --json > /dev/null` time and peak RSS for campaigns whose grid expands
    to exactly 1,000 / 10,000 / 100,000 configurations (target: 100k in < 2 s).

Usage: python bench/bench_startup_plan.py [--runs N] [--sizes 1000,10000,100000]
Exit status 1 when the largest plan misses the 2 s target.
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

TARGET_S = 2.0
SMALL = """\
name: bench-small
compose: compose.yml
backends:
  pytorch:
    command: [bench, --batch-size, "{batch_size}"]
grid:
  batch_size: [1, 2, 4, 8]
"""


def llem_argv() -> list[str]:
    """The installed console script next to this python, else ``python -m llem_cli``."""
    script = Path(sys.executable).parent / "llem"
    return [str(script)] if script.exists() else [sys.executable, "-m", "llem_cli"]


def run_once(argv: list[str], cwd: Path | None = None) -> tuple[float, int, int]:
    """Wall seconds, exit status and peak RSS (KiB) of one process, stdout discarded."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=cwd)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.stderr is not None:
        err = proc.stderr.read().decode(errors="replace")
        proc.stderr.close()
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {err[-2000:]}")
    return elapsed, proc.returncode, usage.ru_maxrss


def median_time(argv: list[str], runs: int, cwd: Path | None = None) -> tuple[float, int]:
    """Median wall time over ``runs`` (after one warm-up) and the largest peak RSS."""
    run_once(argv, cwd)
    samples = [run_once(argv, cwd) for _ in range(runs)]
    return statistics.median(s[0] for s in samples), max(s[2] for s in samples)


def factorise(total: int) -> list[int]:
    """Axis lengths of 10 (and one remainder) whose product is exactly ``total``."""
    axes = []
    rest = total
    while rest % 10 == 0 and rest > 1:
        axes.append(10)
        rest //= 10
    if rest > 1:
        axes.append(rest)
    return axes or [1]


def big_campaign(folder: Path, total: int) -> Path:
    """A one-backend campaign whose grid is exactly ``total`` configurations."""
    axes = factorise(total)
    names = [f"p{i}" for i in range(len(axes))]
    command = ", ".join(f'"--{n}={{{n}}}"' for n in names)
    grid = "\n".join(
        f"  {n}: [{', '.join(str(v) for v in range(size))}]"
        for n, size in zip(names, axes, strict=True)
    )
    path = folder / f"plan_{total}.yaml"
    path.write_text(
        f"name: bench-{total}\ncompose: compose.yml\nbackends:\n"
        f"  pytorch:\n    command: [bench, {command}]\ngrid:\n{grid}\n"
        "execution:\n  order: interleaved\n  gap: 1s\n"
    )
    return path


def row(label: str, seconds: float, note: str = "", rss_kib: int = 0) -> None:
    """One start-up line: label, milliseconds, ratio and peak RSS."""
    rss = f"   peak RSS {rss_kib / 1024:.1f} MiB" if rss_kib else ""
    print(f"{label:<28}{seconds * 1000:8.1f} ms   {note}{rss}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="runs per start-up measurement")
    parser.add_argument("--plan-runs", type=int, default=3, help="runs per plan size")
    parser.add_argument("--sizes", default="1000,10000,100000", help="plan sizes")
    args = parser.parse_args()
    llem = llem_argv()
    print(f"llem: {' '.join(llem)}   python: {sys.version.split()[0]}   runs: {args.runs}")

    with tempfile.TemporaryDirectory(prefix="llem-bench-") as tmp:
        folder = Path(tmp)
        (folder / "compose.yml").write_text("services:\n  pytorch: {image: busybox}\n")
        small = folder / "small.yaml"
        small.write_text(SMALL)

        click_s, _ = median_time([sys.executable, "-c", "import click"], args.runs)
        bare_s, _ = median_time([sys.executable, "-c", "pass"], args.runs)
        help_s, help_rss = median_time([*llem, "--help"], args.runs)
        validate_s, validate_rss = median_time([*llem, "validate", str(small)], args.runs)
        print()
        row("python -c pass", bare_s)
        row("python -c 'import click'", click_s)
        row("llem --help", help_s, f"x{help_s / click_s:.2f} of import click", help_rss)
        ratio = f"x{validate_s / click_s:.2f} of import click"
        row("llem validate (4 configs)", validate_s, ratio, validate_rss)

        print()
        print(f"{'configurations':>14} {'plan --json':>12} {'peak RSS':>10} {'validate':>10}")
        worst = 0.0
        for total in (int(s) for s in args.sizes.split(",")):
            path = big_campaign(folder, total)
            plan_s, plan_rss = median_time([*llem, "plan", str(path), "--json"], args.plan_runs)
            check_s, _ = median_time([*llem, "validate", str(path)], 1)
            worst = plan_s if total == max(int(s) for s in args.sizes.split(",")) else worst
            print(f"{total:>14,} {plan_s:>10.3f} s {plan_rss / 1024:>6.1f} MiB {check_s:>8.3f} s")
    verdict = "ok" if worst < TARGET_S else "TOO SLOW"
    print(f"\nlargest plan: {worst:.3f} s (target < {TARGET_S:.0f} s): {verdict}")
    return 0 if worst < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
