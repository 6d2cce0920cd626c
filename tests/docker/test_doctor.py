"""``llem doctor`` against the real engine, a broken environment, and the stub NVML."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TEST_IMAGE
from nvml_stub import fixtures

from llem_cli.commands.doctor import exit_code
from llem_cli.commands.doctor_checks import CAMPAIGN, ENVIRONMENT, FAIL, OK, WARN, Check

nvml_stub_dir = fixtures.nvml_stub_dir


def doctor(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llem_cli", "doctor", *args],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def checks(done: subprocess.CompletedProcess[str]) -> dict[str, dict]:
    return {c["name"]: c for c in json.loads(done.stdout)["checks"]}


def both(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, dict[str, dict]]:
    """The exit code of ``llem doctor ARGS``, its text, and its checks; --json must agree."""
    text = doctor(*args, env=env)
    as_json = doctor(*args, "--json", env=env)
    assert "Traceback" not in text.stdout + text.stderr + as_json.stdout + as_json.stderr
    assert as_json.returncode == text.returncode, (text.stdout, as_json.stdout)
    assert json.loads(as_json.stdout)["exit_code"] == text.returncode
    return text.returncode, text.stdout, checks(as_json)


def campaign_in(folder: Path, compose: str, service: str = "app", **files: str) -> Path:
    """A one-backend campaign (backend ``app``, service ``service``) beside its compose file."""
    (folder / "compose.yml").write_text(compose)
    for name, text in files.items():
        (folder / name).write_text(text)
    path = folder / "c.yaml"
    path.write_text(
        f"name: doc\ncompose: compose.yml\nbackends:\n  app:\n    service: {service}\n"
        "    command: [run, '{n}']\ngrid:\n  n: [1]\n"
    )
    return path


APP = f"services:\n  app: {{image: {TEST_IMAGE}, network_mode: none}}\n"


@pytest.mark.docker
def test_doctor_on_a_working_engine_exits_0_and_checks_the_campaign() -> None:
    demo = Path(__file__).parents[2] / "campaigns" / "demo.yaml"
    done = doctor(str(demo), "--json")
    assert done.returncode == 0, done.stderr
    found = checks(done)
    assert found["docker daemon"]["status"] == "ok"
    assert found["compose"]["status"] == "ok"
    assert found["backend cpu GPUs"]["status"] == "warn"  # the demo reserves no GPU
    assert "reservations" in found["backend cpu GPUs"]["fix"]


@pytest.mark.docker
def test_unreachable_daemon_is_exit_3_with_a_fix(tmp_path: Path) -> None:
    done = doctor(env={"DOCKER_HOST": f"unix://{tmp_path}/nothing.sock"})
    assert done.returncode == 3
    assert "FAIL docker daemon: not reachable" in done.stdout
    assert "fix:" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_missing_compose_is_exit_3() -> None:
    done = doctor("--json", env={"LLEM_COMPOSE": "/nonexistent/compose"})
    assert done.returncode == 3
    assert checks(done)["compose"]["status"] == "fail"


def test_host_gpus_listed_from_nvml(nvml_stub_dir: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.write_text("count=2\ndriver=550.54.15\ngpu0.name=NVIDIA H200\ngpu1.name=NVIDIA H200\n")
    done = doctor(
        "--json",
        env={"LD_LIBRARY_PATH": str(nvml_stub_dir), "FAKE_NVML_STATE": str(state)},
    )
    gpus = json.loads(done.stdout)["gpus"]
    assert [g["name"] for g in gpus["gpus"]] == ["NVIDIA H200", "NVIDIA H200"]
    assert gpus["driver_version"] == "550.54.15"
    assert checks(done)["host GPUs"]["status"] == "ok"


# --- exit codes: 0 fine (warnings allowed), 2 the campaign, 3 the environment ----------------


@pytest.mark.parametrize(
    ("statuses", "code"),
    [
        ([(OK, ENVIRONMENT), (WARN, ENVIRONMENT), (WARN, CAMPAIGN)], 0),
        ([(FAIL, ENVIRONMENT), (OK, CAMPAIGN)], 3),
        ([(OK, ENVIRONMENT), (FAIL, CAMPAIGN)], 2),
        ([(FAIL, ENVIRONMENT), (FAIL, CAMPAIGN)], 2),  # as `llem run FILE`: the file first
    ],
)
def test_exit_code_table(statuses: list[tuple[str, str]], code: int) -> None:
    assert exit_code([Check("c", status, "d", scope=scope) for status, scope in statuses]) == code


@pytest.mark.docker
def test_a_valid_campaign_on_a_working_engine_is_0(tmp_path: Path) -> None:
    code, text, found = both(str(campaign_in(tmp_path, APP)))
    assert code == 0, text
    assert found["campaign"] == {
        "name": "campaign", "status": "ok", "detail": f"{tmp_path}/c.yaml: valid",
        "fix": None, "scope": "campaign",
    }  # fmt: skip
    assert found["backend app image"]["status"] == "ok"


@pytest.mark.docker
def test_a_missing_image_is_a_warning_so_0(tmp_path: Path) -> None:
    compose = "services:\n  app: {image: llem-no-such-image:never, network_mode: none}\n"
    code, text, found = both(str(campaign_in(tmp_path, compose)))
    assert code == 0, text
    assert found["backend app image"]["status"] == "warn"
    assert found["backend app image"]["fix"] == "docker pull llem-no-such-image:never"


@pytest.mark.docker
def test_a_service_missing_from_the_compose_file_is_2(tmp_path: Path) -> None:
    path = campaign_in(tmp_path, APP, service="nosuch")
    code, text, found = both(str(path))
    assert code == 2, text
    assert found["campaign"]["status"] == "fail"
    assert found["campaign"]["scope"] == "campaign"
    assert found["campaign"]["detail"] == (
        f"invalid: {path}:5:14: backends.app.service: service 'nosuch' is not in "
        f"{tmp_path}/compose.yml; its services are: app"
    )
    assert f"FAIL campaign: invalid: {path}:5:14:" in text
    assert f"fix: llem validate {path} lists every problem" in text
    assert found["docker daemon"]["status"] == "ok"  # the environment is still checked


@pytest.mark.docker
def test_a_service_only_compose_can_miss_is_2(tmp_path: Path) -> None:
    # with `include:` validate cannot know the services; docker compose config does
    compose = f"include: [inc.yml]\nservices:\n  app: {{image: {TEST_IMAGE}, network_mode: none}}\n"
    path = campaign_in(
        tmp_path, compose, service="nosuch", **{"inc.yml": APP.replace("app:", "other:")}
    )
    code, text, found = both(str(path))
    assert code == 2, text
    assert found["campaign"]["status"] == "ok"
    assert found["backend app"] == {
        "name": "backend app", "status": "fail",
        "detail": "service 'nosuch' not in the compose file",
        "fix": "add it, or set backends.app.service", "scope": "campaign",
    }  # fmt: skip
    assert "FAIL backend app: service 'nosuch' not in the compose file" in text


@pytest.mark.docker
def test_a_compose_file_compose_refuses_is_2(tmp_path: Path) -> None:
    compose = f"services:\n  app: {{image: {TEST_IMAGE}, network_mode: none, bogus: 1}}\n"
    code, text, found = both(str(campaign_in(tmp_path, compose)))
    assert code == 2, text
    assert found["compose file"]["status"] == "fail"
    assert found["compose file"]["detail"].startswith("docker compose config failed: ")
    assert "bogus" in found["compose file"]["detail"]
    assert "FAIL compose file: docker compose config failed" in text


@pytest.mark.docker
def test_an_unreachable_daemon_with_a_valid_campaign_is_3(tmp_path: Path) -> None:
    env = {"DOCKER_HOST": f"unix://{tmp_path}/nothing.sock"}
    code, text, found = both(str(campaign_in(tmp_path, APP)), env=env)
    assert code == 3, text
    assert found["docker daemon"]["status"] == "fail"
    assert found["campaign"]["status"] == "ok"


@pytest.mark.docker
def test_an_unreachable_daemon_and_an_invalid_campaign_is_2(tmp_path: Path) -> None:
    env = {"DOCKER_HOST": f"unix://{tmp_path}/nothing.sock"}
    code, text, found = both(str(campaign_in(tmp_path, APP, service="nosuch")), env=env)
    assert code == 2, text
    assert found["docker daemon"]["status"] == "fail"
    assert found["campaign"]["status"] == "fail"


def test_missing_compose_with_a_valid_campaign_is_3(tmp_path: Path) -> None:
    env = {"LLEM_COMPOSE": "/nonexistent/compose"}
    code, _, found = both(str(campaign_in(tmp_path, APP)), env=env)
    assert code == 3
    assert found["compose"]["status"] == "fail"
    assert found["compose"]["scope"] == "environment"
