"""Execution orders and the pauses between experiments, as tables.

The campaign: 2 backends x 2 configurations x 3 cycles, listed so that the expansion
alternates backends (vllm first), which is what tells "backend by backend, in first-appearance
order" apart from "backends sorted" or "configurations in expansion order".
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from click.testing import CliRunner

from llem_cli.campaign.load import LoadedCampaign, load_campaign
from llem_cli.cli import cli
from llem_cli.runner.schedule import Experiment, order_experiments, pause

CAMPAIGN = """\
name: grouped
compose: compose.yml
backends:
  pytorch: {command: [bench, "{n}"]}
  vllm: {command: [bench, "{n}"]}
experiments:
  - {backend: vllm, n: 1}
  - {backend: pytorch, n: 1}
  - {backend: vllm, n: 2}
  - {backend: pytorch, n: 2}
execution:
  cycles: 3
  order: ORDER
  seed: 5
  gap: GAP
  cycle_gap: CYCLE_GAP
"""

COMPOSE = """\
services:
  pytorch: {image: busybox, network_mode: none}
  vllm: {image: busybox, network_mode: none}
"""

V1, P1, V2, P2 = ("vllm", 1), ("pytorch", 1), ("vllm", 2), ("pytorch", 2)


def load(tmp_path: Path, order: str, gap: str = "10s", cycle_gap: str = "1m") -> LoadedCampaign:
    (tmp_path / "compose.yml").write_text(COMPOSE)
    path = tmp_path / f"{order}-{gap}-{cycle_gap}.yaml"
    text = CAMPAIGN.replace("ORDER", order).replace("CYCLE_GAP", cycle_gap).replace("GAP", gap)
    path.write_text(text)
    return load_campaign(path)


def planned(loaded: LoadedCampaign) -> list[Experiment]:
    return list(order_experiments(loaded.configs, loaded.campaign))


def rows(experiments: list[Experiment]) -> list[tuple[str, int, int]]:
    """(backend, n, cycle) per experiment: the order as a table."""
    return [(e.config.backend, e.config.params["n"], e.cycle) for e in experiments]


def keys(experiments: list[Experiment]) -> list[str]:
    return [e.key for e in experiments]


def pauses(loaded: LoadedCampaign, experiments: list[Experiment]) -> list[tuple[float, str]]:
    """The pause before each experiment, the first one included."""
    previous: list[Experiment | None] = [None, *experiments[:-1]]
    return [pause(a, b, loaded.campaign) for a, b in zip(previous, experiments, strict=True)]


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        # every configuration once per cycle, in expansion order, cycle after cycle
        (
            "interleaved",
            [(*config, cycle) for cycle in (1, 2, 3) for config in (V1, P1, V2, P2)],
        ),
        # backend by backend (vllm appears first), each configuration's cycles back to back
        (
            "grouped",
            [(*config, cycle) for config in (V1, V2, P1, P2) for cycle in (1, 2, 3)],
        ),
    ],
)
def test_order_table(tmp_path: Path, order: str, expected: list[tuple[str, int, int]]) -> None:
    assert rows(planned(load(tmp_path, order))) == expected


def test_grouped_starts_each_backend_once(tmp_path: Path) -> None:
    backends = [e.config.backend for e in planned(load(tmp_path, "grouped"))]
    assert [b for b, _ in itertools.groupby(backends)] == ["vllm", "pytorch"]


def test_grouped_runs_every_cycle_of_a_configuration_back_to_back(tmp_path: Path) -> None:
    configs = [e.config.config_id for e in planned(load(tmp_path, "grouped"))]
    runs = [(c, len(list(g))) for c, g in itertools.groupby(configs)]
    assert [length for _, length in runs] == [3, 3, 3, 3]
    assert len({c for c, _ in runs}) == 4  # no configuration comes back later


def test_shuffled_is_a_seeded_permutation(tmp_path: Path) -> None:
    shuffled = rows(planned(load(tmp_path, "shuffled")))
    again = rows(planned(load(tmp_path, "shuffled", gap="11s")))  # another file, same seed
    assert shuffled == again
    assert sorted(shuffled) == sorted(rows(planned(load(tmp_path, "interleaved"))))


def test_keys_do_not_depend_on_the_order(tmp_path: Path) -> None:
    """A resume after an order change finds its records: the same key means the same
    configuration and cycle whatever the order."""
    by_order = {
        order: {key: row for key, row in zip(keys(experiments), rows(experiments), strict=True)}
        for order in ("interleaved", "grouped", "shuffled")
        for experiments in [planned(load(tmp_path, order))]
    }
    assert by_order["grouped"] == by_order["interleaved"] == by_order["shuffled"]
    assert len(by_order["grouped"]) == 12
    for key, (_, _, cycle) in by_order["grouped"].items():
        assert key.endswith(f"-c{cycle}")


GAP, CYCLE = (10.0, "gap"), (60.0, "cycle_gap")
FIRST = (0.0, "gap")


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        # a new cycle starts when the cycle number changes: 2 cycle gaps
        ("interleaved", [FIRST, GAP, GAP, GAP] + [CYCLE, GAP, GAP, GAP] * 2),
        # a new cycle starts at each repeat of a configuration: 4 x 2 cycle gaps, and the
        # switch to the next configuration (or backend) is a plain gap
        ("grouped", [FIRST, CYCLE, CYCLE] + [GAP, CYCLE, CYCLE] * 3),
        # no cycle boundary to honour
        ("shuffled", [FIRST] + [GAP] * 11),
    ],
)
def test_pause_table(tmp_path: Path, order: str, expected: list[tuple[float, str]]) -> None:
    loaded = load(tmp_path, order)
    assert pauses(loaded, planned(loaded)) == expected


def test_cycle_gap_shorter_than_gap_leaves_gap(tmp_path: Path) -> None:
    loaded = load(tmp_path, "grouped", gap="2m", cycle_gap="30s")
    assert pauses(loaded, planned(loaded)) == [FIRST] + [(120.0, "gap")] * 11


def test_grouped_pause_compares_the_experiment_that_last_ran(tmp_path: Path) -> None:
    """On a resume (or after pruned experiments) the previous experiment that ran need not be
    the one just before in the plan: a repeat of the same configuration still takes
    cycle_gap, a different configuration with the same cycle number takes gap."""
    loaded = load(tmp_path, "grouped")
    plan = planned(loaded)
    v1_c1, v1_c3, v2_c1, p1_c1 = plan[0], plan[2], plan[3], plan[6]
    assert pause(v1_c1, v1_c3, loaded.campaign) == CYCLE
    assert pause(v1_c3, v2_c1, loaded.campaign) == GAP
    assert pause(v1_c1, p1_c1, loaded.campaign) == GAP  # same cycle number, other backend
    assert pause(v1_c1, v2_c1, loaded.campaign) == GAP  # same cycle number, other config


@pytest.mark.parametrize(
    ("order", "total"),
    [
        ("interleaved", "3m30s"),  # 2 x 1m + 9 x 10s
        ("grouped", "8m30s"),  # 8 x 1m + 3 x 10s
        ("shuffled", "1m50s"),  # 11 x 10s
    ],
)
def test_plan_reports_the_gap_time_of_the_order(tmp_path: Path, order: str, total: str) -> None:
    (tmp_path / "compose.yml").write_text(COMPOSE)
    path = tmp_path / "c.yaml"
    text = CAMPAIGN.replace("ORDER", order).replace("CYCLE_GAP", "1m").replace("GAP", "10s")
    path.write_text(text)
    result = CliRunner().invoke(cli, ["--no-color", "plan", str(path), "--limit", "0"])
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())
    assert f"order {order}; gaps alone take at least {total}" in flat
