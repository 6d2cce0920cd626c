"""Regression tests for the bugs the fault-injection suite (``make chaos``) found: no engine needed.

Each test pins one fix, fast: the chaos scripts in ``chaos/`` are the long proofs, these keep the
fixes in place. See docs/reliability.md for the story of each. The fixes that need a real engine
are pinned in tests/e2e/test_faults.py.
"""

from __future__ import annotations

import dataclasses
import errno
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from llem_cli.cli import cli
from llem_cli.errors import EnvironmentProblem
from llem_cli.runner import faults as faults_mod
from llem_cli.runner.records import record_from_outcome
from llem_testkit.outcomes import experiment, outcome

# ---- fuzzing: malformed campaign files ----------------------------------------------------------


def validate(path: Path) -> tuple[int, str, BaseException | None]:
    result = CliRunner().invoke(cli, ["validate", str(path)], catch_exceptions=True)
    return result.exit_code, result.output, result.exception


def test_control_character_is_a_one_line_validation_error(tmp_path: Path) -> None:
    # PyYAML's reader raised ReaderError from SafeLoader(...) itself, outside the handled block:
    # "unexpected error ... (please report it)", exit 1
    path = tmp_path / "c.yaml"
    path.write_bytes(b"name: demo\ncompose: x\x1f.yml\n")
    code, output, exc = validate(path)
    assert code == 2, output
    assert exc is None or isinstance(exc, SystemExit)
    assert f"{path}:2:11: (file): YAML error: character #x001f is not allowed" in output
    assert "Traceback" not in output and "unexpected error" not in output


def test_alias_bomb_is_refused_by_the_value_budget(tmp_path: Path) -> None:
    # a "billion laughs" of 9**8 values: the position-recording loader walked every alias
    # expansion (it ran for minutes); now it stops at a value budget. The budget's own message
    # proves it fired; the subprocess timeout turns a regression into a failure, not a hang.
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "llem_cli", "validate", str(path)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "expands to more than" in output
    assert "Traceback" not in output


# ---- records: secrets, full disk, daemon gone ---------------------------------------------------

SECRET = "hf_faultsSecretToken0123456789"


def test_error_field_redacts_a_token_the_experiment_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the record's error quotes the experiment's last stderr line; a program that printed
    # its HF_TOKEN there put the token into journal.jsonl, results.csv and `llem results`
    monkeypatch.setenv("HF_TOKEN", SECRET)
    record = record_from_outcome(
        experiment(),
        outcome(stderr=f"401 Unauthorized for token {SECRET}\n"),
        attempts=1,
        restarts_before=0,
        experiment_dir=tmp_path,
    )
    assert record.error is not None
    assert SECRET not in record.error and "***" in record.error


def test_error_field_redacts_a_secret_from_the_backends_env(tmp_path: Path) -> None:
    # a token given in the campaign's backends.<name>.env is not in llem's environment
    record = record_from_outcome(
        experiment(),
        outcome(stderr=f"auth failed with {SECRET}\n"),
        attempts=1,
        restarts_before=0,
        experiment_dir=tmp_path,
        secret_env={"MY_API_TOKEN": SECRET},
    )
    assert record.error is not None
    assert SECRET not in record.error and "***" in record.error


def test_failure_on_a_full_filesystem_is_not_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # docker's client exits 1 when it cannot write stdout.log: recorded as "failed", a good
    # experiment would never run again; now the environment check before the record raises
    # ENOSPC and the run stops without a record
    full = SimpleNamespace(f_blocks=64, f_bavail=0, f_frsize=4096)
    monkeypatch.setattr(faults_mod.os, "statvfs", lambda _path: full)
    with pytest.raises(OSError) as info:
        faults_mod.check_environment(outcome(code=1), tmp_path, problem=lambda: None)
    assert info.value.errno == errno.ENOSPC


@pytest.mark.parametrize(
    ("answers", "running", "raises", "asked"),
    [
        ([None], True, False, 1),  # the daemon answers: the failure is the experiment's
        (["gone"], True, True, 1),  # it does not: stop the run, record nothing
        ([None, None], False, False, 2),  # container gone, daemon still fine after a moment
        ([None, "gone"], False, True, 2),  # container gone first, then the daemon: a stop
    ],
)
def test_environment_check_before_a_failed_record(
    tmp_path: Path, answers: list[str | None], running: bool, raises: bool, asked: int
) -> None:
    # a daemon being stopped stops its containers and may still answer for a moment: when the
    # container vanished under the experiment, the daemon is asked once more before recording
    replies = iter(answers)
    calls: list[str] = []
    slept: list[float] = []

    def problem() -> str | None:
        calls.append("version")
        return next(replies)

    failed = dataclasses.replace(outcome(code=137), container_running=running)
    if raises:
        with pytest.raises(EnvironmentProblem, match="not reachable: gone"):
            faults_mod.check_environment(failed, tmp_path, problem=problem, sleep=slept.append)
    else:
        faults_mod.check_environment(failed, tmp_path, problem=problem, sleep=slept.append)
    assert len(calls) == asked
    assert slept == ([faults_mod.SETTLE_S] if asked == 2 else [])


def test_unreachable_daemon_message_quotes_the_line_that_says_so() -> None:
    # compose up prints progress before the error: the message quoted "Container x  Creating"
    from llem_cli.docker.daemon import raise_if_unreachable

    stderr = (
        " Container llem-x-app-1  Creating\n"
        "Cannot connect to the Docker daemon at unix:///d.sock. Is the docker daemon running?\n"
    )
    with pytest.raises(EnvironmentProblem) as info:
        raise_if_unreachable(1, stderr)
    assert "Creating" not in info.value.message
    assert info.value.message.startswith("the Docker daemon is not reachable: Cannot connect")
    raise_if_unreachable(1, "some other failure\n")  # not the daemon's: nothing raised


def test_a_python_tag_on_a_key_is_a_validation_error(tmp_path: Path) -> None:
    # found by make chaos (text fuzzing, seed 20261130): a tag on a key, not a value, escaped
    # the constructor's error handling and crashed `llem validate` ("unexpected error")
    path = tmp_path / "c.yaml"
    path.write_text("name: demo\n!!python/object:os.system retries: 1\n")
    result = CliRunner().invoke(cli, ["validate", str(path)], catch_exceptions=True)
    assert result.exit_code == 2, result.output
    assert "cannot read value: could not determine a constructor" in result.output
    assert "unexpected error" not in result.output
