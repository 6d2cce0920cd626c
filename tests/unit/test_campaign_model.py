"""The campaign model (pydantic) and the loader on valid files."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from llem_cli.campaign.load import check_file, load_campaign
from llem_cli.campaign.model import Backend, Campaign
from llem_cli.errors import CampaignInvalid

MINIMAL = {
    "name": "demo",
    "compose": "compose.yml",
    "backends": {"pytorch": {"command": ["bench", "{batch_size}"]}},
    "grid": {"batch_size": [1, 2]},
}


def write(tmp_path: Path, text: str, name: str = "campaign.yaml") -> Path:
    (tmp_path / "compose.yml").write_text(
        "services:\n  pytorch: {image: busybox}\n  vllm: {image: busybox}\n"
    )
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults() -> None:
    campaign = Campaign.model_validate(MINIMAL)
    assert campaign.project_name == "llem-demo"
    assert campaign.compose_files == ["compose.yml"]
    assert campaign.service_of("pytorch") == "pytorch"
    assert campaign.results == "results"
    assert campaign.execution.cycles == 1
    assert campaign.execution.order == "interleaved"
    assert campaign.execution.timeout == 1800.0
    assert campaign.execution.thermal is None
    assert campaign.health.probe == "nvidia-smi"
    assert campaign.health.every == 1
    assert campaign.health.max_memory_used_pct == 90
    assert campaign.backends["pytorch"].keepalive is True
    assert campaign.backends["pytorch"].gpus is None


def test_explicit_project_service_and_compose_list() -> None:
    data = {
        **MINIMAL,
        "project": "my-proj",
        "compose": ["a.yml", "b.yml"],
        "backends": {"pt": {"service": "pytorch", "command": ["x"]}},
    }
    campaign = Campaign.model_validate(data)
    assert campaign.project_name == "my-proj"
    assert campaign.compose_files == ["a.yml", "b.yml"]
    assert campaign.service_of("pt") == "pytorch"


def test_numbers_in_command_become_strings() -> None:
    backend = Backend.model_validate({"command": ["bench", "--batch", 8, "--lr", 0.5, "-n", 0]})
    assert backend.command == ["bench", "--batch", "8", "--lr", "0.5", "-n", "0"]
    assert all(isinstance(item, str) for item in backend.command)


@pytest.mark.parametrize(
    ("item", "kind"), [(True, "a boolean"), (None, "null"), ({"a": 1}, "a mapping or list")]
)
def test_command_items_that_are_not_strings(item: object, kind: str) -> None:
    with pytest.raises(ValidationError) as info:
        Backend.model_validate({"command": ["bench", item]})
    assert f"command items must be strings, got {kind} (quote it)" in str(info.value)


def test_env_values_numbers_become_strings() -> None:
    backend = Backend.model_validate({"command": ["x"], "env": {"A": 1, "B": "two", "C": 0.5}})
    assert backend.env == {"A": "1", "B": "two", "C": "0.5"}


@pytest.mark.parametrize("value", [True, None, {"a": 1}, [1]])
def test_env_values_that_are_not_scalars(value: object) -> None:
    with pytest.raises(ValidationError):
        Backend.model_validate({"command": ["x"], "env": {"A": value}})


def test_durations_are_seconds() -> None:
    data = {
        **MINIMAL,
        "execution": {
            "timeout": "30m",
            "gap": "60s",
            "cycle_gap": "5m",
            "idle_baseline": 30,
            "thermal": {"max_temp_c": 45, "max_wait": "10m"},
        },
        "health": {"restart_backoff": "1h30m"},
    }
    campaign = Campaign.model_validate(data)
    execution = campaign.execution
    assert (execution.timeout, execution.gap, execution.cycle_gap) == (1800, 60, 300)
    assert execution.idle_baseline == 30
    assert execution.thermal is not None and execution.thermal.max_wait == 600
    assert campaign.health.restart_backoff == 5400


def test_probe_forms() -> None:
    assert Campaign.model_validate({**MINIMAL, "health": {"probe": ["sh", "-c", "x"]}})
    with pytest.raises(ValidationError):
        Campaign.model_validate({**MINIMAL, "health": {"probe": "nvidia-smi -q"}})
    with pytest.raises(ValidationError):
        Campaign.model_validate({**MINIMAL, "health": {"probe": []}})


@pytest.mark.parametrize(
    ("section", "field", "value"),
    [
        ("execution", "cycles", 0),
        ("execution", "retries", -1),
        ("execution", "timeout", 0),
        ("health", "max_memory_used_pct", 0),
        ("health", "max_memory_used_pct", 100.5),
        ("health", "every", -1),
        ("health", "max_restarts", -1),
    ],
)
def test_out_of_range(section: str, field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        Campaign.model_validate({**MINIMAL, section: {field: value}})


@pytest.mark.parametrize("value", [1, 100, 90.5])
def test_memory_pct_bounds_inclusive(value: float) -> None:
    campaign = Campaign.model_validate({**MINIMAL, "health": {"max_memory_used_pct": value}})
    assert campaign.health.max_memory_used_pct == value


@pytest.mark.parametrize("name", ["a", "demo", "llama-batch", "run_2", "0x"])
def test_good_names(name: str) -> None:
    assert Campaign.model_validate({**MINIMAL, "name": name}).name == name


@pytest.mark.parametrize("name", ["", "Demo", "-x", "_x", "has space", "a.b", "x" * 64])
def test_bad_names(name: str) -> None:
    with pytest.raises(ValidationError):
        Campaign.model_validate({**MINIMAL, "name": name})


def test_model_is_frozen() -> None:
    campaign = Campaign.model_validate(MINIMAL)
    with pytest.raises(ValidationError):
        campaign.name = "other"  # type: ignore[misc]


# --- the loader on valid files ---------------------------------------------------------------

VALID = """\
name: demo
compose: compose.yml
backends:
  pytorch:
    command: [sh, -c, 'echo {{literal}} ${HOME} {"json": [1, 2]} {batch_size}', 8, 0.5]
grid:
  batch_size: [1, 2]
"""


def test_literal_braces_and_shell_vars_are_not_errors(tmp_path: Path) -> None:
    loaded = load_campaign(write(tmp_path, VALID))
    assert loaded.warnings == []
    assert len(loaded.configs) == 2
    assert loaded.campaign.backends["pytorch"].command[-2:] == ["8", "0.5"]


def test_loaded_campaign_paths(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    loaded = load_campaign(path)
    assert loaded.base_dir == tmp_path
    assert loaded.compose_paths() == [(tmp_path / "compose.yml").resolve()]
    assert loaded.results_dir() == (tmp_path / "results").resolve()
    assert loaded.results_dir(tmp_path / "elsewhere") == (tmp_path / "elsewhere").resolve()
    assert loaded.text == VALID


def test_load_campaign_raises_with_every_problem(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("name: demo", "name: Demo") + "execution: {cycles: 0}\n")
    with pytest.raises(CampaignInvalid) as info:
        load_campaign(path)
    assert info.value.exit_code == 2
    assert len(info.value.problems) == 2
    assert "(and 1 more; run 'llem validate" in info.value.one_line()


def test_exclude_matching_nothing_is_only_a_warning(tmp_path: Path) -> None:
    text = VALID + "exclude:\n  - {batch_size: 64}\n"
    loaded, problems = check_file(write(tmp_path, text))
    assert loaded is not None
    assert [(p.warning, p.position.line, p.message) for p in problems] == [
        (True, 9, "matches no configuration")
    ]


def test_backend_without_configuration_is_a_warning(tmp_path: Path) -> None:
    text = VALID.replace("grid:", "  vllm:\n    command: [x]\ngrid:\n  backend: [pytorch]")
    loaded, problems = check_file(write(tmp_path, text))
    assert loaded is not None, problems
    assert [p.render().split(": ", 1)[1] for p in problems] == [
        "backends.vllm: warning: has no configuration: it will never run"
    ]


def test_utf8_bom_and_crlf_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    write(tmp_path, "")
    path.write_bytes(b"\xef\xbb\xbf" + VALID.replace("\n", "\r\n").encode())
    loaded, problems = check_file(path)
    assert loaded is not None, problems


def test_positions_survive_crlf(tmp_path: Path) -> None:
    path = tmp_path / "crlf.yaml"
    write(tmp_path, "")
    path.write_bytes(
        VALID.replace("batch_size: [1, 2]", "batch_size: []").replace("\n", "\r\n").encode()
    )
    _, problems = check_file(path)
    assert [(p.position.line, p.position.col) for p in problems] == [(7, 15)]
