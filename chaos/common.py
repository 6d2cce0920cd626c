"""What every chaos scenario shares: the result row, campaigns on disk, journal checks.

Campaigns are written and driven with the helpers of the end-to-end tests (``llem_testkit.e2e``,
the harness package installed with llem's dev install): real ``llem`` processes
(``python -m llem_cli``), a real engine, the busybox test image.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from llem_cli.runs.layout import RunDir
from llem_cli.runs.shards import journal_paths, replay_run
from llem_testkit import REPO_ROOT, TEST_IMAGE
from llem_testkit.e2e import (
    E2ECampaign,
    containers,
    events,
    iter_files,
    kill9,
    new_campaign,
    of_type,
    service_container,
    wait_exit,
    wait_for,
)

#: the checkout chaos runs from
REPO = REPO_ROOT

__all__ = [
    "TEST_IMAGE",
    "E2ECampaign",
    "iter_files",
    "kill9",
    "service_container",
    "wait_exit",
    "wait_for",
    "Row",
    "Tally",
    "containers",
    "events",
    "log",
    "new_campaign",
    "of_type",
    "plan_keys_of",
    "project_containers",
    "scratch",
    "tally",
]


@dataclass
class Row:
    """One line of the results table."""

    scenario: str
    repeats: int = 0
    passed: int = 0
    lost: int = 0
    duplicated: int = 0
    containers_left: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No failure, nothing lost, nothing duplicated, nothing left running."""
        return (
            not self.failures
            and self.passed == self.repeats
            and self.lost == 0
            and self.duplicated == 0
            and self.containers_left == 0
        )

    def fail(self, message: str) -> None:
        log(f"  FAIL: {message}")
        self.failures.append(message)


def log(message: str) -> None:
    """A progress line on stderr (the table goes to stdout)."""
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@contextmanager
def scratch(label: str) -> Iterator[Path]:
    """A temporary folder for one scenario (kept when LLEM_CHAOS_KEEP is set)."""
    path = Path(tempfile.mkdtemp(prefix=f"llem-chaos-{label}-"))
    try:
        yield path
    finally:
        if not os.environ.get("LLEM_CHAOS_KEEP"):
            subprocess.run(["rm", "-rf", str(path)], check=False)


def plan_keys_of(c: E2ECampaign, env: dict[str, str] | None = None) -> list[str]:
    """The campaign's keys from ``llem plan --json``."""
    done = c.llem("plan", c.file, "--json", env=env)
    if done.returncode != 0:
        raise RuntimeError(f"llem plan failed: {done.stderr}")
    return [item["key"] for item in json.loads(done.stdout)]


@dataclass
class Tally:
    """Ok-exactly-once accounting of one run directory against the plan's keys."""

    lost: list[str]
    duplicated: list[str]
    defects: list[str]
    finished: bool

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.defects) and self.finished


def tally(run_dir: Path, keys: list[str]) -> Tally:
    """Count ok ``experiment_finished`` events per key over the whole journal (a sharded run's:
    every shard's journal; finished when every shard is)."""
    run = RunDir(run_dir)
    oks = Counter(
        e["key"]
        for journal in journal_paths(run)
        for e in of_type(journal.parent, "experiment_finished")
        if e["record"]["status"] == "ok"
    )
    state = replay_run(run)
    return Tally(
        lost=[k for k in keys if oks[k] == 0],
        duplicated=[k for k in keys if oks[k] > 1],
        defects=[str(d) for d in state.defects],
        finished=state.finished,
    )


def project_containers(project: str, env: dict[str, str] | None = None) -> list[str]:
    """Every container (running or not) of a compose project, on the engine of ``env``."""
    done = subprocess.run(
        ["docker", "ps", "-a", "-q", "--filter", f"label=com.docker.compose.project={project}"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )
    return done.stdout.split()


def no_traceback(*texts: str) -> bool:
    """True when no text holds a Python traceback."""
    return not any("Traceback" in t for t in texts)
