"""Whether Docker tests can run here, and the ``docker`` marker rule.

Tests marked ``docker`` skip only when no engine is reachable and ``LLEM_REQUIRE_DOCKER`` is unset;
with it set (``.ci/run`` sets it) a missing engine fails them. Any other "cannot be staged
here" goes through :func:`skip_unless_possible`, which follows the same rule.
``scripts/engine.sh`` starts an engine and builds the test image :data:`TEST_IMAGE`.
"""

from __future__ import annotations

import functools
import os
import subprocess
from typing import NoReturn

import pytest

from llem_testkit import TEST_IMAGE

__all__ = [
    "TEST_IMAGE",
    "docker_required",
    "engine_problem",
    "image_problem",
    "require_engine",
    "skip_unless_possible",
]


@functools.lru_cache(maxsize=1)
def engine_problem() -> str | None:
    """Why docker tests cannot run here (``None``: an engine answers)."""
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


def require_engine() -> None:
    """The rule for a test marked ``docker`` (docs/design.md), applied before it runs.

    No engine: skip, or fail where ``LLEM_REQUIRE_DOCKER`` is set. An engine without the test
    image: always fail, saying what to do (never skip where an engine is there).
    """
    problem = engine_problem()
    if problem is not None:
        if docker_required():
            pytest.fail(f"LLEM_REQUIRE_DOCKER is set but {problem}")
        pytest.skip(problem)
    problem = image_problem()
    if problem is not None:
        pytest.fail(problem)
