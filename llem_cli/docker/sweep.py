"""The label sweep: remove llem's containers (and a project's networks) without compose.

Separate from :mod:`llem_cli.docker.manager` because it needs no :class:`ContainerManager`, no
compose file and no compose state: ``llem down`` runs it on a run whose files may be gone, and
:meth:`ContainerManager.teardown <llem_cli.docker.manager.ContainerManager.teardown>` runs it
after ``compose down`` so nothing is left even when compose's view of the project is off.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence

from llem_cli.docker.daemon import raise_if_unreachable
from llem_cli.docker.docker_cli import DockerCLI, docker_argv
from llem_cli.docker.override import BASE_PROJECT_LABEL, RUN_LABEL
from llem_cli.docker.proc import CommandFailed, Runner, SubprocessRunner
from llem_cli.signals import deferred

PROJECT_LABEL = "com.docker.compose.project"
# docker's answer for a container (or object) that is already gone; shared with the manager
NO_SUCH = re.compile(r"No such (object|container)", re.I)


def teardown_by_label(
    *,
    run_id: str | None = None,
    project: str | None = None,
    runner: Runner | None = None,
    docker: Sequence[str] | None = None,
    timeout: float = 120.0,
    include_lanes: bool = False,
    shield: bool = True,
) -> list[str]:
    """Remove llem's containers labelled ``llem.run=<run_id>`` and/or of ``project`` (both: AND).

    With ``project`` its networks go too. This is what ``llem down`` runs; it needs no compose
    file, so it works when the run's files are gone or compose's state is off. Returns the ids
    removed. Raises :class:`CommandFailed` if the removal itself fails.
    """
    if run_id is None and project is None:
        raise ValueError("teardown_by_label needs run_id or project")
    runner = runner or SubprocessRunner()
    cli = DockerCLI(tuple(docker or docker_argv()))
    # Both given: containers carrying both labels (docker ANDs label filters). A run id is a
    # timestamp, unique only within its campaign, so the project keeps another campaign's run
    # started in the same second out of the sweep.
    # Only containers llem started (they all carry llem.run): a container the user made by
    # hand in the same project is not llem's to remove.
    # A lane's containers are in its own project (<project>-l<n>) and carry the campaign's
    # project as the label llem.project: with include_lanes a second query finds them.
    run_label = RUN_LABEL + (f"={run_id}" if run_id else "")
    queries = [[run_label]]
    if project is not None:
        queries = [[run_label, f"{PROJECT_LABEL}={project}"]]
        if include_lanes:
            queries.append([run_label, f"{BASE_PROJECT_LABEL}={project}"])
    ids: list[str] = []
    with deferred() if shield else contextlib.nullcontext():
        for labels in queries:
            argv = cli.ps_ids(labels)
            result = runner.run(argv, timeout=timeout, check=False)
            raise_if_unreachable(result.returncode, result.stderr)
            if not result.ok:
                raise CommandFailed(argv, result.returncode, result.stderr_tail)
            ids.extend(result.stdout.split())
        ids = list(dict.fromkeys(ids))
        if ids:
            argv = cli.rm_force(ids)
            result = runner.run(argv, timeout=timeout, check=False)
            if not result.ok and not NO_SUCH.search(result.stderr):
                raise CommandFailed(argv, result.returncode, result.stderr_tail)
        if project is not None:
            argv = cli.network_ids(f"{PROJECT_LABEL}={project}")
            result = runner.run(argv, timeout=timeout, check=False)
            nets = result.stdout.split() if result.ok else []
            if nets:
                runner.run(cli.network_rm(nets), timeout=timeout, check=False)
    return ids


__all__ = ["NO_SUCH", "PROJECT_LABEL", "teardown_by_label"]
