"""Shared test setup: the ``docker`` and ``slurm`` marker rules, the folder layout rule and the
shared fixtures.

The helpers live in the harness package :mod:`llem_testkit` (installed with ``pip install -e``,
so imported by name: no ``sys.path`` edit, no ``from conftest import``); only the pytest
fixtures built on them are defined here.

Tests marked ``docker`` skip only when no engine is reachable and ``LLEM_REQUIRE_DOCKER`` is unset;
with it set (``.ci/run`` sets it) a missing engine fails them (``llem_testkit.engine``).
``scripts/engine.sh`` starts an engine and builds the test image. Tests marked ``slurm`` follow
the same rule with a usable Slurm and ``LLEM_REQUIRE_SLURM`` (``llem_testkit.slurm``);
``scripts/slurm.sh`` starts a one-node cluster.

Layout: ``tests/unit`` needs no Docker engine (``make unit``); ``tests/docker``, ``tests/e2e`` and
``tests/slurm`` hold the tests that do, each marked ``docker`` (module-level ``pytestmark``);
``tests/slurm``'s are also marked ``slurm`` (they need a Slurm, and llem under it an engine). A
test in the wrong folder for its markers fails, saying so (:func:`folder_problem`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from llem_testkit.e2e import E2ECampaign, campaign_for
from llem_testkit.engine import require_engine
from llem_testkit.nvml_stub import (
    LEGACY_DEFINES,
    Stub,
    build_stub,
    make_no_nvml_dir,
    new_stub,
)
from llem_testkit.runspec import RunSpec, cleanup_spec, new_spec
from llem_testkit.slurm import END_STATES, cancel, job_states, require_slurm

TESTS = Path(__file__).resolve().parent
#: folders whose every test needs a Docker engine (marker ``docker``)
ENGINE_FOLDERS = ("docker", "e2e", "slurm")
#: the folder whose every test needs a Slurm (marker ``slurm``, and ``docker``: llem runs there)
SLURM_FOLDER = "slurm"
#: the folder of tests that must pass with no engine reachable
UNIT_FOLDER = "unit"


def folder_problem(path: Path, marked: bool, slurm_marked: bool = False) -> str | None:
    """Why a test (file ``path``, marked ``docker`` or not, ``slurm`` or not) is in the wrong
    folder, if it is."""
    try:
        folder = path.resolve().relative_to(TESTS).parts[0]
    except ValueError:  # a test outside tests/, given on the command line
        return None
    if folder == UNIT_FOLDER and marked:
        return "marked docker, but tests/unit needs no Docker engine: move it to tests/docker"
    if folder == UNIT_FOLDER and slurm_marked:
        return "marked slurm, but tests/unit needs no Slurm: move it to tests/slurm"
    if folder == SLURM_FOLDER and not (marked and slurm_marked):
        return (
            "in tests/slurm but not marked docker and slurm: set "
            "pytestmark = [pytest.mark.docker, pytest.mark.slurm], "
            "or move it to the folder of what it needs"
        )
    if folder in ENGINE_FOLDERS and not marked:
        return (
            f"in tests/{folder} but not marked docker: set pytestmark = pytest.mark.docker, "
            "or move it to tests/unit if it needs no engine"
        )
    return None


@pytest.fixture(autouse=True)
def _docker_marker(request: pytest.FixtureRequest) -> None:
    """Apply the folder rule, then the ``docker`` marker rule of docs/design.md §5 and the
    ``slurm`` one (``llem_testkit.slurm.require_slurm``), to each test."""
    marked = request.node.get_closest_marker("docker") is not None
    slurm_marked = request.node.get_closest_marker("slurm") is not None
    problem = folder_problem(Path(request.node.path), marked, slurm_marked)
    if problem is not None:
        pytest.fail(problem)
    if marked:
        require_engine()
    if slurm_marked:
        require_slurm()


# ---- compose projects for the ContainerManager tests (tests/docker) -----------------------------


@pytest.fixture
def run_spec(tmp_path: Path) -> Iterator[RunSpec]:
    """A fresh project name, run id and run directory; containers removed afterwards."""
    spec = new_spec(tmp_path)
    try:
        yield spec
    finally:
        cleanup_spec(spec)


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


# ---- end-to-end campaigns (tests/e2e) -----------------------------------------------------------


@pytest.fixture
def campaign(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[E2ECampaign]:
    """An end-to-end campaign folder (llem_testkit.e2e) named after the test; whatever
    llem or the test left (containers, runs) is removed afterwards. A test file may define
    its own ``campaign`` fixture for something else (test_cli_basics does)."""
    made = campaign_for(tmp_path, request.node.name)
    try:
        yield made
    finally:
        made.cleanup()


# ---- the stand-in NVML (llem_testkit.nvml_stub) -------------------------------------------------


@pytest.fixture(scope="session")
def nvml_stub_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stub built once per test session into a temporary directory."""
    return build_stub(tmp_path_factory.mktemp("nvml_stub"))


@pytest.fixture(scope="session")
def legacy_nvml_stub_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stub as an older driver's library: no ...ClocksEventReasons, only ...Throttle..."""
    return build_stub(tmp_path_factory.mktemp("nvml_stub_legacy"), LEGACY_DEFINES)


@pytest.fixture
def stub(nvml_stub_dir: Path, tmp_path: Path) -> Stub:
    """A fresh state file (one GPU) next to the session's stub library."""
    return new_stub(nvml_stub_dir, tmp_path)


@pytest.fixture
def no_nvml_dir(tmp_path: Path) -> Path:
    """A library directory through which pynvml finds no libnvidia-ml (no driver)."""
    return make_no_nvml_dir(tmp_path)


@pytest.fixture
def jobs() -> Iterator[list[str]]:
    """Slurm job ids a test submitted (it appends them); any still queued or running is
    cancelled afterwards, so a failed test leaves no job holding the node's GPUs."""
    submitted: list[str] = []
    try:
        yield submitted
    finally:
        for job_id in submitted:
            if any(s not in END_STATES for s in job_states(job_id).values()):
                cancel(job_id)
