"""Lanes over a fake container layer: threads, one queue, retirement, resume (no Docker).

``runner/lane_run.py`` runs one :class:`~llem_cli.runner.loop.CampaignLoop` per lane in its own
thread; here each lane's container layer is a :class:`LaneContainers` that records which lane
ran what, and when, so the tests check what a user relies on: every key once, a GPU never
shared by two experiments at once, the lane and its UUIDs in the environment and the record, a
lane that spends its restart budget retired while the others finish its work.
"""

from __future__ import annotations

import contextlib
import textwrap
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from llem_cli.campaign.load import LoadedCampaign, load_campaign
from llem_cli.docker.probe import GpuStatus, ProbeResult
from llem_cli.errors import EnvironmentProblem, RunAborted
from llem_cli.runner.lane_run import LaneSetup, LanesOutcome, run_lanes
from llem_cli.runner.lanes import HostGpu, Lane, plan_lanes
from llem_cli.runner.loop import LoopContext
from llem_cli.runner.measuring import NoMeasuring
from llem_cli.runner.schedule import Experiment, order_experiments
from llem_cli.runs.record import Record
from llem_cli.runs.state import RunState
from llem_testkit.fake_containers import FakeContainers

HOST = [HostGpu(i, f"GPU-{i:04d}") for i in range(4)]


@dataclass
class Board:
    """What every lane did, shared by the lanes' fake layers (thread-safe)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    execs: list[tuple[int, str, str, str]] = field(default_factory=list)  # lane, key, LANE, UUIDS
    busy: dict[str, str] = field(default_factory=dict)  # uuid -> key running on it
    overlaps: list[str] = field(default_factory=list)
    most_at_once: int = 0


@dataclass(kw_only=True)
class LaneContainers(FakeContainers):
    """One lane's container layer: runs an exec for ``exec_s`` seconds and reports ``ok``,
    unless the lane's script says otherwise (``dies``: every exec's container died;
    ``lost``: the probe reports the GPU lost; ``wrong_pin``: it sees every host GPU)."""

    lane: Lane
    board: Board
    exec_s: float = 0.03
    dies: bool = False
    lost: bool = False
    wrong_pin: bool = False

    def __enter__(self) -> LaneContainers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.calls.append(("teardown",))

    def next_status(self, key: str) -> str:
        return "container_died" if self.dies else "ok"

    def work(self, service: str, argv: Sequence[str], env: Mapping[str, str], key: str) -> None:
        """Hold the experiment's GPUs on the board for ``exec_s`` (overlaps noted)."""
        uuids = env["LLEM_GPU_UUIDS"].split(",")
        with self.board.lock:
            entry = (self.lane.number, key, env["LLEM_LANE"], env["LLEM_GPU_UUIDS"])
            self.board.execs.append(entry)
            for uuid in uuids:
                if uuid in self.board.busy:
                    self.board.overlaps.append(f"{key} and {self.board.busy[uuid]} on {uuid}")
                self.board.busy[uuid] = key
            self.board.most_at_once = max(self.board.most_at_once, len(self.board.busy))
        time.sleep(self.exec_s)
        with self.board.lock:
            for uuid in uuids:
                self.board.busy.pop(uuid, None)

    def probe(
        self, service: str, argv: Sequence[str] | None = None, *, timeout_s: float | None = None
    ) -> ProbeResult:
        self.calls.append(("probe", service))
        if self.lost:
            return ProbeResult("gpu_lost", detail="scripted")
        gpus = HOST if self.wrong_pin else self.lane.gpus
        rows = tuple(GpuStatus(i, g.uuid, 100.0, 1000.0) for i, g in enumerate(gpus))
        return ProbeResult("ok", gpus=rows)


@dataclass
class Run:
    """One lanes run over fake layers, and what it left."""

    board: Board
    layers: dict[int, LaneContainers]
    events: list[dict[str, Any]]
    outcome: LanesOutcome | None
    experiments: list[Experiment]

    def records(self) -> list[Record]:
        return [e["record"] for e in self.events if isinstance(e.get("record"), Record)]


class Journal:
    """Events kept in memory, as the journal would write them (thread-safe)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def append(self, kind: str, /, **fields: Any) -> dict[str, Any]:
        event = {"type": kind, **fields}
        with self.lock:
            self.events.append(event)
        return event


def load(tmp_path: Path, body: str) -> LoadedCampaign:
    (tmp_path / "compose.yml").write_text("services:\n  a:\n    image: x\n")
    path = tmp_path / "campaign.yaml"
    path.write_text("name: t\ncompose: compose.yml\n" + textwrap.dedent(body))
    return load_campaign(path)


def run(
    tmp_path: Path,
    body: str,
    *,
    lanes: int = 4,
    script: Mapping[int, Mapping[str, Any]] | None = None,
    done: set[str] | None = None,
) -> Run:
    loaded = load(tmp_path, body)
    campaign = loaded.campaign
    experiments = list(order_experiments(loaded.configs, campaign))
    replayed = RunState()
    for e in experiments:
        if done and e.key in done:
            replayed.records[e.key] = Record(
                e.key, e.config.config_id, e.cycle, e.config.backend, e.service, {}, "ok"
            )
    planned = plan_lanes(campaign, list(campaign.backends), HOST, lanes)
    board = Board()
    layers: dict[int, LaneContainers] = {}

    def containers_for(lane: Lane, _runner: Any) -> contextlib.AbstractContextManager[Any]:
        layer = LaneContainers(lane=lane, board=board, **dict((script or {}).get(lane.number, {})))
        layers[lane.number] = layer
        return layer

    journal = Journal()
    context = LoopContext(
        campaign=campaign,
        run_id="r1",
        experiments=experiments,
        replayed=replayed,
        prepare_dir=lambda key: tmp_path / "run" / key,
    )
    setup = LaneSetup(
        campaign=campaign,
        context=context,
        lanes=planned,
        files=[],
        run_dir=tmp_path / "run",
        compose=None,  # type: ignore[arg-type]
        services={"a": True},
        facts={},
    )
    result = Run(board, layers, journal.events, None, experiments)
    result.outcome = run_lanes(
        setup,
        journal=journal,
        emit=lambda _e: None,
        log=lambda kind, **f: journal.append(kind, **f) and None,
        containers_for=containers_for,
        measuring=NoMeasuring(),
        check_env=lambda _o, _d: None,
    )
    return result


CAMPAIGN = """
backends:
  a: {command: [run, "{x}"]}
grid: {x: [1, 2, 3]}
execution: {cycles: 4, lanes: 4}
health: {every: 1, max_restarts: 1, restart_backoff: 0}
"""


def test_every_key_runs_once_and_no_gpu_runs_two_experiments_at_once(tmp_path: Path) -> None:
    r = run(tmp_path, CAMPAIGN)
    keys = [key for _, key, _, _ in r.board.execs]
    assert sorted(keys) == sorted(e.key for e in r.experiments)  # 12 experiments, once each
    assert r.board.overlaps == []
    assert r.board.most_at_once >= 2  # they did run at once
    # fairness: every lane ran some; none ran more than half
    per_lane = {n: sum(1 for lane, *_ in r.board.execs if lane == n) for n in range(4)}
    assert all(1 <= n <= 6 for n in per_lane.values()), per_lane


def test_the_lane_and_its_gpus_reach_the_experiment_and_the_record(tmp_path: Path) -> None:
    r = run(tmp_path, CAMPAIGN)
    for lane, _key, env_lane, env_uuids in r.board.execs:
        assert env_lane == str(lane)
        assert env_uuids == HOST[lane].uuid
    records = r.records()
    assert len(records) == 12
    for record in records:
        assert record.status == "ok"
        assert record.lane is not None
        assert record.gpu_uuids == [HOST[record.lane].uuid]
    # a configuration's cycles ran on more than one GPU (the rotation)
    lanes_of: dict[str, set[int]] = {}
    for record in records:
        lanes_of.setdefault(record.config_id, set()).add(record.lane or 0)
    assert all(len(v) > 1 for v in lanes_of.values()), lanes_of


def test_each_lane_checks_its_pin_once_per_container(tmp_path: Path) -> None:
    r = run(tmp_path, CAMPAIGN)
    checks = [e for e in r.events if e["type"] == "pin_check"]
    assert sorted(e["lane"] for e in checks) == [0, 1, 2, 3]
    assert all(e["seen"] == e["expected"] for e in checks)


def test_a_container_that_sees_other_gpus_stops_the_run_naming_the_service(
    tmp_path: Path,
) -> None:
    with pytest.raises(EnvironmentProblem, match=r"lane 2 \(GPU 2\): service 'a' is not pinned"):
        run(tmp_path, CAMPAIGN, script={2: {"wrong_pin": True}})


def test_a_lane_whose_container_keeps_dying_retires_and_the_others_finish(
    tmp_path: Path,
) -> None:
    r = run(tmp_path, CAMPAIGN, script={1: {"dies": True}})
    assert r.outcome is not None and set(r.outcome.retired) == {1}
    retired = [e for e in r.events if e["type"] == "lane_retired"]
    assert [e["lane"] for e in retired] == [1]
    final = {}
    for record in r.records():
        final.setdefault(record.key, []).append(record)
    assert sorted(final) == sorted(e.key for e in r.experiments)  # nothing lost
    assert all(len(v) == 1 for v in final.values())  # nothing recorded twice
    bad = [rec for recs in final.values() for rec in recs if rec.status != "ok"]
    assert all(rec.lane == 1 for rec in bad)  # only what lane 1 ran before it retired failed
    assert ("stop", "a") in r.layers[1].calls  # the retired lane's container is removed


def test_a_lost_gpu_retires_its_lane_and_gives_its_experiment_back(tmp_path: Path) -> None:
    r = run(tmp_path, CAMPAIGN, script={3: {"lost": True}})
    assert r.outcome is not None and set(r.outcome.retired) == {3}
    (retired,) = [e for e in r.events if e["type"] == "lane_retired"]
    given = retired["given_back"]
    assert given is not None
    records = {rec.key: rec for rec in r.records()}
    assert records[given].status == "ok" and records[given].lane != 3
    assert all(rec.lane != 3 for rec in records.values())
    assert len(records) == 12


def test_every_lane_retired_with_work_left_aborts(tmp_path: Path) -> None:
    script = {n: {"lost": True} for n in range(4)}
    with pytest.raises(RunAborted, match="every lane that could run the 12 experiment"):
        run(tmp_path, CAMPAIGN, script=script)


def test_a_resume_runs_only_what_is_pending_across_lanes(tmp_path: Path) -> None:
    loaded = load(tmp_path, CAMPAIGN)
    all_keys = [e.key for e in order_experiments(loaded.configs, loaded.campaign)]
    done = set(all_keys[::3])
    r = run(tmp_path, CAMPAIGN, done=done)
    ran = sorted(key for _, key, _, _ in r.board.execs)
    assert ran == sorted(k for k in all_keys if k not in done)
