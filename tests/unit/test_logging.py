"""Log records go through the command's output: levels from -v/-q, and nothing said twice."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from llem_cli.output import Output, log_level
from llem_cli.runs.journal import Journal
from llem_cli.runs.layout import create_run_dir


@pytest.mark.parametrize(
    ("verbose", "quiet", "level"),
    [
        (0, False, logging.WARNING),
        (1, False, logging.INFO),
        (2, False, logging.DEBUG),
        (0, True, logging.ERROR),
        (2, True, logging.ERROR),  # -q wins, as it does for every other line
    ],
)
def test_level_follows_the_flags(verbose: int, quiet: bool, level: int) -> None:
    assert log_level(Output(verbosity=verbose, quiet=quiet)) == level


def damaged_run(tmp_path: Path) -> Path:
    run = create_run_dir(tmp_path / "results", "c")
    with Journal(run.journal) as journal:
        journal.append("run_started", campaign="c")
    with open(run.journal, "ab") as f:
        f.write(b'{"type":"experiment_fin\n')  # a torn line in the middle...
    with Journal(run.journal) as journal:
        journal.append("run_finished")  # ...once something follows it
    return run.root


def llem(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llem_cli", "--no-color", *args],
        capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_a_damaged_journal_is_reported_once(tmp_path: Path) -> None:
    # the replay logged the defect and `llem status` printed it again: two lines, two formats
    done = llem("status", str(damaged_run(tmp_path)))
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("journal.jsonl:2") == 1, done.stderr
    assert "warning: journal.jsonl:2: unreadable event; line skipped" in done.stderr


def test_log_records_use_the_output_and_q_silences_warnings(tmp_path: Path) -> None:
    # a module's log record reaches the user as one of llem's own lines, at -v/-q's level
    code = (
        "import logging, sys\n"
        "from llem_cli.cli import cli\n"
        "@cli.command('say')\n"
        "def say():\n"
        "    logging.getLogger('llem_cli.test').warning('w-line')\n"
        "    logging.getLogger('llem_cli.test').info('i-line')\n"
        "cli(prog_name='llem')\n"
    )
    runs = {
        flags: subprocess.run(
            [sys.executable, "-c", code, "--no-color", *flags, "say"],
            capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        for flags in ((), ("-v",), ("-q",))
    }
    assert runs[()].stderr == "warning: w-line\n", runs[()].stderr
    assert runs[("-v",)].stderr == "warning: w-line\ni-line\n"
    assert runs[("-q",)].stderr == ""
