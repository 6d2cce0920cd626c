"""Plan expansion and ordering, on the shared DESIGN.md's example campaign, via the real CLI."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from llem_cli.campaign.expansion import make_config_id, matches, same_value
from llem_cli.campaign.load import load_campaign
from llem_cli.campaign.placeholders import render
from llem_cli.cli import cli
from llem_cli.runner.schedule import order_experiments, pause

# The shared DESIGN.md's example campaign, with the `vllm` backend of its grid declared.
DESIGN_EXAMPLE = """\
name: llama-batch                 # [a-z0-9][a-z0-9_-]*, required
compose: compose.yml              # one path or a list, relative to this file
project: llem-llama-batch         # compose project name; default llem-<name>
backends:                         # backend name -> how to run an experiment there
  pytorch:
    service: pytorch              # compose service
    command: [lem-bench, --model, "{model}", --batch-size, "{batch_size}"]
    gpus: [0]                     # host GPU indices this backend uses; default: all
    env: {HF_HUB_OFFLINE: "1"}
  vllm:
    service: vllm-server
    command: [vllm-bench, "{model}", "{batch_size}", "{gpu_memory_utilization}", "{key}"]
grid:                             # cartesian product
  backend: [pytorch, vllm]
  model: [meta-llama/Llama-3.2-1B]
  batch_size: [1, 8, 32]
per_backend:                      # extra axes for one backend only
  vllm: {gpu_memory_utilization: [0.8, 0.9]}
experiments:                      # explicit extra configurations
  - {backend: pytorch, model: gpt2, batch_size: 64}
exclude:                          # drop every configuration matching all given keys
  - {backend: vllm, batch_size: 1}
execution:
  cycles: 3
  order: interleaved              # interleaved | shuffled | grouped
  seed: 0                         # for shuffled
  timeout: 30m                    # per experiment
  retries: 1                      # extra attempts for retryable failures
  gap: 60s                        # minimum pause between experiments
  cycle_gap: 5m
  thermal: {max_temp_c: 45, max_wait: 10m}   # wait until host GPUs cool (optional)
  idle_baseline: 30s              # measure idle power once before the first experiment
health:
  probe: nvidia-smi               # or an argv list printing the same CSV
  every: 1                        # probe before every Nth experiment
  max_memory_used_pct: 90         # GPU memory already used before an experiment -> restart
  max_restarts: 3                 # per run
  restart_backoff: 5s             # doubles after each restart
results: results                  # directory, relative to the campaign file
"""

COMPOSE = """\
services:
  pytorch: {image: busybox, network_mode: none}
  vllm-server: {image: busybox, network_mode: none}
  a: {image: busybox, network_mode: none}
  b: {image: busybox, network_mode: none}
  only: {image: busybox, network_mode: none}
"""


def canonical_id(backend: str, params: dict) -> str:
    """The documented canonical form, computed here independently of llem_cli.plan."""
    text = json.dumps(
        {"backend": backend, "params": params},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def write_campaign(tmp_path: Path, text: str = DESIGN_EXAMPLE, name: str = "c.yaml") -> Path:
    (tmp_path / "compose.yml").write_text(COMPOSE)
    path = tmp_path / name
    path.write_text(text)
    return path


def plan_json(path: Path, *args: str, env: dict | None = None) -> list[dict]:
    result = CliRunner().invoke(cli, ["plan", str(path), "--json", *args], env=env)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    return json.loads(result.stdout)


def with_order(order: str, seed: int = 0, text: str = DESIGN_EXAMPLE) -> str:
    return text.replace("order: interleaved", f"order: {order}").replace(
        "seed: 0 ", f"seed: {seed} "
    )


def expected_configs() -> list[tuple[str, dict]]:
    """The DESIGN example expanded by hand: grid x per_backend, + experiments, - exclude."""
    configs = []
    for backend in ["pytorch", "vllm"]:
        for batch in [1, 8, 32]:
            base = {"model": "meta-llama/Llama-3.2-1B", "batch_size": batch}
            if backend == "vllm":
                if batch == 1:  # excluded
                    continue
                for util in [0.8, 0.9]:
                    configs.append((backend, {**base, "gpu_memory_utilization": util}))
            else:
                configs.append((backend, base))
    configs.append(("pytorch", {"model": "gpt2", "batch_size": 64}))
    return configs


# --- expansion --------------------------------------------------------------------------------


def test_design_example_validates(tmp_path: Path) -> None:
    path = write_campaign(tmp_path)
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    # 2 backends: pytorch 1*3, vllm 1*3*2 = 9 grid configurations, +1 experiment, -2 excluded
    assert 1 * 3 + 1 * 3 * 2 + 1 - 2 == 8
    assert result.output == f"{path}: valid: 8 configurations, 24 experiments, 2 backends\n"


def test_design_example_plan_json(tmp_path: Path) -> None:
    plan = plan_json(write_campaign(tmp_path))
    assert len(plan) == 8 * 3
    for item in plan:
        assert list(item) == ["key", "config_id", "cycle", "backend", "service", "params"]
        assert item["key"] == f"{item['config_id']}-c{item['cycle']}"
        assert item["config_id"] == canonical_id(item["backend"], item["params"])
        assert item["service"] == {"pytorch": "pytorch", "vllm": "vllm-server"}[item["backend"]]
    # interleaved: every configuration once per cycle, cycle after cycle, in expansion order
    want = [
        (cycle, backend, params) for cycle in (1, 2, 3) for backend, params in expected_configs()
    ]
    assert [(i["cycle"], i["backend"], i["params"]) for i in plan] == want
    assert len({item["key"] for item in plan}) == 24


def test_config_id_is_the_documented_hash(tmp_path: Path) -> None:
    params = {"model": "meta-llama/Llama-3.2-1B", "batch_size": 1}
    expected = hashlib.sha256(
        b'{"backend":"pytorch","params":{"batch_size":1,"model":"meta-llama/Llama-3.2-1B"}}'
    ).hexdigest()[:12]
    assert expected == "7b141943c655"  # stable across runs and machines
    assert make_config_id("pytorch", params) == expected
    first = plan_json(write_campaign(tmp_path))[0]
    assert (first["config_id"], first["key"]) == (expected, f"{expected}-c1")


def test_config_id_ignores_key_order() -> None:
    a = make_config_id("vllm", {"model": "m", "batch_size": 8, "gpu_memory_utilization": 0.8})
    b = make_config_id("vllm", {"gpu_memory_utilization": 0.8, "batch_size": 8, "model": "m"})
    assert a == b
    assert a != make_config_id("pytorch", {"model": "m", "batch_size": 8})
    assert a != make_config_id("vllm", {"model": "m", "batch_size": 8})
    assert make_config_id("x", {"a": "1"}) != make_config_id("x", {"a": 1})
    assert make_config_id("x", {"m": "é"}) == canonical_id("x", {"m": "é"})


def test_config_ids_do_not_depend_on_the_order_of_the_file(tmp_path: Path) -> None:
    reordered = (
        DESIGN_EXAMPLE.replace(
            "  backend: [pytorch, vllm]\n  model: [meta-llama/Llama-3.2-1B]\n"
            "  batch_size: [1, 8, 32]\n",
            "  batch_size: [32, 1, 8]\n  model: [meta-llama/Llama-3.2-1B]\n"
            "  backend: [vllm, pytorch]\n",
        )
        .replace("{gpu_memory_utilization: [0.8, 0.9]}", "{gpu_memory_utilization: [0.9, 0.8]}")
        .replace(
            "{backend: pytorch, model: gpt2, batch_size: 64}",
            "{batch_size: 64, model: gpt2, backend: pytorch}",
        )
    )
    assert reordered != DESIGN_EXAMPLE
    one = plan_json(write_campaign(tmp_path, DESIGN_EXAMPLE, "one.yaml"))
    two = plan_json(write_campaign(tmp_path, reordered, "two.yaml"))
    assert [i["key"] for i in one] != [i["key"] for i in two]  # the order did change
    assert sorted(i["key"] for i in one) == sorted(i["key"] for i in two)


def test_grid_without_backend_axis_applies_to_every_backend(tmp_path: Path) -> None:
    text = """\
name: two
compose: compose.yml
backends:
  a: {command: [x, "{n}"]}
  b: {command: [y, "{n}", "{m}"]}
grid:
  n: [1, 2, 3]
per_backend:
  b: {m: [x, y]}
"""
    plan = plan_json(write_campaign(tmp_path, text))
    assert [(i["backend"], i["params"]) for i in plan] == [
        ("a", {"n": 1}),
        ("a", {"n": 2}),
        ("a", {"n": 3}),
        ("b", {"n": 1, "m": "x"}),
        ("b", {"n": 1, "m": "y"}),
        ("b", {"n": 2, "m": "x"}),
        ("b", {"n": 2, "m": "y"}),
        ("b", {"n": 3, "m": "x"}),
        ("b", {"n": 3, "m": "y"}),
    ]


def test_large_grid_counts(tmp_path: Path) -> None:
    text = """\
name: big
compose: compose.yml
backends:
  a: {command: [x, "{p}", "{q}", "{r}"]}
grid:
  p: [1, 2, 3, 4, 5]
  q: [a, b, c, d]
  r: [true, false, 0.5]
exclude:
  - {q: a}
  - {p: 1, r: true}
execution: {cycles: 2}
"""
    plan = plan_json(write_campaign(tmp_path, text))
    grid = list(itertools.product([1, 2, 3, 4, 5], "abcd", [True, False, 0.5]))
    kept = [g for g in grid if g[1] != "a" and not (g[0] == 1 and g[2] is True)]
    assert len(plan) == len(kept) * 2 == (60 - 15 - 3) * 2


def test_exclude_and_same_value() -> None:
    assert same_value(1, 1.0)
    assert not same_value(True, 1)
    assert not same_value(1, True)
    assert same_value(True, True)
    assert matches({"backend": "vllm", "batch_size": 1}, "vllm", {"batch_size": 1, "m": "x"})
    assert not matches({"backend": "vllm", "batch_size": 1}, "pytorch", {"batch_size": 1})
    assert not matches({"other": 1}, "vllm", {"batch_size": 1})
    assert not matches({"flag": 1}, "vllm", {"flag": True})


def test_single_backend_experiments_need_no_backend_key(tmp_path: Path) -> None:
    text = """\
name: one
compose: compose.yml
backends:
  only: {command: [x, "{n}"]}
experiments:
  - {n: 1}
  - {n: 2}
"""
    plan = plan_json(write_campaign(tmp_path, text))
    assert [(i["backend"], i["params"]) for i in plan] == [("only", {"n": 1}), ("only", {"n": 2})]


# --- ordering ---------------------------------------------------------------------------------


def test_grouped_runs_one_backend_at_a_time(tmp_path: Path) -> None:
    plan = plan_json(write_campaign(tmp_path, with_order("grouped")))
    backends = [i["backend"] for i in plan]
    assert backends == ["pytorch"] * 12 + ["vllm"] * 12
    # within a backend, configuration after configuration, each one's cycles back to back
    assert [i["cycle"] for i in plan] == [1, 2, 3] * 8
    configs = [i["config_id"] for i in plan[::3]]
    assert [i["config_id"] for i in plan] == [c for c in configs for _ in range(3)]
    interleaved = plan_json(write_campaign(tmp_path))
    expansion = interleaved[:8]  # cycle 1 of interleaved: every configuration, expansion order
    by_backend = [i for b in ("pytorch", "vllm") for i in expansion if i["backend"] == b]
    assert configs == [i["config_id"] for i in by_backend]
    assert sorted(i["key"] for i in plan) == sorted(i["key"] for i in interleaved)


def test_shuffled_is_seeded_and_reproducible(tmp_path: Path) -> None:
    a1 = plan_json(write_campaign(tmp_path, with_order("shuffled", 0), "a1.yaml"))
    a2 = plan_json(write_campaign(tmp_path, with_order("shuffled", 0), "a2.yaml"))
    b = plan_json(write_campaign(tmp_path, with_order("shuffled", 7), "b.yaml"))
    interleaved = plan_json(write_campaign(tmp_path))
    keys = [i["key"] for i in a1]
    assert keys == [i["key"] for i in a2]
    assert keys != [i["key"] for i in b]
    assert keys != [i["key"] for i in interleaved]
    assert sorted(keys) == sorted(i["key"] for i in b) == sorted(i["key"] for i in interleaved)
    assert len(set(keys)) == 24


def test_shuffled_order_is_the_same_in_a_fresh_process(tmp_path: Path) -> None:
    """Reproducible across processes (no dependence on hash randomisation)."""
    import subprocess
    import sys

    path = write_campaign(tmp_path, with_order("shuffled", 3))
    runs = [
        subprocess.run(
            [sys.executable, "-m", "llem_cli", "plan", str(path), "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            env={"PYTHONHASHSEED": str(seed), "PATH": "/usr/bin:/bin"},
            check=True,
        ).stdout
        for seed in (1, 2)
    ]
    assert runs[0] == runs[1]
    assert [i["key"] for i in json.loads(runs[0])] == [i["key"] for i in plan_json(path)]


@pytest.mark.parametrize("cycles", [1, 2, 5])
def test_cycles(tmp_path: Path, cycles: int) -> None:
    text = DESIGN_EXAMPLE.replace("cycles: 3", f"cycles: {cycles}")
    plan = plan_json(write_campaign(tmp_path, text))
    assert len(plan) == 8 * cycles
    assert sorted({i["cycle"] for i in plan}) == list(range(1, cycles + 1))
    for cycle in range(1, cycles + 1):
        assert sum(i["cycle"] == cycle for i in plan) == 8


def test_order_experiments_is_lazy(tmp_path: Path) -> None:
    loaded = load_campaign(write_campaign(tmp_path))
    iterator = order_experiments(loaded.configs, loaded.campaign)
    assert not isinstance(iterator, list)
    first = next(iter(iterator))
    assert first.key == "7b141943c655-c1"


# --- the table and its totals -----------------------------------------------------------------


def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize(
    ("order", "gaps"),
    [
        # 24 experiments, 23 pauses: 2 cycle boundaries take cycle_gap 5m, 21 take gap 60s
        ("interleaved", "31m"),
        # each configuration's 3 cycles back to back: 8 x 2 repeats take cycle_gap 5m, the 7
        # switches to the next configuration take gap 60s: 16 x 5m + 7 x 1m
        ("grouped", "1h27m"),
        # shuffled has no cycle boundaries: 23 x 60s
        ("shuffled", "23m"),
    ],
)
def test_plan_table_totals_and_gaps(tmp_path: Path, order: str, gaps: str) -> None:
    path = write_campaign(tmp_path, with_order(order))
    result = CliRunner().invoke(cli, ["--no-color", "plan", str(path), "--limit", "0"])
    assert result.exit_code == 0, result.output
    flat = _flat(result.output)
    assert (
        f"8 configurations × 3 cycles = 24 experiments on 2 backends; order {order}; "
        f"gaps alone take at least {gaps}"
    ) in flat
    assert "7b141943c655-c1" in result.output
    assert len(re.findall(r"[0-9a-f]{12}-c[123]", result.output)) == 24


def test_plan_table_limit(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["plan", str(write_campaign(tmp_path)), "--limit", "5"])
    assert result.exit_code == 0
    assert len(re.findall(r"[0-9a-f]{12}-c[123]", result.output)) == 5
    assert "19 more (--limit 0 shows all, --json for scripts)" in _flat(result.output)


def test_plan_on_invalid_file_exits_2(tmp_path: Path) -> None:
    path = write_campaign(tmp_path, DESIGN_EXAMPLE.replace("cycles: 3", "cycles: 0"))
    for args in ([], ["--json"]):
        result = CliRunner().invoke(cli, ["plan", str(path), *args])
        assert result.exit_code == 2
        assert "Traceback" not in result.output
        assert f"{path}:24:11: execution.cycles: " in result.stderr
        assert result.stdout == ""


def test_plan_on_missing_file_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["plan", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "file not found" in result.stderr
    assert "Traceback" not in result.output


def test_plan_prints_warnings_on_stderr(tmp_path: Path) -> None:
    text = DESIGN_EXAMPLE.replace(
        "  - {backend: vllm, batch_size: 1}", "  - {backend: vllm, batch_size: 1}\n  - {model: x}"
    )
    path = write_campaign(tmp_path, text)
    result = CliRunner().invoke(cli, ["plan", str(path), "--json"])
    assert result.exit_code == 0
    assert "exclude[1]: warning: matches no configuration" in result.stderr
    assert len(json.loads(result.stdout)) == 24


def test_empty_grid_with_experiments(tmp_path: Path) -> None:
    text = """\
name: e
compose: compose.yml
backends:
  a: {command: [x]}
grid: {}
experiments:
  - {}
"""
    plan = plan_json(write_campaign(tmp_path, text))
    assert [(i["backend"], i["params"]) for i in plan] == [("a", {})]


# --- rendered commands ------------------------------------------------------------------------


def test_commands_render_with_params_and_builtins(tmp_path: Path) -> None:
    text = DESIGN_EXAMPLE.replace(
        '[vllm-bench, "{model}", "{batch_size}", "{gpu_memory_utilization}", "{key}"]',
        """[sh, -c, 'echo {{model}} ${HOME} {"a": {"b": 1}} {model} {gpu_memory_utilization}',
              "{key}", 8, 0.25]""",
    )
    loaded = load_campaign(write_campaign(tmp_path, text))
    experiment = next(
        e for e in order_experiments(loaded.configs, loaded.campaign) if e.config.backend == "vllm"
    )
    command = loaded.campaign.backends["vllm"].command
    values = {**experiment.config.params, "key": experiment.key}
    rendered = [render(item, values) for item in command]
    assert rendered == [
        "sh",
        "-c",
        'echo {model} ${HOME} {"a": {"b": 1}} meta-llama/Llama-3.2-1B 0.8',
        experiment.key,
        "8",
        "0.25",
    ]


@pytest.mark.parametrize(
    ("order", "boundaries"),
    # DESIGN_EXAMPLE: gap 60s, cycle_gap 5m, 3 cycles, 8 configurations; grouped: a new cycle
    # starts at each repeat of a configuration (8 x 2)
    [("interleaved", 2), ("grouped", 16), ("shuffled", 0)],
)
def test_each_pause_names_the_setting_it_comes_from(
    tmp_path: Path, order: str, boundaries: int
) -> None:
    loaded = load_campaign(write_campaign(tmp_path, with_order(order)))
    experiments = list(order_experiments(loaded.configs, loaded.campaign))
    pauses = [pause(a, b, loaded.campaign) for a, b in itertools.pairwise(experiments)]
    assert pause(None, experiments[0], loaded.campaign) == (0.0, "gap")
    assert pauses.count((300.0, "cycle_gap")) == boundaries
    assert pauses.count((60.0, "gap")) == len(pauses) - boundaries
