"""The ContainerManager with the standalone python docker-compose v1.29 (marker ``docker``).

v1 names containers ``proj_svc_1``, has no ``up --wait`` (llem polls) and no ``ps --format json``.
Selected as users do, with ``LLEM_COMPOSE=docker-compose``. ``scripts/engine.sh --with-compose-v1``
installs it; without it these tests skip, unless LLEM_REQUIRE_DOCKER is set.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable

import pytest

from llem_cli.docker.compose import ComposeCLI, discover_compose
from llem_cli.docker.manager import ContainerManager
from llem_cli.docker.proc import SubprocessRunner
from llem_testkit.engine import docker_required
from llem_testkit.runspec import RunSpec

pytestmark = pytest.mark.docker


@pytest.fixture
def v1(monkeypatch: pytest.MonkeyPatch) -> ComposeCLI:
    if shutil.which("docker-compose") is None:
        if docker_required():
            pytest.fail("docker-compose v1 missing: run scripts/engine.sh --with-compose-v1")
        pytest.skip("docker-compose v1 not installed (scripts/engine.sh --with-compose-v1)")
    monkeypatch.setenv("LLEM_COMPOSE", "docker-compose")
    cli = discover_compose()
    if not cli.is_v1:
        if docker_required():
            pytest.fail(f"docker-compose is {cli.version_text}, not v1")
        pytest.skip(f"docker-compose is {cli.version_text}, not v1")
    return cli


def test_v1_lifecycle(
    v1: ComposeCLI, make_manager: Callable[..., ContainerManager], run_spec: RunSpec
) -> None:
    assert v1.argv == ("docker-compose",) and not v1.supports_wait
    mgr = make_manager(["app"], compose=v1)
    assert SubprocessRunner().run(mgr.project.config(quiet=True), timeout=60).ok
    mgr.start("app")
    cid = mgr.container_id("app")
    name = subprocess.run(
        ["docker", "inspect", "-f", "{{.Name}}", cid], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert name.endswith("_app_1")  # v1 naming, not proj-app-1

    out = run_spec.run_dir / "stdout.log"
    res = mgr.exec(
        "app", ["sh", "-c", 'echo "$LLEM_RUN_ID"; exit 5'], env={"LLEM_RUN_ID": run_spec.run_id},
        timeout_s=60, stdout_path=out, stderr_path=run_spec.run_dir / "stderr.log",
    )  # fmt: skip
    assert (res.status, res.exit_code) == ("failed", 5)
    assert out.read_text() == f"{run_spec.run_id}\n"
    assert mgr.probe("app").ok

    subprocess.run(["docker", "kill", cid], capture_output=True, timeout=30, check=True)
    assert mgr.exec("app", ["true"], timeout_s=60).status == "container_died"
    mgr.restart("app")
    assert mgr.exec("app", ["true"], timeout_s=60).ok

    mgr.teardown()
    left = subprocess.run(
        ["docker", "ps", "-a", "-q", "--filter", f"label=llem.run={run_spec.run_id}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert left.stdout.split() == []
