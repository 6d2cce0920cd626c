"""Finding Docker Compose and building every compose argv in one place.

Compose comes in three shapes: the ``docker compose`` CLI plugin (v2 and later, 5.x included),
a standalone ``docker-compose`` binary of v2 or later, and the old python ``docker-compose`` v1.29
(containers named ``proj_svc_1``, no ``up --wait``, no ``ps --format json``). The version is parsed,
never assumed, and the few differences that matter are properties of :class:`ComposeCLI`.

:class:`ComposeProject` holds the flags every call shares (``--project-name``, each ``-f``, the
generated override file last) and has one method per verb; each returns the argv, so ``--dry-run``
and the tests see exactly what would run.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llem_cli.docker.docker_cli import docker_argv
from llem_cli.docker.proc import CommandFailed, Runner, SubprocessRunner
from llem_cli.errors import EnvironmentProblem

#: environment variable naming the compose command to use, e.g. ``docker-compose``
COMPOSE_ENV = "LLEM_COMPOSE"

_VERSION = re.compile(r"v?(\d+)\.(\d+)(?:\.(\d+))?")
_DISCOVERY_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class ComposeCLI:
    """One usable Compose command and its version."""

    argv: tuple[str, ...]
    version: tuple[int, int, int]
    docker: tuple[str, ...] = ("docker",)

    @property
    def major(self) -> int:
        """The major version (1 for the python docker-compose)."""
        return self.version[0]

    @property
    def is_v1(self) -> bool:
        """True for the python docker-compose 1.x."""
        return self.major < 2

    @property
    def supports_wait(self) -> bool:
        """``up --wait`` exists from Compose 2.1.1 on."""
        return self.version >= (2, 1, 1)

    @property
    def supports_ps_json(self) -> bool:
        """``ps --format json`` exists in every v2."""
        return not self.is_v1

    @property
    def version_text(self) -> str:
        """The version as ``X.Y.Z``."""
        return ".".join(map(str, self.version))

    def describe(self) -> str:
        """E.g. ``docker compose 2.29.1`` (for ``llem doctor`` and messages)."""
        return f"{shlex.join(self.argv)} {self.version_text}"

    @classmethod
    def assumed(cls) -> ComposeCLI:
        """The plugin as it usually is, for ``--dry-run`` on a machine without Docker."""
        return cls(("docker", "compose"), (2, 0, 0))


def parse_version(text: str) -> tuple[int, int, int] | None:
    """The first ``X.Y[.Z]`` in ``compose version`` output (``v2.29.1``, ``1.29.2, build``)."""
    match = _VERSION.search(text)
    if not match:
        return None
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


def discover_compose(
    runner: Runner | None = None, env: Mapping[str, str] | None = None
) -> ComposeCLI:
    """Find a usable Compose: ``LLEM_COMPOSE``, else the plugin, else ``docker-compose``.

    Raises :class:`EnvironmentProblem` when none answers ``version``. The runner must really run
    commands (a dry-run runner answers nothing); use :meth:`ComposeCLI.assumed` for dry runs.
    """
    runner = runner or SubprocessRunner()
    env = os.environ if env is None else env
    docker = docker_argv(env)
    override = env.get(COMPOSE_ENV, "").strip()
    candidates: list[tuple[str, ...]]
    if override:
        candidates = [tuple(shlex.split(override))]
    else:
        candidates = [(*docker, "compose"), ("docker-compose",)]
    tried: list[str] = []
    for argv in candidates:
        version = _query_version(runner, argv)
        if version is not None:
            return ComposeCLI(argv, version, docker)
        tried.append(shlex.join(argv))
    where = f" ({COMPOSE_ENV}={override})" if override else ""
    raise EnvironmentProblem(
        f"Docker Compose not found{where}: tried {', '.join(tried)}",
        hint="install the Compose v2 plugin, or set LLEM_COMPOSE",
    )


def _query_version(runner: Runner, argv: tuple[str, ...]) -> tuple[int, int, int] | None:
    try:
        result = runner.run([*argv, "version"], timeout=_DISCOVERY_TIMEOUT_S, check=False)
    except EnvironmentProblem:  # executable missing
        return None
    if not result.ok:
        return None
    return parse_version(result.stdout)


def parse_ps_json(text: str) -> list[dict[str, Any]]:
    """Parse ``compose ps --format json``: one JSON array (before 2.21) or JSON lines (after)."""
    text = text.strip()
    if not text:
        return []
    if text.startswith("["):
        data = json.loads(text)
        return [item for item in data if isinstance(item, dict)]
    rows: list[dict[str, Any]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        item = json.loads(line)
        if isinstance(item, list):  # an array on one line among lines: be lenient
            rows += [x for x in item if isinstance(x, dict)]
        elif isinstance(item, dict):
            rows.append(item)
    return rows


@dataclass(frozen=True)
class ComposeProject:
    """A compose project as llem runs it: name, the user's files, then llem's override."""

    cli: ComposeCLI
    name: str
    files: tuple[Path, ...]
    override: Path | None = None
    project_dir: Path | None = field(default=None)

    def base(self) -> list[str]:
        """The flags every call shares, built here only."""
        argv = [*self.cli.argv, "--project-name", self.name]
        if self.project_dir is not None:
            argv += ["--project-directory", str(self.project_dir)]
        for path in self.files:
            argv += ["-f", str(path)]
        if self.override is not None:
            argv += ["-f", str(self.override)]
        return argv

    # ---- one method per verb; each returns an argv --------------------------------------------

    def up(self, services: Iterable[str], *, wait: bool = True) -> list[str]:
        """``up -d`` (and ``--wait`` where supported; callers poll otherwise)."""
        argv = [*self.base(), "up", "-d"]
        if wait and self.cli.supports_wait:
            argv.append("--wait")
        return [*argv, *services]

    def exec(
        self, service: str, command: Sequence[str], env_names: Iterable[str] = ()
    ) -> list[str]:
        """``exec -T``; ``-e NAME`` per variable, whose value comes from the client environment.

        Values are never put on the argv, so they never show in ``ps``, logs or ``--dry-run``.
        """
        argv = [*self.base(), "exec", "-T"]
        for name in env_names:
            argv += ["-e", name]
        return [*argv, service, *command]

    def restart(self, service: str, *, timeout_s: int) -> list[str]:
        """``restart -t N`` of one service (also starts it when stopped)."""
        return [*self.base(), "restart", "-t", str(timeout_s), service]

    def stop(self, service: str, *, timeout_s: int) -> list[str]:
        """``stop -t N`` of one service."""
        return [*self.base(), "stop", "-t", str(timeout_s), service]

    def rm(self, service: str) -> list[str]:
        """``rm -f -s`` of one service: stop it (if running) and remove its container."""
        return [*self.base(), "rm", "-f", "-s", service]

    def logs(self, service: str, *, tail: int) -> list[str]:
        """``logs --no-color --tail N SERVICE``: a server's last lines, for an error message."""
        return [*self.base(), "logs", "--no-color", "--tail", str(tail), service]

    def down(self, *, timeout_s: int) -> list[str]:
        """``down --remove-orphans --timeout N``: containers and networks of the project."""
        return [*self.base(), "down", "--remove-orphans", "--timeout", str(timeout_s)]

    def ps(self, services: Iterable[str] = (), *, all_: bool = True) -> list[str]:
        """``ps --format json`` (v2); v1 has no JSON, so it gets ``ps -q`` (container ids)."""
        argv = [*self.base(), "ps"]
        if all_ and not self.cli.is_v1:
            argv.append("--all")
        argv += ["--format", "json"] if self.cli.supports_ps_json else ["-q"]
        return [*argv, *services]

    def ps_ids(self, service: str) -> list[str]:
        """``ps -q SERVICE``: the service's container id(s), in every version."""
        argv = [*self.base(), "ps"]
        if not self.cli.is_v1:
            argv.append("--all")
        return [*argv, "-q", service]

    def config(self, *, quiet: bool = False) -> list[str]:
        """``config``: the merged file (``-q``: only validate)."""
        return [*self.base(), "config", *(["-q"] if quiet else [])]

    def config_json(self, services: Iterable[str] = ()) -> list[str]:
        """``config --format json [SERVICE...]``: the merged model as JSON.

        Named services are in it even when a profile would leave them out (as ``up SERVICE``
        starts them). Compose v1 has neither: there it is plain ``config`` (YAML, every service).
        """
        if self.cli.is_v1:
            return [*self.base(), "config"]
        return [*self.base(), "config", "--format", "json", *services]


__all__ = [
    "COMPOSE_ENV",
    "CommandFailed",
    "ComposeCLI",
    "ComposeProject",
    "discover_compose",
    "parse_ps_json",
    "parse_version",
]
