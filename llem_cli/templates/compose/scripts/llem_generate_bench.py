"""A small offline throughput benchmark with Hugging Face transformers ``generate``.

llem's PyTorch backend runs this inside its container (mounted at /llem/scripts): it processes
``--num-prompts`` random prompts of ``--input-len`` tokens in batches of ``--batch-size``, each
generating exactly ``--output-len`` new tokens, and writes one JSON report to ``--out`` (llem
passes ``{experiment_dir}/result.json``, which it merges into the record's ``metrics``).

The same workload shape as the engines' own offline benchmarks (``vllm bench throughput``,
``sglang.bench_offline_throughput``, ``trtllm-bench throughput``), so energy per run compares
directly. Exact token counts (``min_new_tokens == max_new_tokens``, greedy) keep ``tokens`` a
count of work done, not of when the model happened to stop.

Its report carries ``llem_phases``: ``{"load": [start, end], "warmup": [start, end],
"generate": [start, end]}`` in Unix seconds (``time.time()``; containers share the host clock),
so llem can tell the energy of loading the model (imports, weights, moving them to the GPU) from
that of the timed batches. ``warmup`` is an empty interval (start == end) with ``--warmup 0``,
which llem's shipped commands pass: no engine warms up inside a measured exec (docs/engines.md,
"Warm-up").

torch and transformers are imported only when a real model is loaded, so the argument parsing,
the timing loop and the report can be tested anywhere with a fake generator. This file ships
in the llem package (``llem_cli/templates/compose/scripts``; the repository's ``compose/scripts``
links to that folder, and ``llem init`` writes a copy beside a campaign). It runs on the
container's Python, 3.8 or newer (images built on Ubuntu 20.04 have 3.8), and needs nothing
from llem: annotations stay strings (``from __future__ import annotations``), and nothing newer
than 3.8 is evaluated at run time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for annotations only: collections.abc.Callable[...] raises on Python 3.8
    from collections.abc import Callable, Sequence

    GenerateFn = Callable[[int], int]
    """Runs one batch of the given size; returns the number of new tokens generated."""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; sizes must be positive so a typo fails before a model loads."""
    parser = argparse.ArgumentParser(
        prog="llem_generate_bench.py",
        description="Offline throughput of transformers generate(); writes a JSON report.",
    )
    parser.add_argument("--model", required=True, help="Hugging Face model id or local path")
    parser.add_argument("--batch-size", type=_positive, default=1)
    parser.add_argument("--num-prompts", type=_positive, default=64)
    parser.add_argument("--input-len", type=_positive, default=128, help="prompt tokens")
    parser.add_argument("--output-len", type=_positive, default=128, help="new tokens per prompt")
    parser.add_argument(
        "--warmup",
        type=_non_negative,
        default=1,
        help="untimed batches first (llem's shipped commands pass 0)",
    )
    parser.add_argument(
        "--dtype", default="bfloat16", choices=["auto", "float16", "bfloat16", "float32"]
    )
    parser.add_argument("--device", default="cuda", help="torch device (cpu for a dry check)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="where to write the JSON report")
    return parser.parse_args(argv)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def batch_sizes(num_prompts: int, batch_size: int) -> list[int]:
    """The batches that cover every prompt once; the last one may be smaller."""
    full, rest = divmod(num_prompts, batch_size)
    return [batch_size] * full + ([rest] if rest else [])


def run_benchmark(
    generate: GenerateFn,
    args: argparse.Namespace,
    clock: Callable[[], float] = time.perf_counter,
    wall: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """Warm up, then time every batch; the report's numbers come only from timed batches.

    ``clock`` times the batches; ``wall`` (Unix seconds) marks the phases in ``llem_phases``
    (``warmup``, ``generate``; :func:`main` adds ``load``).
    """
    warmup_start = wall()
    for _ in range(args.warmup):
        generate(args.batch_size)
    warmup_end = wall()
    latencies: list[float] = []
    tokens = 0
    generate_start = wall()
    started = clock()
    for size in batch_sizes(args.num_prompts, args.batch_size):
        t0 = clock()
        tokens += generate(size)
        latencies.append(clock() - t0)
    elapsed = clock() - started
    generate_end = wall()
    return {
        "model": args.model,
        "batch_size": args.batch_size,
        "num_prompts": args.num_prompts,
        "input_len": args.input_len,
        "output_len": args.output_len,
        "batches": len(latencies),
        "tokens": tokens,
        "prompt_tokens": args.num_prompts * args.input_len,
        "elapsed_s": elapsed,
        "tokens_per_s": tokens / elapsed if elapsed > 0 else None,
        "requests_per_s": args.num_prompts / elapsed if elapsed > 0 else None,
        "latency_s": statistics.fmean(latencies) if latencies else None,
        "latency_p50_s": _percentile(latencies, 50),
        "latency_p90_s": _percentile(latencies, 90),
        "latency_max_s": max(latencies) if latencies else None,
        "llem_phases": {
            "warmup": [warmup_start, warmup_end],
            "generate": [generate_start, generate_end],
        },
    }


def _percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile (no numpy in the report path)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def write_report(path: str, report: dict[str, Any]) -> None:
    """Write the report atomically: llem must never merge a half-written file."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".result-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2, sort_keys=True)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_generator(args: argparse.Namespace) -> tuple[GenerateFn, dict[str, Any]]:
    """Load the model with transformers; the returned function runs one timed batch."""
    import torch  # heavy; absent where only the report logic is tested
    from transformers import AutoModelForCausalLM

    torch.manual_seed(args.seed)
    dtype = "auto" if args.dtype == "auto" else getattr(torch, args.dtype)
    model = AutoModelForCausalLM.from_pretrained(args.model, torch_dtype=dtype)
    model.to(args.device).eval()
    vocab = int(model.config.vocab_size)
    pad = model.config.pad_token_id
    if pad is None:
        pad = model.config.eos_token_id
    if isinstance(pad, list):
        pad = pad[0]
    on_cuda = str(args.device).startswith("cuda")

    def generate(size: int) -> int:
        ids = torch.randint(0, vocab, (size, args.input_len), device=args.device)
        mask = torch.ones_like(ids)
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids,
                attention_mask=mask,
                do_sample=False,
                min_new_tokens=args.output_len,
                max_new_tokens=args.output_len,
                pad_token_id=pad,
            )
        if on_cuda:
            torch.cuda.synchronize()
        return int(out.shape[0] * (out.shape[1] - args.input_len))

    import transformers

    info = {
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "device_name": torch.cuda.get_device_name(0) if on_cuda else args.device,
    }
    return generate, info


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, load, run, report; exit 0 only when a report was written."""
    args = parse_args(argv)
    load_start = time.time()
    generate, info = load_generator(args)
    load_end = time.time()
    report = run_benchmark(generate, args)
    report["llem_phases"] = {"load": [load_start, load_end], **report["llem_phases"]}
    report.update(info, python_version=platform.python_version())
    write_report(args.out, report)
    print(json.dumps({k: report[k] for k in ("tokens", "tokens_per_s", "latency_s")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
