"""The live display with lanes: ``[lane n]`` lines, the lane events, and one rich row per lane.

Without lanes nothing changes: the same lines and the single row as before.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from rich.console import Console

from llem_cli.runner.reporter import (
    JsonReporter,
    PlainReporter,
    RichReporter,
    describe,
    needs_attention,
)

LANES: dict[str, Any] = {
    "type": "lanes",
    "lanes": [
        {"lane": 0, "gpus": ["0"], "uuids": ["GPU-aaa"], "project": "llem-demo-l0"},
        {"lane": 1, "gpus": ["2", "3"], "uuids": ["GPU-ccc", "GPU-ddd"], "project": "llem-demo-l1"},
    ],
    "gpus_per_lane": 2,
}


def started(key: str, lane: int | None = None, gpus: list[str] | None = None, index: int = 1):
    event: dict[str, Any] = {
        "type": "experiment_started",
        "key": key,
        "backend": "vllm",
        "attempt": 1,
        "index": index,
        "total": 4,
    }
    if lane is not None:
        event.update(lane=lane, gpus=gpus or [str(lane)])
    return event


def finished(
    key: str, lane: int | None = None, status: str = "ok", kind: str = "experiment_finished"
):
    record: dict[str, Any] = {
        "key": key,
        "backend": "vllm",
        "params": {"batch": 8},
        "status": status,
        "duration_s": 1.5,
    }
    event: dict[str, Any] = {"type": kind, "record": record}
    if lane is not None:
        event["lane"] = lane
        record.update(lane=lane, gpu_uuids=[f"GPU-{lane}"])
    return event


PIN_OK = {
    "type": "pin_check",
    "lane": 1,
    "service": "vllm",
    "expected": ["GPU-ccc", "GPU-ddd"],
    "seen": ["GPU-ddd", "GPU-ccc"],
    "status": "ok",
}
PIN_WRONG = {**PIN_OK, "seen": ["GPU-aaa", "GPU-bbb", "GPU-ccc", "GPU-ddd"]}
PIN_UNCHECKED = {**PIN_OK, "seen": None, "status": "failed"}
RETIRED = {
    "type": "lane_retired",
    "lane": 1,
    "reason": "restart budget spent (3 restarts)",
    "given_back": "abc123-c2",
}


# ---- describe: plain lines -----------------------------------------------------------------------


def test_a_lanes_events_name_their_lane() -> None:
    assert describe(started("abc-c1", 1, ["2", "3"], index=2)) == (
        "[lane 1] [2/4] abc-c1 vllm on GPUs 2,3"
    )
    assert describe(started("abc-c1", 0, ["0"])) == "[lane 0] [1/4] abc-c1 vllm on GPU 0"
    assert describe(finished("abc-c1", 0)) == "[lane 0] abc-c1 vllm batch=8 -> ok in 1.50s"
    assert describe(finished("abc-c2", 1, "failed", "skipped")) == (
        "[lane 1] abc-c2 vllm batch=8 -> failed in 1.50s"
    )
    restart = {"type": "restart", "lane": 1, "service": "vllm", "reason": "gpu_oom", "restarts": 2}
    assert describe(restart) == "[lane 1] restarting vllm (gpu_oom); restarts so far: 2"
    probe = {"type": "probe", "lane": 0, "service": "vllm", "status": "timeout", "detail": None}
    assert describe(probe) == "[lane 0] probe vllm: timeout"
    waiting = {"type": "waiting", "lane": 1, "seconds": 5, "why": "gap", "setting": "gap"}
    assert describe(waiting) == "[lane 1] waiting 5s (gap)"
    container = {"type": "container", "lane": 0, "service": "vllm", "state": "starting"}
    assert describe(container) == "[lane 0] container vllm: starting"


def test_without_lanes_the_lines_are_unchanged() -> None:
    assert describe(started("abc-c1")) == "[1/4] abc-c1 vllm"
    assert describe(finished("abc-c1")) == "abc-c1 vllm batch=8 -> ok in 1.50s"
    container = {"type": "container", "service": "vllm", "state": "running"}
    assert describe(container) == "container vllm: running"
    # a lane that is no number (a bool, text) is no lane
    assert describe({**container, "lane": True}) == "container vllm: running"


def test_the_lanes_event_is_one_line_of_lanes_and_gpus() -> None:
    assert describe(LANES) == "2 lanes of 2 GPUs: lane 0 (GPU 0), lane 1 (GPUs 2,3)"
    one = {"type": "lanes", "lanes": LANES["lanes"][:1], "gpus_per_lane": 1}
    assert describe(one) == "1 lane of 1 GPU: lane 0 (GPU 0)"


def test_a_pin_check_is_quiet_when_the_container_sees_its_gpus() -> None:
    assert describe(PIN_OK) is None
    assert not needs_attention(PIN_OK)
    wrong = describe(PIN_WRONG)
    assert wrong is not None
    assert wrong.startswith("[lane 1] vllm is not pinned to its GPUs: sees ")
    assert "GPU-aaa" in wrong and "expected ['GPU-ccc', 'GPU-ddd']" in wrong
    assert needs_attention(PIN_WRONG)
    unchecked = describe(PIN_UNCHECKED)
    assert unchecked is not None and "could not be checked (probe failed)" in unchecked
    assert needs_attention(PIN_UNCHECKED)


def test_a_retired_lane_says_why_and_what_it_gave_back() -> None:
    assert describe(RETIRED) == (
        "[lane 1] retired: restart budget spent (3 restarts); its pending experiments go to "
        "the other lanes (abc123-c2 given back)"
    )
    line = describe({**RETIRED, "given_back": None})
    assert line is not None and "given back" not in line
    assert needs_attention(RETIRED)


def plain_lines(events: list[dict[str, Any]], **options: bool) -> list[str]:
    stream = io.StringIO()
    reporter = PlainReporter(stream, **options)
    for event in events:
        reporter.event(event)
    # drop the timestamp
    return [line.split(" ", 1)[1] for line in stream.getvalue().splitlines()]


def test_plain_reporter_verbose_shows_an_ok_pin_check_quiet_only_what_went_wrong() -> None:
    events = [LANES, PIN_OK, started("abc-c1", 1, ["2", "3"]), PIN_WRONG, RETIRED]
    assert plain_lines(events, verbose=True)[1] == (
        "[lane 1] pin check vllm: ok, sees GPU-ddd, GPU-ccc"
    )
    normal = plain_lines(events)
    assert not any("pin check" in line for line in normal)
    assert len(normal) == 4  # lanes, started, the mismatch, retired
    quiet = plain_lines(events, quiet=True)
    assert [line.split(" ", 3)[2] for line in quiet] == ["vllm", "retired:"]


def test_json_reporter_keeps_the_lane() -> None:
    stream = io.StringIO()
    reporter = JsonReporter(stream)
    for event in (LANES, started("abc-c1", 1), RETIRED):
        reporter.event(event)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [e.get("lane") for e in lines] == [None, 1, 1]
    assert lines[0]["lanes"][1]["uuids"] == ["GPU-ccc", "GPU-ddd"]


# ---- RichReporter: one row per lane --------------------------------------------------------------


def recording_console() -> Console:
    return Console(file=io.StringIO(), width=140, record=True, force_terminal=False)


def screen(reporter: RichReporter) -> str:
    """The live display's rows as text, as the terminal would show them now."""
    console = recording_console()
    console.print(reporter.progress.get_renderable())
    return console.export_text()


@pytest.fixture
def rich() -> Iterator[RichReporter]:
    reporter = RichReporter(recording_console())
    reporter.event(
        {"type": "run_started", "run_id": "r1", "pending": 4, "total": 4, "run_dir": "/r/r1"}
    )
    yield reporter
    reporter.close()


def test_rich_shows_one_row_per_lane_as_experiments_start_and_finish(rich: RichReporter) -> None:
    rich.event(LANES)
    assert rich.rows()[1:] == [("lane 0", "GPU 0 | idle"), ("lane 1", "GPUs 2,3 | idle")]
    rich.event(started("abc-c1", 0, ["0"], index=1))
    rich.event(started("abc-c2", 1, ["2", "3"], index=2))  # before lane 0's finish
    assert rich.rows() == [
        ("run", "2 of 2 lanes busy"),
        ("lane 0", "GPU 0 | abc-c1 on vllm"),
        ("lane 1", "GPUs 2,3 | abc-c2 on vllm"),
    ]
    lane0, lane1 = (rich.progress._tasks[rich.lane_rows[n]] for n in (0, 1))
    assert lane0.started and lane1.started  # their clocks run: elapsed per experiment
    text = screen(rich)
    rows = {line.split()[0] + line.split()[1]: line for line in text.splitlines() if line.strip()}
    assert "abc-c1 on vllm" in rows["lane0"] and "GPU 0" in rows["lane0"]
    assert "abc-c2 on vllm" in rows["lane1"] and "GPUs 2,3" in rows["lane1"]
    assert "eta" not in rows["lane0"] and "/4" not in rows["lane0"]  # no bar on a lane's row
    assert "0/4" in text  # the run's bar

    rich.event(finished("abc-c1", 0))
    assert rich.rows()[1] == ("lane 0", "GPU 0 | idle (last: abc-c1 ok)")
    assert not lane0.started  # an idle lane shows no clock
    assert rich.rows()[2] == ("lane 1", "GPUs 2,3 | abc-c2 on vllm")  # untouched
    assert rich.progress._tasks[rich.task].completed == 1
    assert rich.rows()[0] == ("run", "1 of 2 lanes busy")

    rich.event({"type": "waiting", "lane": 0, "seconds": 5, "why": "gap", "setting": "gap"})
    assert rich.rows()[1] == ("lane 0", "GPU 0 | waiting 5s (gap)")
    rich.event({"type": "restart", "lane": 1, "service": "v", "reason": "x", "restarts": 1})
    rich.event(RETIRED)
    assert rich.rows()[2] == ("lane 1", "GPUs 2,3 | retired: restart budget spent (3 restarts)")
    assert rich.rows()[0] == ("run", "0 of 1 lanes busy, 1 retired | restarts 1")
    # a late event of the retired lane does not overwrite why it stopped
    rich.event({"type": "container", "lane": 1, "service": "v", "state": "removed"})
    assert rich.rows()[2][1].endswith("retired: restart budget spent (3 restarts)")
    printed = rich.console.export_text()
    assert "[lane 1] retired: restart budget spent" in printed
    assert "[lane 0] abc-c1 vllm batch=8 -> ok in 1.50s" in printed


def test_rich_adds_a_lane_row_for_a_lane_it_was_not_told_of(rich: RichReporter) -> None:
    rich.event(started("abc-c1", 3, ["7"]))
    assert rich.rows()[1:] == [("lane 3", "GPU 7 | abc-c1 on vllm")]
    rich.event(finished("zzz-c9", 3, kind="pruned"))  # not the lane's experiment: still running
    assert rich.rows()[1:] == [("lane 3", "GPU 7 | abc-c1 on vllm")]


def test_rich_without_lanes_keeps_the_single_row(rich: RichReporter) -> None:
    rich.event(started("abc-c1"))
    assert rich.rows() == [("run", "running abc-c1 on vllm")]
    rich.event({"type": "container", "service": "vllm", "state": "running"})
    assert rich.rows() == [("run", "container vllm: running")]
    rich.event(finished("abc-c1"))
    assert len(rich.rows()) == 1 and rich.lane_rows == {}
    assert "lane" not in screen(rich)


def test_the_live_display_says_when_a_server_is_loading(rich: RichReporter) -> None:
    rich.event(
        {
            "type": "server",
            "service": "vllm",
            "server_id": "abc",
            "state": "loading",
            "waited_s": 20.0,
        }
    )
    assert any("server abc of vllm loading (20s)" in status for _, status in rich.rows())
    line = describe(
        {
            "type": "server_ready",
            "service": "vllm",
            "server_id": "abc",
            "waited_s": 31.5,
            "memory_used_pct": 91.0,
        }
    )
    assert line == "server abc of vllm ready after 31.5s, GPU memory 91% used"
