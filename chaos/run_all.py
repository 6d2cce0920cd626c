"""Run every chaos scenario and print one table row each (``make chaos``).

    python -m chaos.run_all [--quick] [--seed N] [--only NAME[,NAME...]] [--json FILE]
    python chaos/run_all.py ...   (the same, run as a file)

Exit 0 when every scenario passed (nothing lost, duplicated or left running), 1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import subprocess
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path

if __package__ in (None, ""):
    # Run as a file (python chaos/run_all.py): load the package chaos/ from where this file is, so
    # that `chaos.*` imports resolve with no sys.path edit (llem_cli and llem_testkit come from
    # the dev install). `python -m chaos.run_all` from the repository root needs none of this.
    import importlib.util

    _HERE = Path(__file__).resolve().parent
    _SPEC = importlib.util.spec_from_file_location(
        "chaos", _HERE / "__init__.py", submodule_search_locations=[str(_HERE)]
    )
    assert _SPEC is not None and _SPEC.loader is not None
    sys.modules["chaos"] = importlib.util.module_from_spec(_SPEC)
    _SPEC.loader.exec_module(sys.modules["chaos"])

from chaos.common import REPO, Row, log

#: scenario module -> the order they run in (the daemon one last: it disturbs the engine most)
SCENARIOS = [
    "fuzz",
    "secrets",
    "kill9",
    "docker_kill",
    "lanes_kill9",
    "lanes_docker_kill",
    "settings_kill9",
    "slurm_requeue",
    "fullfs",
    "daemon",
]

HEADER = ("scenario", "repeats", "passed", "lost", "duplicated", "containers left", "seconds")


def versions() -> dict[str, str]:
    def out(*argv: str) -> str:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        except OSError as exc:
            return f"unavailable ({exc})"
        return done.stdout.strip() or done.stderr.strip()

    return {
        "engine": out("docker", "version", "--format", "{{.Server.Version}}"),
        "compose": out("docker", "compose", "version", "--short"),
        "python": platform.python_version(),
        "llem commit": out("git", "-C", str(REPO), "rev-parse", "--short", "HEAD"),
        "kernel": platform.release(),
        "cpus": out("nproc"),
    }


def table(rows: list[Row]) -> str:
    lines = [
        "| " + " | ".join(HEADER) + " |",
        "| " + " | ".join("---" for _ in HEADER) + " |",
    ]
    for r in rows:
        cells = (
            r.scenario,
            r.repeats,
            r.passed,
            r.lost,
            r.duplicated,
            r.containers_left,
            f"{r.seconds:.0f}",
        )
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    parser.add_argument("--seed", type=int, default=20261128)
    parser.add_argument("--only", default="", help="comma-separated scenario modules")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or SCENARIOS
    unknown = sorted(set(names) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; known: {SCENARIOS}")
    info = versions()
    log("versions: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    rows: list[Row] = []
    t0 = time.monotonic()
    for name in names:
        module = importlib.import_module(f"chaos.{name}")
        log(f"scenario {name}: {module.NAME}")
        started = time.monotonic()
        try:
            row = module.run(quick=args.quick, seed=args.seed)
        except Exception as exc:  # noqa: BLE001 - a broken scenario is a failed row, not a stop
            traceback.print_exc()
            row = Row(module.NAME, failures=[f"scenario crashed: {type(exc).__name__}: {exc}"])
            row.seconds = time.monotonic() - started
        rows.append(row)
        log(f"scenario {name}: {'PASS' if row.ok else 'FAIL'} in {row.seconds:.0f}s")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(
        f"llem chaos {'--quick ' if args.quick else ''}seed {args.seed}, "
        f"{stamp}, total {time.monotonic() - t0:.0f}s"
    )
    print(table(rows))
    for r in rows:
        for note in r.notes:
            print(f"- {r.scenario}: {note}")
        for failure in r.failures:
            print(f"- {r.scenario}: FAILURE: {failure}")
    if args.json:
        args.json.write_text(
            json.dumps({"versions": info, "rows": [asdict(r) for r in rows]}, indent=2)
        )
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
