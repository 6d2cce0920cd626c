"""Each shipped engine's ``metrics:`` (llem_cli/templates) read against a report of that
engine's shape, so a renamed or mistyped key fails here rather than as nulls after a GPU run.

The reports are written from the engines' sources (the keys each one's JSON writer emits):
vLLM ``vllm/benchmarks/throughput.py`` (``--output-json``), SGLang
``python/sglang/bench_offline_throughput.py`` (``--result-filename``, one JSON line appended
per run), TensorRT-LLM ``tensorrt_llm/bench/dataclasses/reporting.py`` (``--report_json``);
the transformers script's report is made by the script itself, on a fake generator.

The serving clients' reports (``SERVING``, backends ``<engine>-serve``) likewise: vLLM
``vllm/benchmarks/serve.py`` (``vllm bench serve --save-result``), SGLang
``python/sglang/bench_serving.py`` (``--output-file``, a JSON line appended per run) and
TensorRT-LLM ``tensorrt_llm/serve/scripts/benchmark_serving.py`` (``--save-result``); each
sample's comment names the release and lines it was built from.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from llem_cli.campaign.model import METRIC_NAMES, Metrics
from llem_cli.runner.metrics import normalize, parse_report
from llem_cli.templates import BACKENDS, SERVING, metrics_block, template
from llem_testkit.scripts import load_script

PARAMS = {"num_prompts": 8, "input_len": 32, "output_len": 16, "batch_size": 4}

# vllm bench throughput --output-json: elapsed_time, num_requests, total_num_tokens (prompt +
# output), requests_per_second, tokens_per_second (prompt + output, per second)
VLLM = {
    "elapsed_time": 4.0,
    "num_requests": 8,
    "total_num_tokens": 8 * (32 + 16),
    "requests_per_second": 2.0,
    "tokens_per_second": 96.0,
}

# python -m sglang.bench_offline_throughput --result-filename: a line per run, appended
SGLANG_LINE = {
    "backend": "engine",
    "successful_requests": 8,
    "total_latency": 2.0,
    "total_input_tokens": 256,
    "total_output_tokens": 128,
    "request_throughput": 4.0,
    "input_throughput": 128.0,
    "output_throughput": 64.0,
    "total_throughput": 192.0,
}

# trtllm-bench throughput --report_json (the parts the mapping reads, and their neighbours)
TENSORRT = {
    "engine": {"model": "m", "backend": "Pytorch"},
    "request_info": {
        "num_requests": 8,
        "avg_num_concurrent_requests": 4.0,
        "avg_input_length": 32.0,
        "avg_output_length": 16.0,
    },
    "performance": {
        "total_latency_ms": 2000.0,
        "avg_request_latency_ms": 900.0,
        "request_throughput_req_s": 4.0,
        "system_output_throughput_tok_s": 64.0,
        "system_total_throughput_tok_s": 192.0,
    },
}


# --- the serving clients' reports (8 prompts of 32 tokens, 16 new tokens each, at 4 req/s) ----

# vllm bench serve --save-result (vllm 0.10.1.1 wheel, vllm/benchmarks/serve.py): main_async
# writes date, endpoint_type, label, model_id, tokenizer_id, num_prompts (lines 1071-1076), the
# traffic keys (1090-1093), then benchmark()'s result (lines 546-561: duration, completed,
# total_input_tokens, total_output_tokens, request_throughput, request_goodput,
# output_throughput, total_token_throughput; the per-request lists are dropped without
# --save-detailed, 1103-1116) with, per metric of --percentile-metrics (default ttft,tpot,itl),
# mean_/median_/std_/p99_<metric>_ms (process_one_metric, 567-603). json.dump of a dict: one
# object, no indent.
VLLM_SERVE = {
    "date": "20261130-120000", "endpoint_type": "openai", "label": None, "model_id": "m",
    "tokenizer_id": "m", "num_prompts": 8, "request_rate": 4.0, "burstiness": 1.0,
    "max_concurrency": None, "duration": 2.0, "completed": 8, "total_input_tokens": 256,
    "total_output_tokens": 128, "request_throughput": 4.0, "request_goodput": None,
    "output_throughput": 64.0, "total_token_throughput": 192.0,
    "mean_ttft_ms": 30.0, "median_ttft_ms": 25.0, "std_ttft_ms": 5.0, "p99_ttft_ms": 60.0,
    "mean_tpot_ms": 12.0, "median_tpot_ms": 11.0, "std_tpot_ms": 1.0, "p99_tpot_ms": 15.0,
    "mean_itl_ms": 12.0, "median_itl_ms": 10.5, "std_itl_ms": 2.0, "p99_itl_ms": 20.0,
}  # fmt: skip

# python3 -m sglang.bench_serving --output-file (sglang 0.4.6.post4 wheel, sglang/bench_serving.py
# lines 1330-1367: the `result` dict, written as one line, `open(output_file_name, "a")`, line
# 1384); "request_rate" is the float given (inf when not given).
SGLANG_SERVE_LINE = {
    "backend": "sglang", "dataset_name": "random", "request_rate": 4.0, "max_concurrency": None,
    "sharegpt_output_len": None, "random_input_len": 32, "random_output_len": 16,
    "random_range_ratio": 1.0, "duration": 2.0, "completed": 8, "total_input_tokens": 256,
    "total_output_tokens": 128, "total_output_tokens_retokenized": 128,
    "request_throughput": 4.0, "input_throughput": 128.0, "output_throughput": 64.0,
    "mean_e2e_latency_ms": 400.0, "median_e2e_latency_ms": 390.0, "std_e2e_latency_ms": 20.0,
    "p99_e2e_latency_ms": 450.0, "mean_ttft_ms": 30.0, "median_ttft_ms": 25.0,
    "std_ttft_ms": 5.0, "p99_ttft_ms": 60.0, "mean_tpot_ms": 12.0, "median_tpot_ms": 11.0,
    "std_tpot_ms": 1.0, "p99_tpot_ms": 15.0, "mean_itl_ms": 12.0, "median_itl_ms": 10.5,
    "std_itl_ms": 2.0, "p95_itl_ms": 18.0, "p99_itl_ms": 20.0, "concurrency": 3.2,
    "accept_length": None,
}  # fmt: skip

# python3 -m tensorrt_llm.serve.scripts.benchmark_serving --save-result: main() writes date,
# backend, model_id, tokenizer_id, num_prompts, then benchmark()'s result (duration, completed,
# total_input_tokens, total_output_tokens, request_throughput, "request_goodput:" (sic),
# output_throughput, total_token_throughput, user_throughput, avg_decoded_tokens_per_iter; the
# per-request lists dropped without --save-detailed) with mean_/median_/std_/p99_<metric>_ms per
# --percentile-metrics (default ttft,tpot,itl), then request_rate, burstiness and
# max_concurrency. Read in stored copies of the file from TensorRT-LLM's main (NVIDIA
# 0228a712, yuantailing 8881f125): not the 1.0.0 release, which was not reachable here.
TENSORRT_SERVE = {
    "date": "20261130-120000", "backend": "openai", "model_id": "m", "tokenizer_id": "m",
    "num_prompts": 8, "duration": 2.0, "completed": 8, "total_input_tokens": 256,
    "total_output_tokens": 128, "request_throughput": 4.0, "request_goodput:": None,
    "output_throughput": 64.0, "total_token_throughput": 192.0, "user_throughput": 40.0,
    "avg_decoded_tokens_per_iter": 1.0,
    "mean_ttft_ms": 30.0, "median_ttft_ms": 25.0, "std_ttft_ms": 5.0, "p99_ttft_ms": 60.0,
    "mean_tpot_ms": 12.0, "median_tpot_ms": 11.0, "std_tpot_ms": 1.0, "p99_tpot_ms": 15.0,
    "mean_itl_ms": 12.0, "median_itl_ms": 10.5, "std_itl_ms": 2.0, "p99_itl_ms": 20.0,
    "request_rate": 4.0, "burstiness": 1.0, "max_concurrency": None,
}  # fmt: skip


def serving_reports() -> dict[str, str]:
    """Each serving client's result.json text as the client writes it (by campaign backend)."""
    return {
        "vllm-serve": json.dumps(VLLM_SERVE),
        "sglang-serve": json.dumps({**SGLANG_SERVE_LINE, "output_throughput": 1.0})
        + "\n"
        + json.dumps(SGLANG_SERVE_LINE)
        + "\n",
        "tensorrt-serve": json.dumps(TENSORRT_SERVE),
    }


def transformers_report() -> dict[str, Any]:
    """The shipped transformers script's report, on a generator that returns its token count."""
    bench = load_script("llem_generate_bench.py")
    args = bench.parse_args(
        ["--model", "fake", "--batch-size", "4", "--num-prompts", "8", "--input-len", "32",
         "--output-len", "16", "--warmup", "1", "--out", "r.json"]
    )  # fmt: skip
    ticks = iter(range(1000))
    report: dict[str, Any] = bench.run_benchmark(
        lambda size: size * args.output_len, args, clock=lambda: float(next(ticks))
    )
    return report


def reports() -> dict[str, str]:
    """Each engine's result.json text as the engine writes it."""
    return {
        "pytorch": json.dumps(transformers_report(), indent=2),
        "vllm": json.dumps(VLLM, indent=4),
        "sglang": json.dumps({**SGLANG_LINE, "total_latency": 99.0})
        + "\n"
        + json.dumps(SGLANG_LINE)
        + "\n",
        "tensorrt": json.dumps(TENSORRT, indent=2),
    }


def mapping_of(backend: str) -> Metrics:
    """The template's metrics as a campaign reads them (``vllm``, or ``vllm-serve``)."""
    return Metrics.model_validate(
        {m.name: yaml.safe_load(m.source) for m in template(backend).metrics}
    )


SERVING_NAMES = [s.name for s in SERVING.values()]


def test_every_engine_has_a_report_here() -> None:
    assert set(reports()) == set(BACKENDS)


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_every_mapped_name_is_found_and_is_a_number(backend: str) -> None:
    report, why = parse_report(reports()[backend])
    assert why is None
    found = normalize(report, mapping_of(backend).mapped(), PARAMS)
    assert found.reasons == {}
    assert all(isinstance(v, int | float) for v in found.values.values())
    # the same workload (8 prompts of 32 tokens, 16 new tokens each) counts alike everywhere
    assert found.values["output_tokens"] == 8 * 16
    if "input_tokens" in found.values:
        assert found.values["input_tokens"] == 8 * 32


def test_the_values_are_the_engines_own() -> None:
    vllm = normalize(VLLM, mapping_of("vllm").mapped(), PARAMS)
    # output tokens per second, not tokens_per_second (which counts the prompts too)
    assert vllm.values == {"output_tokens": 128, "output_tokens_per_s": 32.0, "requests_per_s": 2.0}
    assert set(vllm.computed) == {"output_tokens", "output_tokens_per_s"}
    sglang_report, _ = parse_report(reports()["sglang"])
    sglang = normalize(sglang_report, mapping_of("sglang").mapped(), PARAMS)
    assert sglang.values["output_tokens_per_s"] == 64.0  # the last line's, not the first's
    assert sglang.computed == {}  # SGLang reports every mapped quantity itself
    tensorrt = normalize(TENSORRT, mapping_of("tensorrt").mapped(), PARAMS)
    assert tensorrt.values["output_tokens_per_s"] == 64.0
    assert tensorrt.values["requests_per_s"] == 4.0


def test_no_engine_maps_a_quantity_to_a_prompt_plus_output_rate() -> None:
    """``tokens_per_second`` and ``total_throughput`` count prompt tokens: never output rates
    (``total_token_throughput`` in the serving reports neither)."""
    for backend in [*BACKENDS, *SERVING_NAMES]:
        for metric in template(backend).metrics:
            assert "tokens_per_second" not in metric.source, backend
            assert "total_throughput" not in metric.source, backend
            assert "total_token_throughput" not in metric.source, backend


def test_every_serving_client_has_a_report_here() -> None:
    assert set(serving_reports()) == set(SERVING_NAMES)


@pytest.mark.parametrize("backend", SERVING_NAMES)
def test_every_serving_name_is_found_and_is_the_clients_own(backend: str) -> None:
    """All six names, from the keys each serving benchmark writes; ttft and itl are medians."""
    report, why = parse_report(serving_reports()[backend])
    assert why is None
    found = normalize(report, mapping_of(backend).mapped(), PARAMS)
    assert found.reasons == {}
    assert found.computed == {}  # every serving client reports each quantity itself
    assert found.values == {
        "output_tokens": 8 * 16,
        "input_tokens": 8 * 32,
        "output_tokens_per_s": 64.0,  # SGLang: the last line's, not the first's
        "requests_per_s": 4.0,
        "ttft_ms": 25.0,
        "itl_ms": 10.5,
    }
    assert set(found.values) == set(METRIC_NAMES)


@pytest.mark.parametrize("backend", [*BACKENDS, *SERVING_NAMES])
def test_the_rendered_block_is_the_mapping_with_a_comment_per_line(backend: str) -> None:
    block = metrics_block(backend, 4)
    assert Metrics.model_validate(yaml.safe_load(block)["metrics"]) == mapping_of(backend)
    assert all(len(line) <= 100 for line in block.splitlines())
    for metric in template(backend).metrics:
        assert metric.name in METRIC_NAMES
        assert metric.comment, f"{backend}.{metric.name}: say which key of the engine it reads"
