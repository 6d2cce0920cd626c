"""The one source of what llem ships for real inference engines, kept as package data.

``llem init`` writes campaigns and compose files from this folder, and the repository's
``compose/<backend>.yml`` and ``compose/scripts`` are symlinks into it, so a ``pip install llem``
with no repository and the repository's own examples use the very same files:

``compose/<backend>.yml``
    One complete compose file per engine: its public image at a pinned tag, the GPUs reserved,
    the shared Hugging Face cache, ``HF_TOKEN`` passed through by name. The files share one
    header and one footer (a test holds them to it), so :func:`render_compose` merges several
    by putting their services between the two.
``compose/scripts/*.py``, ``compose/scripts/*.yml``
    The helper scripts (and an engine's option file) a service mounts from ``./scripts`` at
    ``/llem/scripts``. The folder sits beside the compose files, so ``./scripts`` finds it
    whether Compose reads a file here (llem passes resolved paths) or through the repository's
    symlinks (Compose does not resolve them).
``campaign.yaml.tmpl``, ``serving.yaml.tmpl``
    The commented starting campaigns (offline benchmarks; ``llem init --serve``: serving
    backends) as :class:`string.Template` (``$name``, ``$file``, ``$compose``, ``$backends``,
    ``$backend_axis``, ``$model``, and ``$per_backend`` for serving; ``$$`` is a literal
    ``$``). Text, not dumped YAML, because the comments are the point: a generated file must
    explain itself to someone opening it for the first time.

What stays in Python is what is not a file of its own: each engine's benchmark argv
(:data:`BACKENDS`), each server's serve, ready and client argvs (:data:`SERVING`; the
campaigns in ``campaigns/`` are tested against both) and the small code that fills the
templates. A serving backend uses its engine's compose service as it is: llem's override
replaces the keep-alive with the server's argv, and the clients exec in the same container.
Data is read with :mod:`importlib.resources`, so it works from a wheel as from a checkout.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from string import Template

DEFAULT_MODEL = "Qwen/Qwen2.5-0.5B-Instruct"
"""Small, ungated (no HF_TOKEN needed) and supported by all four engines."""

SCRIPTS_MOUNT = "/llem/scripts"
"""Where a compose file mounts its ``scripts/`` folder (read-only) inside the container."""

COMPOSE_DIR = "compose"
"""The package folder of the compose files; its ``scripts/`` holds the mounted scripts."""


@dataclass(frozen=True)
class MetricLine:
    """Where one engine's ``result.json`` holds one of llem's normalized metrics.

    ``source`` is written into the campaign as it stands: a dotted path, or a YAML flow
    mapping for a value computed from the report and the params (``{multiply: [...],
    params: [...], divide_by: ...}``). ``comment`` names the engine's key and, for a computed
    value, why it is computed; it is written above the line, so a campaign says where every
    number comes from.
    """

    name: str
    source: str
    comment: str


@dataclass(frozen=True)
class BackendTemplate:
    """One engine: its benchmark argv for a campaign, the comment that explains it, and where
    its report holds llem's normalized metrics.

    The compose service is the package file ``compose/<name>.yml``; the scripts it needs are
    read off the argv (``/llem/scripts/<script>``), so they cannot disagree. ``metrics_note``
    says which normalized names the engine's report cannot give, and why.
    """

    name: str
    title: str
    command: tuple[str, ...]
    command_comment: str = ""
    metrics: tuple[MetricLine, ...] = ()
    metrics_note: str = ""

    @property
    def scripts(self) -> tuple[str, ...]:
        """The helper scripts the command runs from the mounted ``scripts/`` folder."""
        prefix = f"{SCRIPTS_MOUNT}/"
        return tuple(item[len(prefix) :] for item in self.command if item.startswith(prefix))


_WORKLOAD = ("--num-prompts", "{num_prompts}")

BACKENDS: dict[str, BackendTemplate] = {
    "pytorch": BackendTemplate(
        name="pytorch",
        title="PyTorch + transformers generate()",
        command=(
            "python3",
            f"{SCRIPTS_MOUNT}/llem_generate_bench.py",
            "--model",
            "{model}",
            "--batch-size",
            "{batch_size}",
            *_WORKLOAD,
            "--input-len",
            "{input_len}",
            "--output-len",
            "{output_len}",
            "--warmup",
            "0",
            "--out",
            "{experiment_dir}/result.json",
        ),  # fmt: skip
        command_comment="the shipped transformers script (scripts/llem_generate_bench.py); "
        "--warmup 0: no warm-up batch in the measured exec (its default is 1); it writes "
        "llem_phases (load, warmup, generate) into result.json",
        metrics=(
            MetricLine("output_tokens", "tokens", "`tokens`: generated in the timed batches"),
            MetricLine("input_tokens", "prompt_tokens", "`prompt_tokens`: num_prompts x input_len"),
            MetricLine("output_tokens_per_s", "tokens_per_s", "`tokens_per_s`: tokens / timed s"),
            MetricLine("requests_per_s", "requests_per_s", "`requests_per_s`: prompts / timed s"),
        ),
        metrics_note="ttft_ms, itl_ms: not measured (generate() returns whole sequences)",
    ),
    "vllm": BackendTemplate(
        name="vllm",
        title="vLLM",
        command=(
            "vllm",
            "bench",
            "throughput",
            "--model",
            "{model}",
            "--dataset-name",
            "random",
            *_WORKLOAD,
            "--input-len",
            "{input_len}",
            "--output-len",
            "{output_len}",
            "--max-num-seqs",
            "{batch_size}",
            "--output-json",
            "{experiment_dir}/result.json",
        ),  # fmt: skip
        command_comment="vLLM's offline throughput benchmark; batch size caps running sequences; "
        "no warm-up requests (vllm bench throughput has none; the engine's own compile and "
        "CUDA graph capture run while it loads the model)",
        metrics=(
            MetricLine(
                "output_tokens",
                "{multiply: [num_requests], params: [output_len]}",
                "computed: --output-json has no output count, and every request generates "
                "exactly output_len tokens (ignore_eos)",
            ),
            MetricLine(
                "output_tokens_per_s",
                "{multiply: [num_requests], params: [output_len], divide_by: elapsed_time}",
                "computed, / `elapsed_time`: its `tokens_per_second` counts prompt + output",
            ),
            MetricLine(
                "requests_per_s", "requests_per_second", "`requests_per_second`: requests / s"
            ),
        ),
        metrics_note="input_tokens: not mapped (`total_num_tokens` is prompt + output); "
        "ttft_ms, itl_ms: not reported offline",
    ),
    "tensorrt": BackendTemplate(
        name="tensorrt",
        title="TensorRT-LLM",
        command=(
            "python3",
            f"{SCRIPTS_MOUNT}/llem_trtllm_dataset.py",
            "--model",
            "{model}",
            *_WORKLOAD,
            "--input-len",
            "{input_len}",
            "--output-len",
            "{output_len}",
            "--out",
            "{experiment_dir}/dataset.jsonl",
            "--",
            "trtllm-bench",
            "--model",
            "{model}",
            "throughput",
            "--backend",
            "pytorch",
            "--dataset",
            "{experiment_dir}/dataset.jsonl",
            "--max_batch_size",
            "{batch_size}",
            "--warmup",
            "0",
            "--report_json",
            "{experiment_dir}/result.json",
        ),  # fmt: skip
        command_comment="the shipped script writes trtllm-bench's dataset, then execs the rest; "
        "--warmup 0: no warm-up requests in the measured exec (its default is 2)",
        metrics=(
            MetricLine(
                "output_tokens",
                "{multiply: [request_info.num_requests, request_info.avg_output_length]}",
                "computed: the report gives requests and their mean output length",
            ),
            MetricLine(
                "input_tokens",
                "{multiply: [request_info.num_requests, request_info.avg_input_length]}",
                "computed: requests x their mean prompt length",
            ),
            MetricLine(
                "output_tokens_per_s",
                "performance.system_output_throughput_tok_s",
                "`system_output_throughput_tok_s`: output tokens / total latency",
            ),
            MetricLine(
                "requests_per_s",
                "performance.request_throughput_req_s",
                "`request_throughput_req_s`: requests / total latency",
            ),
        ),
        metrics_note="keys of trtllm-bench's --report_json as in TensorRT-LLM's "
        "bench/dataclasses/reporting.py (main, not yet seen from a 1.0.0 run); ttft_ms, "
        "itl_ms: only with --streaming",
    ),
    "sglang": BackendTemplate(
        name="sglang",
        title="SGLang",
        command=(
            "python3",
            f"{SCRIPTS_MOUNT}/llem_sglang_dataset.py",
            *_WORKLOAD,
            "--out",
            "{experiment_dir}/prompts.json",
            "--",
            "python3",
            "-m",
            "sglang.bench_offline_throughput",
            "--model-path",
            "{model}",
            "--dataset-name",
            "random",
            "--dataset-path",
            "{experiment_dir}/prompts.json",
            *_WORKLOAD,
            "--random-input-len",
            "{input_len}",
            "--random-output-len",
            "{output_len}",
            "--random-range-ratio",
            "1.0",
            "--max-running-requests",
            "{batch_size}",
            "--skip-warmup",
            "--result-filename",
            "{experiment_dir}/result.json",
        ),  # fmt: skip
        command_comment="SGLang's offline throughput benchmark; batch size caps running "
        "requests; --skip-warmup: no warm-up requests in the measured exec (its default runs up "
        "to 16 of 256 -> 16 tokens)",
        metrics=(
            MetricLine(
                "output_tokens",
                "total_output_tokens",
                "`total_output_tokens`: completion tokens, summed over the requests",
            ),
            MetricLine("input_tokens", "total_input_tokens", "`total_input_tokens`: prompt tokens"),
            MetricLine(
                "output_tokens_per_s",
                "output_throughput",
                "`output_throughput`: total_output_tokens / total_latency",
            ),
            MetricLine(
                "requests_per_s", "request_throughput", "`request_throughput`: requests / s"
            ),
        ),
        metrics_note="one JSON line per run, the last counts; ttft_ms, itl_ms: not reported "
        "offline",
    ),
}


# --- serving backends ---------------------------------------------------------------------------

SERVE_SUFFIX = "-serve"
"""A serving template's campaign backend name is its engine's name plus this (``vllm-serve``)."""


def ready_probe(url: str, timeout_s: int = 5) -> tuple[str, ...]:
    """A ``ready`` argv that exits 0 once ``url`` answers 200, on the image's own Python.

    Python, not curl: every engine image has ``python3`` (the engines are Python programs),
    none of their Dockerfiles promises curl. ``urlopen`` raises (exit 1) on a refused
    connection and on any 4xx/5xx, and its last line says why (llem quotes it on a timeout).
    """
    code = f"import urllib.request as u; u.urlopen('{url}', timeout={timeout_s})"
    return ("python3", "-c", code)


@dataclass(frozen=True)
class ServingTemplate:
    """One engine as a server: its ``serve`` argv (the container's main process), its
    ``ready`` argv, its serving benchmark as the client ``command`` (one exec per experiment,
    writing ``{experiment_dir}/result.json``) and where that report holds llem's metrics.

    The compose service is the engine's own (``compose/<engine>.yml``, the same service as its
    offline benchmark): llem's override replaces the keep-alive with the rendered ``serve``,
    and the clients exec inside the same container, so no port is published. ``server_param``
    is the engine's own name for its cap on running requests: the ``serve`` argv uses it, so it
    is a server param (a ``per_backend`` axis in a campaign); ``request_rate`` and the workload
    are the client's.
    """

    engine: str
    title: str
    serve: tuple[str, ...]
    ready: tuple[str, ...]
    command: tuple[str, ...]
    server_param: str
    serve_comment: str = ""
    command_comment: str = ""
    metrics: tuple[MetricLine, ...] = ()
    metrics_note: str = ""

    @property
    def name(self) -> str:
        """The campaign backend name (its ``service`` is :attr:`engine`)."""
        return f"{self.engine}{SERVE_SUFFIX}"

    @property
    def scripts(self) -> tuple[str, ...]:
        """The mounted files that ``serve``, ``ready`` or ``command`` use, each once."""
        prefix = f"{SCRIPTS_MOUNT}/"
        found: list[str] = []
        for item in (*self.serve, *self.ready, *self.command):
            if item.startswith(prefix) and item[len(prefix) :] not in found:
                found.append(item[len(prefix) :])
        return tuple(found)


def _serving_metrics(source: str) -> tuple[MetricLine, ...]:
    """The six normalized names: vLLM's, SGLang's and TensorRT-LLM's serving benchmarks all
    write these keys (TensorRT-LLM's is a fork of vLLM's; SGLang's kept the names)."""
    return (
        MetricLine(
            "output_tokens",
            "total_output_tokens",
            f"`total_output_tokens`: generated tokens of the completed requests ({source})",
        ),
        MetricLine(
            "input_tokens", "total_input_tokens", "`total_input_tokens`: their prompt tokens"
        ),
        MetricLine(
            "output_tokens_per_s",
            "output_throughput",
            "`output_throughput`: total_output_tokens / benchmark duration",
        ),
        MetricLine(
            "requests_per_s", "request_throughput", "`request_throughput`: completed / duration"
        ),
        MetricLine("ttft_ms", "median_ttft_ms", "`median_ttft_ms`: median time to first token"),
        MetricLine("itl_ms", "median_itl_ms", "`median_itl_ms`: median inter-token latency"),
    )


_DATASET_FILE = "{experiment_dir}/prompts.json"

SERVING: dict[str, ServingTemplate] = {
    "vllm": ServingTemplate(
        engine="vllm",
        title="vLLM (vllm serve)",
        serve=(
            "vllm",
            "serve",
            "{model}",
            "--max-num-seqs",
            "{max_num_seqs}",
            "--no-enable-prefix-caching",
            "--port",
            "8000",
        ),  # fmt: skip
        ready=ready_probe("http://127.0.0.1:8000/health"),
        command=(
            "vllm",
            "bench",
            "serve",
            "--model",
            "{model}",
            "--port",
            "8000",
            "--dataset-name",
            "random",
            *_WORKLOAD,
            "--random-input-len",
            "{input_len}",
            "--random-output-len",
            "{output_len}",
            "--ignore-eos",
            "--request-rate",
            "{request_rate}",
            "--save-result",
            "--result-dir",
            "{experiment_dir}",
            "--result-filename",
            "result.json",
        ),  # fmt: skip
        server_param="max_num_seqs",
        serve_comment="vLLM's OpenAI-compatible server; --max-num-seqs caps the requests in its "
        "running batch; --no-enable-prefix-caching: a server outlives its experiments, and a "
        "later one must not find an earlier one's prompts cached",
        command_comment="vLLM's serving benchmark, random prompts of exactly input_len tokens, "
        "exactly output_len new tokens (--ignore-eos), Poisson arrivals at request_rate; it "
        "first sends one test request (no flag skips it in vLLM 0.10.1.1)",
        metrics=_serving_metrics("--save-result"),
        metrics_note="keys of the --save-result JSON as vllm/benchmarks/serve.py (0.10.1.1) "
        "writes them; the test request is in no count",
    ),
    "sglang": ServingTemplate(
        engine="sglang",
        title="SGLang (sglang.launch_server)",
        serve=(
            "python3",
            "-m",
            "sglang.launch_server",
            "--model-path",
            "{model}",
            "--max-running-requests",
            "{max_running_requests}",
            "--disable-radix-cache",
            "--port",
            "30000",
        ),  # fmt: skip
        ready=ready_probe("http://127.0.0.1:30000/health_generate", timeout_s=30),
        command=(
            "python3",
            f"{SCRIPTS_MOUNT}/llem_sglang_dataset.py",
            *_WORKLOAD,
            "--out",
            _DATASET_FILE,
            "--",
            "python3",
            "-m",
            "sglang.bench_serving",
            "--backend",
            "sglang",
            "--host",
            "127.0.0.1",
            "--port",
            "30000",
            "--model",
            "{model}",
            "--dataset-name",
            "random",
            "--dataset-path",
            _DATASET_FILE,
            *_WORKLOAD,
            "--random-input-len",
            "{input_len}",
            "--random-output-len",
            "{output_len}",
            "--random-range-ratio",
            "1.0",
            "--request-rate",
            "{request_rate}",
            "--warmup-requests",
            "0",
            "--output-file",
            "{experiment_dir}/result.json",
        ),  # fmt: skip
        server_param="max_running_requests",
        serve_comment="SGLang's server; --max-running-requests caps its running batch; "
        "--disable-radix-cache: a server outlives its experiments, and a later one must not "
        "find an earlier one's prompts cached; ready asks /health_generate (one token through "
        "the scheduler), as /health answers as soon as HTTP is up",
        command_comment="the shipped script writes the prompts file (no ShareGPT download), "
        "then execs SGLang's serving benchmark: exact lengths (range ratio 1.0), EOS ignored "
        "(its default), Poisson arrivals at request_rate; --warmup-requests 0: no warm-up "
        "request in the measured exec (its default is 1)",
        metrics=_serving_metrics("--output-file"),
        metrics_note="keys of the --output-file JSON line as sglang/bench_serving.py "
        "(0.4.6.post4) writes it; one line per run, appended, the last counts",
    ),
    "tensorrt": ServingTemplate(
        engine="tensorrt",
        title="TensorRT-LLM (trtllm-serve)",
        serve=(
            "trtllm-serve",
            "{model}",
            "--backend",
            "pytorch",
            "--max_batch_size",
            "{max_batch_size}",
            "--extra_llm_api_options",
            f"{SCRIPTS_MOUNT}/llem_trtllm_serve.yml",
            "--port",
            "8000",
        ),  # fmt: skip
        ready=ready_probe("http://127.0.0.1:8000/health"),
        command=(
            "python3",
            f"{SCRIPTS_MOUNT}/llem_sglang_dataset.py",
            *_WORKLOAD,
            "--out",
            _DATASET_FILE,
            "--",
            "python3",
            "-m",
            "tensorrt_llm.serve.scripts.benchmark_serving",
            "--model",
            "{model}",
            "--backend",
            "openai",
            "--port",
            "8000",
            "--dataset-name",
            "random",
            "--dataset-path",
            _DATASET_FILE,
            *_WORKLOAD,
            "--random-input-len",
            "{input_len}",
            "--random-output-len",
            "{output_len}",
            "--ignore-eos",
            "--request-rate",
            "{request_rate}",
            "--save-result",
            "--result-dir",
            "{experiment_dir}",
            "--result-filename",
            "result.json",
        ),  # fmt: skip
        server_param="max_batch_size",
        serve_comment="TensorRT-LLM's OpenAI-compatible server (PyTorch backend); "
        "--max_batch_size caps its running batch; the shipped llem_trtllm_serve.yml turns KV "
        "block reuse off: a server outlives its experiments, and a later one must not find an "
        "earlier one's prompts cached",
        command_comment="the shipped script writes a prompts file of ShareGPT's shape (the "
        "random dataset may sample from one: no download), then execs TensorRT-LLM's serving "
        "benchmark (a fork of vLLM's): exact lengths, --ignore-eos, Poisson arrivals at "
        "request_rate; it first sends one test request",
        metrics=_serving_metrics("--save-result"),
        metrics_note="keys of the --save-result JSON as tensorrt_llm/serve/scripts/"
        "benchmark_serving.py writes them on main (not seen from a 1.0.0 run)",
    ),
}
"""The serving variant of each engine that has a server, keyed by engine (``llem init --serve
--backend ENGINE``); its campaign backend is ``<engine>-serve`` on the engine's service."""


def template(backend: str) -> BackendTemplate | ServingTemplate:
    """The template of a campaign backend name: ``vllm`` (offline), ``vllm-serve`` (serving)."""
    if backend in BACKENDS:
        return BACKENDS[backend]
    engine = backend.removesuffix(SERVE_SUFFIX)
    if backend.endswith(SERVE_SUFFIX) and engine in SERVING:
        return SERVING[engine]
    raise KeyError(f"no template for backend {backend!r}")


# --- package data ------------------------------------------------------------------------------


def _data(*parts: str) -> str:
    """The text of a package data file (one path part per argument: zip-safe)."""
    node = resources.files(__name__)
    for part in parts:
        node = node.joinpath(part)
    return node.read_text(encoding="utf-8")


def compose_text(backend: str) -> str:
    """The shipped compose file of one backend, as it is in the package."""
    if backend not in BACKENDS:
        raise KeyError(f"unknown backend {backend!r}")
    return _data(COMPOSE_DIR, f"{backend}.yml")


MOUNTED_SUFFIXES = (".py", ".yml")
"""What ``compose/scripts/`` holds: helper scripts, and the engines' option files (YAML)."""


def mounted_names() -> list[str]:
    """Every file the package ships in ``compose/scripts/`` (scripts and option files), sorted."""
    folder = resources.files(__name__).joinpath(COMPOSE_DIR).joinpath("scripts")
    return sorted(
        e.name for e in folder.iterdir() if e.name.endswith(MOUNTED_SUFFIXES) and e.is_file()
    )


def script_names() -> list[str]:
    """The helper scripts (Python) the package ships in ``compose/scripts/``, sorted."""
    return [name for name in mounted_names() if name.endswith(".py")]


def script_text(name: str) -> str:
    """The text of a mounted file, as written into a campaign's ``scripts/`` folder."""
    return _data(COMPOSE_DIR, "scripts", name)


def scripts_for(backends: Sequence[str]) -> list[str]:
    """The mounted files the given campaign backends use (``vllm``, ``sglang-serve``), each
    once."""
    names: list[str] = []
    for backend in backends:
        names.extend(s for s in template(backend).scripts if s not in names)
    return names


# --- compose files ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ComposeParts:
    """A shipped compose file cut in three: text before its services, the services, the rest."""

    header: str
    services: str
    footer: str


_SERVICES_LINE = "\nservices:\n"
_VOLUMES_LINE = "\nvolumes:\n"


def compose_parts(backend: str) -> ComposeParts:
    """Cut ``compose/<backend>.yml`` at its ``services:`` and top-level ``volumes:`` lines.

    Text surgery rather than YAML, to keep every comment; the shape it relies on (one
    ``services:`` line, the services, a blank line, ``volumes:`` to the end) is tested.
    """
    text = compose_text(backend)
    start = text.find(_SERVICES_LINE)
    end = text.rfind(_VOLUMES_LINE)
    if start < 0 or end < start:
        raise ValueError(f"{COMPOSE_DIR}/{backend}.yml: no `services:` then `volumes:` line")
    start += len(_SERVICES_LINE)
    return ComposeParts(text[:start], text[start:end], text[end:])


def render_compose(backends: Sequence[str]) -> str:
    """One compose file with every given backend's service, in the order given.

    For one backend it is that backend's file exactly; for several, the first file's header
    and footer (all files share them) around each file's services.
    """
    parts = [compose_parts(name) for name in backends]
    if not parts:
        raise ValueError("no backend to write a compose file for")
    services = "\n".join(p.services for p in parts)
    return parts[0].header + services + parts[0].footer


# --- the starting campaign ----------------------------------------------------------------------

_PLAIN = re.compile(r"^[A-Za-z/_.-][A-Za-z0-9/_.:=-]*$")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


def yaml_item(item: str) -> str:
    """One command item as YAML: plain when unambiguous, else double-quoted (JSON is YAML)."""
    if _PLAIN.match(item) and item.lower() not in _YAML_WORDS:
        return item
    return json.dumps(item)


def flow_list(items: Sequence[str], indent: int, width: int = 96) -> str:
    """``[a, b, ...]`` wrapped under the opening bracket so long commands stay readable."""
    lines: list[str] = []
    current = "["
    fresh = True  # nothing on the current line yet but "[" or the padding
    offset = indent  # the first line starts after the key; later ones carry their padding
    for index, item in enumerate(items):
        text = yaml_item(item) + ("]" if index == len(items) - 1 else ",")
        if not fresh and offset + len(current) + 1 + len(text) > width:
            lines.append(current)
            current, fresh, offset = " " * (indent + 1), True, 0
        current = current + text if fresh else f"{current} {text}"
        fresh = False
    lines.append(current)
    return "\n".join(lines)


def campaign_name(stem: str) -> str:
    """A valid campaign name from a file name: lower case, other characters become '-'."""
    name = re.sub(r"[^a-z0-9_-]+", "-", stem.lower()).strip("-_")
    return name[:63] or "campaign"


METRICS_HEADER = "metrics:  # llem's names <- this engine's result.json, to compare engines"
"""The line that opens a backend's ``metrics:`` (the campaigns in ``campaigns/`` use it too)."""


def metrics_block(backend: str, indent: int) -> str:
    """A backend's ``metrics:`` entry, each mapping under the comment naming the engine's key,
    the note on what the engine does not report last; ``indent`` spaces before ``metrics:``.
    ``backend`` is a campaign backend name: ``vllm``, or ``vllm-serve`` for the serving one."""
    found = template(backend)
    pad, inner = " " * indent, " " * (indent + 2)
    lines = [pad + METRICS_HEADER]
    for metric in found.metrics:
        lines += _comment_lines(metric.comment, inner)
        lines.append(f"{inner}{metric.name}: {metric.source}")
    lines += _comment_lines(found.metrics_note, inner)
    return "\n".join(lines)


def _comment_lines(text: str, pad: str, width: int = 96) -> list[str]:
    """``text`` as YAML comment lines of at most ``width`` characters (none for no text)."""
    return textwrap.wrap(text, width, initial_indent=f"{pad}# ", subsequent_indent=f"{pad}# ")


def _backend_block(backend: str) -> str:
    """One backend's entry under ``backends:``: its command, pinned to GPU 0 (edit to taste),
    and its metrics."""
    engine = BACKENDS[backend]
    prefix = "    command: "
    return (
        f"  {backend}:\n"
        + "".join(f"{line}\n" for line in _comment_lines(engine.command_comment, "    "))
        + f"{prefix}{flow_list(engine.command, len(prefix))}\n"
        "    gpus: [0]                         # host GPUs llem measures (NVML)\n"
        '    env: {CUDA_VISIBLE_DEVICES: "0"}   # ... and the GPU the engine uses\n'
        f"{metrics_block(backend, 4)}"
    )


def render_campaign(
    name: str, backends: Sequence[str], model: str, compose: Sequence[str], file_hint: str
) -> str:
    """The commented starting campaign (valid as written, given its compose files exist).

    ``compose`` holds the compose paths relative to the campaign; ``file_hint`` is the path
    the user typed, quoted back in the "next steps" comment.
    """
    return Template(_data("campaign.yaml.tmpl")).substitute(
        name=name,
        file=file_hint,
        compose=_compose_lines(compose),
        backends="\n".join(_backend_block(b) for b in backends),
        backend_axis=", ".join(backends),
        model=yaml_item(model),
    )


def _compose_lines(compose: Sequence[str]) -> str:
    """The campaign's ``compose:`` entry: one path, or a list of them."""
    if len(compose) == 1:
        return f"compose: {yaml_item(compose[0])}  # relative to this file"
    return "compose:  # relative to this file\n" + "\n".join(
        f"  - {yaml_item(path)}" for path in compose
    )


SERVER_CAPS = (8, 32)
"""``llem init --serve``'s values of each server's running-batch cap (its ``per_backend`` axis)."""


def serving_block(engine: str, indent: int = 2, ready_timeout: str = "30m") -> str:
    """One serving backend's entry under ``backends:`` (``<engine>-serve`` on the engine's
    service): its serve, ready and client argvs, each under the comment that explains it, the
    GPU llem measures, and its metrics; ``indent`` spaces before the backend's name."""
    serving = SERVING[engine]
    pad = " " * (indent + 2)

    def argv(key: str, items: Sequence[str], comment: str = "") -> str:
        prefix = f"{pad}{key}: "
        lines = [f"{line}\n" for line in _comment_lines(comment, pad)]
        return "".join(lines) + f"{prefix}{flow_list(items, len(prefix))}\n"

    return (
        f"{' ' * indent}{serving.name}:\n"
        f"{pad}service: {engine}  # compose/{engine}.yml's service; its server replaces the "
        "keep-alive\n"
        + argv("serve", serving.serve, serving.serve_comment)
        + argv("ready", serving.ready, "exec'd in the container until it exits 0")
        + f"{pad}ready_timeout: {ready_timeout}  # the first start also downloads the model\n"
        + argv("command", serving.command, serving.command_comment)
        + f"{pad}gpus: [0]  # host GPU llem measures (the server uses the container's first GPU)\n"
        + metrics_block(serving.name, indent + 2)
    )


def render_serving_campaign(
    name: str, engines: Sequence[str], model: str, compose: Sequence[str], file_hint: str
) -> str:
    """``llem init --serve``'s commented starting campaign: a serving backend per engine, each
    crossing its running-batch cap (a server param) with the client's request rate; valid as
    written, given its compose files exist (the engines' own, ``compose/<engine>.yml``)."""
    names = [SERVING[engine].name for engine in engines]
    axes = "\n".join(
        f"  {SERVING[e].name}: {{{SERVING[e].server_param}: [{', '.join(map(str, SERVER_CAPS))}]}}"
        for e in engines
    )
    return Template(_data("serving.yaml.tmpl")).substitute(
        name=name,
        file=file_hint,
        compose=_compose_lines(compose),
        backends="\n".join(serving_block(e) for e in engines),
        backend_axis=", ".join(names),
        per_backend=axes,
        model=yaml_item(model),
    )
