"""``llem doctor`` against the real engine and a broken environment.

What needs no engine (the exit-code table, a missing Compose, the stub NVML) is in
tests/unit/test_doctor_no_engine.py; both use the doctor helpers of :mod:`llem_testkit.doctor`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from llem_testkit import TEST_IMAGE
from llem_testkit.doctor import APP, both, campaign_in, checks, doctor

pytestmark = pytest.mark.docker


def test_doctor_on_a_working_engine_exits_0_and_checks_the_campaign() -> None:
    demo = Path(__file__).parents[2] / "campaigns" / "demo.yaml"
    done = doctor(str(demo), "--json")
    assert done.returncode == 0, done.stderr
    found = checks(done)
    assert found["docker daemon"]["status"] == "ok"
    assert found["compose"]["status"] == "ok"
    assert found["backend cpu GPUs"]["status"] == "warn"  # the demo reserves no GPU
    assert "reservations" in found["backend cpu GPUs"]["fix"]


def test_unreachable_daemon_is_exit_3_with_a_fix(tmp_path: Path) -> None:
    done = doctor(env={"DOCKER_HOST": f"unix://{tmp_path}/nothing.sock"})
    assert done.returncode == 3
    assert "FAIL docker daemon: not reachable" in done.stdout
    assert "fix:" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


# --- exit codes: 0 fine (warnings allowed), 2 the campaign, 3 the environment ----------------


def test_a_valid_campaign_on_a_working_engine_is_0(tmp_path: Path) -> None:
    code, text, found = both(str(campaign_in(tmp_path, APP)))
    assert code == 0, text
    assert found["campaign"] == {
        "name": "campaign", "status": "ok", "detail": f"{tmp_path}/c.yaml: valid",
        "fix": None, "scope": "campaign",
    }  # fmt: skip
    assert found["backend app image"]["status"] == "ok"


def test_a_missing_image_is_a_warning_so_0(tmp_path: Path) -> None:
    compose = "services:\n  app: {image: llem-no-such-image:never, network_mode: none}\n"
    code, text, found = both(str(campaign_in(tmp_path, compose)))
    assert code == 0, text
    assert found["backend app image"]["status"] == "warn"
    assert found["backend app image"]["fix"] == "docker pull llem-no-such-image:never"


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


def test_a_compose_file_compose_refuses_is_2(tmp_path: Path) -> None:
    compose = f"services:\n  app: {{image: {TEST_IMAGE}, network_mode: none, bogus: 1}}\n"
    code, text, found = both(str(campaign_in(tmp_path, compose)))
    assert code == 2, text
    assert found["compose file"]["status"] == "fail"
    assert found["compose file"]["detail"].startswith("docker compose config failed: ")
    assert "bogus" in found["compose file"]["detail"]
    assert "FAIL compose file: docker compose config failed" in text


def test_an_unreachable_daemon_with_a_valid_campaign_is_3(tmp_path: Path) -> None:
    env = {"DOCKER_HOST": f"unix://{tmp_path}/nothing.sock"}
    code, text, found = both(str(campaign_in(tmp_path, APP)), env=env)
    assert code == 3, text
    assert found["docker daemon"]["status"] == "fail"
    assert found["campaign"]["status"] == "ok"


def test_an_unreachable_daemon_and_an_invalid_campaign_is_2(tmp_path: Path) -> None:
    env = {"DOCKER_HOST": f"unix://{tmp_path}/nothing.sock"}
    code, text, found = both(str(campaign_in(tmp_path, APP, service="nosuch")), env=env)
    assert code == 2, text
    assert found["docker daemon"]["status"] == "fail"
    assert found["campaign"]["status"] == "fail"
