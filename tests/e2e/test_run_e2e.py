"""End-to-end tests of ``llem run``: real llem processes, a real engine, real containers.

Each test runs a small campaign of the busybox test image (``network_mode: none``, a stand-in
``nvidia-smi``) in its own folder, compose project and lock directory, drives llem from outside
(signals, ``kill -9``, ``docker kill``, a second llem) and ends by asserting that no container of
its project or its runs is left. A finalizer removes leftovers even when an assertion failed.
"""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llem_testkit.e2e import (
    STAMPED,
    E2ECampaign,
    assert_no_containers,
    containers,
    events,
    iter_files,
    key_where,
    kill9,
    new_campaign,
    no_traceback,
    of_type,
    ok_finishes,
    plan,
    plan_keys,
    records,
    remove_containers,
    service_container,
    smi_line,
    status_json,
    wait_exit,
    wait_for,
)

pytestmark = pytest.mark.docker

#: the first attempt of the experiment whose ``step`` is ``n`` sleeps until killed or
#: interrupted; a later attempt (same experiment directory) finds the marker and passes at once
SLEEP_ONCE = (
    'if [ {step} = "%s" ] && [ ! -f {experiment_dir}/sleeping ]; then '
    "touch {experiment_dir}/sleeping; sleep $((29 + 1)); fi"
)


# ---- 1. a clean run, and a run with a failure ---------------------------------------------------


def test_clean_run(campaign: E2ECampaign) -> None:
    c = campaign
    c.write(
        {
            "app": {
                "service": "app",
                "command": [
                    "sh",
                    "-c",
                    'echo "out {batch_size}"; echo "err {batch_size}" >&2; '
                    'echo "{\\"tokens\\": {batch_size}, \\"cycle\\": $LLEM_CYCLE, '
                    '\\"params\\": $LLEM_PARAMS}" > {experiment_dir}/result.json',
                ],
            }
        },
        grid={"batch_size": [1, 4]},
        execution={"cycles": 2},
    )
    done = c.llem("run", c.file, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    no_traceback(done.stdout, done.stderr)

    # --json: one JSON object per line, the journal's story
    lines = done.stdout.splitlines()
    assert lines
    printed = [json.loads(line) for line in lines]
    assert all(isinstance(e, dict) and "type" in e for e in printed)
    assert printed[0]["type"] == "run_started" and printed[-1]["type"] == "run_finished"

    run = c.run_dir()
    assert len(c.run_dirs()) == 1
    for name in ("campaign.yaml", "plan.json", "journal.jsonl", "compose.override.yaml"):
        assert (run / name).is_file(), name
    journal = events(run)
    kinds = [e["type"] for e in journal]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert kinds.count("experiment_started") == 4
    assert kinds.count("experiment_finished") == 4
    assert kinds.count("probe") >= 1 and "restart" not in kinds
    assert [e["type"] for e in printed if e["type"] in kinds] == kinds  # same events, same order

    # plan.json is `llem plan --json`
    expected = plan(c)
    assert plan_keys(run) == [item["key"] for item in expected]

    recs = records(run)
    assert set(recs) == set(plan_keys(run))
    by_key = {item["key"]: item for item in expected}
    for key, rec in recs.items():
        bs = by_key[key]["params"]["batch_size"]
        assert rec["status"] == "ok", rec
        assert rec["attempts"] == 1 and rec["exit_code"] == 0 and rec["restarts_before"] == 0
        assert rec["error"] is None
        assert rec["metrics"] == {
            "tokens": bs,
            "cycle": by_key[key]["cycle"],
            "params": {"batch_size": bs},
        }
        assert rec["duration_s"] > 0 and rec["started_at"] and rec["ended_at"]
        for quantity in ("energy_j", "avg_power_w", "net_energy_j"):
            assert rec[quantity] != 0  # unmeasured is null, never 0
        exp = run / "experiments" / key
        assert (exp / "stdout.log").read_text() == f"out {bs}\n"
        assert (exp / "stderr.log").read_text() == f"err {bs}\n"
        assert (exp / "result.json").is_file()

    with (run / "results.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["key"] for r in rows) == sorted(recs)
    assert {r["status"] for r in rows} == {"ok"}
    assert all(json.loads(r["metrics"])["tokens"] in (1, 4) for r in rows)

    info = status_json(c, run)
    assert info["state"] == "finished"
    assert (info["total"], info["done"], info["pending"]) == (4, 4, 0)
    assert info["counts"] == {"ok": 4}
    assert_no_containers(c, run.name)


def test_failed_experiment_exits_1_with_plain_timestamped_lines(campaign: E2ECampaign) -> None:
    c = campaign
    c.write(
        {"app": {"command": ["sh", "-c", "echo code {code}; exit {code}"]}},
        grid={"code": [0, 3]},
    )
    done = c.llem("run", c.file, "--no-progress")
    assert done.returncode == 1, done.stdout + done.stderr
    no_traceback(done.stdout, done.stderr)
    lines = done.stdout.splitlines()
    assert lines and all(STAMPED.match(line) for line in lines), lines
    assert any("-> failed" in line for line in lines)
    run = c.run_dir()
    recs = records(run)
    failed = recs[key_where(c, code=3)]
    assert failed["status"] == "failed" and failed["exit_code"] == 3
    assert failed["attempts"] == 1 and failed["error"]
    assert recs[key_where(c, code=0)]["status"] == "ok"
    assert of_type(run, "run_finished")[0]["counts"] == {"ok": 1, "failed": 1}
    assert not of_type(run, "restart")  # a plain failure keeps the container
    assert_no_containers(c, run.name)

    # -q (cron): only what needs attention, the failure and how the run ended
    quiet = c.llem("-q", "run", c.file, "--no-progress")
    assert quiet.returncode == 1, quiet.stdout + quiet.stderr
    lines = quiet.stdout.splitlines()
    assert len(lines) == 2 and all(STAMPED.match(line) for line in lines), lines
    assert "-> failed" in lines[0] and " finished: 1 failed, 1 ok" in lines[1], lines
    assert_no_containers(c)


# ---- 2. a container killed mid-experiment -------------------------------------------------------


def test_container_killed_mid_experiment_restarts_and_retries(campaign: E2ECampaign) -> None:
    c = campaign
    c.write(
        {
            "app": {
                "command": ["sh", "-c", "echo $$ >> {experiment_dir}/attempts; " + SLEEP_ONCE % 2]
            }
        },
        grid={"step": [1, 2, 3]},
        execution={"retries": 1},
    )
    k1, k2, k3 = (key_where(c, step=s) for s in (1, 2, 3))
    proc = c.start("run", c.file, "--no-progress")
    run = c.wait_run_dir()
    wait_for(lambda: (run / "experiments" / k2 / "sleeping").exists(), 60, "experiment 2 to sleep")
    cid = service_container(c, "app")
    assert cid
    subprocess.run(["docker", "kill", cid], capture_output=True, timeout=60, check=True)
    code = wait_exit(proc, 120)
    out, err = c.output()
    assert code == 0, out + err
    no_traceback(out, err)

    recs = records(run)
    assert {r["status"] for r in recs.values()} == {"ok"}
    assert recs[k2]["attempts"] == 2
    assert len((run / "experiments" / k2 / "attempts").read_text().split()) == 2
    # restarts_before: the restart happened before the attempt that is recorded
    assert (recs[k1]["restarts_before"], recs[k2]["restarts_before"]) == (0, 1)
    assert recs[k3]["restarts_before"] == 1
    restarts = of_type(run, "restart")
    assert len(restarts) == 1 and "container_died" in restarts[0]["reason"], restarts
    started = [e["attempt"] for e in of_type(run, "experiment_started") if e["key"] == k2]
    assert started == [1, 2]
    assert of_type(run, "run_finished")[0]["restarts"] == 1
    assert_no_containers(c, run.name)


# ---- 3. a stand-in GPU whose memory climbs ------------------------------------------------------


def test_gpu_memory_over_threshold_restarts_before_next_experiment(campaign: E2ECampaign) -> None:
    """The hog lives in the container's tmpfs: the restart frees it, the campaign completes."""
    c = campaign
    hog = smi_line(80000).strip()
    c.write(
        {
            "app": {
                "command": [
                    "sh",
                    "-c",
                    f'if [ {{step}} = 1 ]; then echo "{hog}" > /tmp/fake-smi.csv; fi',
                ]
            }
        },
        services={
            "app": {"tmpfs": ["/tmp"], "environment": {"LLEM_FAKE_SMI": "/tmp/fake-smi.csv"}}
        },
        grid={"step": [1, 2, 3]},
        health={"max_memory_used_pct": 90, "max_restarts": 2},
    )
    k1, k2, k3 = (key_where(c, step=s) for s in (1, 2, 3))
    done = c.llem("run", c.file, "--no-progress")
    assert done.returncode == 0, done.stdout + done.stderr
    run = c.run_dir()
    journal = events(run)
    finished_1 = next(i for i, e in enumerate(journal) if e.get("key") == k1 and "record" in e)
    started_2 = next(
        i for i, e in enumerate(journal) if e["type"] == "experiment_started" and e["key"] == k2
    )
    between = journal[finished_1 + 1 : started_2]
    kinds = [e["type"] for e in between]
    assert kinds == ["probe", "restart", "probe"], between
    assert between[0]["max_memory_used_pct"] > 90
    assert "max_memory_used_pct" in between[1]["reason"], between[1]
    assert between[2]["status"] == "ok" and between[2]["max_memory_used_pct"] < 90
    recs = records(run)
    assert {r["status"] for r in recs.values()} == {"ok"}
    assert [recs[k]["restarts_before"] for k in (k1, k2, k3)] == [0, 1, 1]
    assert len(of_type(run, "restart")) == 1
    assert "GPU memory" in done.stdout
    assert_no_containers(c, run.name)


def test_gpu_memory_staying_high_spends_restarts_and_aborts(campaign: E2ECampaign) -> None:
    """The experiment writes the stand-in's CSV into the run directory: every probe sees it."""
    c = campaign
    c.write(
        {
            "app": {
                "command": [
                    "sh",
                    "-c",
                    f'if [ {{step}} = 1 ]; then printf "{smi_line(78000).strip()}\\n" '
                    "> /llem/run/fake-smi.csv; fi",
                ]
            }
        },
        grid={"step": [1, 2, 3]},
        health={"max_memory_used_pct": 90, "max_restarts": 2},
    )
    k1, k2, k3 = (key_where(c, step=s) for s in (1, 2, 3))
    done = c.llem("run", c.file, "--no-progress")
    assert done.returncode == 4, done.stdout + done.stderr
    no_traceback(done.stdout, done.stderr)
    run = c.run_dir()
    assert (run / "fake-smi.csv").is_file()
    restarts = of_type(run, "restart")
    assert len(restarts) == 2
    assert all("GPU memory" in r["reason"] for r in restarts), restarts
    aborted = of_type(run, "run_aborted")
    assert len(aborted) == 1 and "restart budget spent" in aborted[0]["reason"], aborted
    assert events(run)[-1]["type"] == "run_aborted"
    started = [e["key"] for e in of_type(run, "experiment_started")]
    assert started == [k1]  # nothing ran on the hogged GPU
    assert set(records(run)) == {k1}
    info = status_json(c, run)
    assert info["state"] == "aborted" and info["pending"] == 2
    assert {k2, k3}.isdisjoint(records(run))
    assert_no_containers(c, run.name)


# ---- 4. kill -9 at random points, then --resume, repeated ---------------------------------------


def test_kill9_and_resume_repeatedly_records_each_key_ok_once(campaign: E2ECampaign) -> None:
    c = campaign
    c.write(
        {"app": {"command": ["sh", "-c", "echo {key} >> /llem/run/executions.log; sleep 0.3"]}},
        grid={"i": list(range(1, 8))},
        execution={"cycles": 2},
    )
    keys = [item["key"] for item in plan(c)]
    assert len(keys) == 14
    rng = random.Random(int(os.environ.get("LLEM_E2E_SEED", "20261128")))
    kills = 0
    finished_early = False
    for round_no in range(6):
        proc = c.start("run", c.file, "--resume", "--no-progress", tag=f"round{round_no}")
        delay = rng.uniform(0.4, 3.5)
        try:
            code = proc.wait(timeout=delay)
        except Exception:  # noqa: BLE001 - still running: the point of the test
            kill9(proc)
            kills += 1
            continue
        out, err = c.output(f"round{round_no}")
        assert code == 0, out + err  # it finished before the kill came
        finished_early = True
        break
    if not finished_early:
        done = c.llem("run", c.file, "--resume", "--no-progress", timeout=180)
        assert done.returncode == 0, done.stdout + done.stderr
        no_traceback(done.stdout, done.stderr)
    assert kills >= 1

    started = [run for run in c.run_dirs() if of_type(run, "run_started")]
    assert len(started) == 1, started  # every resume continued the one run
    run = started[0]
    for other in c.run_dirs():
        assert other == run or not of_type(other, "run_started")
    journal = events(run)
    assert journal[-1]["type"] == "run_finished"
    assert len(of_type(run, "run_started")) >= 2
    assert ok_finishes(run) == dict.fromkeys(keys, 1)  # each key ok exactly once, none missing
    recs = records(run)
    assert set(recs) == set(keys) and {r["status"] for r in recs.values()} == {"ok"}
    executions = (run / "executions.log").read_text().split()
    assert set(executions) == set(keys)
    with (run / "results.csv").open(newline="") as f:
        assert sorted(r["key"] for r in csv.DictReader(f)) == sorted(keys)
    assert status_json(c, run)["state"] == "finished"
    assert_no_containers(c, run.name)


def test_resume_replaces_the_containers_of_the_killed_run(campaign: E2ECampaign) -> None:
    """The killed run's experiment still sleeps in its container: the resume must not share it."""
    c = campaign
    c.write(
        {"app": {"command": ["sh", "-c", SLEEP_ONCE % 1 + "; [ {step} = 1 ] || ps"]}},
        grid={"step": [1, 2]},
    )
    k1, k2 = key_where(c, step=1), key_where(c, step=2)
    proc = c.start("run", c.file, "--no-progress")
    run = c.wait_run_dir()
    wait_for(lambda: (run / "experiments" / k1 / "sleeping").exists(), 60, "experiment 1 to sleep")
    kill9(proc)
    assert containers(
        f"llem.run={run.name}", f"com.docker.compose.project={c.project}"
    )  # left behind, its experiment still running
    done = c.llem("run", c.file, "--resume", "--no-progress")
    assert done.returncode == 0, done.stdout + done.stderr
    assert c.run_dirs() == [run]
    assert ok_finishes(run) == {k1: 1, k2: 1}
    listing = (run / "experiments" / k2 / "stdout.log").read_text()
    assert "sleep infinity" in listing, listing
    assert "sleep 30" not in listing, listing  # the killed run's experiment is gone
    assert_no_containers(c, run.name)


def test_resume_with_nothing_left_removes_the_killed_runs_containers(
    campaign: E2ECampaign,
) -> None:
    """llem killed after journaling its last record, before teardown: the resume cleans up."""
    from llem_cli.runs.journal import Journal
    from llem_cli.runs.record import Record

    c = campaign
    c.write({"app": {"command": ["sh", "-c", SLEEP_ONCE % 1]}}, grid={"step": [1]})
    (item,) = plan(c)
    proc = c.start("run", c.file, "--no-progress")
    run = c.wait_run_dir()
    key = item["key"]
    wait_for(lambda: (run / "experiments" / key / "sleeping").exists(), 60, "the experiment")
    kill9(proc)
    assert containers(f"llem.run={run.name}", f"com.docker.compose.project={c.project}")
    # the record the killed llem had written just before it died
    record = Record(
        key=key,
        config_id=item["config_id"],
        cycle=item["cycle"],
        backend=item["backend"],
        service=item["service"],
        params=item["params"],
        status="ok",
        exit_code=0,
    )
    with Journal(run / "journal.jsonl") as journal:
        journal.append("experiment_finished", key=key, record=record)
    done = c.llem("run", c.file, "--resume", "--no-progress")
    assert done.returncode == 0, done.stdout + done.stderr
    assert events(run)[-1]["type"] == "run_finished"
    assert of_type(run, "run_started")[-1]["pending"] == 0
    assert_no_containers(c, run.name)


# ---- 5. SIGTERM and SIGINT ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("signals", "code"),
    [
        ([signal.SIGTERM], 143),
        ([signal.SIGINT], 130),
        ([signal.SIGINT, signal.SIGINT], 130),  # a second Ctrl-C during teardown
    ],
    ids=["sigterm", "sigint", "sigint-twice"],
)
def test_signal_interrupts_then_resume_finishes(
    campaign: E2ECampaign, signals: list[signal.Signals], code: int
) -> None:
    c = campaign
    backend: dict[str, Any] = {"command": ["sh", "-c", SLEEP_ONCE % 1]}
    services = None
    if len(signals) > 1:
        # a container that takes ~2 s to stop, so the second signal lands during teardown
        backend["keepalive"] = False
        slow = "trap 'sleep 2; exit 0' TERM; while :; do sleep 0.2; done"
        services = {"app": {"command": ["sh", "-c", slow]}}
    c.write({"app": backend}, services=services, grid={"step": [1, 2]})
    k1, k2 = key_where(c, step=1), key_where(c, step=2)
    proc = c.start("run", c.file, "--no-progress")
    run = c.wait_run_dir()
    wait_for(lambda: (run / "experiments" / k1 / "sleeping").exists(), 60, "experiment 1 to sleep")
    sent = time.monotonic()
    for signum in signals:
        assert proc.poll() is None  # the second one is sent while llem tears down
        proc.send_signal(signum)
        time.sleep(0.5)
    assert wait_exit(proc, 60) == code
    assert time.monotonic() - sent < 25  # torn down, not waited out
    out, err = c.output()
    no_traceback(out, err)
    interrupted = of_type(run, "interrupted")
    assert len(interrupted) == 1 and interrupted[0]["signal"] == signals[0].name
    recs = records(run)
    assert recs[k1]["status"] == "interrupted" and k2 not in recs
    info = status_json(c, run)
    assert info["state"] == "interrupted" and info["pending"] == 2
    assert_no_containers(c, run.name)

    done = c.llem("run", c.file, "--resume", "--no-progress")
    assert done.returncode == 0, done.stdout + done.stderr
    assert c.run_dirs() == [run]
    recs = records(run)
    assert recs[k1]["status"] == "ok" and recs[k2]["status"] == "ok"
    assert ok_finishes(run) == {k1: 1, k2: 1}
    assert status_json(c, run)["state"] == "finished"
    assert_no_containers(c, run.name)


# ---- 6. two concurrent runs ---------------------------------------------------------------------


def test_second_run_of_the_same_campaign_exits_75(campaign: E2ECampaign) -> None:
    c = campaign
    c.write(
        {
            "app": {
                "command": [
                    "sh",
                    "-c",
                    "if [ {step} = 1 ]; then while [ ! -f /llem/run/go ]; do sleep 0.1; done; fi",
                ]
            }
        },
        grid={"step": [1, 2]},
    )
    first = c.start("run", c.file, "--no-progress")
    run = c.wait_run_dir()
    wait_for(lambda: of_type(run, "experiment_started"), 60, "the first run's experiment")
    try:
        second = c.llem("run", c.file, "--no-progress")
        assert second.returncode == 75, second.stdout + second.stderr
        assert f"pid {first.pid}" in second.stderr and str(run) in second.stderr, second.stderr
        no_traceback(second.stdout, second.stderr)
        cron = c.llem("run", c.file, "--resume", "--no-progress")
        assert cron.returncode == 75, cron.stdout + cron.stderr
        assert f"pid {first.pid}" in cron.stderr and str(run) in cron.stderr, cron.stderr
        assert c.run_dirs() == [run]  # the refused run left no directory
        assert len(of_type(run, "run_started")) == 1  # nor a word in the holder's journal
        info = status_json(c, run)
        assert info["state"] == "running" and info["process_alive"]
    finally:
        (run / "go").touch()
    assert wait_exit(first, 60) == 0
    assert {r["status"] for r in records(run).values()} == {"ok"}
    assert_no_containers(c, run.name)


# ---- 7. a hung experiment -----------------------------------------------------------------------


def test_hung_experiment_times_out_and_its_process_is_gone(campaign: E2ECampaign) -> None:
    c = campaign
    c.write(
        {
            "app": {
                "command": [
                    "sh",
                    "-c",
                    "case {mode} in a-hang) sleep $((29 + 1)) ;; b-ps) ps ;; esac",
                ]
            }
        },
        grid={"mode": ["a-hang", "b-ps"]},
        execution={"timeout": "2s", "retries": 0},
    )
    hang, ps = key_where(c, mode="a-hang"), key_where(c, mode="b-ps")
    assert plan_order(c) == [hang, ps]
    began = time.monotonic()
    done = c.llem("run", c.file, "--no-progress")
    took = time.monotonic() - began
    assert done.returncode == 1, done.stdout + done.stderr
    assert took < 25, took  # the 30 s sleep was not waited out
    run = c.run_dir()
    recs = records(run)
    assert recs[hang]["status"] == "timeout" and recs[hang]["exit_code"] is None
    assert recs[hang]["attempts"] == 1
    assert 1.5 < recs[hang]["duration_s"] < 10
    restarts = of_type(run, "restart")
    assert len(restarts) == 1 and "timeout" in restarts[0]["reason"]
    assert recs[ps]["status"] == "ok" and recs[ps]["restarts_before"] == 1
    listing = (run / "experiments" / ps / "stdout.log").read_text()
    assert "sleep infinity" in listing, listing  # ps did list the container's processes
    assert "sleep 30" not in listing, listing
    assert_no_containers(c, run.name)


def plan_order(c: E2ECampaign) -> list[str]:
    return [item["key"] for item in plan(c)]


# ---- 8. --dry-run, and no secret in any output or file ------------------------------------------

SECRET = "hf_e2eSecretToken0123456789"


def test_dry_run_touches_nothing_and_no_secret_is_written(campaign: E2ECampaign) -> None:
    c = campaign
    c.write(
        {
            "app": {
                "command": [
                    "sh",
                    "-c",
                    '[ -n "$HF_TOKEN" ] && echo "{\\"token_seen\\": true}" '
                    "> {experiment_dir}/result.json",
                ],
                "env": {"HF_HUB_OFFLINE": "1"},
            }
        },
        services={"app": {"environment": ["HF_TOKEN"]}},
        grid={"x": [1, 2]},
    )
    with_token = {"HF_TOKEN": SECRET}
    dry = c.llem("run", c.file, "--dry-run", env=with_token)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    text = dry.stdout + dry.stderr
    assert SECRET not in text
    assert "compose.override.yaml" in text and "llem.run" in text and "/llem/run" in text
    commands = [line for line in dry.stdout.splitlines() if line.startswith("docker ")]
    verbs = [
        next((v for v in (" up ", " exec -T ", " rm ", " down ") if v in line), None)
        for line in commands
    ]
    assert verbs[0] == " up " and " down " in verbs, dry.stdout  # up first, down at the end
    assert verbs.index(" down ") > max(i for i, v in enumerate(verbs) if v == " exec -T ")
    assert sum("nvidia-smi --query-gpu=" in line for line in commands) == 2, dry.stdout
    assert sum("LLEM_EXPERIMENT_KEY" in line for line in commands) == 2, dry.stdout
    assert all(f"--project-name {c.project}" in line for line in commands if " compose " in line)
    assert not (c.root / "results").exists()  # no run directory
    assert not (Path(c.env["LLEM_LOCK_DIR"]) / f"{c.project}.lock").exists()
    assert not containers(f"com.docker.compose.project={c.project}")

    done = c.llem("-v", "run", c.file, "--no-progress", env=with_token)
    assert done.returncode == 0, done.stdout + done.stderr
    assert SECRET not in done.stdout + done.stderr
    run = c.run_dir()
    recs = records(run)
    assert all(r["metrics"] == {"token_seen": True} for r in recs.values()), recs
    leaked = [p for p in iter_files(run) if SECRET.encode() in p.read_bytes()]
    assert not leaked, leaked
    assert_no_containers(c, run.name)


def test_hung_probe_times_out_and_restarts_the_container(campaign: E2ECampaign) -> None:
    c = campaign
    # the first experiment makes the stand-in nvidia-smi hang (sleep 300 before answering)
    hang = "if [ {step} = 1 ]; then echo 300 > /llem/run/fake-smi.sleep; fi"
    c.write(
        {"app": {"command": ["sh", "-c", hang]}},
        grid={"step": [1, 2]},
        health={"probe_timeout": "1s"},
    )
    proc = c.start("run", c.file, "--no-progress")
    run = c.wait_run_dir()
    restarts = wait_for(lambda: of_type(run, "restart"), 60, "a restart after the hung probe")
    (run / "fake-smi.sleep").unlink()  # the GPU "recovers" while the container restarts
    assert wait_exit(proc, 120) == 0
    assert "timed out" in restarts[0]["reason"], restarts[0]
    recs = records(run)
    assert [recs[k]["status"] for k in plan_keys(run)] == ["ok", "ok"]
    second = recs[key_where(c, step=2)]
    assert second["restarts_before"] >= 1  # it ran after the restart, not through a hung probe
    out, err = c.output()
    no_traceback(out, err)
    assert_no_containers(c, run.name)


# ---- 9. llem down -------------------------------------------------------------------------------


def test_down_removes_what_a_killed_run_left(campaign: E2ECampaign) -> None:
    c = campaign
    c.write(
        {
            "app": {"command": ["sh", "-c", SLEEP_ONCE % 1]},
            "other": {"command": ["sh", "-c", SLEEP_ONCE % 0]},
        },
        grid={"backend": ["other", "app"], "step": [1, 2]},
        execution={"cycles": 2},  # "other" has experiments left, so its container stays up
    )
    proc = c.start("run", c.file, "--no-progress")
    run = c.wait_run_dir()
    k1 = key_where(c, backend="app", step=1)
    wait_for(lambda: (run / "experiments" / k1 / "sleeping").exists(), 60, "the app experiment")
    kill9(proc)
    left = containers(f"llem.run={run.name}", f"com.docker.compose.project={c.project}")
    assert len(left) == 2, left  # both backends' containers (interleaved keeps them up)
    info = status_json(c, run)
    assert info["state"].startswith("crashed") and not info["process_alive"]
    assert k1 in info["in_flight"]

    done = c.llem("down", c.file)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "removed 2 container(s)" in done.stdout + done.stderr
    assert_no_containers(c, run.name)
    again = c.llem("down", run)
    assert again.returncode == 0 and "removed 0 container(s)" in again.stdout + again.stderr


def test_down_refuses_while_the_run_is_active_and_spares_foreign_containers(
    campaign: E2ECampaign,
) -> None:
    c = campaign
    c.write(
        {"app": {"command": ["sh", "-c", "while [ ! -f /llem/run/go ]; do sleep 0.1; done"]}},
        grid={"step": [1]},
    )
    proc = c.start("run", c.file, "--no-progress")
    run = c.wait_run_dir()
    wait_for(lambda: of_type(run, "experiment_started"), 60, "the experiment")
    try:
        for target in (c.file, run):
            refused = c.llem("down", target)
            assert refused.returncode == 75, refused.stdout + refused.stderr
            assert "still active" in refused.stderr and f"pid {proc.pid}" in refused.stderr
            no_traceback(refused.stdout, refused.stderr)
        assert containers(f"llem.run={run.name}", f"com.docker.compose.project={c.project}")
    finally:
        (run / "go").touch()
    assert wait_exit(proc, 60) == 0  # the run was not disturbed
    assert [r["status"] for r in records(run).values()] == ["ok"]
    assert_no_containers(c, run.name)

    # a container the user made by hand in the project after the run: not llem's to remove
    hand = subprocess.run(
        ["docker", "compose", "-p", c.project, "-f", str(c.root / "compose.yml"),
         "run", "-d", "--name", f"{c.project}-by-hand", "app", "sleep", "600"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert hand.returncode == 0, hand.stderr
    try:
        done = c.llem("down", c.file)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "removed 0 container(s)" in done.stdout + done.stderr
        assert len(containers(f"com.docker.compose.project={c.project}")) == 1
    finally:
        remove_containers(f"com.docker.compose.project={c.project}")


# ---- 10. a backend whose command is not runnable ------------------------------------------------


def test_not_runnable_backend_is_skipped_the_other_runs(campaign: E2ECampaign) -> None:
    c = campaign
    c.write(
        {
            "broken": {"command": ["sh", "-c", "no-such-bench --x {x}"]},
            "fine": {"command": ["sh", "-c", "echo {x}"]},
        },
        grid={"backend": ["broken", "fine"], "x": [1, 2, 3]},
    )
    done = c.llem("run", c.file, "--no-progress")
    assert done.returncode == 1, done.stdout + done.stderr
    run = c.run_dir()
    order = plan_keys(run)
    recs = records(run)
    broken = [k for k in order if recs[k]["backend"] == "broken"]
    fine = [k for k in order if recs[k]["backend"] == "fine"]
    first, rest = recs[broken[0]], [recs[k] for k in broken[1:]]
    assert first["status"] == "not_runnable" and first["exit_code"] == 127, first
    assert [r["status"] for r in rest] == ["skipped", "skipped"]
    assert all(r["attempts"] == 0 for r in rest)
    assert [recs[k]["status"] for k in fine] == ["ok"] * 3
    started = {e["key"] for e in of_type(run, "experiment_started")}
    assert started == {broken[0], *fine}  # skipped ones never ran
    assert_no_containers(c, run.name)


# ---- 11. gpu_oom pruning ------------------------------------------------------------------------


def test_gpu_oom_prunes_larger_batches(campaign: E2ECampaign) -> None:
    c = campaign
    c.write(
        {
            "app": {
                "command": [
                    "sh",
                    "-c",
                    "if [ {model} = big ] && [ {batch_size} -ge 16 ]; then "
                    'echo "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate" >&2;'
                    " exit 1; fi",
                ]
            }
        },
        grid={"model": ["big", "small"], "batch_size": [1, 8, 16, 32, 64]},
        execution={"prune_on_oom": ["batch_size"]},
    )
    by_params = {(i["params"]["model"], i["params"]["batch_size"]): i["key"] for i in plan(c)}
    order = plan_order(c)
    assert order.index(by_params["big", 16]) < order.index(by_params["big", 32])
    done = c.llem("run", c.file, "--no-progress")
    assert done.returncode == 1, done.stdout + done.stderr
    run = c.run_dir()
    recs = records(run)
    status = {params: recs[key]["status"] for params, key in by_params.items()}
    assert status == {
        ("big", 1): "ok",
        ("big", 8): "ok",
        ("big", 16): "gpu_oom",
        ("big", 32): "pruned",
        ("big", 64): "pruned",
        **{("small", bs): "ok" for bs in (1, 8, 16, 32, 64)},
    }
    oom = recs[by_params["big", 16]]
    assert oom["exit_code"] == 1 and "out of memory" in (oom["error"] or "").lower()
    assert by_params["big", 16] in recs[by_params["big", 32]]["error"]
    started = {e["key"] for e in of_type(run, "experiment_started")}
    assert by_params["big", 32] not in started and by_params["big", 64] not in started
    assert_no_containers(c, run.name)


def test_gpu_oom_with_nothing_left_to_run_needs_no_restart(campaign: E2ECampaign) -> None:
    """gpu_oom at 16 prunes 32: nothing else runs there, so no restart and no abort (exit 1)."""
    c = campaign
    c.write(
        {
            "app": {
                "command": [
                    "sh",
                    "-c",
                    'if [ {batch_size} -ge 16 ]; then echo "CUDA out of memory" >&2; exit 1; fi',
                ]
            }
        },
        grid={"batch_size": [8, 16, 32]},
        execution={"prune_on_oom": ["batch_size"]},
        health={"max_restarts": 0},
    )
    done = c.llem("run", c.file, "--no-progress")
    try:
        assert done.returncode == 1, done.stdout + done.stderr
        run = c.run_dir()
        statuses = sorted(r["status"] for r in records(run).values())
        assert statuses == ["gpu_oom", "ok", "pruned"]
        assert not of_type(run, "restart")
    finally:
        assert_no_containers(c)


# ---- signals while a container starts -----------------------------------------------------------


def test_sigterm_while_compose_up_waits_leaves_nothing(campaign: E2ECampaign) -> None:
    """The service turns healthy only when the test says so: SIGTERM lands inside ``up --wait``."""
    c = campaign
    health = {
        "test": ["CMD", "sh", "-c", "[ -f /llem/run/healthy ]"],
        "interval": "1s",
        "timeout": "2s",
        "retries": 100,
    }
    c.write(
        {"app": {"command": ["true"]}},
        services={"app": {"healthcheck": health}},
        grid={"step": [1]},
    )
    proc = c.start("run", c.file, "--no-progress")
    run = c.wait_run_dir()
    wait_for(
        lambda: containers(f"llem.run={run.name}", f"com.docker.compose.project={c.project}"),
        60,
        "compose up to create the container",
    )
    time.sleep(0.5)
    assert proc.poll() is None and not of_type(run, "experiment_started")
    proc.send_signal(signal.SIGTERM)
    assert wait_exit(proc, 60) == 143
    out, err = c.output()
    no_traceback(out, err)
    assert of_type(run, "interrupted") and not records(run)
    assert_no_containers(c, run.name)
    (run / "healthy").touch()
    done = c.llem("run", c.file, "--resume", "--no-progress")
    assert done.returncode == 0, done.stdout + done.stderr
    assert {r["status"] for r in records(run).values()} == {"ok"}
    assert_no_containers(c, run.name)


# ---- two campaigns whose runs start in the same second (same run id) ---------------------------

WAIT_GO = "while [ ! -f /llem/run/go ]; do sleep 0.1; done"


def start_twins(
    a: E2ECampaign, b: E2ECampaign
) -> tuple[subprocess.Popen[str], Path, subprocess.Popen[str], Path]:
    """Start runs of two campaigns within one second, so both get the same run id."""
    for attempt in range(4):
        time.sleep(1.02 - time.time() % 1)  # just after a second boundary
        pa = a.start("run", a.file, "--no-progress", tag=f"twin{attempt}")
        pb = b.start("run", b.file, "--no-progress", tag=f"twin{attempt}")
        ra, rb = a.wait_run_dir(), b.wait_run_dir()
        if ra.name == rb.name:
            return pa, ra, pb, rb
        for proc, run in ((pa, ra), (pb, rb)):
            (run / "go").touch()
            wait_exit(proc, 60)
    raise AssertionError("could not start two runs in the same second")


@pytest.fixture
def twin(tmp_path: Path) -> Iterator[E2ECampaign]:
    made = new_campaign(tmp_path / "twin", "twin")
    try:
        yield made
    finally:
        made.cleanup()


def test_down_of_a_run_spares_another_campaign_with_the_same_run_id(
    campaign: E2ECampaign, twin: E2ECampaign
) -> None:
    for c in (campaign, twin):
        c.write({"app": {"command": ["sh", "-c", WAIT_GO]}}, grid={"step": [1]})
    pa, ra, pb, rb = start_twins(campaign, twin)
    for run in (ra, rb):
        wait_for(lambda run=run: of_type(run, "experiment_started"), 60, "both experiments")
    kill9(pb)
    done = twin.llem("down", rb)
    assert done.returncode == 0, done.stdout + done.stderr
    assert_no_containers(twin)
    assert service_container(campaign, "app"), "llem down of one run removed another's container"
    (ra / "go").touch()
    assert wait_exit(pa, 120) == 0
    assert {r["status"] for r in records(ra).values()} == {"ok"}
    assert_no_containers(campaign)


def test_teardown_of_a_run_spares_another_campaign_with_the_same_run_id(
    campaign: E2ECampaign, twin: E2ECampaign
) -> None:
    campaign.write({"app": {"command": ["sh", "-c", WAIT_GO]}}, grid={"step": [1]})
    twin.write({"app": {"command": ["true"]}}, grid={"step": [1]})
    pa, ra, pb, rb = start_twins(campaign, twin)
    try:
        assert wait_exit(pb, 60) == 0  # the twin finished and tore down
        time.sleep(0.5)
        assert service_container(campaign, "app"), "another run's teardown removed the container"
    finally:
        (ra / "go").touch()
        code = wait_exit(pa, 60)
    assert code == 0
    assert {r["status"] for r in records(ra).values()} == {"ok"}
    assert not of_type(ra, "restart")
    assert_no_containers(campaign)
