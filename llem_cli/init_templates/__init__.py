"""What ``llem init`` writes, and the single source of the shipped ``compose/*.yml`` files.

Each known backend (an inference engine) has: its compose service (public image, GPU
reservation, shared Hugging Face cache, HF_TOKEN passed through, IPC settings), the argv of its
own offline benchmark writing JSON to ``{experiment_dir}/result.json`` (the one file llem
merges), and the helper scripts its container mounts. ``compose/<backend>.yml`` in the
repository is exactly :func:`render_compose` of that one backend and
``campaigns/engines-compare.yaml`` uses exactly these commands; tests hold both to it, so the
examples, ``llem init`` and the docs cannot drift apart.

The text is built from strings, not dumped YAML, because the comments are the point: a
generated file must explain itself to someone opening it for the first time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

DEFAULT_MODEL = "Qwen/Qwen2.5-0.5B-Instruct"
"""Small, ungated (no HF_TOKEN needed) and supported by all four engines."""

SCRIPTS_MOUNT = "/llem/scripts"
"""Where a compose file mounts its ``scripts/`` folder (read-only) inside the container."""


@dataclass(frozen=True)
class BackendTemplate:
    """One engine: its compose service text, its benchmark argv and the scripts it mounts."""

    name: str
    title: str
    service: str
    command: tuple[str, ...]
    scripts: tuple[str, ...] = ()
    command_comment: str = ""


_RESERVE_GPUS = """\
    deploy:
      resources:
        reservations:
          devices:
            - driver: nvidia
              count: all
              capabilities: [gpu, utility]  # utility: nvidia-smi inside, for llem's probe
"""

_HF = """\
    environment:
      - HF_TOKEN  # passed through from the environment llem runs in; never a value here
      - HF_HOME=/root/.cache/huggingface
    volumes:
      - hf-cache:/root/.cache/huggingface
"""

_SCRIPTS_VOLUME = f"      - ./scripts:{SCRIPTS_MOUNT}:ro  # relative to this file\n"

_PYTORCH_SERVICE = (
    """\
  # PyTorch + transformers: llem runs scripts/llem_generate_bench.py (mounted) in it.
  # Hugging Face's public image sets no ENTRYPOINT of its own; the nvidia/cuda base's banner
  # script, where present, execs its arguments, so llem's `sleep infinity` runs as given.
  pytorch:
    image: huggingface/transformers-pytorch-gpu:4.41.2
"""
    + _HF
    + _SCRIPTS_VOLUME
    + """\
    # generate() is one process, but Docker's default 64 MB /dev/shm is too small for any
    # torch helper sharing tensors between processes; unused space costs nothing.
    shm_size: 8gb
"""
    + _RESERVE_GPUS
)

_VLLM_SERVICE = (
    """\
  # vLLM: llem runs `vllm bench throughput ... --output-json` in it.
  # The image's ENTRYPOINT is the API server (`vllm serve`; `python3 -m
  # vllm.entrypoints.openai.api_server` in older tags), which would turn llem's keep-alive
  # into `vllm serve sleep infinity` and exit at once. `entrypoint: []` clears it, so the
  # container runs just llem's `sleep infinity`; experiments are `docker compose exec`.
  vllm:
    image: vllm/vllm-openai:v0.10.1.1
    entrypoint: []
"""
    + _HF
    + """\
    ipc: host  # workers share tensors through /dev/shm; vLLM's docs run with --ipc=host
"""
    + _RESERVE_GPUS
)

_TENSORRT_SERVICE = (
    """\
  # TensorRT-LLM: llem runs `trtllm-bench ... throughput --report_json` in it.
  # NVIDIA's public NGC release image (no login needed). Its ENTRYPOINT,
  # /opt/nvidia/nvidia_entrypoint.sh, prints a banner and execs its arguments, so llem's
  # `sleep infinity` runs as given.
  tensorrt:
    image: nvcr.io/nvidia/tensorrt-llm/release:1.0.0
"""
    + _HF
    + _SCRIPTS_VOLUME
    + """\
    # As NVIDIA's docs run it: shared IPC for MPI/NCCL workers, unlimited locked memory,
    # a 64 MB stack.
    ipc: host
    ulimits:
      memlock: -1
      stack: 67108864
"""
    + _RESERVE_GPUS
)

_SGLANG_SERVICE = (
    """\
  # SGLang: llem runs `python3 -m sglang.bench_offline_throughput ... --result-filename` in it.
  # The image's Dockerfile sets no ENTRYPOINT (the nvidia/cuda base's banner script, where
  # present, execs its arguments), so llem's `sleep infinity` runs as given.
  sglang:
    image: lmsysorg/sglang:v0.4.6.post4-cu124
"""
    + _HF
    + """\
    # As SGLang's own compose file: shared IPC for its scheduler and workers.
    ipc: host
    ulimits:
      memlock: -1
      stack: 67108864
"""
    + _RESERVE_GPUS
)

_WORKLOAD = ("--num-prompts", "{num_prompts}")

BACKENDS: dict[str, BackendTemplate] = {
    "pytorch": BackendTemplate(
        name="pytorch",
        title="PyTorch + transformers generate()",
        service=_PYTORCH_SERVICE,
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
            "--out",
            "{experiment_dir}/result.json",
        ),  # fmt: skip
        scripts=("llem_generate_bench.py",),
        command_comment="the shipped transformers script (scripts/llem_generate_bench.py)",
    ),
    "vllm": BackendTemplate(
        name="vllm",
        title="vLLM",
        service=_VLLM_SERVICE,
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
        command_comment="vLLM's offline throughput benchmark; batch size caps running sequences",
    ),
    "tensorrt": BackendTemplate(
        name="tensorrt",
        title="TensorRT-LLM",
        service=_TENSORRT_SERVICE,
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
            "--report_json",
            "{experiment_dir}/result.json",
        ),  # fmt: skip
        scripts=("llem_trtllm_dataset.py",),
        command_comment="the shipped script writes trtllm-bench's dataset, then execs the rest",
    ),
    "sglang": BackendTemplate(
        name="sglang",
        title="SGLang",
        service=_SGLANG_SERVICE,
        command=(
            "python3",
            "-m",
            "sglang.bench_offline_throughput",
            "--model-path",
            "{model}",
            "--dataset-name",
            "random",
            *_WORKLOAD,
            "--random-input-len",
            "{input_len}",
            "--random-output-len",
            "{output_len}",
            "--random-range-ratio",
            "1.0",
            "--max-running-requests",
            "{batch_size}",
            "--result-filename",
            "{experiment_dir}/result.json",
        ),  # fmt: skip
        command_comment="SGLang's offline throughput benchmark; batch size caps running requests",
    ),
}

SCRIPT_SOURCES = {
    "llem_generate_bench.py": "generate_bench.py",
    "llem_trtllm_dataset.py": "trtllm_dataset.py",
}
"""Script name in a compose ``scripts/`` folder -> its source module in this package."""

_COMPOSE_HEADER = """\
# Compose services for llem backends, one per inference engine. llem never edits this file:
# at run time it adds an override (keep-alive `sleep infinity`, the run directory at
# /llem/run, `init: true`, a label) and runs each experiment with `docker compose exec`.
# Check it with: docker compose -f FILE config -q
# HF_TOKEN is read from the environment llem runs in; models go to the shared llem-hf-cache
# volume, so every engine and campaign downloads a model once.
services:
"""

_COMPOSE_FOOTER = """
volumes:
  hf-cache:
    name: llem-hf-cache  # fixed name: shared across compose projects, not <project>_hf-cache
"""


def render_compose(backends: Sequence[str]) -> str:
    """A compose file with one service per backend, in the order given."""
    services = "\n".join(BACKENDS[name].service for name in backends)
    return _COMPOSE_HEADER + services + _COMPOSE_FOOTER


def script_source(name: str) -> str:
    """The text of a helper script a compose ``scripts/`` folder holds."""
    return resources.files(__name__).joinpath(SCRIPT_SOURCES[name]).read_text(encoding="utf-8")


def scripts_for(backends: Sequence[str]) -> list[str]:
    """The helper scripts the given backends' containers mount, each once."""
    names: list[str] = []
    for backend in backends:
        names.extend(s for s in BACKENDS[backend].scripts if s not in names)
    return names


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


def render_campaign(
    name: str, backends: Sequence[str], model: str, compose: Sequence[str], file_hint: str
) -> str:
    """The commented starting campaign (valid as written, given its compose files exist)."""
    if len(compose) == 1:
        compose_text = f"compose: {yaml_item(compose[0])}  # relative to this file\n"
    else:
        compose_text = "compose:  # relative to this file\n" + "".join(
            f"  - {yaml_item(path)}\n" for path in compose
        )
    blocks = []
    for backend in backends:
        template = BACKENDS[backend]
        prefix = "    command: "
        blocks.append(
            f"  {backend}:\n"
            f"    # {template.command_comment}\n"
            f"{prefix}{flow_list(template.command, len(prefix))}\n"
            "    gpus: [0]                         # host GPUs llem measures (NVML)\n"
            '    env: {CUDA_VISIBLE_DEVICES: "0"}   # ... and the GPU the engine uses\n'
        )
    backend_axis = ", ".join(backends)
    return f"""\
# llem campaign, written by `llem init` as a starting point: edit it freely. Next:
#   llem validate {file_hint}
#   llem doctor {file_hint}
#   llem plan {file_hint}
#   llem run {file_hint} --resume
# validate prints every problem as FILE:LINE:COL; doctor checks docker and the GPUs and gives
# the `docker pull` for a missing image; plan lists the experiments in order; run --resume is
# safe to repeat (from cron, too): it continues the last unfinished run.
#
# Each experiment runs one command in its backend's long-running container. {{name}} in a
# command is a grid param or a built-in: {{run_id}}, {{key}}, {{config_id}}, {{cycle}},
# {{backend}}, {{experiment_dir}} (the experiment's folder inside the container). A JSON
# report written to {{experiment_dir}}/result.json becomes the record's metrics.
# `{{{{name}}}}` is a literal {{name}}; `${{VAR}}` is left to the container's shell.
name: {name}
{compose_text}
backends:
{"".join(blocks)}
grid:                      # every combination runs, once per cycle
  backend: [{backend_axis}]
  model: [{yaml_item(model)}]
  batch_size: [1, 8]
  num_prompts: [32]        # the same workload for every engine, so energy compares directly
  input_len: [128]
  output_len: [128]

execution:
  cycles: 3                # repeat everything, for a mean and a confidence interval
  order: interleaved       # interleaved | shuffled | grouped
  timeout: 30m             # per experiment; the first one per engine also downloads the model
  retries: 1
  gap: 10s                 # pause between experiments
  # thermal: {{max_temp_c: 50, max_wait: 10m}}  # start each experiment on a cool GPU
  # idle_baseline: 30s                        # idle power once, for net energy

health:
  probe: nvidia-smi        # GPU memory check inside the container before each experiment
  max_memory_used_pct: 90  # above it, llem restarts the container first
  max_restarts: 3
  # probe_timeout: 60s     # an nvidia-smi hung this long means a wedged GPU: restart

results: results           # runs go to results/{name}/<run_id>/
"""
