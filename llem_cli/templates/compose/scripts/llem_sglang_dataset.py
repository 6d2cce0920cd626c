"""Write a local prompts file for SGLang's offline benchmark, then exec the benchmark.

``python3 -m sglang.bench_offline_throughput --dataset-name random`` (SGLang 0.4.6) makes its
prompts by cutting or repeating ShareGPT conversations to ``--random-input-len`` tokens, and it
downloads ShareGPT (~650 MB, from the Hugging Face hub) whenever ``--dataset-path`` is not an
existing file: ``sample_random_requests`` in ``sglang/bench_serving.py``, for the measured
requests and again for its warm-up. That fails on a host without internet and puts a download
into the first experiment's energy. The ``random-ids`` dataset, which needs no file, exists only
in ``bench_serving``'s parser, not in the offline benchmark's. So this script writes a file of
the same shape (a JSON list of two-turn ``conversations``) and the campaign passes it as
``--dataset-path``; then, if a command follows ``--``, the script replaces itself with it, as
``llem_trtllm_dataset.py`` does for TensorRT-LLM.

The serving clients read the same file the same way: ``python3 -m sglang.bench_serving
--dataset-name random`` (the same ``sample_random_requests``) and TensorRT-LLM's
``python3 -m tensorrt_llm.serve.scripts.benchmark_serving --dataset-name random``, whose random
dataset may also cut ShareGPT conversations to length (and then downloads ShareGPT when no
``--dataset-path`` is given); llem's serving backends (``sglang-serve``, ``tensorrt-serve``)
pass this file to both.

Why many short conversations rather than ``--num-prompts`` long ones: SGLang repeats a short
prompt's tokens up to the requested length, so the text's length does not matter; but its warm-up
draws its prompts from the same file as the measured requests, and the radix cache would serve a
measured request whose conversation the warm-up already ran. ShareGPT's ~90,000 conversations make
that rare; this file gives the same odds (at most ~0.05 such requests per experiment up to
``--num-prompts`` 300), in a few MB. Seeded, so every experiment with the same options
benchmarks the same prompts. It runs on the container's Python, 3.8 or newer, and needs nothing
from llem.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: collections.abc generics are not subscriptable on 3.8
    from collections.abc import Iterator, Sequence

#: the most requests SGLang's offline benchmark warms up with (``min(num_prompts, 16)``)
WARMUP_REQUESTS = 16
#: conversations written per warm-up x measured pair of requests: keeps the expected number of
#: measured requests that reuse a warm-up conversation at 1/ODDS or below
ODDS = 20
MIN_CONVERSATIONS = 1_000
MAX_CONVERSATIONS = 100_000
#: words in each conversation's first turn; each word is at least one token, and SGLang repeats
#: the tokens up to ``--random-input-len``
WORDS_PER_PROMPT = 8
#: distinct words: every 16-bit value picks one
VOCABULARY = 1 << 16


def parse_args(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    """Options before ``--``; the command after it (maybe empty) is returned as-is."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, command = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(
        prog="llem_sglang_dataset.py",
        description="A local prompts file for SGLang's --dataset-path; then exec what follows --.",
    )
    parser.add_argument("--num-prompts", type=_positive, default=64, help="requests measured")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="the JSON file to write")
    return parser.parse_args(argv), command


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def conversation_count(num_prompts: int) -> int:
    """How many conversations to write for ``num_prompts`` measured requests (see the module)."""
    wanted = ODDS * min(num_prompts, WARMUP_REQUESTS) * num_prompts
    return max(num_prompts, min(max(wanted, MIN_CONVERSATIONS), MAX_CONVERSATIONS))


def conversations(count: int, seed: int) -> Iterator[str]:
    """``count`` conversations as JSON texts: a first turn of random words, a short reply.

    SGLang's sampler reads only ``conversations[0]["value"]`` and ``[1]["value"]`` (so ShareGPT's
    ``from`` keys are left out); the words are random letters, so no two prompts share more than
    a word or two of prefix. Drawn as bulk random bytes, not a ``random`` call per word: this
    runs inside the measured window, and per-item calls took 0.2 s for 64 prompts.
    """
    rng = random.Random(seed)
    text = _random_bytes(rng, 5 * VOCABULARY).translate(_LETTERS).decode("ascii")
    cuts = [0]
    for index in range(VOCABULARY):  # words of 3 to 7 letters, 5 on average
        cuts.append(cuts[-1] + 3 + index % 5)
    words = [text[cuts[index] : cuts[index + 1]] for index in range(VOCABULARY)]
    picks = memoryview(_random_bytes(rng, 2 * WORDS_PER_PROMPT * count)).cast("H")
    for start in range(0, WORDS_PER_PROMPT * count, WORDS_PER_PROMPT):
        # a space before every word, the first too: SGLang repeats the prompt's tokens and
        # decodes them to text, and a word glued to the previous repeat's last word would be
        # tokenized anew, changing the prompt's length; " word" always tokenizes the same
        prompt = "".join([" " + words[pick] for pick in picks[start : start + WORDS_PER_PROMPT]])
        # lower-case letters and spaces need no JSON escaping: joined, not json.dumps'd
        yield '{"conversations":[{"value":"' + prompt + '"},{"value":"ok"}]}'


#: byte value -> a lower-case letter (the slight bias towards a-v is of no consequence)
_LETTERS = bytes(ord("a") + value % 26 for value in range(256))


def _random_bytes(rng: random.Random, count: int) -> bytes:
    """``count`` seeded random bytes (``Random.randbytes`` is Python 3.9+)."""
    return rng.getrandbits(8 * count).to_bytes(count, "little") if count else b""


def write_dataset(path: str, items: Iterator[str]) -> None:
    """Write the JSON list whole, then rename: SGLang must never read a half-written file."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write("[")
        for index, item in enumerate(items):
            handle.write(",\n" if index else "\n")
            handle.write(item)
        handle.write("\n]\n")
    os.replace(tmp, path)


def main(argv: Sequence[str] | None = None) -> int:
    """Write the prompts file; exec the command after ``--`` if there is one."""
    args, command = parse_args(argv)
    write_dataset(args.out, conversations(conversation_count(args.num_prompts), args.seed))
    if command:
        sys.stdout.flush()
        os.execvp(command[0], command)  # replaces this process: its exit code is the run's
    return 0


if __name__ == "__main__":
    sys.exit(main())
