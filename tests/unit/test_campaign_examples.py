"""The example campaigns in campaigns/ (the demo has its own tests): valid, dry-runnable, and
running each engine's own benchmark with its JSON report where llem merges it.

``llem run --dry-run`` touches nothing and needs no image or GPU, so these run everywhere; they
also check that a token in the environment never reaches what llem prints. The serving sweep's
backends (``<engine>-serve``) are held to :data:`llem_cli.templates.SERVING` as the offline
backends are to ``BACKENDS``: serve, ready, client and metrics alike.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from llem_cli.campaign.load import check_file, load_campaign
from llem_cli.campaign.model import METRIC_NAMES, Metrics
from llem_cli.campaign.servers import server_param_names
from llem_cli.templates import BACKENDS, SERVING, ServingTemplate, flow_list, template

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p for p in (ROOT / "campaigns").glob("*.yaml") if p.name != "demo.yaml")
COMPARE = ROOT / "campaigns" / "engines-compare.yaml"
SMOKE = ROOT / "campaigns" / "smoke.yaml"
SERVING_SWEEP = ROOT / "campaigns" / "serving-sweep.yaml"
SECRET = "hf_llemTestTokenNeverPrinted0123"

# What each backend's experiment must run, and the flags that put its JSON at result.json:
# (flag, value) pairs, the value as written in the campaign.
RESULT_DIR = (("--result-dir", "{experiment_dir}"), ("--result-filename", "result.json"))
ENGINE_MARKERS: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    "pytorch": (
        "/llem/scripts/llem_generate_bench.py",
        (("--out", "{experiment_dir}/result.json"),),
    ),
    "vllm": ("vllm bench throughput", (("--output-json", "{experiment_dir}/result.json"),)),
    "tensorrt": ("trtllm-bench --model", (("--report_json", "{experiment_dir}/result.json"),)),
    "sglang": (
        "-m sglang.bench_offline_throughput",
        (("--result-filename", "{experiment_dir}/result.json"),),
    ),
    "vllm-serve": ("vllm bench serve", RESULT_DIR),
    "sglang-serve": (
        "-m sglang.bench_serving",
        (("--output-file", "{experiment_dir}/result.json"),),
    ),
    "tensorrt-serve": ("-m tensorrt_llm.serve.scripts.benchmark_serving", RESULT_DIR),
}


def test_every_template_has_markers() -> None:
    assert set(ENGINE_MARKERS) == set(BACKENDS) | {s.name for s in SERVING.values()}


def test_the_examples_are_there() -> None:
    assert COMPARE in EXAMPLES and SMOKE in EXAMPLES and SERVING_SWEEP in EXAMPLES


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
        found = template(name)
        wanted = found.command
        assert tuple(backend.command) == wanted, (
            f"{path.name}: {name}'s command is not the template's; it should read\n"
            f"    command: {flow_list(wanted, len('    command: '))}"
        )
        if isinstance(found, ServingTemplate):
            assert backend.service == found.engine, name
            assert tuple(backend.serve or ()) == found.serve, f"{path.name}: {name}'s serve"
            assert tuple(backend.ready or ()) == found.ready, f"{path.name}: {name}'s ready"
        else:
            assert backend.serve is None and backend.ready is None, name


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_metrics_are_the_init_templates(path: Path) -> None:
    """Each engine's normalized metrics are mapped once (llem_cli/templates): the examples too."""
    campaign = load_campaign(path).campaign
    for name, backend in campaign.backends.items():
        wanted = Metrics.model_validate(
            {m.name: yaml.safe_load(m.source) for m in template(name).metrics}
        )
        assert backend.metrics == wanted, f"{path.name}: {name}'s metrics are not the template's"
        assert {"output_tokens", "output_tokens_per_s"} <= set(backend.metrics.mapped()), name


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_report_goes_where_llem_merges_it(path: Path) -> None:
    campaign = load_campaign(path).campaign
    for name, backend in campaign.backends.items():
        for flag, value in ENGINE_MARKERS[name][1]:
            index = backend.command.index(flag)
            assert backend.command[index + 1] == value, name
        if "--result-dir" in backend.command:  # vLLM's and TensorRT-LLM's serving clients
            assert "--save-result" in backend.command, name


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


def test_serving_sweep_shape() -> None:
    """Three engines' servers, each server's running-batch cap (its own flag's name, a server
    param) crossed with the client's request rate, grouped so each server starts once."""
    loaded = load_campaign(SERVING_SWEEP)
    campaign = loaded.campaign
    assert list(campaign.backends) == [s.name for s in SERVING.values()]
    assert campaign.execution.order == "grouped"
    for engine, serving in SERVING.items():
        backend = campaign.backends[serving.name]
        assert backend.serving and not backend.includes_model_load
        assert backend.ready_timeout >= 1800  # the first start downloads the model
        assert set(backend.metrics.mapped()) == set(METRIC_NAMES), serving.name
        assert campaign.per_backend[serving.name].keys() == {serving.server_param}
        assert server_param_names(backend) == ["model", serving.server_param], engine
        configs = [c for c in loaded.configs if c.backend == serving.name]
        assert len({c.params["request_rate"] for c in configs}) >= 3
        assert len({c.params[serving.server_param] for c in configs}) >= 2
    assert len({c.params["model"] for c in loaded.configs}) == 1
    assert campaign.health.max_memory_growth_pct > 0


def test_serving_sweep_plan_starts_each_server_once(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "llem_cli", "plan", str(SERVING_SWEEP)],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "server starts: 6 for 6 server configuration(s)" in done.stdout


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
    for name in loaded.campaign.backends:
        program, flags = ENGINE_MARKERS[name]
        service = loaded.campaign.service_of(name)
        mine = [line for line in execs if f" -e LLEM_EXPERIMENT_DIR {service} " in line]
        assert mine, f"no experiment for {name}"
        for line in mine:
            assert program in line
            for flag, value in flags:  # {experiment_dir}: the experiment's folder in /llem/run
                pattern = re.escape(f"{flag} {value}").replace(
                    re.escape("{experiment_dir}"), r"/llem/run/experiments/[0-9a-f]{12}-c\d+"
                )
                assert re.search(pattern + r"( |$)", line), (name, flag)
    assert not (tmp_path / "results").exists()  # a dry run writes nothing


def test_dry_run_starts_each_server_and_waits_for_it(tmp_path: Path) -> None:
    """Per server configuration: the server's argv as the container's main process, then the
    ready check, before the first client exec on it."""
    done = dry_run(SERVING_SWEEP, tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for serving in SERVING.values():
        starts = [i for i, line in enumerate(lines) if f"of {serving.engine}: " in line]
        assert len(starts) == 2, serving.name  # two values of its running-batch cap
        assert all(f": {serving.serve[0]} " in lines[i] for i in starts)
        for index in starts:
            ready = next(i for i in range(index, len(lines)) if " python3 -c " in lines[i])
            client = next(i for i in range(index, len(lines)) if " exec -T -e " in lines[i])
            assert ready < client
