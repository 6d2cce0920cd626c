"""The shipped engine files, checked with no Docker engine: compose/*.yml and compose/scripts/.

Their one source is the package data in ``llem_cli/templates/compose/``; the repository's
``compose/<backend>.yml`` and ``compose/scripts`` are relative symlinks into it. Compose files
are checked as text (the shape :func:`render_compose` merges) and as data (GPU reservation,
HF_TOKEN passed through with no value, the shared cache volume). The scripts are tested without
torch (argument parsing, the timing loop, the JSON report) and on Python 3.8, the oldest a
container may have, where one is installed. The serving templates (``SERVING``) run on the same
compose services: their ports agree between server, ready check and client, nothing is
published, and the ready check is run here against a local HTTP server. Docker Compose's own
reading of these files is in tests/docker/test_compose_files.py.
"""

from __future__ import annotations

import ast
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

import llem_cli.templates
from llem_cli.campaign.placeholders import PER_EXPERIMENT, placeholder_names
from llem_cli.templates import (
    BACKENDS,
    SERVING,
    compose_parts,
    compose_text,
    mounted_names,
    ready_probe,
    render_compose,
    script_names,
    script_text,
)
from llem_testkit.engine import skip_unless_possible
from llem_testkit.scripts import load_script

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose"
SCRIPTS = COMPOSE / "scripts"
PACKAGE_COMPOSE = Path(llem_cli.templates.__file__).parent / "compose"
ENGINE_FILES = sorted(COMPOSE / f"{name}.yml" for name in BACKENDS)


# --- compose files as text and as data -------------------------------------------------------


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_compose_file_is_a_link_to_the_package_data(backend: str) -> None:
    """No hand-kept copy: compose/<backend>.yml is a relative link into llem_cli/templates."""
    path = COMPOSE / f"{backend}.yml"
    assert path.is_symlink()
    assert os.readlink(path) == f"../llem_cli/templates/compose/{backend}.yml"
    assert path.resolve() == PACKAGE_COMPOSE / f"{backend}.yml"
    assert path.read_text() == compose_text(backend) == render_compose([backend])


def test_scripts_folder_is_a_link_to_the_package_data() -> None:
    """A link to the folder, not to each file: a bind-mounted folder of relative links to
    files outside it would hold dangling links inside the container."""
    assert SCRIPTS.is_symlink()
    assert os.readlink(SCRIPTS) == "../llem_cli/templates/compose/scripts"
    assert SCRIPTS.resolve() == PACKAGE_COMPOSE / "scripts"
    for name in mounted_names():
        assert not (PACKAGE_COMPOSE / "scripts" / name).is_symlink()


def test_compose_files_share_the_header_and_footer_render_compose_merges() -> None:
    """The merged file takes the first file's header and footer: they must be everyone's."""
    parts = [compose_parts(name) for name in BACKENDS]
    assert len({p.header for p in parts}) == 1
    assert len({p.footer for p in parts}) == 1
    for name, part in zip(BACKENDS, parts, strict=True):
        assert part.header + part.services + part.footer == compose_text(name)
        assert list(yaml.safe_load(part.header + part.services)["services"]) == [name]
    merged = yaml.safe_load(render_compose(list(BACKENDS)))
    assert list(merged["services"]) == list(BACKENDS)
    for name in BACKENDS:
        alone = yaml.safe_load(compose_text(name))
        assert merged["services"][name] == alone["services"][name]
        assert merged["volumes"] == alone["volumes"]


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_a_service_mounts_scripts_exactly_when_its_command_runs_one(backend: str) -> None:
    """The offline benchmark's or, for an engine with a server, the serving backend's."""
    service = yaml.safe_load(compose_text(backend))["services"][backend]
    mounts = "./scripts:/llem/scripts:ro" in service.get("volumes", [])
    serving = SERVING[backend].scripts if backend in SERVING else ()
    assert mounts == bool(BACKENDS[backend].scripts or serving)


@pytest.mark.parametrize("path", ENGINE_FILES, ids=lambda p: p.name)
def test_no_service_publishes_a_port(path: Path) -> None:
    """A serving backend's clients exec in the server's own container: a published port would
    only collide between lanes (and Slurm tasks), and expose the server."""
    (service,) = yaml.safe_load(path.read_text())["services"].values()
    assert "ports" not in service and "expose" not in service
    assert service.get("network_mode") is None  # the container's own network: ports never meet


@pytest.mark.parametrize("path", ENGINE_FILES, ids=lambda p: p.name)
def test_compose_file_reserves_gpus_and_passes_hf_token_through(path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    (name, service), *others = doc["services"].items()
    assert not others
    assert ":" in service["image"] and not service["image"].endswith(":latest"), "pin a tag"
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu", "utility"]}]
    assert "HF_TOKEN" in service["environment"]  # list form, name only: taken from the host
    assert not any(str(e).startswith("HF_TOKEN=") for e in service["environment"])
    assert "hf-cache:/root/.cache/huggingface" in service["volumes"]
    assert doc["volumes"]["hf-cache"]["name"] == "llem-hf-cache"
    assert service.get("ipc") == "host" or service.get("shm_size")


def test_only_vllm_resets_the_entrypoint() -> None:
    """vLLM's ENTRYPOINT would swallow `sleep infinity`; the others exec their arguments."""
    resets = {
        name: "entrypoint" in yaml.safe_load(render_compose([name]))["services"][name]
        for name in BACKENDS
    }
    assert resets == {"pytorch": False, "vllm": True, "tensorrt": False, "sglang": False}
    assert yaml.safe_load(render_compose(["vllm"]))["services"]["vllm"]["entrypoint"] == []


def test_every_packaged_script_is_used_and_every_used_one_is_packaged() -> None:
    templates = [*BACKENDS.values(), *SERVING.values()]
    used = sorted({s for b in templates for s in b.scripts})
    assert mounted_names() == used
    assert script_names() == [name for name in used if name.endswith(".py")]
    for name in used:
        assert (SCRIPTS / name).read_text() == script_text(name)


def test_package_data_ships_every_template_file() -> None:
    """setup.cfg's package data: what init reads must be in a wheel (tests/unit/
    test_wheel_install.py installs one)."""
    text = (ROOT / "setup.cfg").read_text()
    for pattern in ("campaign.yaml.tmpl", "serving.yaml.tmpl", "compose/*.yml",
                    "compose/scripts/*.py", "compose/scripts/*.yml"):  # fmt: skip
        assert re.search(rf"^\s+{re.escape(pattern)}$", text, re.MULTILINE), pattern


# --- serving: the servers on the engines' own services ---------------------------------------


def _port(url_or_items: str) -> set[str]:
    return set(re.findall(r"127\.0\.0\.1:(\d+)", url_or_items))


@pytest.mark.parametrize("engine", list(SERVING))
def test_serving_ports_agree(engine: str) -> None:
    """The server listens where the ready check and the client look: one port per engine."""
    serving = SERVING[engine]
    serve_port = serving.serve[serving.serve.index("--port") + 1]
    client_port = serving.command[serving.command.index("--port") + 1]
    assert serve_port == client_port
    assert _port(" ".join(serving.ready)) == {serve_port}


@pytest.mark.parametrize("engine", list(SERVING))
def test_serving_argvs_use_server_params_only_in_the_server(engine: str) -> None:
    """serve/ready: the model and the engine's running-batch cap, never a per-experiment
    built-in (llem refuses those); the client: the workload and the request rate."""
    serving = SERVING[engine]
    server = {n for item in (*serving.serve, *serving.ready) for n in placeholder_names(item)}
    assert server == {"model", serving.server_param}
    assert not server & set(PER_EXPERIMENT)
    client = {n for item in serving.command for n in placeholder_names(item)}
    assert client == {"model", "num_prompts", "input_len", "output_len", "request_rate",
                      "experiment_dir"}  # fmt: skip
    assert serving.name == f"{engine}-serve"
    assert engine in BACKENDS  # its compose service is the engine's own


def test_tensorrt_server_option_file_turns_block_reuse_off() -> None:
    """trtllm-serve --extra_llm_api_options: the file the tensorrt-serve backend mounts."""
    serving = SERVING["tensorrt"]
    path = serving.serve[serving.serve.index("--extra_llm_api_options") + 1]
    assert path == "/llem/scripts/llem_trtllm_serve.yml"
    options = yaml.safe_load(script_text("llem_trtllm_serve.yml"))
    assert options == {"kv_cache_config": {"enable_block_reuse": False}}


def test_every_server_keeps_no_prompt_cache_between_experiments() -> None:
    assert "--no-enable-prefix-caching" in SERVING["vllm"].serve
    assert "--disable-radix-cache" in SERVING["sglang"].serve
    assert "--extra_llm_api_options" in SERVING["tensorrt"].serve


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        self.send_response(_Health.status if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def health_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    _Health.status = 200


def _run_ready(argv: tuple[str, ...]) -> subprocess.CompletedProcess:
    assert argv[0] == "python3"
    return subprocess.run(
        [sys.executable, *argv[1:]], capture_output=True, text=True, timeout=30, check=False
    )


def test_ready_probe_exits_0_only_on_200(health_server) -> None:
    """The ready argv, run as llem runs it (one exec): 0 on 200; non-zero, with the reason on
    its last line, on 503, 404 and a refused connection."""
    port = health_server.server_address[1]
    assert _run_ready(ready_probe(f"http://127.0.0.1:{port}/health")).returncode == 0
    _Health.status = 503
    done = _run_ready(ready_probe(f"http://127.0.0.1:{port}/health"))
    assert done.returncode != 0 and "503" in done.stderr.strip().splitlines()[-1]
    _Health.status = 200
    assert _run_ready(ready_probe(f"http://127.0.0.1:{port}/nowhere")).returncode != 0
    health_server.shutdown()
    health_server.server_close()
    done = _run_ready(ready_probe(f"http://127.0.0.1:{port}/health"))
    assert done.returncode != 0 and "refused" in done.stderr.strip().splitlines()[-1].lower()


@pytest.mark.parametrize("engine", list(SERVING))
def test_shipped_ready_is_the_probe_on_python(engine: str) -> None:
    """Every engine image has python3 (docs/engines.md); none of them is known to have curl."""
    ready = SERVING[engine].ready
    assert ready[:2] == ("python3", "-c")
    ast.parse(ready[2], feature_version=(3, 8))
    (url,) = re.findall(r"'(http://[^']+)'", ready[2])
    assert ready == ready_probe(url, int(re.findall(r"timeout=(\d+)", ready[2])[0]))


# --- compose/scripts/llem_generate_bench.py --------------------------------------------------


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_script("llem_generate_bench.py")


@pytest.fixture(scope="module")
def dataset() -> ModuleType:
    return load_script("llem_trtllm_dataset.py")


def test_bench_parses_the_campaign_arguments(bench: ModuleType) -> None:
    args = bench.parse_args(
        ["--model", "m", "--batch-size", "8", "--num-prompts", "20", "--input-len", "16",
         "--output-len", "4", "--out", "/x/result.json"]
    )  # fmt: skip
    assert (args.model, args.batch_size, args.num_prompts) == ("m", 8, 20)
    assert (args.input_len, args.output_len, args.out) == (16, 4, "/x/result.json")


@pytest.mark.parametrize(
    "argv",
    [
        ["--model", "m"],  # no --out
        ["--out", "r.json"],  # no --model
        ["--model", "m", "--out", "r.json", "--batch-size", "0"],
        ["--model", "m", "--out", "r.json", "--output-len", "x"],
    ],
)
def test_bench_rejects_bad_arguments(bench: ModuleType, argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        bench.parse_args(argv)
    assert exc.value.code == 2


def test_bench_batches_cover_every_prompt_once(bench: ModuleType) -> None:
    assert bench.batch_sizes(10, 4) == [4, 4, 2]
    assert bench.batch_sizes(8, 4) == [4, 4]
    assert bench.batch_sizes(3, 8) == [3]


def test_bench_report_from_a_fake_generator(bench: ModuleType) -> None:
    args = bench.parse_args(
        ["--model", "fake", "--batch-size", "4", "--num-prompts", "10", "--output-len", "5",
         "--warmup", "2", "--out", "r.json"]
    )  # fmt: skip
    calls: list[int] = []
    ticks = iter(range(1000))

    def generate(size: int) -> int:
        calls.append(size)
        return size * args.output_len

    report = bench.run_benchmark(generate, args, clock=lambda: float(next(ticks)))
    assert calls == [4, 4, 4, 4, 2]  # two warm-up batches, then 4 + 4 + 2
    assert report["tokens"] == 50  # warm-up tokens are not counted
    assert report["batches"] == 3
    assert report["elapsed_s"] == 7.0  # the fake clock ticks once per call
    assert report["tokens_per_s"] == pytest.approx(50 / 7)
    assert report["latency_s"] == 1.0 and report["latency_max_s"] == 1.0
    assert report["prompt_tokens"] == 10 * 128


def test_bench_main_writes_the_json_report(
    bench: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "exp" / "result.json"
    monkeypatch.setattr(bench, "load_generator", lambda args: (lambda n: n * 3, {"device": "x"}))
    code = bench.main(["--model", "fake", "--num-prompts", "6", "--batch-size", "2",
                       "--output-len", "3", "--out", str(out)])  # fmt: skip
    assert code == 0
    report = json.loads(out.read_text())
    assert report["tokens"] == 18 and report["batches"] == 3  # 6 prompts in batches of 2
    # the rates come from the timed window (real clock here: relations, not values)
    assert report["tokens_per_s"] == pytest.approx(18 / report["elapsed_s"])
    assert isinstance(report["latency_s"], float)  # a mean of timed batches, not None
    assert report["latency_p50_s"] <= report["latency_max_s"] <= report["elapsed_s"]
    printed = json.loads(capsys.readouterr().out)
    assert printed == {k: report[k] for k in ("tokens", "tokens_per_s", "latency_s")}
    assert report["device"] == "x" and report["model"] == "fake"
    assert [p.name for p in out.parent.iterdir()] == ["result.json"]  # no temporary left


#: runs the script's main() with a stand-in model: loading takes 50 ms, each batch 10 ms
STAND_IN_MAIN = """
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location("bench", sys.argv[1])
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)
def load_generator(args):
    time.sleep(0.05)
    def generate(size):
        time.sleep(0.01)
        return size * args.output_len
    return generate, {"device_name": "stand-in"}
bench.load_generator = load_generator
sys.exit(bench.main(sys.argv[2:]))
"""


def check_phases(report: dict[str, Any], began: float, ended: float) -> None:
    """``llem_phases``: load, warmup, generate in that order, each [start, end] in Unix
    seconds, not overlapping, all within the script's run."""
    phases = report["llem_phases"]  # the report's keys are sorted: order by name here
    assert set(phases) == {"load", "warmup", "generate"}
    edges = [t for name in ("load", "warmup", "generate") for t in phases[name]]
    assert all(isinstance(t, float) for t in edges)
    assert began <= edges[0] and edges[-1] <= ended
    assert edges == sorted(edges)  # each starts after the previous one ended
    (load0, load1), (gen0, gen1) = phases["load"], phases["generate"]
    assert load1 - load0 >= 0.05  # the stand-in's load is in `load`, not in `generate`
    assert gen1 - gen0 >= report["elapsed_s"] * 0.99  # the timed batches lie inside `generate`


@pytest.mark.parametrize("warmup", ["0", "2"])
def test_bench_report_marks_its_phases(tmp_path: Path, warmup: str) -> None:
    out = tmp_path / "result.json"
    began = time.time()
    done = subprocess.run(
        [sys.executable, "-c", STAND_IN_MAIN, str(SCRIPTS / "llem_generate_bench.py"),
         "--model", "fake", "--num-prompts", "4", "--batch-size", "2", "--warmup", warmup,
         "--out", str(out)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    ended = time.time()
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    check_phases(report, began, ended)
    warm0, warm1 = report["llem_phases"]["warmup"]
    if warmup == "0":
        assert warm0 <= warm1 < warm0 + 0.005  # no warm-up batch: an empty interval
    else:
        assert warm1 - warm0 >= 0.02  # two 10 ms batches


def test_bench_runs_without_torch_until_a_model_loads(tmp_path: Path) -> None:
    """`--help` works on a Python without torch: nothing heavy is imported at the top."""
    done = subprocess.run(
        [sys.executable, "-S", str(SCRIPTS / "llem_generate_bench.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "--batch-size" in done.stdout


# --- compose/scripts/llem_trtllm_dataset.py --------------------------------------------------


def test_dataset_lines_are_trtllm_bench_records(dataset: ModuleType) -> None:
    lines = list(dataset.dataset_lines(3, 5, 7, vocab_size=50, seed=1))
    records = [json.loads(line) for line in lines]
    assert [r["task_id"] for r in records] == [0, 1, 2]
    assert all(len(r["input_ids"]) == 5 and r["output_tokens"] == 7 for r in records)
    assert all(0 <= i < 50 for r in records for i in r["input_ids"])
    assert lines == list(dataset.dataset_lines(3, 5, 7, vocab_size=50, seed=1))  # repeatable


def test_dataset_splits_its_options_from_the_command(dataset: ModuleType) -> None:
    args, command = dataset.parse_args(
        ["--model", "m", "--out", "d.jsonl", "--", "trtllm-bench", "--model", "m", "throughput"]
    )
    assert args.model == "m" and args.out == "d.jsonl"
    assert command == ["trtllm-bench", "--model", "m", "throughput"]


def test_dataset_script_writes_then_execs_the_benchmark(tmp_path: Path) -> None:
    """The argv after -- replaces the script; its exit code is the experiment's."""
    data = tmp_path / "exp" / "dataset.jsonl"
    check = "import sys; n = len(open(sys.argv[1]).readlines()); sys.exit(40 + n)"
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / "llem_trtllm_dataset.py"), "--model", "m",
         "--vocab-size", "100", "--num-prompts", "2", "--input-len", "4", "--out", str(data),
         "--", sys.executable, "-c", check, str(data)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 42, done.stderr
    assert not data.with_name("dataset.jsonl.tmp").exists()


# --- both scripts on the oldest Python a container may have ----------------------------------


@pytest.mark.parametrize("name", script_names())
def test_script_parses_as_python_3_8(name: str) -> None:
    """Containers run the scripts on their own Python; images on Ubuntu 20.04 have 3.8."""
    ast.parse(script_text(name), filename=name, feature_version=(3, 8))


def _python_3_8() -> str | None:
    """A working Python 3.8 on this machine (PATH or pyenv), or None.

    Each candidate is run: a pyenv shim on PATH may exist and still refuse to run.
    """
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = [shutil.which("python3.8"), *map(str, sorted(pyenv.glob("3.8*/bin/python3.8")))]
    for candidate in filter(None, candidates):
        try:
            done = subprocess.run(
                [candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 8))"],
                capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
        except OSError:
            continue
        if done.returncode == 0 and done.stdout.strip() == "True":
            return candidate
    return None


@pytest.mark.parametrize("name", script_names())
def test_script_runs_on_python_3_8(name: str, tmp_path: Path) -> None:
    """What ast cannot see: names evaluated at import (collections.abc.Callable[...] raises on
    3.8) and the dataset script's real write-then-exec path."""
    python = _python_3_8()
    if python is None:
        skip_unless_possible("no Python 3.8 here (PATH or pyenv)")  # CI has pyenv's 3.8
    done = subprocess.run(
        [python, str(SCRIPTS / name), "--help"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    if name == "llem_generate_bench.py":  # the report path, llem_phases included
        out = tmp_path / "result.json"
        began = time.time()
        done = subprocess.run(
            [python, "-c", STAND_IN_MAIN, str(SCRIPTS / name), "--model", "fake",
             "--num-prompts", "3", "--batch-size", "2", "--out", str(out)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        report = json.loads(out.read_text())
        check_phases(report, began, time.time())
        assert report["python_version"].startswith("3.8.")
    if name == "llem_trtllm_dataset.py":
        data = tmp_path / "dataset.jsonl"
        done = subprocess.run(
            [python, str(SCRIPTS / name), "--model", "m", "--vocab-size", "10",
             "--num-prompts", "3", "--out", str(data), "--", python, "-c", "pass"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert len(data.read_text().splitlines()) == 3
