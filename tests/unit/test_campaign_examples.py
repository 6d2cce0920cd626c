"""The example campaigns in campaigns/ (the demo has its own tests): valid, dry-runnable, and
running each engine's own benchmark with its JSON report where llem merges it.

``llem run --dry-run`` touches nothing and needs no image or GPU, so these run everywhere; they
also check that a token in the environment never reaches what llem prints.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from llem_cli.campaign.load import check_file, load_campaign
from llem_cli.campaign.model import Metrics
from llem_cli.templates import BACKENDS, flow_list

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p for p in (ROOT / "campaigns").glob("*.yaml") if p.name != "demo.yaml")
COMPARE = ROOT / "campaigns" / "engines-compare.yaml"
SMOKE = ROOT / "campaigns" / "smoke.yaml"
SECRET = "hf_llemTestTokenNeverPrinted0123"

# What each engine's experiment must run, and the flag that puts its JSON at result.json.
ENGINE_MARKERS = {
    "pytorch": ("/llem/scripts/llem_generate_bench.py", "--out"),
    "vllm": ("vllm bench throughput", "--output-json"),
    "tensorrt": ("trtllm-bench --model", "--report_json"),
    "sglang": ("-m sglang.bench_offline_throughput", "--result-filename"),
}


def test_the_examples_are_there() -> None:
    assert COMPARE in EXAMPLES and SMOKE in EXAMPLES


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_validates_without_warnings(path: Path) -> None:
    loaded, problems = check_file(path)
    assert [p.render() for p in problems] == []
    assert loaded is not None


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_commands_are_the_init_templates(path: Path) -> None:
    """One definition of each engine's benchmark (llem_cli/templates): the examples use it."""
    campaign = load_campaign(path).campaign
    for name, backend in campaign.backends.items():
        wanted = BACKENDS[name].command
        assert tuple(backend.command) == wanted, (
            f"{path.name}: {name}'s command is not the template's; it should read\n"
            f"    command: {flow_list(wanted, len('    command: '))}"
        )


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_metrics_are_the_init_templates(path: Path) -> None:
    """Each engine's normalized metrics are mapped once (llem_cli/templates): the examples too."""
    campaign = load_campaign(path).campaign
    for name, backend in campaign.backends.items():
        wanted = Metrics.model_validate(
            {m.name: yaml.safe_load(m.source) for m in BACKENDS[name].metrics}
        )
        assert backend.metrics == wanted, f"{path.name}: {name}'s metrics are not the template's"
        assert {"output_tokens", "output_tokens_per_s"} <= set(backend.metrics.mapped()), name


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_report_goes_where_llem_merges_it(path: Path) -> None:
    campaign = load_campaign(path).campaign
    for name, backend in campaign.backends.items():
        flag = ENGINE_MARKERS[name][1]
        index = backend.command.index(flag)
        assert backend.command[index + 1] == "{experiment_dir}/result.json", name


def test_compare_campaign_shape() -> None:
    loaded = load_campaign(COMPARE)
    campaign = loaded.campaign
    assert {c.backend for c in loaded.configs} == set(BACKENDS)
    assert len({c.params["model"] for c in loaded.configs}) == 1
    assert len({c.params["batch_size"] for c in loaded.configs}) >= 3
    assert campaign.execution.cycles == 3
    assert campaign.execution.thermal is not None
    assert campaign.execution.idle_baseline
    assert len(loaded.configs) == len(BACKENDS) * 3


def test_smoke_campaign_is_quick() -> None:
    loaded = load_campaign(SMOKE)
    assert loaded.campaign.execution.cycles == 1
    assert len(loaded.configs) == len(BACKENDS)  # one experiment per engine
    assert all(c.params["num_prompts"] <= 16 for c in loaded.configs)


def dry_run(path: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_TOKEN": SECRET, "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "llem_cli", "run", str(path), "--dry-run",
         "--results-dir", str(tmp_path / "results")],
        capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_dry_run_shows_each_engine_benchmark_and_no_token(path: Path, tmp_path: Path) -> None:
    done = dry_run(path, tmp_path)
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    assert SECRET not in output
    assert "Traceback" not in output
    execs = [line for line in done.stdout.splitlines() if " exec -T -e " in line]
    loaded = load_campaign(path)
    assert len(execs) == len(loaded.configs) * loaded.campaign.execution.cycles
    for name, (program, flag) in ENGINE_MARKERS.items():
        mine = [line for line in execs if f" -e LLEM_EXPERIMENT_DIR {name} " in line]
        assert mine, f"no experiment for {name}"
        for line in mine:
            assert program in line and flag in line
            assert f"{flag} /llem/run/experiments/" in line and "/result.json" in line
    assert not (tmp_path / "results").exists()  # a dry run writes nothing
