"""Lanes: splitting GPUs into lanes, --gpus, and the dispatcher's order, rotation and hand-back.

Pure (no Docker, no NVML, no threads but the one blocking test's): ``runner/lanes.py``.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from llem_cli.campaign.expansion import Config
from llem_cli.campaign.model import Campaign
from llem_cli.errors import EnvironmentProblem, UsageProblem
from llem_cli.runner.lanes import (
    Dispatcher,
    HostGpu,
    Lane,
    parse_gpus_option,
    plan_lanes,
    select_gpus,
    service_gpus,
)
from llem_cli.runner.schedule import Experiment

HOST = [HostGpu(i, f"GPU-{i:04d}") for i in range(4)]


def campaign(**backends: dict[str, Any]) -> Campaign:
    spec = {name: {"command": ["run"], **extra} for name, extra in backends.items()}
    return Campaign.model_validate(
        {"name": "c", "compose": "compose.yml", "backends": spec or {"pt": {"command": ["x"]}}}
    )


def experiments(configs: int, cycles: int, backend: str = "pt") -> list[Experiment]:
    """Interleaved: every configuration once per cycle."""
    out = []
    for cycle in range(1, cycles + 1):
        for n in range(configs):
            config = Config(backend=backend, params={"n": n}, config_id=f"cfg{n}", origin=())
            out.append(Experiment(config, cycle, backend))
    return out


# ---- planning -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lanes", "gpus", "expected"),
    [
        (4, None, [["0"], ["1"], ["2"], ["3"]]),
        ("auto", None, [["0"], ["1"], ["2"], ["3"]]),
        (2, None, [["0"], ["1"]]),
        ("auto", 2, [["0", "1"], ["2", "3"]]),
        ("auto", 3, [["0", "1", "2"]]),
        (1, None, [["0", "1", "2", "3"]]),  # one lane: every GPU llem may use, as before
        (1, 2, [["0", "1"]]),
    ],
)
def test_lanes_split_the_gpus_in_order(lanes: Any, gpus: Any, expected: list[list[str]]) -> None:
    c = campaign(pt={"gpus": gpus} if gpus else {})
    planned = plan_lanes(c, ["pt"], HOST, lanes)
    assert [[g.label() for g in lane.gpus] for lane in planned] == expected
    assert [lane.number for lane in planned] == list(range(len(expected)))


def test_largest_gpu_count_sizes_the_lanes_and_a_smaller_backend_uses_the_first() -> None:
    c = campaign(big={"gpus": 2}, small={"gpus": 1})
    planned = plan_lanes(c, ["big", "small"], HOST, "auto")
    assert len(planned) == 2
    assert [g.index for g in planned[1].gpus_for(c.backends["small"])] == [2]
    assert [g.index for g in service_gpus(planned[1], c, "big")] == [2, 3]


def test_more_lanes_than_gpus_is_a_usage_error() -> None:
    with pytest.raises(UsageProblem, match=r"lanes: 5 lanes of 1 GPU\(s\) need 5 GPUs.*use 4"):
        plan_lanes(campaign(), ["pt"], HOST, 5)


def test_a_count_above_the_gpus_allowed_names_the_backend() -> None:
    with pytest.raises(UsageProblem, match=r"backends\.pt\.gpus: 3 GPUs per experiment.*may use 2"):
        plan_lanes(campaign(pt={"gpus": 3}), ["pt"], HOST[:2], 2, gpus_given=True)


def test_lanes_without_any_host_gpu_is_an_environment_problem() -> None:
    with pytest.raises(EnvironmentProblem, match="NVML reports none"):
        plan_lanes(campaign(), ["pt"], [], 2)


def test_a_pinned_list_must_lie_within_one_lane() -> None:
    c = campaign(pt={"gpus": [1, 2]})
    with pytest.raises(UsageProblem, match=r"backends\.pt\.gpus: \[1, 2\] is not within one lane"):
        plan_lanes(c, ["pt"], HOST, 2)
    ok = plan_lanes(campaign(pt={"gpus": [2, 3]}), ["pt"], HOST, 2)
    assert [lane.holds(campaign(pt={"gpus": [2, 3]}).backends["pt"]) for lane in ok] == [
        False,
        True,
    ]


def test_gpus_option_takes_indexes_and_uuids_in_the_order_given() -> None:
    chosen = select_gpus(HOST, parse_gpus_option("3, GPU-0001"))
    assert chosen == [HOST[3], HOST[1]]


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        (
            "7",
            UsageProblem,
            r"--gpus 7: NVML knows no GPU with that index \(host GPUs: 0, 1, 2, 3\)",
        ),
        ("GPU-dead", UsageProblem, "NVML knows no GPU with that UUID"),
        ("0,0", UsageProblem, "listed twice"),
        ("0,GPU-0000", UsageProblem, "listed twice"),
        ("0,,1", UsageProblem, "comma-separated"),
    ],
)
def test_gpus_option_errors(text: str, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        select_gpus(HOST, parse_gpus_option(text))


def test_an_index_without_nvml_cannot_be_mapped() -> None:
    with pytest.raises(EnvironmentProblem, match="cannot be mapped to UUIDs"):
        select_gpus([], ["0"])


def test_a_mig_uuid_is_accepted_and_known_as_mig() -> None:
    (gpu,) = select_gpus(HOST, ["MIG-1234"])
    assert gpu.mig and gpu.index is None


# ---- the dispatcher -------------------------------------------------------------------------


def lanes_of(n: int) -> list[Lane]:
    return [Lane(i, (HOST[i],)) for i in range(n)]


def drain_in_turns(d: Dispatcher, lanes: int) -> dict[int, list[str]]:
    """Lanes take one experiment each in turn and finish it at once (equal-length runs)."""
    taken: dict[int, list[str]] = {i: [] for i in range(lanes)}
    while True:
        progress = False
        for lane in range(lanes):
            e = d.take(lane, wait=False)
            if e is not None:
                taken[lane].append(e.key)
                d.settle(e)
                progress = True
        if not progress:
            return taken


def test_every_experiment_is_handed_out_once_in_plan_order_and_lanes_share_fairly() -> None:
    plan = experiments(configs=3, cycles=4)
    d = Dispatcher(plan, lanes_of(4))
    taken = drain_in_turns(d, 4)
    handed = [key for keys in taken.values() for key in keys]
    assert sorted(handed) == sorted(e.key for e in plan)
    assert [len(keys) for keys in taken.values()] == [3, 3, 3, 3]
    # rotation: each configuration's cycles ran on different lanes (4 cycles, 4 lanes)
    lanes_per_config: dict[str, set[int]] = {}
    for lane, keys in taken.items():
        for key in keys:
            lanes_per_config.setdefault(key.split("-c")[0], set()).add(lane)
    assert all(len(lanes) == 4 for lanes in lanes_per_config.values()), lanes_per_config


def test_rotation_reaches_past_a_configuration_already_run_in_this_lane() -> None:
    """Grouped order (all cycles of a configuration back to back) spreads them over lanes."""
    plan = [e for e in experiments(configs=2, cycles=2)]
    plan.sort(key=lambda e: (e.config.config_id, e.cycle))  # cfg0-c1 cfg0-c2 cfg1-c1 cfg1-c2
    d = Dispatcher(plan, lanes_of(2))
    first = d.take(0, wait=False)
    assert first is not None and first.key == "cfg0-c1"
    d.settle(first)
    # lane 0 again: cfg0-c2 would repeat cfg0 on lane 0; within the window, cfg1-c1 is new here
    second = d.take(0, wait=False)
    assert second is not None and second.key == "cfg0-c2" or second.key == "cfg1-c1"
    assert second.key == "cfg1-c1"
    # lane 1 then takes cfg0-c2: plan order otherwise holds
    third = d.take(1, wait=False)
    assert third is not None and third.key == "cfg0-c2"


def test_a_retired_lane_takes_nothing_and_its_experiment_goes_to_another() -> None:
    plan = experiments(configs=4, cycles=1)
    d = Dispatcher(plan, lanes_of(2))
    a = d.take(0, wait=False)
    b = d.take(1, wait=False)
    assert a is not None and b is not None
    d.give_back(a)  # lane 0 could not run it: its budget was spent before the exec
    d.retire(0)
    assert d.take(0, wait=False) is None
    d.settle(b)
    rest = []
    while (e := d.take(1, wait=False)) is not None:
        rest.append(e.key)
        d.settle(e)
    assert rest == ["cfg0-c1", "cfg2-c1", "cfg3-c1"]  # given back to its place in the order
    assert d.pending() == []


def test_a_lane_waits_while_an_experiment_may_still_come_back() -> None:
    plan = experiments(configs=1, cycles=1)
    d = Dispatcher(plan, lanes_of(2))
    held = d.take(0, wait=False)
    assert held is not None
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(d.take(1)))
    waiter.start()
    time.sleep(0.2)
    assert waiter.is_alive()  # lane 1 waits: lane 0 may give it back
    d.give_back(held)
    d.retire(0)
    waiter.join(5)
    assert [e.key for e in got] == ["cfg0-c1"]


def test_a_lane_stops_waiting_when_the_other_settles() -> None:
    plan = experiments(configs=1, cycles=1)
    d = Dispatcher(plan, lanes_of(2))
    held = d.take(0, wait=False)
    assert held is not None
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(d.take(1)))
    waiter.start()
    d.settle(held)
    waiter.join(5)
    assert got == [None]


def test_resume_hands_out_only_what_is_pending() -> None:
    plan = experiments(configs=3, cycles=2)
    done = {"cfg0-c1", "cfg2-c2"}
    d = Dispatcher([e for e in plan if e.key not in done], lanes_of(2))
    handed = [k for keys in drain_in_turns(d, 2).values() for k in keys]
    assert sorted(handed) == sorted(e.key for e in plan if e.key not in done)


def test_work_left_sees_pending_experiments_of_a_service_this_lane_can_run() -> None:
    plan = experiments(configs=2, cycles=1)
    pinned = Lane(1, (HOST[1],))
    d = Dispatcher(plan, [Lane(0, (HOST[0],)), pinned], can_run=lambda e, lane: lane.number == 0)
    assert d.work_left("pt", 0)
    assert not d.work_left("pt", 1)  # nothing of pt that lane 1 may run
    first = d.take(0, wait=False)
    assert first is not None
    assert d.work_left("pt", 0, besides=first)
    second = d.take(0, wait=False)
    assert second is not None
    assert not d.work_left("pt", 0)
    assert d.take(1, wait=False) is None


def test_stop_releases_a_waiting_lane() -> None:
    plan = experiments(configs=1, cycles=1)
    d = Dispatcher(plan, lanes_of(2))
    assert d.take(0, wait=False) is not None
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(d.take(1)))
    waiter.start()
    d.stop()
    waiter.join(5)
    assert got == [None]
