"""`llem validate` reads the campaign's compose files (PyYAML, no engine): each backend's service
must be there, and each file must be one Compose can read, or the campaign is invalid (exit 2)
instead of failing later at `llem run` with exit 3. That the services read are those Docker
Compose reads is checked against the real thing in tests/docker/test_compose_services_vs_compose.py.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from llem_cli.campaign import compose_services
from llem_cli.cli import cli

ROOT = Path(__file__).resolve().parents[2]

COMPOSE = """\
services:
  pytorch: {image: busybox, network_mode: none}
  vllm: {image: busybox, network_mode: none}
"""

CAMPAIGN = """\
name: svc
compose: compose.yml
backends:
  pytorch:
    service: {service}
    command: [bench, "{{n}}"]
grid:
  n: [1, 2]
"""


def write(folder: Path, campaign: str, **compose_files: str) -> Path:
    """The campaign as c.yaml beside the compose files given (name with '_' for '.')."""
    for name, text in {"compose.yml": COMPOSE, **compose_files}.items():
        (folder / name.replace("_yml", ".yml")).write_text(text)
    path = folder / "c.yaml"
    path.write_text(campaign)
    return path


def validate(path: Path) -> tuple[int, list[str]]:
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result.exit_code, result.stdout.splitlines()


def test_a_service_not_in_the_compose_file_is_exit_2_at_the_service_field(tmp_path: Path) -> None:
    path = write(tmp_path, CAMPAIGN.format(service="nosuch"))
    code, lines = validate(path)
    assert code == 2
    assert lines == [
        f"{path}:5:14: backends.pytorch.service: service 'nosuch' is not in "
        f"{tmp_path}/compose.yml; its services are: pytorch, vllm"
    ]


def test_a_near_miss_gets_a_did_you_mean(tmp_path: Path) -> None:
    path = write(tmp_path, CAMPAIGN.format(service="vlm"))
    code, lines = validate(path)
    assert code == 2
    assert lines == [
        f"{path}:5:14: backends.pytorch.service: service 'vlm' is not in "
        f"{tmp_path}/compose.yml; its services are: pytorch, vllm (did you mean 'vllm'?)"
    ]


def test_the_default_service_is_reported_at_the_backend(tmp_path: Path) -> None:
    text = CAMPAIGN.format(service="x").replace("  pytorch:\n    service: x\n", "  pytorh:\n")
    path = write(tmp_path, text)
    code, lines = validate(path)
    assert code == 2
    assert lines == [
        f"{path}:4:3: backends.pytorh.service: service 'pytorh' (the backend's name: set "
        f"'service' to use another) is not in {tmp_path}/compose.yml; "
        "its services are: pytorch, vllm (did you mean 'pytorch'?)"
    ]


def test_a_compose_file_that_is_not_yaml_is_exit_2_at_the_compose_field(tmp_path: Path) -> None:
    broken = "services:\n  pytorch:\n    image: busybox\n   network_mode: none\n"
    path = write(tmp_path, CAMPAIGN.format(service="pytorch"), compose_yml=broken)
    code, lines = validate(path)
    assert code == 2
    assert lines == [
        f"{path}:2:10: compose: {tmp_path}/compose.yml: not a valid compose file: YAML syntax "
        "error at line 4, column 4: expected <block end>, but found '<block mapping start>' "
        "(while parsing a block mapping at line 2, column 3)"
    ]


@pytest.mark.parametrize(
    ("compose", "message"),
    [
        ("- pytorch\n", "the top level is a list, not a mapping (line 1, column 1)"),
        ("services\n", "the top level is a single value, not a mapping (line 1, column 1)"),
        ("services: [pytorch]\n", "'services' must be a mapping of service names, not a list "
         "(line 1, column 11)"),
        ("services:\n", "'services' must be a mapping of service names, not null "
         "(line 1, column 10)"),
        ("# nothing\n", "the file is empty"),
        ("services:\n  pytorch: {}\n  pytorch: {}\n",
         "in 'services': key 'pytorch' is written twice (line 3, column 3)"),
        ("services: {pytorch: {}}\n\x07\n",
         "character #x0007 is not allowed in YAML (line 2, column 1)"),
    ],
    ids=["list", "scalar", "services-list", "services-null", "empty", "duplicate", "control"],
)  # fmt: skip
def test_compose_files_compose_would_refuse(tmp_path: Path, compose: str, message: str) -> None:
    path = write(tmp_path, CAMPAIGN.format(service="pytorch"), compose_yml=compose)
    code, lines = validate(path)
    assert code == 2
    assert lines == [
        f"{path}:2:10: compose: {tmp_path}/compose.yml: not a valid compose file: {message}"
    ]


def test_a_list_of_compose_files_is_one_union(tmp_path: Path) -> None:
    text = CAMPAIGN.format(service="extra").replace(
        "compose: compose.yml", "compose:\n  - compose.yml\n  - more.yml"
    )
    path = write(tmp_path, text, more_yml="services:\n  extra: {image: busybox}\n")
    assert validate(path) == (0, [f"{path}: valid: 2 configurations, 2 experiments, 1 backend"])

    path.write_text(text.replace("service: extra", "service: nosuch"))
    code, lines = validate(path)
    assert code == 2
    assert lines == [
        f"{path}:7:14: backends.pytorch.service: service 'nosuch' is not in "
        f"{tmp_path}/compose.yml, {tmp_path}/more.yml; their services are: pytorch, vllm, extra"
    ]


def test_a_broken_file_in_a_list_is_reported_at_its_item(tmp_path: Path) -> None:
    text = CAMPAIGN.format(service="nosuch").replace(
        "compose: compose.yml", "compose: [compose.yml, more.yml]"
    )
    path = write(tmp_path, text, more_yml="services: {a: [\n")
    code, lines = validate(path)
    assert code == 2
    # the union of services is unknown, so the missing service is not reported (yet)
    assert len(lines) == 1
    assert lines[0].startswith(
        f"{path}:2:24: compose[1]: {tmp_path}/more.yml: not a valid compose file: YAML syntax"
    )


def test_include_skips_the_membership_check(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        CAMPAIGN.format(service="included"),
        compose_yml="include: [inc.yml]\nservices:\n  pytorch: {image: busybox}\n",
        inc_yml="services:\n  included: {image: busybox}\n",
    )
    assert validate(path)[0] == 0


def test_a_missing_compose_file_is_reported_once(tmp_path: Path) -> None:
    text = CAMPAIGN.format(service="nosuch").replace("compose.yml", "gone.yml")
    path = write(tmp_path, text)
    code, lines = validate(path)
    assert code == 2
    assert len(lines) == 1 and "compose file not found" in lines[0]


def test_anchors_merge_keys_documents_and_a_project(tmp_path: Path) -> None:
    compose = (
        "x-old: &base {image: alpine}\n"
        "x-base: &base {image: busybox, network_mode: none}\n"  # defined again: the later wins
        "x-more: &more {merged: *base}\n"
        "services:\n"
        "  <<: *more\n"
        "  on: *base\n"
        "  '1': *base\n"
        "---\n"
        "services:\n"
        "  second: *base\n"
    )
    text = (
        "name: svc\n"
        "compose: [compose.yml]\n"
        "project: my-proj\n"
        "backends:\n"
        "  merged: {command: [x]}\n"
        "  b1: {service: 'on', command: [x]}\n"
        "  b2: {service: '1', command: [x]}\n"
        "  b3: {service: second, command: [x]}\n"
        "grid:\n"
        "  backend: [merged, b1, b2, b3]\n"
    )
    path = write(tmp_path, text, compose_yml=compose)
    assert validate(path) == (0, [f"{path}: valid: 4 configurations, 4 experiments, 4 backends"])


def test_an_alias_bomb_compose_file_is_read_quickly(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 12)]
    bomb = "\n".join(lines) + "\nservices:\n  pytorch: {image: busybox}\n"
    path = write(tmp_path, CAMPAIGN.format(service="pytorch"), compose_yml=bomb)
    t0 = time.monotonic()
    assert validate(path)[0] == 0
    assert time.monotonic() - t0 < 5


def test_deep_nesting_is_an_error_not_a_crash(tmp_path: Path) -> None:
    deep = "services: {pytorch: {image: busybox}}\nx: " + "[" * 5000 + "]" * 5000 + "\n"
    path = write(tmp_path, CAMPAIGN.format(service="pytorch"), compose_yml=deep)
    code, lines = validate(path)
    assert code == 2
    assert lines == [
        f"{path}:2:10: compose: {tmp_path}/compose.yml: not a valid compose file: "
        "YAML nested too deeply"
    ]


def test_a_compose_file_too_large_to_read_is_not_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(compose_services, "MAX_BYTES", 10)
    path = write(tmp_path, CAMPAIGN.format(service="nosuch"))
    assert validate(path)[0] == 0


def test_other_problems_are_listed_in_the_same_pass(tmp_path: Path) -> None:
    text = CAMPAIGN.format(service="nosuch").replace('"{n}"', '"{nn}"')
    path = write(tmp_path, text)
    code, lines = validate(path)
    assert code == 2
    assert [line.split(": ")[1] for line in lines] == [
        "backends.pytorch.service",
        "backends.pytorch.command[1]",
    ]
    # a structural error too: the raw-data checks still read the compose files
    path.write_text(text + "execution: {cycles: 0}\n")
    code, lines = validate(path)
    assert code == 2
    assert [line.split(": ")[1] for line in lines] == [
        "backends.pytorch.service",
        "execution.cycles",
    ]


def test_plan_and_run_refuse_it_with_exit_2(tmp_path: Path) -> None:
    path = write(tmp_path, CAMPAIGN.format(service="nosuch"))
    for argv in (["plan", str(path)], ["run", str(path), "--dry-run"]):
        result = CliRunner().invoke(cli, argv)
        assert result.exit_code == 2, result.output
        assert "service 'nosuch' is not in" in result.stderr


@pytest.mark.parametrize("path", sorted((ROOT / "campaigns").glob("*.yaml")), ids=lambda p: p.name)
def test_the_shipped_campaigns_still_validate(path: Path) -> None:
    code, lines = validate(path)
    assert code == 0, lines
