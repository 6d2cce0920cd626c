"""Write a synthetic dataset for ``trtllm-bench throughput``, then exec the benchmark.

``trtllm-bench throughput`` needs ``--dataset FILE`` (JSON lines of ``task_id``, ``input_ids``
and ``output_tokens``), while vLLM's benchmark makes random prompts itself (SGLang's reads a
file too: ``llem_sglang_dataset.py``). This script fills that gap with the same workload shape
(``--num-prompts`` prompts of ``--input-len`` random token ids, ``--output-len`` new tokens
each), and then, if a command follows ``--``, replaces itself with that command. So a
campaign's one argv both prepares the data and runs ``trtllm-bench``, with no shell string, and
``llem plan``/``--dry-run`` still show the real ``trtllm-bench`` command line.

The vocabulary size comes from ``--vocab-size``, else the model's ``config.json`` where it already
is on disk (a local model folder, or the Hugging Face cache a previous experiment filled), else
transformers (present in the TensorRT-LLM image), which fetches that one small file; ids are drawn
below it, so no tokenizer round trip can change the prompt length. Reading the cached file
directly keeps every experiment after a model's first off the network: transformers would ask the
hub whether the file changed, each time.

This file ships in the llem package (``llem_cli/templates/compose/scripts``; the repository's
``compose/scripts`` links to that folder, and ``llem init`` writes a copy beside a campaign).
It runs on the container's Python, 3.8 or newer, and needs nothing from llem.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: collections.abc generics are not subscriptable on 3.8
    from collections.abc import Iterator, Sequence


def parse_args(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    """Options before ``--``; the command after it (maybe empty) is returned as-is."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, command = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(
        prog="llem_trtllm_dataset.py",
        description="Synthetic trtllm-bench dataset; then exec the command after --.",
    )
    parser.add_argument("--model", required=True, help="Hugging Face id (for the vocab size)")
    parser.add_argument("--num-prompts", type=_positive, default=64)
    parser.add_argument("--input-len", type=_positive, default=128)
    parser.add_argument("--output-len", type=_positive, default=128)
    parser.add_argument("--vocab-size", type=_positive, help="default: from the model config")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="the JSON-lines file to write")
    return parser.parse_args(argv), command


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def dataset_lines(
    num_prompts: int, input_len: int, output_len: int, vocab_size: int, seed: int
) -> Iterator[str]:
    """One JSON object per prompt, in trtllm-bench's dataset format; seeded, so repeatable."""
    rng = random.Random(seed)
    for task_id in range(num_prompts):
        ids = [rng.randrange(vocab_size) for _ in range(input_len)]
        yield json.dumps({"task_id": task_id, "input_ids": ids, "output_tokens": output_len})


def vocab_size_of(model: str) -> int:
    """The model's vocabulary size: from a config.json on disk, else through transformers."""
    local = local_config(model)
    if local is not None:
        size = _vocab_size(local)
        if size is not None:
            return size
    from transformers import AutoConfig  # present in the TensorRT-LLM image, not needed in tests

    config = AutoConfig.from_pretrained(model)  # downloads config.json if not cached
    text_config = getattr(config, "text_config", None) or config
    return int(text_config.vocab_size)


def local_config(model: str) -> dict[str, Any] | None:
    """The model's config.json from a local folder or the Hugging Face cache, or None.

    The cache layout is huggingface_hub's: ``<cache>/models--ORG--NAME/refs/main`` names the
    snapshot folder holding the files of the main revision.
    """
    candidates = [os.path.join(model, "config.json")]
    repo = os.path.join(hub_cache(), "models--" + model.replace("/", "--"))
    try:
        with open(os.path.join(repo, "refs", "main"), encoding="utf-8") as handle:
            revision = handle.read().strip()
        candidates.append(os.path.join(repo, "snapshots", revision, "config.json"))
    except OSError:
        pass
    for path in candidates:
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            return data
    return None


def hub_cache() -> str:
    """Where huggingface_hub keeps downloads, by its own rules (HF_HUB_CACHE, HF_HOME, ...)."""
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(name):
            return os.environ[name]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(xdg, "huggingface", "hub")


def _vocab_size(config: dict[str, Any]) -> int | None:
    """``vocab_size`` of a config (of its ``text_config`` for multimodal models), or None."""
    text_config = config.get("text_config")
    source = text_config if isinstance(text_config, dict) else config
    value = source.get("vocab_size")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def write_dataset(path: str, lines: Iterator[str]) -> None:
    """Write the file whole, then rename: a half-written dataset must never be benchmarked."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        for line in lines:
            handle.write(line + "\n")
    os.replace(tmp, path)


def main(argv: Sequence[str] | None = None) -> int:
    """Write the dataset; exec the command after ``--`` if there is one."""
    args, command = parse_args(argv)
    vocab = args.vocab_size or vocab_size_of(args.model)
    lines = dataset_lines(args.num_prompts, args.input_len, args.output_len, vocab, args.seed)
    write_dataset(args.out, lines)
    if command:
        sys.stdout.flush()
        os.execvp(command[0], command)  # replaces this process: its exit code is the run's
    return 0


if __name__ == "__main__":
    sys.exit(main())
