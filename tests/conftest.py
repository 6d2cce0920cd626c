"""Shared test setup: the ``docker`` marker rule and real compose projects in temporary folders.

Tests marked ``docker`` skip only when no engine is reachable and ``LLEM_REQUIRE_DOCKER`` is unset;
with it set (``.ci/run`` sets it) a missing engine fails them. Any other "cannot be staged
here" goes through :func:`skip_unless_possible`, which follows the same rule.
``scripts/engine.sh`` starts an engine and builds the test image ``llem-test-busybox:latest``.
"""

from __future__ import annotations

import functools
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import pytest
from e2e_support import E2ECampaign, campaign_for

FIXTURES = Path(__file__).parent / "fixtures"
COMPOSE_DIR = FIXTURES / "compose"
TEST_IMAGE = "llem-test-busybox:latest"


@functools.lru_cache(maxsize=1)
def engine_problem() -> str | None:
    """Why docker tests cannot run here (``None``: an engine answers and the image exists)."""
    try:
        done = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"no Docker engine reachable ({exc})"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["docker version failed"])[-1]
        return f"no Docker engine reachable ({last})"
    return None


@functools.lru_cache(maxsize=1)
def image_problem() -> str | None:
    """Why the test image is unusable (``None``: it exists)."""
    done = subprocess.run(
        ["docker", "image", "inspect", TEST_IMAGE],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=20,
        check=False,
    )
    if done.returncode != 0:
        return f"test image {TEST_IMAGE} missing: run scripts/engine.sh"
    return None


def docker_required() -> bool:
    """True when docker tests must run (CI): ``LLEM_REQUIRE_DOCKER`` set and not empty/0."""
    return os.environ.get("LLEM_REQUIRE_DOCKER", "") not in ("", "0")


def skip_unless_possible(reason: str) -> NoReturn:
    """Skip a test this host cannot stage, but fail it where tests must run (CI).

    With ``LLEM_REQUIRE_DOCKER`` set (CI: root, gcc, an engine) nothing may be silently dropped,
    so what would be a skip elsewhere is a failure there, naming the reason.
    """
    if docker_required():
        pytest.fail(f"LLEM_REQUIRE_DOCKER is set but {reason}")
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _docker_marker(request: pytest.FixtureRequest) -> None:
    """Apply the ``docker`` marker rule of DESIGN.md to each marked test."""
    if request.node.get_closest_marker("docker") is None:
        return
    problem = engine_problem()
    if problem is not None:
        if docker_required():
            pytest.fail(f"LLEM_REQUIRE_DOCKER is set but {problem}")
        pytest.skip(problem)
    problem = image_problem()
    if problem is not None:  # an engine is there: never skip, say what to do
        pytest.fail(problem)


@dataclass
class RunSpec:
    """One test run's names and places; cleaned up by label and project after the test."""

    project: str
    run_id: str
    run_dir: Path
    files: list[Path] = field(default_factory=lambda: [COMPOSE_DIR / "basic.yml"])


def _cleanup(spec: RunSpec) -> None:
    from llem_cli.docker.sweep import teardown_by_label

    try:
        teardown_by_label(run_id=spec.run_id, project=spec.project)
    except Exception as exc:  # noqa: BLE001 - cleanup must not hide the test's own result
        print(f"cleanup of {spec.project} failed: {exc}")


def new_spec(base: Path) -> RunSpec:
    """Unique project/run names (tests run next to other engineers' containers)."""
    tag = uuid.uuid4().hex[:8]
    run_dir = base / f"run-{tag}"
    run_dir.mkdir(parents=True)
    return RunSpec(project=f"llemt-{tag}", run_id=f"t{tag}", run_dir=run_dir)


@pytest.fixture
def run_spec(tmp_path: Path) -> Iterator[RunSpec]:
    """A fresh project name, run id and run directory; containers removed afterwards."""
    spec = new_spec(tmp_path)
    try:
        yield spec
    finally:
        _cleanup(spec)


@pytest.fixture
def make_manager(run_spec: RunSpec) -> Iterator[Callable[..., object]]:
    """Build entered ContainerManagers for ``run_spec``; every one is torn down afterwards."""
    from llem_cli.docker.manager import ContainerManager

    made: list[ContainerManager] = []

    def make(services: object = ("app",), **kwargs: object) -> ContainerManager:
        mgr = ContainerManager(
            run_spec.project,
            run_spec.files,
            run_id=run_spec.run_id,
            run_dir=run_spec.run_dir,
            services=services,  # type: ignore[arg-type]
            **kwargs,  # type: ignore[arg-type]
        )
        made.append(mgr.__enter__())
        return mgr

    try:
        yield make
    finally:
        for mgr in made:
            try:
                mgr.__exit__(None, None, None)
            except Exception as exc:  # noqa: BLE001
                print(f"teardown failed: {exc}")


@pytest.fixture
def campaign(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[E2ECampaign]:
    """An end-to-end campaign folder (tests/e2e_support.py) named after the test; whatever
    llem or the test left (containers, runs) is removed afterwards. A test file may define
    its own ``campaign`` fixture for something else (test_cli_basics does)."""
    made = campaign_for(tmp_path, request.node.name)
    try:
        yield made
    finally:
        made.cleanup()
