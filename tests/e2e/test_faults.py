"""Regression tests for the bugs the fault-injection suite (``make chaos``) found.

Each test pins one fix, fast: the chaos scripts in ``chaos/`` are the long proofs, these keep the
fixes in place. See docs/reliability.md for the story of each.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import skip_unless_possible
from e2e_support import E2ECampaign, of_type, ok_finishes, plan_keys

from llem_cli.campaign.expansion import Config
from llem_cli.cli import cli
from llem_cli.docker.outcome import ExecOutcome
from llem_cli.errors import EnvironmentProblem
from llem_cli.runner import faults as faults_mod
from llem_cli.runner import records as records_mod
from llem_cli.runner.records import record_from_outcome
from llem_cli.runner.schedule import Experiment
from llem_cli.runs.journal import Journal
from llem_cli.runs.layout import RunDir
from llem_cli.runs.record import Record
from llem_cli.runs.state import replay

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


def experiment() -> Experiment:
    config = Config(backend="app", params={"i": 1}, config_id="abcdef012345", origin=())
    return Experiment(config=config, cycle=1, service="app")


def outcome(status: str = "failed", code: int = 3, stderr: str = "") -> ExecOutcome:
    now = datetime.now(timezone.utc)
    detail = f"exit {code}: {stderr.strip().splitlines()[-1]}" if stderr else f"exit {code}"
    return ExecOutcome(
        status,  # type: ignore[arg-type]
        code,
        now,
        now,
        0.1,
        stderr_tail=stderr,
        detail=detail,
    )


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
    # experiment would never run again; now ENOSPC stops the run without a record
    full = SimpleNamespace(f_blocks=64, f_bavail=0, f_frsize=4096)
    monkeypatch.setattr(records_mod.os, "statvfs", lambda _path: full)
    with pytest.raises(OSError) as info:
        record_from_outcome(
            experiment(), outcome(code=1), attempts=1, restarts_before=0, experiment_dir=tmp_path
        )
    assert info.value.errno == errno.ENOSPC
    # an ok experiment on a full disk is still recorded (the journal write decides)
    ok = record_from_outcome(
        experiment(), outcome("ok", 0), attempts=1, restarts_before=0, experiment_dir=tmp_path
    )
    assert ok.status == "ok"


@pytest.mark.docker
def test_exec_failing_because_the_daemon_is_gone_is_not_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `compose exec` against a stopped daemon exits 1: every remaining experiment was recorded
    # "failed" in milliseconds and never ran again; now the run stops (exit 3) unrecorded
    monkeypatch.delenv("LLEM_DOCKER", raising=False)  # llem's own check runs the real docker
    compose = tmp_path / "compose.yml"
    compose.write_text("services:\n  app:\n    image: llem-test-busybox:latest\n")
    gone_host = f"unix://{tmp_path}/nobody.sock"  # no daemon listens there
    exec_argv = ["docker", "compose", "--project-name", f"llemt-{uuid.uuid4().hex[:8]}"]
    exec_argv += ["-f", str(compose), "exec", "-T", "app", "true"]
    done = subprocess.run(
        exec_argv,
        env={**os.environ, "DOCKER_HOST": gone_host},
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1 and gone_host in done.stderr, done.stderr
    gone = done.stderr  # Docker's own words for "daemon gone", not the test's
    with monkeypatch.context() as daemon_stopped:
        daemon_stopped.setenv("DOCKER_HOST", gone_host)  # llem's `docker version` fails too
        with pytest.raises(EnvironmentProblem, match="daemon is not reachable: ") as info:
            record_from_outcome(
                experiment(),
                outcome(code=1, stderr=gone),
                attempts=1,
                restarts_before=0,
                experiment_dir=tmp_path,
            )
        assert gone_host in str(info.value)  # the reason is `docker version`'s own last line
    # the same message with the real engine answering is the experiment's own output
    record = record_from_outcome(
        experiment(),
        outcome(code=1, stderr=gone),
        attempts=1,
        restarts_before=0,
        experiment_dir=tmp_path,
    )
    assert record.status == "failed"
    assert record.error == f"exit 1: {gone.strip().splitlines()[-1]}"


# ---- session: a failure the environment caused is not final -------------------------------------


def journal_with_failure(tmp_path: Path, *, ended: datetime, pid_matches: bool = True) -> RunDir:
    run = RunDir(tmp_path / "20261128T000000Z")
    run.root.mkdir()
    record = Record(
        key="abcdef012345-c1",
        config_id="abcdef012345",
        cycle=1,
        backend="app",
        service="app",
        params={"i": 1},
        status="failed",
        exit_code=137,
        ended_at=ended.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        error="exit 137: killed (SIGKILL), no OOM recorded",
    )
    with Journal(run.journal) as journal:
        journal.append("run_started", run_id=run.run_id)
        journal.append("experiment_started", key=record.key)
        journal.append("experiment_finished", key=record.key, record=record)
    if not pid_matches:
        lines = run.journal.read_text().replace(f'"pid":{os.getpid()}', '"pid":1')
        run.journal.write_text(lines)
    return run


@pytest.mark.parametrize(
    ("age_s", "same_pid", "unsettled"),
    [(1, True, True), (600, True, False), (1, False, False)],
)
def test_daemon_loss_unsettles_the_experiment_it_killed(
    tmp_path: Path, age_s: int, same_pid: bool, unsettled: bool
) -> None:
    # a graceful daemon stop kills the container first: the running experiment exits 137 and is
    # recorded "failed"; only the next docker call finds the daemon gone. That record is
    # superseded by "interrupted" so --resume runs the experiment again
    ended = datetime.now(timezone.utc) - timedelta(seconds=age_s)
    run = journal_with_failure(tmp_path, ended=ended, pid_matches=same_pid)
    emitted: list[dict[str, object]] = []
    with Journal(run.journal) as journal:
        faults_mod.unsettle_last_failure(run, journal, emitted.append)
    state = replay(run.journal)
    assert state.needs_run("abcdef012345-c1") is unsettled
    assert len(emitted) == int(unsettled)
    if unsettled:
        assert state.records["abcdef012345-c1"].status == "interrupted"
        assert "runs again on --resume" in str(state.records["abcdef012345-c1"].error)


def test_daemon_loss_unsettles_a_not_runnable_and_the_skips_it_caused(tmp_path: Path) -> None:
    # a graceful daemon stop made `exec` exit 126 ("cannot exec in a stopped container"): the
    # experiment was recorded not_runnable and the rest of its backend skipped, all final
    run = RunDir(tmp_path / "20261128T000000Z")
    run.root.mkdir()
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")

    def rec(key: str, status: str, error: str) -> Record:
        return Record(
            key=key,
            config_id=key[:12],
            cycle=1,
            backend="app",
            service="app",
            params={},
            status=status,
            ended_at=now,
            error=error,
        )

    with Journal(run.journal) as journal:
        journal.append("run_started", run_id=run.run_id)
        journal.append("experiment_started", key="aaaaaaaaaaaa-c1")
        journal.append(
            "experiment_finished",
            key="aaaaaaaaaaaa-c1",
            record=rec("aaaaaaaaaaaa-c1", "not_runnable", "exit 126: not executable"),
        )
        for key, cause in (("bbbbbbbbbbbb-c1", "aaaaaaaaaaaa-c1"), ("cccccccccccc-c1", "zzz")):
            why = f"backend command not runnable (experiment {cause})"
            journal.append("skipped", key=key, record=rec(key, "skipped", why))
        faults_mod.unsettle_last_failure(run, journal, lambda _event: None)
    state = replay(run.journal)
    assert state.records["aaaaaaaaaaaa-c1"].status == "interrupted"
    assert state.records["bbbbbbbbbbbb-c1"].status == "interrupted"
    assert state.records["cccccccccccc-c1"].status == "skipped"  # another experiment's skip


# ---- real runs ----------------------------------------------------------------------------------


@pytest.mark.docker
def test_daemon_gone_mid_run_exits_3_and_resume_finishes(campaign: E2ECampaign) -> None:
    # once the third experiment has run, every docker call of llem's goes to a socket with no
    # daemon behind it, so what llem reads is the real CLI's own "cannot connect" error
    c = campaign
    flag = c.root / "daemon-gone"
    wrapper = c.root / "docker"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'if [ -e "{flag}" ]; then\n'
        '  exec env DOCKER_HOST=unix:///nonexistent/docker.sock docker "$@"\n'
        "fi\n"
        'exec docker "$@"\n'
    )
    wrapper.chmod(0o755)
    c.write(
        {"app": {"command": ["sh", "-c", 'if [ {i} = 3 ]; then touch "{experiment_dir}/g"; fi']}},
        grid={"i": [1, 2, 3, 4, 5, 6]},
        health={"every": 0},  # no probe: the experiment exec itself meets the dead daemon
    )
    env = {"LLEM_DOCKER": str(wrapper)}
    # the flag appears when experiment 3 has written its marker (host side of the bind mount)
    watcher = subprocess.Popen(
        [
            "sh",
            "-c",
            f'while [ -z "$(find "{c.root}/results" -name g 2>/dev/null)" ]; do sleep 0.02; done;'
            f' touch "{flag}"',
        ]
    )
    try:
        done = c.llem("run", c.file, "--no-progress", env=env, timeout=120)
    finally:
        watcher.kill()
        watcher.wait()
    assert done.returncode == 3, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert "Docker daemon is not reachable" in done.stderr
    run = c.run_dir()
    statuses = [e["record"]["status"] for e in of_type(run, "experiment_finished")]
    assert "failed" not in statuses, statuses  # nothing settled by the outage
    flag.unlink()
    again = c.llem("run", c.file, "--resume", "--no-progress", env=env, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert ok_finishes(run) == dict.fromkeys(plan_keys(run), 1)


@pytest.mark.docker
def test_full_results_filesystem_exits_3_and_resume_finishes(campaign: E2ECampaign) -> None:
    if os.geteuid() != 0:
        skip_unless_possible("mounting a tmpfs needs root")
    c = campaign
    c.write(
        {"app": {"command": ["sh", "-c", "yes llem-fills-the-disk | head -c 100000"]}},
        grid={"i": [1, 2, 3, 4]},
    )
    res = c.root / "res"
    res.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(res)], check=True)
    try:
        done = c.llem("run", c.file, "--results-dir", res, "--no-progress")
        assert done.returncode == 3, done.stdout + done.stderr
        assert "Traceback" not in done.stdout + done.stderr
        errors = [line for line in done.stderr.splitlines() if "error" in line]
        assert len(errors) == 1 and "No space left on device" in errors[0], done.stderr
        (run,) = (res / c.name).iterdir()
        assert not [r for r in replay(run / "journal.jsonl").records.values() if r.status != "ok"]
        subprocess.run(["mount", "-o", "remount,size=16m", str(res)], check=True)
        again = c.llem("run", c.file, "--results-dir", res, "--resume", "--no-progress")
        assert again.returncode == 0, again.stdout + again.stderr
        assert ok_finishes(run) == dict.fromkeys(plan_keys(run), 1)
        assert json.loads((run / "plan.json").read_text())
    finally:
        c.cleanup()
        if subprocess.run(["umount", str(res)], capture_output=True, check=False).returncode:
            subprocess.run(["umount", "-l", str(res)], capture_output=True, check=False)


@pytest.mark.docker
def test_a_container_that_dies_while_starting_is_started_again(
    make_manager: Callable[..., object], run_spec: Any, tmp_path: Path
) -> None:
    # dies (SIGKILL, as docker kill does) on its first start only: up --wait sees it exit
    compose = tmp_path / "dies-once.yml"
    compose.write_text(
        "services:\n"
        "  app:\n"
        "    image: llem-test-busybox:latest\n"
        "    network_mode: none\n"
        "    command: [sh, -c, '[ -f /llem/run/started ] || { touch /llem/run/started;"
        " kill -9 $$$$; }; exec sleep infinity']\n"
    )
    run_spec.files = [compose]
    mgr = make_manager({"app": False})  # keepalive off: the service's own command runs
    mgr.start("app")
    assert (run_spec.run_dir / "started").exists()
    state = mgr.container_state("app", refresh=True)
    assert state is not None and state.running
