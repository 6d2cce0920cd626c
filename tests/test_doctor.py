"""``llem doctor`` against the real engine, a broken environment, and the stub NVML."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from nvml_stub import fixtures

nvml_stub_dir = fixtures.nvml_stub_dir


def doctor(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llem_cli", "doctor", *args],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def checks(done: subprocess.CompletedProcess[str]) -> dict[str, dict]:
    return {c["name"]: c for c in json.loads(done.stdout)["checks"]}


@pytest.mark.docker
def test_doctor_on_a_working_engine_exits_0_and_checks_the_campaign() -> None:
    demo = Path(__file__).parents[1] / "campaigns" / "demo.yaml"
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
