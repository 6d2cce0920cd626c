"""Campaigns in temporary folders and real ``llem`` processes: the end-to-end tests and chaos/.

Every test gets a :class:`E2ECampaign`: a campaign file and a compose file in its own temporary
folder, a campaign name (hence compose project) of its own and a private lock directory. llem runs
as a real process (``python -m llem_cli``); nothing is mocked. The fixture's finalizer removes
whatever a failed test left (``llem down`` and a sweep by label) and the tests themselves assert
that nothing was left before that. The chaos scenarios (chaos/common.py) drive campaigns with the
same helpers.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from llem_cli.campaign.names import default_project
from llem_testkit import TEST_IMAGE

LLEM = [sys.executable, "-m", "llem_cli"]
#: a plain output line: ``2026-11-28T14:52:23Z text``
STAMPED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \S")


def smi_line(used: int) -> str:
    """One line of the probe's CSV for a GPU with ``used`` MiB of memory in use."""
    return f"0, GPU-00000000-0000-0000-0000-000000000000, {used}, 81559, 35, 0, 70.5\n"


@dataclass
class E2ECampaign:
    """A campaign on disk plus the means to run llem on it."""

    root: Path
    name: str
    env: dict[str, str]
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    # ---- files ----------------------------------------------------------------------------------

    @property
    def file(self) -> Path:
        """The campaign file."""
        return self.root / "campaign.yaml"

    @property
    def project(self) -> str:
        """The compose project llem names after the campaign."""
        return default_project(self.name)

    @property
    def results(self) -> Path:
        """The campaign's results folder (its run directories)."""
        return self.root / "results" / self.name

    def write(
        self,
        backends: dict[str, dict[str, Any]],
        *,
        services: dict[str, dict[str, Any]] | None = None,
        **sections: Any,
    ) -> Path:
        """Write compose.yml (one busybox service per backend, or ``services``) and the campaign.

        Every service gets the test image and ``network_mode: none`` unless it says otherwise.
        """
        if services is None:
            services = {b.get("service", name): {} for name, b in backends.items()}
        compose = {
            "services": {
                name: {"image": TEST_IMAGE, "network_mode": "none", **extra}
                for name, extra in services.items()
            }
        }
        (self.root / "compose.yml").write_text(yaml.safe_dump(compose, sort_keys=False))
        health = {"restart_backoff": 0, **sections.pop("health", {})}
        doc: dict[str, Any] = {
            "name": self.name,
            "compose": "compose.yml",
            "backends": backends,
            **sections,
            "health": health,
        }
        self.file.write_text(yaml.safe_dump(doc, sort_keys=False))
        return self.file

    # ---- llem processes -------------------------------------------------------------------------

    def llem(
        self, *args: str | Path, timeout: float = 120, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run llem to completion in the campaign's folder."""
        return subprocess.run(
            [*LLEM, *map(str, args)],
            cwd=self.root,
            env={**self.env, **(env or {})},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start(self, *args: str | Path, tag: str = "run") -> subprocess.Popen[str]:
        """Start llem in the background; its output goes to ``<tag>.out`` / ``<tag>.err``."""
        out = open(self.root / f"{tag}.out", "w")  # noqa: SIM115 - owned by the child
        err = open(self.root / f"{tag}.err", "w")  # noqa: SIM115
        try:
            proc = subprocess.Popen(
                [*LLEM, *map(str, args)],
                cwd=self.root,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                text=True,
            )
        finally:
            out.close()
            err.close()
        self.procs.append(proc)
        return proc

    def output(self, tag: str = "run") -> tuple[str, str]:
        """The stdout and stderr of a process started with ``tag``."""
        return (
            (self.root / f"{tag}.out").read_text(),
            (self.root / f"{tag}.err").read_text(),
        )

    # ---- the run directory ----------------------------------------------------------------------

    def run_dirs(self) -> list[Path]:
        """Run directories of this campaign, oldest first."""
        if not self.results.is_dir():
            return []
        return sorted((p for p in self.results.iterdir() if p.is_dir()), key=_run_order)

    def run_dir(self) -> Path:
        """The newest run directory (the only one, in most tests)."""
        dirs = self.run_dirs()
        assert dirs, f"no run directory under {self.results}"
        return dirs[-1]

    def wait_run_dir(self, timeout: float = 30) -> Path:
        """Wait until a run has journaled ``run_started``; return its directory."""

        def found() -> Path | None:
            for run in reversed(self.run_dirs()):
                if any(e["type"] == "run_started" for e in events(run)):
                    return run
            return None

        return wait_for(found, timeout, "a run directory with run_started")

    # ---- cleanup --------------------------------------------------------------------------------

    def cleanup(self) -> None:
        """Kill what is still running, then remove every container of the project and runs."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
        if self.file.exists():
            self.llem("down", self.file, timeout=180)
        remove_containers(f"com.docker.compose.project={self.project}")


def _run_order(path: Path) -> tuple[str, int]:
    base, _, suffix = path.name.partition("-")
    return base, int(suffix or 1) if (suffix or "1").isdigit() else 0


def new_campaign(base: Path, label: str) -> E2ECampaign:
    """A campaign folder with a unique name (no compose project or lock is shared)."""
    name = f"e2e-{label}-{uuid.uuid4().hex[:6]}"
    root = base / name
    root.mkdir(parents=True)
    locks = base / "locks"
    locks.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}
    env.update(
        {
            "LLEM_LOCK_DIR": str(locks),
            "PYTHONUNBUFFERED": "1",
            "NO_COLOR": "1",
            "COLUMNS": "200",
        }
    )
    return E2ECampaign(root=root, name=name, env=env)


# ---- the journal --------------------------------------------------------------------------------


def events(run_dir: Path) -> list[dict[str, Any]]:
    """The journal's events (a torn last line, from a kill, is skipped)."""
    path = run_dir / "journal.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            out.append(event)
    return out


def of_type(run_dir: Path, *kinds: str) -> list[dict[str, Any]]:
    """The journal's events of the given types."""
    return [e for e in events(run_dir) if e["type"] in kinds]


def records(run_dir: Path) -> dict[str, dict[str, Any]]:
    """The latest record per key, as replay sees it."""
    out: dict[str, dict[str, Any]] = {}
    for event in of_type(run_dir, "experiment_finished", "pruned", "skipped"):
        out[event["record"]["key"]] = event["record"]
    return out


def ok_finishes(run_dir: Path) -> Counter[str]:
    """How many ``experiment_finished`` events with status ok each key has."""
    return Counter(
        e["key"] for e in of_type(run_dir, "experiment_finished") if e["record"]["status"] == "ok"
    )


def plan_keys(run_dir: Path) -> list[str]:
    """The keys in the run's ``plan.json``, in order."""
    return [item["key"] for item in json.loads((run_dir / "plan.json").read_text())]


# ---- docker -------------------------------------------------------------------------------------


def containers(*labels: str) -> list[str]:
    """Ids of every container (running or not) with all of ``labels`` (``name=value``)."""
    filters = [arg for label in labels for arg in ("--filter", f"label={label}")]
    done = subprocess.run(
        ["docker", "ps", "-a", "-q", *filters],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.split()


def remove_containers(label: str) -> None:
    """Remove (``docker rm -f``) every container with ``label``; a failure is ignored."""
    ids = containers(label)
    if ids:
        subprocess.run(
            ["docker", "rm", "-f", *ids],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=120,
            check=False,
        )


def assert_no_containers(campaign: E2ECampaign, *run_ids: str) -> None:
    """Nothing is left: no container of the compose project, none labelled with its runs.

    Runs are matched by label within the project: another test's campaign may have started a
    run in the same second, hence with the same run id.
    """
    project = f"com.docker.compose.project={campaign.project}"
    ids = run_ids or tuple(p.name for p in campaign.run_dirs())
    for run_id in ids:
        left = containers(f"llem.run={run_id}", project)
        assert not left, f"containers of run {run_id} left behind: {left}"
    left = containers(project)
    assert not left, f"containers of project {campaign.project} left behind: {left}"
    lanes = containers(f"llem.project={campaign.project}")
    assert not lanes, f"lane containers of {campaign.project} left behind: {lanes}"


def shard_containers(campaign: E2ECampaign, shards: int) -> list[str]:
    """Every container of a sharded run's shards: projects ``<project>-s<k>`` and their lanes'
    (labelled ``llem.project=<project>-s<k>``)."""
    ids: set[str] = set()
    for k in range(shards):
        project = f"{campaign.project}-s{k}"
        ids |= set(containers(f"com.docker.compose.project={project}"))
        ids |= set(containers(f"llem.project={project}"))
    return sorted(ids)


def service_container(campaign: E2ECampaign, service: str) -> str | None:
    """The id of the running container of ``service`` in the campaign's project."""
    done = subprocess.run(
        [
            "docker",
            "ps",
            "-q",
            "--filter",
            f"label=com.docker.compose.project={campaign.project}",
            "--filter",
            f"label=com.docker.compose.service={service}",
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    ids = done.stdout.split()
    return ids[0] if ids else None


# ---- waiting ------------------------------------------------------------------------------------


def wait_for(check: Callable[[], Any], timeout: float, what: str, poll: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(poll)


def wait_exit(proc: subprocess.Popen[str], timeout: float = 120) -> int:
    """The exit code of a background llem (killed, and the test failed, after ``timeout``)."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)
        raise AssertionError(f"llem did not exit within {timeout}s") from None


def kill9(proc: subprocess.Popen[str]) -> None:
    """``kill -9`` the llem process itself (its docker children live on, as in real life)."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def iter_files(root: Path) -> Iterator[Path]:
    """Every regular file under ``root``."""
    for path in root.rglob("*"):
        if path.is_file():
            yield path


# ---- what the e2e test files share --------------------------------------------------------------


def campaign_for(base: Path, test_name: str, suffix: str = "") -> E2ECampaign:
    """A campaign named after the test (readable in ``docker ps``), unique all the same."""
    label = re.sub(r"[^a-z0-9]+", "-", test_name.removeprefix("test_").lower())[:20]
    return new_campaign(base, label.strip("-") + suffix)


def plan(c: E2ECampaign) -> list[dict[str, Any]]:
    """``llem plan --json`` of the campaign."""
    done = c.llem("plan", c.file, "--json")
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout))


def key_where(c: E2ECampaign, **params: Any) -> str:
    """The key (cycle 1) of the configuration with these params, from ``llem plan --json``."""
    for item in plan(c):
        values = {**item["params"], "backend": item["backend"]}
        if item["cycle"] == 1 and all(values.get(k) == v for k, v in params.items()):
            return str(item["key"])
    raise AssertionError(f"no experiment with {params}")


def status_json(c: E2ECampaign, target: Path) -> dict[str, Any]:
    """``llem status TARGET --json``."""
    done = c.llem("status", target, "--json")
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def no_traceback(*texts: str) -> None:
    """An expected failure never prints a Python traceback (docs/design.md)."""
    for text in texts:
        assert "Traceback" not in text, text
