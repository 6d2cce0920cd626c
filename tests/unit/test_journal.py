"""The journal: durable appends, crash-torn lines, and replay into the run state."""

from __future__ import annotations

import json
import logging
import os
import re

import pytest

from llem_cli.runs import journal as journal_mod
from llem_cli.runs.journal import Journal
from llem_cli.runs.journal_read import iter_events
from llem_cli.runs.record import FINAL_STATUSES, RECORD_FIELDS, STATUSES, Record
from llem_cli.runs.state import replay
from llem_cli.timestamps import utc_now_iso

# Copied from docs/design.md §3.4.
DESIGN_FIELDS = [
    "key", "config_id", "cycle", "backend", "service", "params", "status", "attempts",
    "exit_code", "started_at", "ended_at", "duration_s", "energy_j", "avg_power_w",
    "idle_power_w", "net_energy_j", "max_temp_c", "restarts_before", "metrics", "error",
    "lane", "gpu_uuids", "gpu_settings", "server_id", "phases",
]  # fmt: skip
DESIGN_STATUSES = {
    "ok", "failed", "gpu_oom", "oom_killed", "timeout", "container_died", "not_runnable",
    "pruned", "skipped", "interrupted",
}  # fmt: skip


def rec(key="abc123-c1", status="ok", **kw):
    base = {
        "key": key,
        "config_id": key.split("-")[0],
        "cycle": 1,
        "backend": "pytorch",
        "service": "pytorch",
        "params": {"batch_size": 8},
        "status": status,
    }
    return Record(**{**base, **kw})


@pytest.fixture
def path(tmp_path):
    return tmp_path / "journal.jsonl"


def test_record_fields_are_designs_in_order():
    # the record's fields (docs/design.md §3.4) first and in order; llem adds 'measurement'
    # (how energy was measured)
    assert list(RECORD_FIELDS) == [*DESIGN_FIELDS, "measurement"]
    assert list(rec().to_json()) == [*DESIGN_FIELDS, "measurement"]


def test_unmeasured_quantities_are_null_not_zero():
    data = rec().to_json()
    for name in ("exit_code", "energy_j", "avg_power_w", "idle_power_w", "net_energy_j"):
        assert data[name] is None
    assert data["max_temp_c"] is None and data["duration_s"] is None
    assert json.loads(json.dumps(data))["energy_j"] is None


def test_statuses_and_final():
    assert DESIGN_STATUSES == STATUSES
    assert DESIGN_STATUSES - {"interrupted"} == FINAL_STATUSES
    assert rec(status="pruned").final and not rec(status="interrupted").final
    with pytest.raises(ValueError):
        rec(status="fine")


def test_record_round_trips_and_ignores_unknown_fields():
    r = rec(energy_j=12.5, metrics={"tokens_per_s": 3.0}, exit_code=0)
    assert Record.from_json({**r.to_json(), "from_the_future": 1}) == r


def test_not_run_record():
    r = Record.not_run(
        key="k-c1",
        config_id="k",
        cycle=1,
        backend="b",
        service="s",
        params={},
        status="pruned",
        error="pruned after gpu_oom of j-c1",
    )
    assert r.attempts == 0 and r.energy_j is None and r.status == "pruned"


def test_timestamp_is_utc_iso():
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", utc_now_iso())


def test_append_writes_one_fsynced_line_per_event(path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def spy(fd):
        synced.append(path.read_bytes().count(b"\n"))
        real_fsync(fd)

    monkeypatch.setattr(journal_mod.os, "fsync", spy)
    with Journal(path) as j:
        j.append("run_started", run_id="r1")
        event = j.append("experiment_finished", record=rec())
    assert synced[-2:] == [1, 2]  # each line was complete on disk when its fsync ran
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["type"] == "run_started" and first["pid"] == os.getpid() and first["ts"]
    assert json.loads(lines[1])["record"] == rec().to_json() == event["record"]


def test_unknown_event_type_is_refused(path):
    with Journal(path) as j, pytest.raises(ValueError):
        j.append("party")
    assert path.read_bytes() == b""


def test_reserved_field_names_are_refused(path):
    with Journal(path) as j:
        for name in ("ts", "pid"):
            with pytest.raises(ValueError):
                j.append("probe", **{name: 1})
    assert path.read_bytes() == b""


def test_closed_journal_refuses(path):
    j = Journal(path)
    j.close()
    with pytest.raises(ValueError):
        j.append("probe")


def test_nan_in_metrics_becomes_null(path):
    with Journal(path) as j:
        j.append("experiment_finished", record=rec(metrics={"x": float("nan"), "y": [1.0]}))
    line = path.read_text()
    assert "NaN" not in line
    assert json.loads(line)["record"]["metrics"] == {"x": None, "y": [1.0]}


def test_torn_last_line_is_ignored_silently(path, caplog):
    with Journal(path) as j:
        j.append("run_started")
        j.append("experiment_started", key="a-c1")
    with open(path, "ab") as f:
        f.write(b'{"type":"experiment_finished","record":{"key":"a-c1","sta')
    with caplog.at_level(logging.WARNING):
        state = replay(path)
    assert state.events == 2 and not state.defects and not caplog.records
    assert state.in_flight == {"a-c1"}


def test_zero_filled_tail_is_ignored(path):
    with Journal(path) as j:
        j.append("run_started")
    with open(path, "ab") as f:
        f.write(b"\x00" * 300)
    state = replay(path)
    assert state.events == 1 and not state.defects


def test_torn_middle_line_is_reported_and_skipped(path, caplog):
    with Journal(path) as j:
        j.append("run_started")
    with open(path, "ab") as f:
        f.write(b'{"type":"experiment_fin\n')
    with Journal(path) as j:
        j.append("experiment_finished", record=rec())
    with caplog.at_level(logging.WARNING):
        state = replay(path)
    assert [str(d) for d in state.defects] == ["journal.jsonl:2: unreadable event; line skipped"]
    # the replay's caller (llem status) reports its defects: logging them too said it twice
    assert "journal.jsonl:2" not in caplog.text
    assert list(state.records) == ["abc123-c1"]
    with caplog.at_level(logging.WARNING):  # a reader that collects nothing: logged, once
        events = list(iter_events(path))
    assert len(events) == 2 and caplog.text.count("journal.jsonl:2") == 1


def test_reopening_after_a_torn_tail_keeps_the_next_event(path):
    with Journal(path) as j:
        j.append("run_started")
    with open(path, "ab") as f:
        f.write(b'{"type":"experiment_sta')  # power cut mid-write
    with Journal(path) as j:  # the resumed run
        j.append("run_started")
        j.append("experiment_finished", record=rec())
    state = replay(path)
    assert state.sessions == 2 and "abc123-c1" in state.records
    assert [d.line for d in state.defects] == [2]


def test_missing_journal_replays_empty(tmp_path):
    state = replay(tmp_path / "nope.jsonl")
    assert not state.started and state.events == 0 and state.writer_pid is None
    assert list(iter_events(tmp_path / "nope.jsonl")) == []


def test_non_event_json_lines_are_defects(path):
    path.write_text('[1, 2]\n{"no_type": 1}\n{"type": "run_started", "pid": 7}\n')
    state = replay(path)
    assert [d.line for d in state.defects] == [1, 2]
    assert state.started and state.writer_pid == 7


def test_record_event_without_a_valid_record_is_a_defect(path):
    bad = {**rec().to_json(), "status": "great"}
    lines = [
        {"type": "experiment_finished", "pid": 1},
        {"type": "experiment_finished", "pid": 1, "record": bad},
        {"type": "run_started", "pid": 1},
    ]
    path.write_text("".join(json.dumps(e) + "\n" for e in lines))
    state = replay(path)
    assert [d.line for d in state.defects] == [1, 2] and not state.records


def test_replay_builds_the_run_state(path):
    with Journal(path) as j:
        j.append("run_started", run_id="r")
        j.append("experiment_started", key="a-c1", attempt=1)
        j.append("experiment_finished", record=rec("a-c1", "timeout"))
        j.append("restart", reason="timeout")
        j.append("experiment_started", key="a-c1", attempt=2)
        j.append("experiment_finished", record=rec("a-c1", "ok", attempts=2))
        j.append("experiment_started", key="b-c1")
        j.append("experiment_finished", record=rec("b-c1", "gpu_oom"))
        j.append("pruned", record=rec("c-c1", "pruned", attempts=0), by="b-c1")
        j.append("experiment_started", key="d-c1")
        j.append("experiment_finished", record=rec("d-c1", "interrupted"))
        j.append("experiment_started", key="e-c1")
    state = replay(path)
    assert {k: r.status for k, r in state.records.items()} == {
        "a-c1": "ok",
        "b-c1": "gpu_oom",
        "c-c1": "pruned",
        "d-c1": "interrupted",
    }
    assert state.records["a-c1"].attempts == 2
    assert state.in_flight == {"e-c1"}
    assert state.restarts == 1 and state.started and not state.finished
    assert state.writer_pid == os.getpid()
    assert state.last_event["type"] == "experiment_started"
    plan = ["a-c1", "b-c1", "c-c1", "d-c1", "e-c1", "f-c1"]
    assert state.pending(plan) == ["d-c1", "e-c1", "f-c1"]
    assert state.counts() == {"ok": 1, "gpu_oom": 1, "pruned": 1, "interrupted": 1}


def test_experiment_running_at_the_crash_runs_again_despite_an_earlier_final_record(path):
    with Journal(path) as j:
        j.append("run_started")
        j.append("experiment_started", key="a-c1", attempt=1)
        j.append("experiment_finished", record=rec("a-c1", "timeout"))
        j.append("experiment_started", key="a-c1", attempt=2)  # then kill -9
    state = replay(path)
    assert state.needs_run("a-c1")


def test_finish_abort_and_resume_sessions(path):
    with Journal(path) as j:
        j.append("run_started")
        j.append("restart")
        j.append("restart")
        j.append("run_aborted", reason="restart budget spent")
    state = replay(path)
    assert state.aborted and not state.finished and state.restarts_this_session == 2
    with Journal(path) as j:
        j.append("run_started")
        j.append("restart")
    state = replay(path)
    assert not state.aborted and state.sessions == 2
    assert (state.restarts, state.restarts_this_session) == (3, 1)
    with Journal(path) as j:
        j.append("interrupted", signal="SIGINT")
    assert replay(path).interrupted
    with Journal(path) as j:
        j.append("run_started")
        j.append("run_finished", exit_code=0)
    state = replay(path)
    assert state.finished and not state.interrupted


def test_writer_pid_is_the_last_writers(path):
    path.write_text(
        json.dumps({"type": "run_started", "pid": 11})
        + "\n"
        + json.dumps({"type": "run_started", "pid": 22})
        + "\n"
    )
    assert replay(path).writer_pid == 22


def test_large_journal_replays_every_record(path):
    # behaviour only: bench/bench_journal.py measures replay time and memory
    line = json.dumps(
        {"type": "experiment_finished", "ts": utc_now_iso(), "pid": 1, "record": rec().to_json()}
    )
    with open(path, "w") as f:
        for i in range(20_000):
            f.write(line.replace("abc123-c1", f"k{i}-c1") + "\n")
    state = replay(path)
    assert len(state.records) == 20_000 and state.events == 20_000
    assert state.defects == []
    assert state.counts() == {"ok": 20_000}
    assert state.records["k19999-c1"].status == "ok"


def test_probe_lines_count_and_a_final_probe_is_the_last_event(path):
    with Journal(path) as j:
        j.append("run_started")
        j.append("probe", max_memory_used_pct=12.5)
        j.append("probe", max_memory_used_pct=97.0)
    state = replay(path)
    assert state.events == 3 and not state.defects
    assert state.last_event["max_memory_used_pct"] == 97.0
    assert state.writer_pid == os.getpid()


def test_slim_replay_keeps_status_per_key_and_gpu_oom_records_in_full(path):
    from llem_cli.runs.state import Settled

    with Journal(path) as j:
        j.append("run_started")
        j.append("experiment_finished", key="a-c1", record=rec("a-c1", metrics={"t": 1}))
        j.append("experiment_finished", key="b-c1", record=rec("b-c1", status="gpu_oom"))
        j.append("experiment_finished", key="c-c1", record=rec("c-c1", status="interrupted"))
        j.append("experiment_started", key="d-c1")
    full, slim = replay(path), replay(path, slim=True)
    assert slim.records["a-c1"] == Settled("a-c1", "ok")
    assert slim.records["b-c1"] == full.records["b-c1"]  # pruning reads its params
    # a-c1 ok, b-c1 gpu_oom, c-c1 interrupted; d-c1 only started, so no record
    assert full.counts() == {"ok": 1, "gpu_oom": 1, "interrupted": 1}
    assert slim.counts() == full.counts()
    keys = ["a-c1", "b-c1", "c-c1", "d-c1", "e-c1"]
    assert slim.pending(keys) == full.pending(keys) == ["c-c1", "d-c1", "e-c1"]
