"""The shipped compose files (compose/*.yml) and the helper scripts they mount (compose/scripts/).

Compose files are checked three ways: as text (they are exactly what ``llem init`` writes, so the
two cannot drift), as data (GPU reservation, HF_TOKEN passed through with no value, the shared
cache volume), and by Docker Compose itself (``config -q`` needs no image and no GPU). The
vLLM entrypoint reset is checked against a real engine with a stand-in image whose ENTRYPOINT
would swallow llem's keep-alive, with the reset removed as the control.
The scripts are tested without torch: argument parsing, the timing loop, the JSON report.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from llem_cli.init_templates import BACKENDS, SCRIPT_SOURCES, render_compose, script_source

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose"
SCRIPTS = COMPOSE / "scripts"
ENGINE_FILES = sorted(COMPOSE / f"{name}.yml" for name in BACKENDS)


def docker(*args: str, timeout: float = 120, **kwargs: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL if "input" not in kwargs else None,
        **kwargs,  # type: ignore[arg-type]
    )


# --- compose files as text and as data -------------------------------------------------------


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_compose_file_is_what_init_writes(backend: str) -> None:
    assert (COMPOSE / f"{backend}.yml").read_text() == render_compose([backend])


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


def test_scripts_are_the_packaged_sources() -> None:
    assert sorted(p.name for p in SCRIPTS.glob("*.py")) == sorted(SCRIPT_SOURCES)
    for name in SCRIPT_SOURCES:
        assert (SCRIPTS / name).read_text() == script_source(name), f"re-copy {name}"


# --- compose files through Docker Compose --------------------------------------------------


@pytest.mark.docker
@pytest.mark.parametrize(
    "files",
    [[p] for p in ENGINE_FILES] + [ENGINE_FILES],
    ids=[p.name for p in ENGINE_FILES] + ["all-merged"],
)
def test_compose_config_accepts(files: list[Path]) -> None:
    argv = ["compose"]
    for path in files:
        argv += ["-f", str(path)]
    done = docker(*argv, "config", "-q")
    assert done.returncode == 0, done.stderr


@pytest.fixture
def swallowing_image() -> str:
    """A local image whose ENTRYPOINT exits at once, whatever its arguments (like `vllm serve`)."""
    name = f"llemt-entrypoint-{uuid.uuid4().hex[:8]}:latest"
    dockerfile = 'FROM llem-test-busybox:latest\nENTRYPOINT ["/bin/false"]\n'
    built = docker("build", "-q", "-t", name, "-", input=dockerfile)
    assert built.returncode == 0, built.stderr
    yield name
    docker("image", "rm", "-f", name)


def _up_vllm_service(run_spec, image: str, reset_entrypoint: bool) -> dict:
    """Start compose/vllm.yml's service (image swapped, no GPU) with llem's override."""
    from llem_cli.docker.override import write_override

    volume = f"{run_spec.project}-hf"
    # `!reset` (Compose 2.24+) drops the GPU reservation this machine cannot satisfy; the
    # volume gets a test name, never the user's real llem-hf-cache.
    entrypoint = "" if reset_entrypoint else '    entrypoint: ["/bin/false"]\n'
    standin_path = run_spec.run_dir / "standin.yml"
    standin_path.write_text(
        "services:\n"
        "  vllm:\n"
        f"    image: {image}\n"
        "    network_mode: none\n"
        "    ipc: private\n"
        "    deploy: !reset {}\n"
        f"{entrypoint}"
        "volumes:\n"
        "  hf-cache:\n"
        f"    name: {volume}\n"
    )
    override = write_override(run_spec.run_id, run_spec.run_dir, ["vllm"])
    base = ["compose", "-p", run_spec.project, "-f", str(COMPOSE / "vllm.yml")]
    base += ["-f", str(standin_path), "-f", str(override)]
    try:
        up = docker(*base, "up", "-d", "vllm")
        assert up.returncode == 0, up.stderr
        ids = docker(*base, "ps", "-aq", "vllm").stdout.split()
        assert len(ids) == 1
        time.sleep(1.0)
        state = docker("inspect", "--format", "{{json .}}", ids[0])
        return json.loads(state.stdout)
    finally:
        docker(*base, "down", "-t", "0")
        docker("volume", "rm", "-f", volume)


@pytest.mark.docker
def test_vllm_entrypoint_reset_keeps_the_container_alive(run_spec, swallowing_image: str) -> None:
    info = _up_vllm_service(run_spec, swallowing_image, reset_entrypoint=True)
    assert info["Config"]["Cmd"] == ["sleep", "infinity"]
    assert not info["Config"]["Entrypoint"]
    assert info["State"]["Running"] is True


@pytest.mark.docker
def test_without_the_reset_the_image_entrypoint_swallows_keepalive(
    run_spec, swallowing_image: str
) -> None:
    """The control: an ENTRYPOINT left in place takes `sleep infinity` as its arguments."""
    info = _up_vllm_service(run_spec, swallowing_image, reset_entrypoint=False)
    assert info["State"]["Running"] is False
    assert info["State"]["ExitCode"] != 0


# --- compose/scripts/llem_generate_bench.py --------------------------------------------------


def load_script(name: str) -> ModuleType:
    """Import a shipped script from compose/scripts (the file the container runs)."""
    spec = importlib.util.spec_from_file_location(name.removesuffix(".py"), SCRIPTS / name)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
