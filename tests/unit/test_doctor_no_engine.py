"""``llem doctor`` where no engine is needed: the exit-code table, a missing Compose, stub NVML.

The checks against the real engine are in tests/docker/test_doctor.py; both use the doctor
helpers of :mod:`llem_testkit.doctor`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llem_cli.commands.doctor import exit_code
from llem_cli.commands.doctor_checks import CAMPAIGN, ENVIRONMENT, FAIL, OK, WARN, Check
from llem_testkit.doctor import APP, both, campaign_in, checks, doctor


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


def test_missing_compose_with_a_valid_campaign_is_3(tmp_path: Path) -> None:
    env = {"LLEM_COMPOSE": "/nonexistent/compose"}
    code, _, found = both(str(campaign_in(tmp_path, APP)), env=env)
    assert code == 3
    assert found["compose"]["status"] == "fail"
    assert found["compose"]["scope"] == "environment"
