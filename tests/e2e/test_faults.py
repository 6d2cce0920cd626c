"""Regression tests for the bugs the fault-injection suite (``make chaos``) found: a real engine.

Each test pins one fix: the chaos scripts in ``chaos/`` are the long proofs, these keep the fixes
in place. See docs/reliability.md for the story of each. The fixes that need no engine are pinned
in tests/unit/test_fault_regressions.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from llem_cli.errors import EnvironmentProblem
from llem_cli.runner import faults as faults_mod
from llem_cli.runner.records import record_from_outcome
from llem_cli.runs.state import replay
from llem_testkit.e2e import E2ECampaign, of_type, ok_finishes, plan_keys
from llem_testkit.engine import skip_unless_possible
from llem_testkit.outcomes import experiment, outcome

pytestmark = pytest.mark.docker


# ---- records: the daemon gone -------------------------------------------------------------------


def test_exec_failing_because_the_daemon_is_gone_is_not_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `compose exec` against a stopped daemon exits 1: every remaining experiment was recorded
    # "failed" in milliseconds and never ran again; now the environment check that runs before
    # any failed experiment is recorded stops the run (exit 3), whatever the exec printed
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
            faults_mod.check_environment(outcome(code=1, stderr=gone), tmp_path)
        assert gone_host in str(info.value)  # the reason is `docker version`'s own last line
        # a graceful stop kills the container first (exit 137, no daemon words at all)
        with pytest.raises(EnvironmentProblem):
            faults_mod.check_environment(outcome(code=137), tmp_path)
    # the same message with the real engine answering is the experiment's own output
    faults_mod.check_environment(outcome(code=1, stderr=gone), tmp_path)
    record = record_from_outcome(
        experiment(),
        outcome(code=1, stderr=gone),
        attempts=1,
        restarts_before=0,
        experiment_dir=tmp_path,
    )
    assert record.status == "failed"
    assert record.error == f"exit 1: {gone.strip().splitlines()[-1]}"


# ---- real runs ----------------------------------------------------------------------------------


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
