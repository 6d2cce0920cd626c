"""``llem status``: a missing target, the machine word in ``state``, and a crashed run's keys.

The journals here are written line by line as a run writes them (``pid`` of the writer in each
event); tests/docker/test_status_killed_run.py kills a real llem with ``kill -9`` against the
real engine.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from llem_cli.cli import cli
from llem_cli.commands.status import STATES
from llem_cli.runs.layout import create_run_dir

KEY = "abcdef012345-c1"


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def write_run(tmp_path: Path, *ends: dict[str, Any], pid: int) -> Path:
    """A run whose journal started one experiment and then has ``ends`` (each with ``pid``)."""
    run = create_run_dir(tmp_path / "results", "st")
    (run.root / "plan.json").write_text(json.dumps([{"key": KEY}, {"key": "fedcba987654-c1"}]))
    lines = [
        {"type": "run_started", "ts": "2026-11-28T14:00:00.000Z", "pid": pid, "run_id": run.run_id},
        {"type": "experiment_started", "ts": "2026-11-28T14:00:01.000Z", "pid": pid, "key": KEY},
        *({"ts": "2026-11-28T14:00:02.000Z", "pid": pid, **end} for end in ends),
    ]
    run.journal.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return run.root


def status(*args: str) -> Any:
    result = CliRunner().invoke(cli, ["status", *args])
    assert "Traceback" not in result.output
    return result


def status_json(run_dir: Path) -> dict[str, Any]:
    result = status(str(run_dir), "--json")
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))


# ---- a target that does not exist ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["nonexist", "died.yaml", "results/demo/20261128T140500Z"])
def test_missing_target_is_one_clear_line_exit_2(tmp_path: Path, name: str) -> None:
    target = tmp_path / name
    result = status(str(target))
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert f"{target}: no such run directory or campaign file" in lines[0]
    assert "invalid campaign" not in result.output
    assert "file not found" not in result.output


# ---- state: a machine word, prose in state_detail -----------------------------------------------


def test_crashed_run_state_is_a_word_and_says_what_was_running(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path, pid=dead_pid())
    info = status_json(run_dir)
    assert info["state"] == "crashed"
    assert "process is gone" in info["state_detail"]
    assert info["in_flight"] == [KEY] and info["pending"] == 2 and not info["process_alive"]

    text = status(str(run_dir))
    assert text.exit_code == 0
    assert f"was running: {KEY} (will run again on --resume)" in text.stdout
    assert not re.search(r"^\s*running:", text.stdout, re.MULTILINE), text.stdout


def test_running_run_says_running(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path, pid=os.getpid())  # this process is alive: the writer
    info = status_json(run_dir)
    assert info["state"] == "running" and info["process_alive"]
    text = status(str(run_dir)).stdout
    assert re.search(rf"^  running:\s+{KEY}$", text, re.MULTILINE), text
    assert "was running" not in text


@pytest.mark.parametrize(
    ("end", "state", "detail"),
    [
        (
            {"type": "run_aborted", "reason": "restart budget spent (3 restarts)"},
            "aborted",
            "aborted: restart budget spent (3 restarts)",
        ),
        ({"type": "interrupted", "signal": "SIGTERM"}, "interrupted", "interrupted by SIGTERM"),
        ({"type": "run_finished", "counts": {}}, "finished", "finished"),
    ],
)
def test_every_state_is_a_known_word(
    tmp_path: Path, end: dict[str, Any], state: str, detail: str
) -> None:
    info = status_json(write_run(tmp_path, end, pid=dead_pid()))
    assert info["state"] == state
    assert info["state"] in STATES
    assert info["state_detail"] == detail
    text = status(info["run_dir"]).stdout
    assert text.splitlines()[0] == f"run {info['run_id']}: {detail}"
