"""No run-time download in a shipped engine command's data preparation (issue 12).

TensorRT-LLM's and SGLang's shipped commands first run a mounted script that writes the
benchmark's data into the experiment's directory, then exec the engine. Each shipped command
(``llem init``'s template and every campaign in ``campaigns/``) is run here as written, its
``/llem/scripts`` path pointed at this checkout and the engine after ``--`` replaced by a stand-in,
with networking off: in a network namespace of its own (``unshare -n``) where this machine allows
one, else with every socket connect refused in the child (a ``sitecustomize``). TensorRT-LLM's
script reads the model's vocabulary size from a Hugging Face cache that holds only the model's
``config.json``, as the shared ``llem-hf-cache`` volume does after a model's first run.

vLLM and the transformers script make their random prompts in-process (no file, nothing fetched):
docs/engines.md gives the source lines. SGLang's sampler, run from its pinned source on the file
the script writes, is in tests/unit/test_check_engines.py. Also here: the two data scripts' own
logic, and SGLang's ``--result-filename`` (it appends) landing in a fresh file per attempt.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from llem_cli.runner.records import prepare_experiment_dir, read_metrics
from llem_cli.runs.layout import RunDir
from llem_cli.templates import BACKENDS, DEFAULT_MODEL, SCRIPTS_MOUNT, SERVING, template
from llem_testkit.scripts import ENGINE_SCRIPTS, load_script

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ENGINE_SCRIPTS
VOCAB = 151_936  # Qwen2.5's
REVISION = "0123456789abcdef0123456789abcdef01234567"

GUARD = """\
import socket

def _refuse(*args, **kwargs):
    raise OSError("network disabled by the test")

socket.socket.connect = _refuse
socket.socket.connect_ex = _refuse
socket.create_connection = _refuse
socket.getaddrinfo = _refuse
"""


@functools.cache
def _unshare() -> list[str] | None:
    """``unshare -n`` when it works here (root, or user namespaces allowed), else None."""
    tool = shutil.which("unshare")
    if tool is None:
        return None
    for prefix in ([tool, "-n"], [tool, "-r", "-n"]):
        try:
            done = subprocess.run([*prefix, "true"], capture_output=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0:
            return prefix
    return None


def run_offline(
    argv: Sequence[str], tmp_path: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` with networking off (a namespace, else refused sockets), output captured."""
    env = dict(env)
    prefix = _unshare()
    if prefix is None:
        guard = tmp_path / "no-network"
        guard.mkdir(exist_ok=True)
        (guard / "sitecustomize.py").write_text(GUARD)
        env["PYTHONPATH"] = str(guard)
    return subprocess.run(
        [*(prefix or []), *argv], capture_output=True, text=True, timeout=120, env=env, check=False
    )


def _base_env(tmp_path: Path) -> dict[str, str]:
    """A minimal environment: the Hugging Face cache under tmp_path, no offline flag set (the
    point is that nothing is fetched, not that a library was told not to)."""
    return {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "HF_HOME": str(tmp_path / "hf")}


def test_the_offline_runner_really_has_no_network(tmp_path: Path) -> None:
    """The harness itself: a connect to a public address must fail under it."""
    probe = "import socket; socket.create_connection(('1.1.1.1', 443), timeout=5)"
    done = run_offline([sys.executable, "-c", probe], tmp_path, _base_env(tmp_path))
    assert done.returncode != 0
    assert "unreachable" in done.stderr or "disabled by the test" in done.stderr, done.stderr


# --- each shipped command's data preparation, offline ---------------------------------------------


def _shipped() -> list[tuple[str, str, tuple[str, ...], dict[str, str]]]:
    """(backend, origin, argv, params) for every shipped command that prepares data first."""
    found: list[tuple[str, str, tuple[str, ...], dict[str, str]]] = []
    template_params = {"model": DEFAULT_MODEL, "num_prompts": "8", "input_len": "32",
                       "output_len": "16", "batch_size": "4"}  # fmt: skip
    templates = {**BACKENDS, **{serving.name: serving for serving in SERVING.values()}}
    for name, shipped in templates.items():
        if "--" in shipped.command:
            params = {**template_params, "request_rate": "4"}
            found.append((name, "llem init template", shipped.command, params))
    for path in sorted((ROOT / "campaigns").glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        grid = {key: str(values[0]) for key, values in (data.get("grid") or {}).items() if values}
        for name, backend in (data.get("backends") or {}).items():
            argv = tuple(str(item) for item in backend["command"])
            if name in templates and "--" in argv:
                found.append((name, f"campaigns/{path.name}", argv, grid))
    return found


SHIPPED = _shipped()


def test_the_engines_that_prepare_data_are_all_covered() -> None:
    offline = {
        (backend, origin)
        for backend in ("tensorrt", "sglang")
        for origin in (
            "llem init template",
            "campaigns/engines-compare.yaml",
            "campaigns/smoke.yaml",
        )
    }
    serving = {
        (backend, origin)
        for backend in ("tensorrt-serve", "sglang-serve")
        for origin in ("llem init template", "campaigns/serving-sweep.yaml")
    }
    assert {(b, o) for b, o, _, _ in SHIPPED} == offline | serving
    assert "--" not in template("vllm-serve").command  # vLLM's client makes its own prompts


def _fill_cache(hf_home: Path, model: str) -> None:
    """The Hugging Face cache as a model's first run leaves it, for config.json only."""
    repo = hf_home / "hub" / ("models--" + model.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(REVISION)
    snapshot = repo / "snapshots" / REVISION
    snapshot.mkdir(parents=True)
    config = {"architectures": ["Qwen2ForCausalLM"], "vocab_size": VOCAB, "hidden_size": 896}
    (snapshot / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    ("backend", "origin", "argv", "params"), SHIPPED, ids=[f"{b}-{o}" for b, o, _, _ in SHIPPED]
)
def test_shipped_data_preparation_runs_with_networking_off(
    backend: str, origin: str, argv: tuple[str, ...], params: dict[str, str], tmp_path: Path
) -> None:
    experiment = tmp_path / "run" / "experiments" / "k-c1"
    values = {**params, "experiment_dir": str(experiment)}
    rendered = [item.format_map(values) for item in argv]
    cut = rendered.index("--")
    prepare = rendered[:cut]
    assert prepare[0] == "python3" and prepare[1].startswith(f"{SCRIPTS_MOUNT}/")
    script = SCRIPTS / Path(prepare[1]).name
    marker = tmp_path / "engine-ran"
    stand_in = [sys.executable, "-c", f"open({str(marker)!r}, 'w').close()"]
    env = _base_env(tmp_path)
    _fill_cache(Path(env["HF_HOME"]), values["model"])

    done = run_offline([sys.executable, str(script), *prepare[2:], "--", *stand_in], tmp_path, env)

    assert done.returncode == 0, done.stderr
    assert marker.exists(), "the command after -- was not exec'd"
    engine = rendered[cut + 1 :]
    n, i, o = (int(values[k]) for k in ("num_prompts", "input_len", "output_len"))
    if backend == "tensorrt":
        dataset = Path(engine[engine.index("--dataset") + 1])
        records = [json.loads(line) for line in dataset.read_text().splitlines()]
        assert len(records) == n
        assert all(len(r["input_ids"]) == i and r["output_tokens"] == o for r in records)
        assert max(max(r["input_ids"]) for r in records) < VOCAB
    else:
        prompts = Path(engine[engine.index("--dataset-path") + 1])
        conversations = json.loads(prompts.read_text())
        assert len(conversations) >= n
        assert all(len(c["conversations"]) >= 2 for c in conversations)
        assert engine[engine.index("--dataset-name") + 1] == "random"
    assert not list(experiment.glob("*.tmp")), "a temporary file was left"


# --- llem_trtllm_dataset.py: the vocabulary size without the network ------------------------------


@pytest.fixture(scope="module")
def trt() -> ModuleType:
    return load_script("llem_trtllm_dataset.py")


@pytest.fixture(scope="module")
def sgl() -> ModuleType:
    return load_script("llem_sglang_dataset.py")


def test_vocab_from_a_local_model_folder(trt: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"text_config": {"vocab_size": 257}}))
    assert trt.vocab_size_of(str(tmp_path)) == 257


def test_vocab_from_the_cache_follows_refs_main(
    trt: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    _fill_cache(tmp_path, "org/model")
    stale = tmp_path / "hub" / "models--org--model" / "snapshots" / "old"
    stale.mkdir()
    (stale / "config.json").write_text(json.dumps({"vocab_size": 7}))  # not the main revision
    assert trt.hub_cache() == str(tmp_path / "hub")
    assert trt.vocab_size_of("org/model") == VOCAB
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    assert trt.local_config("org/model") is None  # HF_HUB_CACHE wins over HF_HOME, as in the hub


@pytest.mark.parametrize(
    "config", [{}, {"vocab_size": 0}, {"vocab_size": "32000"}, {"vocab_size": True}, []]
)
def test_an_unusable_local_config_is_not_trusted(
    trt: ModuleType, tmp_path: Path, config: object
) -> None:
    (tmp_path / "config.json").write_text(json.dumps(config))
    local = trt.local_config(str(tmp_path))
    assert local is None or trt._vocab_size(local) is None  # then transformers is asked


# --- llem_sglang_dataset.py -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("num_prompts", "expected"),
    [(1, 1_000), (8, 1_280), (64, 20_480), (300, 96_000), (5_000, 100_000)],
)
def test_conversations_keep_warmup_reuse_rare(
    sgl: ModuleType, num_prompts: int, expected: int
) -> None:
    count = sgl.conversation_count(num_prompts)
    assert count == expected
    warmup = min(num_prompts, sgl.WARMUP_REQUESTS)
    if num_prompts <= 300:  # expected measured requests whose conversation the warm-up ran
        assert warmup * num_prompts / count <= 1 / sgl.ODDS


def test_prompts_are_seeded_distinct_sharegpt_conversations(sgl: ModuleType) -> None:
    items = [json.loads(text) for text in sgl.conversations(2_000, seed=3)]
    assert items == [json.loads(text) for text in sgl.conversations(2_000, seed=3)]
    assert items != [json.loads(text) for text in sgl.conversations(2_000, seed=4)]
    prompts = [item["conversations"][0]["value"] for item in items]
    assert len(set(prompts)) == len(prompts)
    assert all(
        len(p.split()) == sgl.WORDS_PER_PROMPT and p.replace(" ", "").isalpha() for p in prompts
    )
    assert all(item["conversations"][1]["value"] for item in items)
    # a space before every word: repeated by SGLang, the prompt's tokens decode to " a b c a b c",
    # which tokenizes back to the same ids (byte-level BPE never merges across " word")
    assert all(p.startswith(" ") and "  " not in p for p in prompts)


def test_sglang_script_writes_a_json_list_then_execs(tmp_path: Path) -> None:
    out = tmp_path / "exp" / "prompts.json"
    check = "import json, sys; sys.exit(len(json.load(open(sys.argv[1]))) % 256)"
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / "llem_sglang_dataset.py"), "--num-prompts", "2",
         "--out", str(out), "--", sys.executable, "-c", check, str(out)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1_000 % 256, done.stderr  # 1,000 conversations, read by the engine
    assert not out.with_name("prompts.json.tmp").exists()


# --- SGLang appends to --result-filename: a fresh file per attempt --------------------------------


def test_each_attempt_of_an_appending_benchmark_writes_a_fresh_result(tmp_path: Path) -> None:
    """SGLang opens --result-filename with "a"; llem sets an earlier attempt's file aside before
    each attempt, so the file llem merges holds that attempt's one line, never two."""
    run = RunDir(tmp_path)
    key = "abc123def456-c1"

    def sglang_appends(result: Path, attempt: int) -> None:
        with result.open("a") as handle:
            handle.write(
                json.dumps({"attempt": attempt, "output_throughput": 10.0 * attempt}) + "\n"
            )

    for attempt in (1, 2, 3):
        folder = prepare_experiment_dir(run, key)
        sglang_appends(folder / "result.json", attempt)
    metrics, reason = read_metrics(folder)
    assert reason is None and metrics == {"attempt": 3, "output_throughput": 30.0}
    assert (folder / "result.json").read_text().count("\n") == 1
    kept = sorted(p.name for p in folder.glob("result.attempt-*.json"))
    assert kept == ["result.attempt-1.json", "result.attempt-2.json"]
    assert json.loads((folder / "result.attempt-1.json").read_text())["attempt"] == 1
