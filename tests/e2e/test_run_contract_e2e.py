"""End-to-end tests of the user contract (docs/design.md §3) for ``llem run`` and ``llem results``.

Exit codes 2, 3, 4 and 75 of ``llem run``, ``--resume`` refusals, the lock across results
directories, ``llem results`` on a real run and a secret in a ``--dry-run``. Every test runs real
llem processes against the real engine (busybox test image, stand-in ``nvidia-smi``), nothing
mocked, and checks the exit code, a one-line error without a traceback and that no container is
left. Helpers come from ``llem_testkit.e2e`` (see tests/e2e/test_run_e2e.py for the same style).
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from llem_testkit.e2e import (
    E2ECampaign,
    assert_no_containers,
    campaign_for,
    containers,
    events,
    kill9,
    of_type,
    ok_finishes,
    plan,
    plan_keys,
    records,
    status_json,
    wait_exit,
    wait_for,
)

pytestmark = pytest.mark.docker

#: an experiment that waits until the test touches ``go`` in the run directory
WAIT_GO = "while [ ! -f /llem/run/go ]; do sleep 0.1; done"

#: the fields of one record, docs/design.md §3.4
RECORD_FIELDS = (
    "key",
    "config_id",
    "cycle",
    "backend",
    "service",
    "params",
    "status",
    "attempts",
    "exit_code",
    "started_at",
    "ended_at",
    "duration_s",
    "energy_j",
    "avg_power_w",
    "idle_power_w",
    "net_energy_j",
    "max_temp_c",
    "restarts_before",
    "metrics",
    "error",
)

#: a problem line of ``llem validate`` / an invalid campaign: ``FILE:LINE:COL: field: message``
PROBLEM = re.compile(r"^.+:\d+:\d+: \S.*$")


@pytest.fixture
def other(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[E2ECampaign]:
    """A second campaign beside ``campaign``: same base, hence the same lock directory."""
    made = campaign_for(tmp_path, request.node.name, "-b")
    try:
        yield made
    finally:
        made.cleanup()


# ---- helpers ------------------------------------------------------------------------------------


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """The single ``llem: error: ...`` line on stderr (no traceback, nothing else)."""
    text = done.stdout + done.stderr
    assert "Traceback" not in text, text
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one error line, got {lines!r} (stdout {done.stdout!r})"
    assert lines[0].startswith("llem: error: "), lines
    return lines[0]


def project_containers(c: E2ECampaign) -> set[str]:
    return set(containers(f"com.docker.compose.project={c.project}"))


def snapshot(run: Path) -> dict[str, bytes]:
    """The bytes of the files a refused resume must leave as they are."""
    return {
        name: (run / name).read_bytes()
        for name in ("journal.jsonl", "campaign.yaml", "plan.json")
        if (run / name).exists()
    }


def start_and_kill_mid_run(c: E2ECampaign) -> Path:
    """Start the campaign, ``kill -9`` llem once an experiment is running; return the run."""
    proc = c.start("run", c.file, "--no-progress")
    run = c.wait_run_dir()
    wait_for(lambda: of_type(run, "experiment_finished"), 60, "a first record")
    wait_for(lambda: (run / "sleeping").exists(), 60, "the sleeping experiment")
    kill9(proc)
    return run


#: the first attempt of the experiment with ``step`` 2 sleeps (and lives on after a kill -9);
#: a resume finds the marker and runs it at once
SLEEP_AT_2 = (
    "if [ {step} = 2 ] && [ ! -f /llem/run/sleeping ]; then "
    "touch /llem/run/sleeping; sleep $((29 + 1)); fi"
)


# ---- 1. exit 2: an invalid campaign, a bad --resume ---------------------------------------------


def test_invalid_campaign_exits_2_and_creates_nothing(campaign: E2ECampaign) -> None:
    c = campaign
    c.write({"app": {"command": ["true"]}}, grid={"step": [1]}, execution={"cylces": 2})
    done = c.llem("run", c.file, "--no-progress")
    assert done.returncode == 2, done.stdout + done.stderr
    text = done.stdout + done.stderr
    assert "Traceback" not in text, text
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("llem: error: invalid campaign"), lines
    problems = lines[:-1]
    assert len(problems) == 1 and PROBLEM.match(problems[0]), problems
    assert problems[0].startswith(str(c.file)) and "cylces" in problems[0], problems
    assert not (c.root / "results").exists()  # no run directory
    assert not (Path(c.env["LLEM_LOCK_DIR"]) / f"{c.project}.lock").exists()
    assert_no_containers(c)


@pytest.mark.parametrize("target", ["empty-dir", "missing", "campaign-file"])
def test_resume_of_something_not_a_run_directory_exits_2(
    campaign: E2ECampaign, target: str
) -> None:
    c = campaign
    c.write({"app": {"command": ["true"]}}, grid={"step": [1]})
    where = {
        "empty-dir": c.root / "not-a-run",
        "missing": c.root / "no-such-dir",
        "campaign-file": c.file,
    }[target]
    if target == "empty-dir":
        where.mkdir()
    done = c.llem("run", c.file, "--resume", where, "--no-progress")
    assert done.returncode == 2, done.stdout + done.stderr
    line = one_line_error(done)
    assert "not a run directory" in line or "no such" in line, line
    assert not (c.root / "results").exists()
    if target == "empty-dir":
        assert list(where.iterdir()) == []  # nothing written into it
    assert_no_containers(c)


def test_resume_after_the_campaign_changed_a_planned_config_exits_2(
    campaign: E2ECampaign,
) -> None:
    c = campaign
    backends = {"app": {"command": ["sh", "-c", SLEEP_AT_2]}}
    c.write(backends, grid={"step": [1, 2, 3]})
    run = start_and_kill_mid_run(c)
    left = project_containers(c)
    assert left  # kill -9 leaves the containers (and the sleeping experiment) up
    before = snapshot(run)

    c.write(backends, grid={"step": [1, 2, 4]})  # the planned step=3 configuration is gone
    for args in (("--resume",), ("--resume", run)):
        done = c.llem("run", c.file, *args, "--no-progress")
        assert done.returncode == 2, done.stdout + done.stderr
        line = one_line_error(done)
        assert "campaign file changed" in line and str(run) in line, line
        assert c.run_dirs() == [run]  # no new run either
        assert snapshot(run) == before  # journal, campaign.yaml and plan.json untouched
        assert project_containers(c) <= left  # the refused resume started nothing

    done = c.llem("down", c.file)
    assert done.returncode == 0, done.stdout + done.stderr
    assert_no_containers(c, run.name)


@pytest.mark.parametrize("how", ["finished", "killed"])
def test_resume_of_another_campaigns_run_dir_exits_2(
    campaign: E2ECampaign, other: E2ECampaign, how: str
) -> None:
    """B is A under another name: same keys, so only the campaign name tells the runs apart."""
    a, b = campaign, other
    command = SLEEP_AT_2 if how == "killed" else "echo {step}"
    for c in (a, b):
        c.write({"app": {"command": ["sh", "-c", command]}}, grid={"step": [1, 2, 3]})
    assert [i["key"] for i in plan(a)] == [i["key"] for i in plan(b)]
    if how == "finished":
        done = a.llem("run", a.file, "--no-progress")
        assert done.returncode == 0, done.stdout + done.stderr
        run = a.run_dir()
    else:
        run = start_and_kill_mid_run(a)
    left = project_containers(a)
    before = snapshot(run)
    assert set(before) == {"journal.jsonl", "campaign.yaml", "plan.json"}

    done = b.llem("run", b.file, "--resume", run, "--no-progress")
    assert done.returncode == 2, done.stdout + done.stderr
    line = one_line_error(done)
    assert a.name in line, line  # names the campaign the run belongs to
    assert snapshot(run) == before  # A's journal and campaign.yaml byte for byte
    assert not b.results.exists()  # B started no run of its own
    assert project_containers(a) <= left and not project_containers(b)

    if how == "killed":
        done = a.llem("run", a.file, "--resume", "--no-progress")  # A's own resume still works
        assert done.returncode == 0, done.stdout + done.stderr
        assert set(ok_finishes(run)) == set(plan_keys(run))
        assert max(ok_finishes(run).values()) == 1
    assert_no_containers(a, run.name)
    assert_no_containers(b)


# ---- 2. exit 3: the daemon is unreachable -------------------------------------------------------


@pytest.mark.parametrize("resume", [False, True], ids=["new-run", "resume"])
def test_unreachable_daemon_exits_3_before_creating_anything(
    campaign: E2ECampaign, tmp_path: Path, resume: bool
) -> None:
    c = campaign
    c.write({"app": {"command": ["true"]}}, grid={"step": [1]})
    nobody = {"DOCKER_HOST": f"unix://{tmp_path}/nobody.sock"}
    args = ("--resume",) if resume else ()
    began = time.monotonic()
    done = c.llem("run", c.file, *args, "--no-progress", env=nobody)
    assert done.returncode == 3, done.stdout + done.stderr
    assert time.monotonic() - began < 60  # fails fast, no long retry
    line = one_line_error(done)
    assert "daemon" in line.lower(), line
    assert not (c.root / "results").exists(), list((c.root / "results").rglob("*"))
    assert not (Path(c.env["LLEM_LOCK_DIR"]) / f"{c.project}.lock").exists()
    assert_no_containers(c)


# ---- 3. exit 4: a lost GPU ----------------------------------------------------------------------

#: the first experiment to run makes every later probe fail with the stand-in's exit code
LOSE_GPU = (
    "if [ ! -f /llem/run/lost-once ]; then touch /llem/run/lost-once; "
    "echo %d > /llem/run/fake-smi.rc; fi"
)


@pytest.mark.parametrize(
    ("smi_rc", "restarts", "reason"),
    [(9, 1, "driver not loaded"), (15, 0, "GPU lost")],
    ids=["driver-not-loaded", "gpu-lost"],
)
def test_lost_gpu_aborts_with_4_then_resume_runs_the_rest(
    campaign: E2ECampaign, smi_rc: int, restarts: int, reason: str
) -> None:
    c = campaign
    c.write({"app": {"command": ["sh", "-c", LOSE_GPU % smi_rc]}}, grid={"step": [1, 2, 3]})
    keys = [item["key"] for item in plan(c)]
    done = c.llem("run", c.file, "--no-progress")
    assert done.returncode == 4, done.stdout + done.stderr
    line = one_line_error(done)
    assert reason in line, line
    run = c.run_dir()
    assert (run / "fake-smi.rc").read_text().strip() == str(smi_rc)
    aborted = of_type(run, "run_aborted")
    assert len(aborted) == 1 and reason in aborted[0]["reason"], aborted
    assert events(run)[-1]["type"] == "run_aborted"
    assert len(of_type(run, "restart")) == restarts  # 9: one restart first; 15: none
    started = [e["key"] for e in of_type(run, "experiment_started")]
    assert started == keys[:1]  # nothing ran once the GPU was gone
    assert set(records(run)) == set(keys[:1])
    info = status_json(c, run)
    assert info["state"] == "aborted" and info["pending"] == 2, info
    assert_no_containers(c, run.name)

    (run / "fake-smi.rc").unlink()  # the GPU is back
    done = c.llem("run", c.file, "--resume", "--no-progress")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert c.run_dirs() == [run]
    assert ok_finishes(run) == dict.fromkeys(keys, 1)  # each exactly once
    started = [e["key"] for e in of_type(run, "experiment_started")]
    assert sorted(started) == sorted(keys)
    assert status_json(c, run)["state"] == "finished"
    assert_no_containers(c, run.name)


# ---- 4. exit 75: the lock holds whatever the results directories --------------------------------


def wait_run_under(results: Path, name: str, timeout: float = 30) -> Path:
    """The run directory under ``results/name`` once it has journaled ``run_started``."""

    def found() -> Path | None:
        parent = results / name
        if not parent.is_dir():
            return None
        for run in sorted(parent.iterdir()):
            if of_type(run, "run_started"):
                return run
        return None

    return wait_for(found, timeout, f"a run under {results / name}")


def test_same_campaign_other_results_dir_exits_75(campaign: E2ECampaign) -> None:
    c = campaign
    c.write({"app": {"command": ["sh", "-c", WAIT_GO]}}, grid={"step": [1]})
    first_dir, second_dir = c.root / "r1", c.root / "r2"
    first = c.start("run", c.file, "--results-dir", first_dir, "--no-progress")
    run = wait_run_under(first_dir, c.name)
    try:
        wait_for(lambda: of_type(run, "experiment_started"), 60, "the first run's experiment")
        for args in ((), ("--resume",)):
            done = c.llem("run", c.file, *args, "--results-dir", second_dir, "--no-progress")
            assert done.returncode == 75, done.stdout + done.stderr
            line = one_line_error(done)
            assert f"pid {first.pid}" in line and str(run) in line, line
            assert not (second_dir / c.name).exists()  # the refused run left no directory
        assert len(of_type(run, "run_started")) == 1
    finally:
        (run / "go").touch()
    assert wait_exit(first, 60) == 0
    assert {r["status"] for r in records(run).values()} == {"ok"}
    assert_no_containers(c, run.name)


def test_two_campaigns_sharing_a_project_exit_75(campaign: E2ECampaign, other: E2ECampaign) -> None:
    a, b = campaign, other
    a.write({"app": {"command": ["sh", "-c", WAIT_GO]}}, grid={"step": [1]})
    b.write({"app": {"command": ["true"]}}, grid={"step": [1, 2]}, project=a.project)
    first = a.start("run", a.file, "--no-progress")
    run = a.wait_run_dir()
    try:
        wait_for(lambda: of_type(run, "experiment_started"), 60, "the first run's experiment")
        done = b.llem("run", b.file, "--no-progress")
        assert done.returncode == 75, done.stdout + done.stderr
        line = one_line_error(done)
        assert f"pid {first.pid}" in line and a.project in line, line
        assert not b.results.exists()
        assert len(project_containers(a)) == 1  # B started nothing in A's project
    finally:
        (run / "go").touch()
    assert wait_exit(first, 60) == 0
    assert {r["status"] for r in records(run).values()} == {"ok"}
    assert_no_containers(a, run.name)
    assert_no_containers(b)


# ---- 5. llem results on a real run --------------------------------------------------------------


def test_results_json_and_csv_of_a_real_run(campaign: E2ECampaign) -> None:
    c = campaign
    c.write(
        {
            "app": {
                "command": [
                    "sh",
                    "-c",
                    'echo "{\\"tokens\\": {n}}" > {experiment_dir}/result.json; '
                    "[ {n} != 3 ] || exit 3",
                ]
            }
        },
        grid={"n": [1, 2, 3]},
        execution={"cycles": 2},
    )
    done = c.llem("run", c.file, "--no-progress")
    assert done.returncode == 1, done.stdout + done.stderr  # n=3 fails
    run = c.run_dir()
    keys = plan_keys(run)
    journal = records(run)

    as_json = c.llem("results", run, "--format", "json")
    assert as_json.returncode == 0, as_json.stdout + as_json.stderr
    assert "Traceback" not in as_json.stderr
    listed = json.loads(as_json.stdout)
    assert isinstance(listed, list) and len(listed) == len(keys) == 6
    by_key = {rec["key"]: rec for rec in listed}
    assert set(by_key) == set(keys)  # one record per key
    for rec in listed:
        missing = [f for f in RECORD_FIELDS if f not in rec]
        assert not missing, (missing, rec)
        assert rec == journal[rec["key"]]  # the latest record, as journaled
        n = rec["params"]["n"]
        assert rec["status"] == ("failed" if n == 3 else "ok"), rec
        assert rec["exit_code"] == (3 if n == 3 else 0)
        assert rec["metrics"] == {"tokens": n}
        assert rec["backend"] == "app" and rec["service"] == "app"
        assert rec["key"] == f"{rec['config_id']}-c{rec['cycle']}"
    assert sorted(r["cycle"] for r in listed) == [1, 1, 1, 2, 2, 2]

    as_csv = c.llem("results", run, "--format", "csv")
    assert as_csv.returncode == 0, as_csv.stdout + as_csv.stderr
    printed = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    with (run / "results.csv").open(newline="") as f:
        on_disk = list(csv.DictReader(f))
    assert sorted(printed, key=lambda r: r["key"]) == sorted(on_disk, key=lambda r: r["key"])
    assert sorted(r["key"] for r in printed) == sorted(keys)
    for row in printed:
        assert json.loads(row["metrics"]) == by_key[row["key"]]["metrics"]
        assert row["status"] == by_key[row["key"]]["status"]
    assert_no_containers(c, run.name)


# ---- 6. --dry-run never shows a secret ----------------------------------------------------------

CAMPAIGN_SECRET = "hf_secretvalue123"
ENV_SECRET = "hf_fromLlemsOwnEnv456"


def test_dry_run_shows_no_secret_from_the_campaign_or_the_environment(
    campaign: E2ECampaign,
) -> None:
    c = campaign
    c.write(
        {
            "app": {
                "command": ["sh", "-c", "echo {x}"],
                "env": {"HF_TOKEN": CAMPAIGN_SECRET, "HF_HUB_OFFLINE": "1"},
            }
        },
        services={"app": {"environment": ["HF_TOKEN"]}},
        grid={"x": [1, 2]},
    )
    done = c.llem("run", c.file, "--dry-run", env={"HF_TOKEN": ENV_SECRET})
    assert done.returncode == 0, done.stdout + done.stderr
    text = done.stdout + done.stderr
    assert "Traceback" not in text
    assert CAMPAIGN_SECRET not in text, text
    assert ENV_SECRET not in text, text
    assert "secretvalue" not in text and "fromLlemsOwnEnv" not in text  # not even in part
    assert "HF_TOKEN" in text  # the variable is passed, only its value hidden
    assert sum("LLEM_EXPERIMENT_KEY" in line for line in done.stdout.splitlines()) == 2
    assert not (c.root / "results").exists()  # no run directory
    assert not (Path(c.env["LLEM_LOCK_DIR"]) / f"{c.project}.lock").exists()
    assert_no_containers(c)


def _strict(constant: str) -> None:
    raise ValueError(f"not JSON: {constant}")


def test_run_json_is_strict_json_even_when_result_json_holds_nan(campaign: E2ECampaign) -> None:
    c = campaign
    # Python's json module reads NaN / Infinity; strict parsers (jq, JavaScript) do not
    write_nan = 'echo "{\\"tokens\\": NaN, \\"lat\\": Infinity}" > {experiment_dir}/result.json'
    c.write({"app": {"command": ["sh", "-c", write_nan]}}, grid={"n": [1]})
    done = c.llem("run", c.file, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    events = [json.loads(line, parse_constant=_strict) for line in lines]
    (finished,) = [e for e in events if e["type"] == "experiment_finished"]
    assert finished["record"]["metrics"] == {"tokens": None, "lat": None}
    assert_no_containers(c)
