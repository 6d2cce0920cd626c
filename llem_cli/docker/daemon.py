"""Is the Docker daemon there? The one check, the one way to recognise "unreachable" in a
client's stderr, and the one message a user sees about it (exit 3).

A run checks once before it starts (:func:`require_daemon`); every management command's failure
is read with :func:`raise_if_unreachable`; and before a failed experiment is recorded, the runner
asks :func:`daemon_problem` again, so an outage is never recorded as the experiment's failure.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from llem_cli.docker.docker_cli import DockerCLI
from llem_cli.docker.proc import Runner, SubprocessRunner, last_line
from llem_cli.errors import EnvironmentProblem

#: what the docker client and compose print when they cannot reach the daemon
_UNREACHABLE = re.compile(
    r"Cannot connect to the Docker daemon|error during connect|"
    r"Is the docker daemon running|docker\.sock: connect:",
    re.IGNORECASE,
)
_HINT = "start it (sudo systemctl start docker; `llem doctor` checks), then run again with --resume"
_VERSION_TIMEOUT_S = 30.0


def daemon_unreachable(stderr: str) -> bool:
    """True when a docker/compose stderr says the daemon could not be reached."""
    return bool(_UNREACHABLE.search(stderr))


def unreachable_error(why: str) -> EnvironmentProblem:
    """The one message (and exit 3) for a daemon that does not answer."""
    return EnvironmentProblem(f"the Docker daemon is not reachable: {why}", hint=_HINT)


def raise_if_unreachable(returncode: int, stderr: str) -> None:
    """Raise when a failed docker/compose call's stderr says the daemon cannot be reached.

    Called on a failed management command before anything else reads it, so "daemon down" is
    exit 3 everywhere rather than a confusing per-command failure.
    """
    if returncode != 0 and daemon_unreachable(stderr):
        # the line that says so, not compose's progress lines ("Container x  Creating") above it
        said = next(line.strip() for line in stderr.splitlines() if daemon_unreachable(line))
        raise unreachable_error(said)


def daemon_problem(
    runner: Runner | None = None, docker: DockerCLI | None = None
) -> str | None:
    """Why the daemon does not answer ``docker version`` (None: it answers).

    The one liveness probe: before a run starts, and before a failed experiment is recorded
    (the experiment's own stderr might say anything, so its text alone proves nothing).
    """
    runner = runner or SubprocessRunner()
    argv: Sequence[str] = (docker or DockerCLI.from_env()).server_version()
    result = runner.run(argv, timeout=_VERSION_TIMEOUT_S, check=False)
    if result.ok and result.stdout.strip():
        return None
    return last_line(result.stderr_tail) or "no answer"


def require_daemon(runner: Runner | None = None) -> None:
    """Raise the exit-3 problem when the daemon does not answer (before a run starts)."""
    why = daemon_problem(runner)
    if why is not None:
        raise unreachable_error(why)


__all__ = [
    "daemon_problem",
    "daemon_unreachable",
    "raise_if_unreachable",
    "require_daemon",
    "unreachable_error",
]
