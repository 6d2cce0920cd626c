"""``llem status`` of a run with lanes: per lane its GPUs, what it finished, what runs in it now,
and whether it was retired (plain: one line per lane; ``--json``: a ``lanes`` list).

The journals are written as the runner writes them: ``Journal.append`` for the event types it
knows, and the same compact line (type first, ``ts``, ``pid``) for the lane events.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from llem_cli.cli import cli
from llem_cli.runs.journal import EVENT_TYPES, Journal, make_event
from llem_cli.runs.layout import create_run_dir
from llem_cli.runs.record import Record

KEYS = [f"{c}-c{cycle}" for c in ("aaa", "bbb", "ccc") for cycle in (1, 2)]
LANES: list[dict[str, Any]] = [
    {"lane": 0, "gpus": ["0"], "uuids": ["GPU-aaa"], "project": "llem-demo-l0"},
    {"lane": 1, "gpus": ["1"], "uuids": ["GPU-bbb"], "project": "llem-demo-l1"},
    {"lane": 2, "gpus": ["2", "3"], "uuids": ["GPU-ccc", "GPU-ddd"], "project": "llem-demo-l2"},
]
UUIDS: dict[int, list[str]] = {entry["lane"]: entry["uuids"] for entry in LANES}


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


class Writer:
    """Appends events to a run's journal as the runner does."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.journal = Journal(path)

    def __call__(self, kind: str, /, pid: int | None = None, **fields: Any) -> None:
        if pid is None and kind in EVENT_TYPES:
            self.journal.append(kind, **fields)
            return
        # a lane event type this llem's journal may not list yet, or another writer's pid
        event = {"type": kind, "ts": "2026-11-28T14:00:00.000Z", "pid": pid or os.getpid()}
        if kind in EVENT_TYPES:
            event = {**make_event(kind, **fields), "pid": pid}
        else:
            event.update(fields)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(event, separators=(",", ":")) + "\n")

    def start(self, key: str, lane: int) -> None:
        gpus = LANES[lane]["gpus"]
        self(
            "experiment_started",
            key=key,
            config_id=key.split("-")[0],
            backend="vllm",
            attempt=1,
            index=KEYS.index(key) + 1,
            total=len(KEYS),
            lane=lane,
            gpus=gpus,
        )

    def finish(self, key: str, lane: int, status: str = "ok") -> None:
        record = Record(
            key=key,
            config_id=key.split("-")[0],
            cycle=int(key.rsplit("c", 1)[1]),
            backend="vllm",
            service="vllm",
            params={"batch": 8},
            status=status,
            lane=lane,
            gpu_uuids=UUIDS[lane],
        )
        self("experiment_finished", key=key, record=record, lane=lane)


def new_run(tmp_path: Path) -> tuple[Path, Writer]:
    run = create_run_dir(tmp_path / "results", "lanes")
    (run.root / "plan.json").write_text(json.dumps([{"key": k} for k in KEYS]))
    write = Writer(run.journal)
    write("run_started", run_id=run.run_id, pending=len(KEYS), total=len(KEYS))
    write("lanes", lanes=LANES, gpus_per_lane=2)
    return run.root, write


def busy_run(tmp_path: Path) -> tuple[Path, Writer]:
    """Lane 0: two done (one failed), a third running; lane 1: one done, then retired with the
    experiment it had taken given back; lane 2: its pin check passed, idle."""
    root, write = new_run(tmp_path)
    for lane in (0, 1, 2):
        seen = list(reversed(UUIDS[lane]))
        write("pin_check", lane=lane, service="vllm", expected=UUIDS[lane], seen=seen, status="ok")
    write.start("aaa-c1", 0)
    write.start("bbb-c1", 1)  # lane 1 starts while lane 0's experiment runs
    write("probe", lane=1, service="vllm", status="ok", max_memory_used_pct=3.0)
    write.finish("bbb-c1", 1)
    write.finish("aaa-c1", 0)
    write.start("aaa-c2", 0)
    write.finish("aaa-c2", 0, status="failed")
    write("restart", lane=1, service="vllm", reason="probe timeout", restarts=1)
    write("lane_retired", lane=1, reason="restart budget spent (1 restarts)", given_back="bbb-c2")
    write.start("ccc-c1", 0)
    return root, write


def status(*args: str) -> Any:
    result = CliRunner().invoke(cli, ["status", *args])
    assert "Traceback" not in result.output
    assert result.exit_code == 0, result.output
    return result


def status_json(root: Path) -> dict[str, Any]:
    return dict(json.loads(status(str(root), "--json").stdout))


def test_json_lists_each_lane_with_its_gpus_progress_and_retirement(tmp_path: Path) -> None:
    root, _ = busy_run(tmp_path)
    info = status_json(root)
    assert info["state"] == "running"  # this process wrote the journal: alive
    assert info["done"] == 3 and info["pending"] == 3 and info["in_flight"] == ["ccc-c1"]
    lanes = {lane["lane"]: lane for lane in info["lanes"]}
    assert list(lanes) == [0, 1, 2]
    assert lanes[0] == {
        "lane": 0,
        "gpus": ["0"],
        "uuids": ["GPU-aaa"],
        "project": "llem-demo-l0",
        "done": 2,
        "counts": {"failed": 1, "ok": 1},
        "running": "ccc-c1",
        "in_flight": ["ccc-c1"],
        "retired": False,
        "retired_reason": None,
        "given_back": None,
    }
    assert lanes[1]["done"] == 1 and lanes[1]["running"] is None
    assert lanes[1]["retired"] and lanes[1]["given_back"] == "bbb-c2"
    assert lanes[1]["retired_reason"] == "restart budget spent (1 restarts)"
    assert lanes[2]["gpus"] == ["2", "3"] and lanes[2]["uuids"] == ["GPU-ccc", "GPU-ddd"]
    assert lanes[2]["done"] == 0 and lanes[2]["running"] is None and not lanes[2]["retired"]


def test_plain_output_is_one_line_per_lane(tmp_path: Path) -> None:
    root, _ = busy_run(tmp_path)
    text = status(str(root)).stdout
    lines = [line for line in text.splitlines() if re.match(r"  lane \d+:", line)]
    assert lines == [
        "  lane 0:    GPU 0; 2 done (1 failed); running ccc-c1",
        "  lane 1:    GPU 1; 1 done; retired: restart budget spent (1 restarts), bbb-c2 given back",
        "  lane 2:    GPUs 2,3; 0 done; idle",
    ]
    # under the run's records, aligned with them
    assert text.splitlines().index(lines[0]) == 4
    assert text.splitlines()[2].index("3/6") == lines[0].index("GPU 0")
    assert re.search(r"^  running:\s+ccc-c1$", text, re.MULTILINE), text


def test_a_crashed_runs_lane_was_running_its_experiment(tmp_path: Path) -> None:
    root, write = busy_run(tmp_path)
    write("telemetry", pid=dead_pid(), note="the writer's last event")  # the writer is gone
    info = status_json(root)
    assert info["state"] == "crashed"
    lane0 = info["lanes"][0]
    assert lane0["running"] is None and lane0["in_flight"] == ["ccc-c1"]
    text = status(str(root)).stdout
    assert "  lane 0:    GPU 0; 2 done (1 failed); was running ccc-c1" in text
    assert "  lane 2:    GPUs 2,3; 0 done; idle" in text


def test_a_resumed_session_has_its_own_lanes_and_keeps_the_earlier_records(tmp_path: Path) -> None:
    root, write = busy_run(tmp_path)
    write("interrupted", run_id=root.name, signal="SIGTERM")
    record = Record(
        key="ccc-c1",
        config_id="ccc",
        cycle=1,
        backend="vllm",
        service="vllm",
        params={"batch": 8},
        status="interrupted",
        lane=0,
        gpu_uuids=UUIDS[0],
    )
    write("experiment_finished", key="ccc-c1", record=record, lane=0)
    # the resume: two lanes now, none retired, one experiment started in lane 1
    write("run_started", run_id=root.name, pending=3, total=len(KEYS), resumed=True)
    write("lanes", lanes=LANES[:2], gpus_per_lane=1)
    write.start("ccc-c1", 1)
    info = status_json(root)
    assert info["state"] == "running"
    lanes = {lane["lane"]: lane for lane in info["lanes"]}
    assert list(lanes) == [0, 1]
    assert not lanes[1]["retired"] and lanes[1]["running"] == "ccc-c1"
    assert lanes[0]["running"] is None  # its interrupted experiment now runs in lane 1
    assert lanes[0]["done"] == 2 and lanes[0]["counts"] == {"failed": 1, "interrupted": 1, "ok": 1}
    assert lanes[1]["done"] == 1


def test_a_session_that_has_not_journaled_its_lanes_yet_shows_none(tmp_path: Path) -> None:
    root, write = busy_run(tmp_path)
    write("run_finished", run_id=root.name, counts={}, restarts=1, run_dir=str(root))
    write("run_started", run_id=root.name, pending=3, total=len(KEYS), resumed=True)
    assert status_json(root)["lanes"] == []


def test_a_run_without_lanes_has_an_empty_list_and_no_lane_lines(tmp_path: Path) -> None:
    run = create_run_dir(tmp_path / "results", "plain")
    (run.root / "plan.json").write_text(json.dumps([{"key": "aaa-c1"}]))
    with Journal(run.journal) as journal:
        journal.append("run_started", run_id=run.run_id)
        # a param named "lanes" in a record does not make a run one with lanes
        rec = Record("aaa-c1", "aaa", 1, "vllm", "vllm", {"lanes": 2}, "ok")
        journal.append("experiment_finished", key="aaa-c1", record=rec)
    assert status_json(run.root)["lanes"] == []
    assert not re.search(r"^\s+lane", status(str(run.root)).stdout, re.MULTILINE)


def test_a_damaged_line_does_not_hide_the_lanes(tmp_path: Path) -> None:
    root, write = busy_run(tmp_path)
    with open(root / "journal.jsonl", "a", encoding="utf-8") as f:
        f.write('{"type":"lane_retired","lane":\n')
    write.finish("ccc-c1", 0)
    info = status_json(root)
    assert info["journal_defects"]  # the replay reports the line
    lane0 = info["lanes"][0]
    assert lane0["done"] == 3 and lane0["running"] is None and not info["lanes"][2]["retired"]


def test_a_journal_written_with_spaces_is_read_line_by_line(tmp_path: Path) -> None:
    # not as llem's journal writes (compact): the byte searches find nothing, the scan does
    run = create_run_dir(tmp_path / "results", "spaced")
    (run.root / "plan.json").write_text(json.dumps([{"key": k} for k in KEYS]))
    pid = os.getpid()
    record = Record("aaa-c1", "aaa", 1, "vllm", "vllm", {}, "ok", lane=1, gpu_uuids=UUIDS[1])
    events: list[dict[str, Any]] = [
        {"type": "run_started", "run_id": run.run_id},
        {"type": "lanes", "lanes": LANES[:2], "gpus_per_lane": 1},
        {"type": "experiment_started", "key": "aaa-c1", "lane": 1, "gpus": ["1"]},
        {"type": "experiment_finished", "key": "aaa-c1", "lane": 1, "record": record.to_json()},
        {"type": "experiment_started", "key": "aaa-c2", "lane": 0, "gpus": ["0"]},
        {"type": "lane_retired", "lane": 1, "reason": "GPU lost", "given_back": None},
    ]
    lines = (json.dumps({**e, "ts": "2026-11-28T14:00:00.000Z", "pid": pid}) for e in events)
    run.journal.write_text("".join(line + "\n" for line in lines))
    lanes = status_json(run.root)["lanes"]
    assert [(x["lane"], x["done"], x["running"], x["retired"]) for x in lanes] == [
        (0, 0, "aaa-c2", False),
        (1, 1, None, True),
    ]
    assert "  lane 1:    GPU 1; 1 done; retired: GPU lost" in status(str(run.root)).stdout


def test_an_experiment_started_again_is_not_done_where_it_ran_before(tmp_path: Path) -> None:
    # as the run's own progress counts it: in flight is pending, whatever record it had
    root, write = busy_run(tmp_path)
    write.start("aaa-c1", 2)
    info = status_json(root)
    lanes = {lane["lane"]: lane for lane in info["lanes"]}
    assert lanes[0]["done"] == 1 and lanes[0]["counts"] == {"failed": 1, "ok": 1}
    assert lanes[2]["running"] == "aaa-c1" and lanes[0]["running"] == "ccc-c1"
    assert info["done"] == sum(lane["done"] for lane in info["lanes"])
