"""Run directories: ids, layout, finding the run to resume, atomic writes."""

from __future__ import annotations

import os
import threading
from datetime import datetime, timedelta, timezone

import pytest

from llem_cli.atomic import atomic_write_bytes, atomic_write_text
from llem_cli.runs import layout as rundir_mod
from llem_cli.runs import state as state_mod
from llem_cli.runs.journal import Journal
from llem_cli.runs.layout import RunDir, create_run_dir, list_runs, new_run_id, run_id_sort_key
from llem_cli.runs.resolve import find_newest_unfinished
from llem_cli.runs.state import is_unfinished

T0 = datetime(2026, 11, 28, 14, 5, 0, tzinfo=timezone.utc)


def test_run_id_is_the_utc_timestamp():
    assert new_run_id(T0) == "20261128T140500Z"
    plus_one = timezone(timedelta(hours=1))
    assert new_run_id(datetime(2026, 11, 28, 15, 5, tzinfo=plus_one)) == "20261128T140500Z"
    with pytest.raises(ValueError):
        new_run_id(datetime(2026, 11, 28))


def test_create_lays_out_the_run_directory(tmp_path):
    run = create_run_dir(tmp_path / "results", "llama", now=T0)
    assert run.root == tmp_path / "results" / "llama" / "20261128T140500Z"
    assert run.run_id == "20261128T140500Z"
    assert run.experiments.is_dir()
    assert run.journal.name == "journal.jsonl" and run.plan.name == "plan.json"
    assert run.results_csv.name == "results.csv" and run.campaign.name == "campaign.yaml"
    assert run.compose_override.name == "compose.override.yaml"
    path = run.make_experiment("0123abcd-c2")
    assert path == run.root / "experiments" / "0123abcd-c2" and path.is_dir()


@pytest.mark.parametrize("key", ["../x", "a/b", "", ".hidden", "a\\b", "x\n"])
def test_keys_cannot_escape(tmp_path, key):
    with pytest.raises(ValueError):
        RunDir(tmp_path).experiment(key)


def test_taken_ids_are_suffixed(tmp_path):
    ids = [create_run_dir(tmp_path, "c", now=T0).run_id for _ in range(3)]
    assert ids == ["20261128T140500Z", "20261128T140500Z-2", "20261128T140500Z-3"]


def test_concurrent_creation_gets_distinct_ids(tmp_path):
    got: list[str] = []
    barrier = threading.Barrier(8)

    def make():
        barrier.wait()
        got.append(create_run_dir(tmp_path, "c", now=T0).run_id)

    threads = [threading.Thread(target=make) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got)) == 8


def test_sort_key_orders_suffixes_numerically():
    names = ["20261128T140500Z-10", "20261128T140500Z-2", "20261128T140500Z", "20251128T140500Z"]
    assert sorted(names, key=run_id_sort_key) == [
        "20251128T140500Z",
        "20261128T140500Z",
        "20261128T140500Z-2",
        "20261128T140500Z-10",
    ]
    for other in ["latest", "20261128T140500", "20261128T140500Z-0", "20261128T140500Z-x"]:
        assert run_id_sort_key(other) is None


def test_list_runs_ignores_other_entries(tmp_path):
    for _ in range(11):
        create_run_dir(tmp_path, "c", now=T0)
    (tmp_path / "c" / "notes").mkdir()
    (tmp_path / "c" / "20261128T140501Z").write_text("a file, not a run")
    runs = [r.run_id for r in list_runs(tmp_path, "c")]
    assert runs[0] == "20261128T140500Z" and runs[-1] == "20261128T140500Z-11"
    assert len(runs) == 11
    assert list_runs(tmp_path, "missing") == []


def journal(run, *types):
    with Journal(run.journal) as j:
        for t in types:
            j.append(t)


def test_finding_the_newest_unfinished_run(tmp_path):
    assert find_newest_unfinished(tmp_path, "c") is None
    old = create_run_dir(tmp_path, "c", now=T0)
    journal(old, "run_started")  # crashed
    assert find_newest_unfinished(tmp_path, "c") == old
    done = create_run_dir(tmp_path, "c", now=T0 + timedelta(hours=1))
    journal(done, "run_started", "run_finished")
    # a newer finished run supersedes the crashed one: --resume starts a new run
    assert find_newest_unfinished(tmp_path, "c") is None
    aborted = create_run_dir(tmp_path, "c", now=T0 + timedelta(hours=2))
    journal(aborted, "run_started", "run_aborted")
    assert find_newest_unfinished(tmp_path, "c") == aborted
    never = create_run_dir(tmp_path, "c", now=T0 + timedelta(hours=3))  # no journal
    assert not is_unfinished(never)
    assert find_newest_unfinished(tmp_path, "c") == aborted
    journal(aborted, "run_started", "run_finished")  # resumed and finished
    assert find_newest_unfinished(tmp_path, "c") is None


def test_interrupted_and_torn_journals_are_unfinished(tmp_path):
    run = create_run_dir(tmp_path, "c", now=T0)
    journal(run, "run_started", "interrupted")
    assert is_unfinished(run)
    run2 = create_run_dir(tmp_path, "c", now=T0)
    journal(run2, "run_started", "experiment_started")
    with open(run2.journal, "ab") as f:
        f.write(b'{"type":"run_fini')  # torn: the run did not finish
    assert is_unfinished(run2)


def test_finished_run_is_seen_from_the_tail_without_replay(tmp_path, monkeypatch):
    run = create_run_dir(tmp_path, "c", now=T0)
    with Journal(run.journal) as j:
        j.append("run_started")
        for i in range(2000):
            j.append("probe", note="x" * 50, i=i)
        j.append("run_finished")

    def no_replay(path):
        raise AssertionError("replayed a finished run")

    monkeypatch.setattr(state_mod, "replay", no_replay)
    assert not is_unfinished(run)


def test_huge_last_event_does_not_hide_an_unfinished_run(tmp_path):
    run = create_run_dir(tmp_path, "c", now=T0)
    with Journal(run.journal) as j:
        j.append("run_started")
        j.append("probe", blob="x" * 20_000)
    assert is_unfinished(run)


def test_journal_without_run_started_is_not_a_run(tmp_path):
    run = create_run_dir(tmp_path, "c", now=T0)
    journal(run, "probe")
    assert not is_unfinished(run)


def test_atomic_write_replaces_whole_files(tmp_path):
    target = tmp_path / "plan.json"
    atomic_write_text(target, "old")
    atomic_write_text(target, "new ✓")
    assert target.read_text() == "new ✓"
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.json"]


def test_failed_atomic_write_keeps_the_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "results.csv"
    atomic_write_bytes(target, b"old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(rundir_mod.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"new")
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["results.csv"]


def test_atomic_write_fsyncs_before_replacing(tmp_path, monkeypatch):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(rundir_mod.os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd)))
    monkeypatch.setattr(
        rundir_mod.os, "replace", lambda a, b: (calls.append("replace"), real_replace(a, b))
    )
    atomic_write_text(tmp_path / "f", "x")
    assert calls == ["fsync", "replace", "fsync"]  # file, rename, directory
