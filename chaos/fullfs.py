"""Scenario 4: the results directory on a full filesystem (a 256 KiB tmpfs), then space back.

Experiments write 40-230 KB to stdout, so the tmpfs fills a few experiments in (a different
moment per repeat). Checked: llem exits 3 (an environment problem: the filesystem, like a missing
daemon, is fixed outside llem and the run resumed) with one clear error line and no traceback,
nothing is left running, the journal still replays; after a remount with room, ``--resume``
finishes with every key ok exactly once. Needs root (mount).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from chaos.common import (
    Row,
    log,
    new_campaign,
    no_traceback,
    plan_keys_of,
    project_containers,
    scratch,
    tally,
)
from llem_cli.runs.state import replay

NAME = "results dir on a full filesystem"
SIZES = [100_000, 230_000, 60_000, 150_000]


def mount_tmpfs(path: Path, size: str) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)


def remount(path: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True)


def unmount(path: Path) -> None:
    if subprocess.run(["umount", str(path)], capture_output=True, check=False).returncode:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def one(base: Path, index: int, nbytes: int, row: Row) -> bool:
    c = new_campaign(base, f"fs-{index}")
    c.write(
        {"app": {"command": ["sh", "-c", f"yes llem-fills-the-disk | head -c {nbytes}"]}},
        grid={"i": list(range(1, 7))},
    )
    keys = plan_keys_of(c)
    res = base / f"res-{index}"
    res.mkdir()
    mount_tmpfs(res, "256k")
    try:
        done = c.llem("run", c.file, "--results-dir", res, "--no-progress", timeout=180)
        out, err = done.stdout, done.stderr
        errors = [line for line in err.splitlines() if "error" in line.lower()]
        good = True
        if done.returncode != 3:
            row.fail(f"{c.name}: exit {done.returncode}, expected 3: {err[-400:]}")
            good = False
        if not no_traceback(out, err):
            row.fail(f"{c.name}: traceback in the output")
            good = False
        if len(errors) != 1 or "No space left on device" not in errors[0]:
            row.fail(f"{c.name}: not one clear error line: {errors}")
            good = False
        else:
            log(f"  {c.name} ({nbytes} B/experiment): exit 3: {errors[0]}")
        runs = sorted((res / c.name).iterdir())
        state = replay(runs[-1] / "journal.jsonl")  # readable, whatever the tail
        done_before = sum(1 for r in state.records.values() if r.status == "ok")
        if any(r.status != "ok" for r in state.records.values()):
            row.fail(f"{c.name}: a non-ok record was settled by the full disk")
            good = False
        left = project_containers(c.project)
        if left:
            row.fail(f"{c.name}: containers left after the error: {left}")
        remount(res, "32m")
        again = c.llem("run", c.file, "--results-dir", res, "--resume", "--no-progress")
        if again.returncode != 0 or not no_traceback(again.stdout, again.stderr):
            row.fail(f"{c.name}: --resume exited {again.returncode}: {again.stderr[-400:]}")
            good = False
        t = tally(runs[-1], keys)
        row.lost += len(t.lost)
        row.duplicated += len(t.duplicated)
        if not t.finished:
            row.fail(f"{c.name}: not finished after --resume")
            good = False
        if t.defects:
            row.notes.append(f"{c.name}: replay reports {t.defects} (a torn append)")
        log(f"  {c.name}: {done_before} ok before the disk filled; resume exit {again.returncode}")
        row.containers_left += len(project_containers(c.project))
        return good
    finally:
        c.cleanup()
        unmount(res)


def run(quick: bool = False, seed: int = 20261128) -> Row:
    sizes = SIZES[:2] if quick else SIZES
    row = Row(NAME, repeats=len(sizes))
    t0 = time.monotonic()
    if os.geteuid() != 0:
        row.fail("needs root to mount a tmpfs")
        return row
    with scratch("fullfs") as base:
        for index, nbytes in enumerate(sizes):
            if one(base, index, nbytes, row):
                row.passed += 1
    row.seconds = time.monotonic() - t0
    return row


if __name__ == "__main__":
    import sys

    from chaos.run_all import main

    sys.exit(main(["--only", "fullfs", *sys.argv[1:]]))
