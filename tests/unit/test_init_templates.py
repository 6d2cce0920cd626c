"""``llem init``: what it writes validates as written, and it never overwrites without --force.

No Docker engine needed: init only writes files (tests/docker/test_init.py has Compose read
them). Where no ``compose/`` folder is found (a ``pip install llem``), init writes the compose
file beside the campaign, as ``--compose`` does.
"""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from llem_cli.campaign.load import check_file, load_campaign
from llem_cli.cli import cli
from llem_cli.templates import (
    BACKENDS,
    DEFAULT_MODEL,
    SERVING,
    render_compose,
    script_text,
    scripts_for,
)

ROOT = Path(__file__).resolve().parents[2]
COMBINATIONS = [
    list(combo)
    for n in range(1, len(BACKENDS) + 1)
    for combo in itertools.combinations(BACKENDS, n)
]


def init(*args: str):
    result = CliRunner().invoke(cli, ["init", *args])
    assert "Traceback" not in result.output
    return result


def backend_args(backends: list[str]) -> list[str]:
    return [arg for name in backends for arg in ("--backend", name)]


def assert_valid(path: Path) -> None:
    loaded, problems = check_file(path)
    assert [p.render() for p in problems] == []
    assert loaded is not None


@pytest.mark.parametrize("backends", COMBINATIONS, ids="+".join)
def test_every_backend_combination_validates_as_written(
    backends: list[str], tmp_path: Path
) -> None:
    path = tmp_path / "camp.yaml"
    result = init(*backend_args(backends), "--compose", str(path))
    assert result.exit_code == 0, result.output
    assert_valid(path)
    loaded = load_campaign(path)
    assert {c.backend for c in loaded.configs} == set(backends)
    assert list(loaded.campaign.backends) == backends
    compose = yaml.safe_load((tmp_path / "camp.compose.yml").read_text())
    assert list(compose["services"]) == backends
    wanted_scripts = {s for b in backends for s in BACKENDS[b].scripts}
    written = {p.name for p in (tmp_path / "scripts").glob("*")} if wanted_scripts else set()
    assert written == wanted_scripts
    for name in written:
        assert (tmp_path / "scripts" / name).read_text() == script_text(name)


def test_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = init("--compose")
    assert result.exit_code == 0, result.output
    loaded = load_campaign(tmp_path / "campaign.yaml")
    assert loaded.campaign.name == "campaign"
    assert list(loaded.campaign.backends) == ["pytorch"]
    assert {c.params["model"] for c in loaded.configs} == {DEFAULT_MODEL}


def test_model_and_name_from_the_arguments(tmp_path: Path) -> None:
    path = tmp_path / "My Llama.yaml"
    result = init("-b", "vllm", "--model", "meta-llama/Llama-3.2-1B", "--compose", str(path))
    assert result.exit_code == 0, result.output
    loaded = load_campaign(path)
    assert loaded.campaign.name == "my-llama"
    assert {c.params["model"] for c in loaded.configs} == {"meta-llama/Llama-3.2-1B"}


def test_generated_campaign_is_commented(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    assert init("-b", "sglang", "--compose", str(path)).exit_code == 0
    text = path.read_text()
    for words in ("llem validate", "llem run", "--resume", "{experiment_dir}", "thermal"):
        assert words in text


def test_uses_the_repository_compose_files_without_compose(tmp_path: Path) -> None:
    """In this repository's layout (campaigns/ beside compose/) no compose file is written."""
    shutil.copytree(ROOT / "compose", tmp_path / "compose", ignore=shutil.ignore_patterns("demo"))
    path = tmp_path / "campaigns" / "mine.yaml"
    path.parent.mkdir()
    result = init("-b", "tensorrt", "-b", "vllm", str(path))
    assert result.exit_code == 0, result.output
    assert_valid(path)
    assert load_campaign(path).campaign.compose_files == [
        "../compose/tensorrt.yml",
        "../compose/vllm.yml",
    ]
    assert sorted(p.name for p in path.parent.iterdir()) == ["mine.yaml"]


def test_without_compose_and_none_found_writes_one_beside_the_campaign(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new user's first command, after `pip install llem`, in an empty folder."""
    monkeypatch.chdir(tmp_path)
    result = init("--backend", "vllm", "--model", "gpt2", "new.yaml")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["wrote new.yaml", "wrote new.compose.yml"]
    assert "no compose/vllm.yml beside or above new.yaml" in result.stderr
    assert "new.compose.yml" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.compose.yml", "new.yaml"]
    assert_valid(tmp_path / "new.yaml")
    assert load_campaign(tmp_path / "new.yaml").campaign.compose_files == ["new.compose.yml"]
    assert (tmp_path / "new.compose.yml").read_text() == render_compose(["vllm"])


def test_without_compose_and_none_found_writes_the_mounted_scripts_too(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    result = init("-b", "pytorch", "-b", "tensorrt", str(path))
    assert result.exit_code == 0, result.output
    written = [line.removeprefix("wrote ") for line in result.stdout.splitlines()]
    assert written == [
        str(path),
        str(tmp_path / "c.compose.yml"),
        str(tmp_path / "scripts" / "llem_generate_bench.py"),
        str(tmp_path / "scripts" / "llem_trtllm_dataset.py"),
    ]
    assert_valid(path)
    for name in ("llem_generate_bench.py", "llem_trtllm_dataset.py"):
        assert (tmp_path / "scripts" / name).read_text() == script_text(name)


def test_a_compose_folder_without_every_backend_is_not_used(tmp_path: Path) -> None:
    """compose/ has pytorch.yml only: a pytorch+vllm campaign gets its own compose file."""
    (tmp_path / "compose").mkdir()
    (tmp_path / "compose" / "pytorch.yml").write_text(render_compose(["pytorch"]))
    path = tmp_path / "c.yaml"
    result = init("-b", "pytorch", "-b", "vllm", str(path))
    assert result.exit_code == 0, result.output
    assert load_campaign(path).campaign.compose_files == ["c.compose.yml"]
    assert_valid(path)


def test_the_unasked_compose_file_is_not_overwritten_without_force(tmp_path: Path) -> None:
    compose = tmp_path / "c.compose.yml"
    compose.write_text("services: {}\n")
    result = init("-b", "vllm", str(tmp_path / "c.yaml"))
    assert result.exit_code == 2
    assert f"{compose} already exists" in result.stderr and "--force" in result.stderr
    assert "no compose/" not in result.stderr  # nothing is announced that is not done
    assert compose.read_text() == "services: {}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.compose.yml"]
    result = init("-b", "vllm", "--force", str(tmp_path / "c.yaml"))
    assert result.exit_code == 0, result.output
    assert_valid(tmp_path / "c.yaml")


def test_quiet_keeps_the_written_lines(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["-q", "init", "-b", "vllm", str(tmp_path / "c.yaml")])
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 2 and result.stderr == ""  # campaign + compose


def test_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("mine\n")
    result = init("-b", "vllm", "--compose", str(path))
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert f"{path} already exists" in lines[0] and "--force" in lines[0]
    assert path.read_text() == "mine\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]  # nothing else written


def test_refuses_when_only_the_compose_file_exists(tmp_path: Path) -> None:
    compose = tmp_path / "c.compose.yml"
    compose.write_text("services: {}\n")
    result = init("--compose", str(tmp_path / "c.yaml"))
    assert result.exit_code == 2
    assert f"{compose} already exists" in result.stderr
    assert not (tmp_path / "c.yaml").exists()


def test_an_identical_helper_script_is_not_a_clash(tmp_path: Path) -> None:
    assert init("-b", "pytorch", "--compose", str(tmp_path / "a.yaml")).exit_code == 0
    result = init("-b", "pytorch", "--compose", str(tmp_path / "b.yaml"))
    assert result.exit_code == 0, result.output
    assert "kept" in result.stdout
    (tmp_path / "scripts" / "llem_generate_bench.py").write_text("# edited\n")
    result = init("-b", "pytorch", "--compose", str(tmp_path / "c.yaml"))
    assert result.exit_code == 2
    assert "llem_generate_bench.py already exists" in result.stderr


def test_force_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("mine\n")
    (tmp_path / "c.compose.yml").write_text("services: {}\n")
    result = init("-b", "vllm", "--compose", "--force", str(path))
    assert result.exit_code == 0, result.output
    assert_valid(path)
    assert "vllm" in yaml.safe_load((tmp_path / "c.compose.yml").read_text())["services"]


def test_unknown_backend_is_refused(tmp_path: Path) -> None:
    result = init("-b", "llamacpp", "--compose", str(tmp_path / "c.yaml"))
    assert result.exit_code == 2
    assert "llamacpp" in result.stderr
    assert all(name in result.stderr for name in BACKENDS)
    assert list(tmp_path.iterdir()) == []


def test_cli_choices_are_the_known_backends() -> None:
    option = next(p for p in cli.commands["init"].params if p.name == "backends")
    assert list(option.type.choices) == list(BACKENDS)


# --- llem init --serve ----------------------------------------------------------------------

SERVING_COMBINATIONS = [
    list(combo) for n in range(1, len(SERVING) + 1) for combo in itertools.combinations(SERVING, n)
]


@pytest.mark.parametrize("engines", SERVING_COMBINATIONS, ids="+".join)
def test_every_serving_combination_validates_as_written(engines: list[str], tmp_path: Path) -> None:
    path = tmp_path / "serve.yaml"
    result = init("--serve", *backend_args(engines), "--compose", str(path))
    assert result.exit_code == 0, result.output
    assert_valid(path)
    loaded = load_campaign(path)
    names = [SERVING[e].name for e in engines]
    assert list(loaded.campaign.backends) == names
    assert loaded.campaign.execution.order == "grouped"
    for engine, name in zip(engines, names, strict=True):
        backend = loaded.campaign.backends[name]
        serving = SERVING[engine]
        assert backend.service == engine
        assert tuple(backend.serve or ()) == serving.serve
        assert tuple(backend.ready or ()) == serving.ready
        assert tuple(backend.command) == serving.command
        assert backend.serving and not backend.includes_model_load
        configs = [c for c in loaded.configs if c.backend == name]
        assert len({c.params[serving.server_param] for c in configs}) == 2
        assert len({c.params["request_rate"] for c in configs}) == 2
    compose = yaml.safe_load((tmp_path / "serve.compose.yml").read_text())
    assert list(compose["services"]) == engines  # the engines' own services, unchanged
    wanted = set(scripts_for(names))
    written = {p.name for p in (tmp_path / "scripts").glob("*")} if wanted else set()
    assert written == wanted
    for name in written:
        assert (tmp_path / "scripts" / name).read_text() == script_text(name)


def test_serve_defaults_to_vllm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = init("--serve", "--compose")
    assert result.exit_code == 0, result.output
    assert_valid(tmp_path / "campaign.yaml")
    loaded = load_campaign(tmp_path / "campaign.yaml")
    assert list(loaded.campaign.backends) == ["vllm-serve"]
    assert {c.params["model"] for c in loaded.configs} == {DEFAULT_MODEL}


def test_serving_campaign_is_commented(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    assert init("--serve", "-b", "sglang", "--compose", str(path)).exit_code == 0
    text = path.read_text()
    for words in ("llem validate", "llem run", "--resume", "serve", "ready", "server params",
                  "{experiment_dir}/result.json", "max_memory_growth_pct", "grouped"):  # fmt: skip
        assert words in text, words


def test_serve_uses_the_repository_compose_files(tmp_path: Path) -> None:
    """campaigns/ beside compose/: the serving campaign uses the engines' compose files."""
    shutil.copytree(ROOT / "compose", tmp_path / "compose", ignore=shutil.ignore_patterns("demo"))
    path = tmp_path / "campaigns" / "serve.yaml"
    path.parent.mkdir()
    result = init("--serve", "-b", "tensorrt", str(path))
    assert result.exit_code == 0, result.output
    assert_valid(path)
    assert load_campaign(path).campaign.compose_files == ["../compose/tensorrt.yml"]
    assert sorted(p.name for p in path.parent.iterdir()) == ["serve.yaml"]


def test_serve_refuses_an_engine_without_a_server(tmp_path: Path) -> None:
    """pytorch has no server: exit 2, the engines that have one named, nothing written."""
    for args in (["-b", "pytorch"], ["-b", "vllm", "-b", "pytorch"]):
        result = init("--serve", *args, "--compose", str(tmp_path / "c.yaml"))
        assert result.exit_code == 2, result.output
        assert "pytorch has no server" in result.stderr
        assert all(f"--backend {name}" in result.stderr for name in SERVING)
        assert list(tmp_path.iterdir()) == []


def test_serving_engines_are_cli_choices() -> None:
    option = next(p for p in cli.commands["init"].params if p.name == "backends")
    assert set(SERVING) <= set(option.type.choices)


def test_help_has_examples_and_says_what_happens_without_compose() -> None:
    result = CliRunner().invoke(cli, ["init", "--help"])
    assert result.exit_code == 0
    assert "Examples:" in result.output and "llem init --backend vllm --compose" in result.output
    assert "pip install llem" in result.output
    assert "--serve" in result.output and "llem init --serve" in result.output
