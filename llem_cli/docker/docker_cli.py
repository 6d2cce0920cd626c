"""The ``docker`` CLI's argvs, one method per verb, built in this one place.

Compose's argvs live in :mod:`llem_cli.docker.compose` (:class:`ComposeProject`); the few calls
that go to ``docker`` itself (the probe's cheap ``exec``, ``inspect`` and ``events`` after a
failure, the label sweep, ``version`` for the daemon check, doctor's ``info`` and ``image
inspect``) are built here, so every caller and ``--dry-run`` print the same thing.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

#: environment variable naming the docker CLI (default ``docker``)
DOCKER_ENV = "LLEM_DOCKER"


def docker_argv(env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The docker CLI argv (``LLEM_DOCKER`` may name another binary)."""
    env = os.environ if env is None else env
    return tuple(shlex.split(env.get(DOCKER_ENV) or "docker"))


@dataclass(frozen=True)
class DockerCLI:
    """The docker client's argv prefix and one method per verb llem uses; each returns an argv."""

    argv: tuple[str, ...] = ("docker",)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DockerCLI:
        """The CLI named by ``LLEM_DOCKER`` (default ``docker``)."""
        return cls(docker_argv(env))

    def client_version(self) -> list[str]:
        """``--version`` of the client alone (answers without a daemon)."""
        return [*self.argv, "--version"]

    def exec(self, container_id: str, command: Sequence[str]) -> list[str]:
        """``exec`` into a container by id: half the cost of ``compose exec`` (the probe)."""
        return [*self.argv, "exec", container_id, *command]

    def inspect_state(self, container_id: str) -> list[str]:
        """``inspect`` a container's ``.State`` as JSON."""
        return [
            *self.argv, "inspect", "--type", "container", "--format", "{{json .State}}",
            container_id,
        ]  # fmt: skip

    def oom_events(self, container_id: str, *, since: float, until: float) -> list[str]:
        """``events`` of kind ``oom`` for one container between two wall-clock times."""
        return [
            *self.argv, "events", "--since", f"{since:.6f}", "--until", f"{until:.6f}",
            "--filter", f"container={container_id}", "--filter", "event=oom",
            "--format", "{{json .}}",
        ]  # fmt: skip

    def ps_ids(self, label_filters: Iterable[str]) -> list[str]:
        """``ps -a -q --no-trunc`` of the containers carrying every one of ``label_filters``."""
        filters = [arg for label in label_filters for arg in ("--filter", f"label={label}")]
        return [*self.argv, "ps", "-a", "-q", "--no-trunc", *filters]

    def rm_force(self, container_ids: Sequence[str]) -> list[str]:
        """``rm -f`` of containers (running ones are killed)."""
        return [*self.argv, "rm", "-f", *container_ids]

    def network_ids(self, label: str) -> list[str]:
        """``network ls -q`` of the networks carrying ``label``."""
        return [*self.argv, "network", "ls", "-q", "--filter", f"label={label}"]

    def network_rm(self, network_ids: Sequence[str]) -> list[str]:
        """``network rm`` of networks."""
        return [*self.argv, "network", "rm", *network_ids]

    def server_version(self) -> list[str]:
        """``version`` of the server only: answers exactly when the daemon does."""
        return [*self.argv, "version", "--format", "{{.Server.Version}}"]

    def info_json(self) -> list[str]:
        """``info`` as JSON (doctor: engine version, runtimes, cgroup version)."""
        return [*self.argv, "info", "--format", "{{json .}}"]

    def image_id(self, image: str) -> list[str]:
        """``image inspect`` of one image's id (doctor: is it there, or must it be pulled)."""
        return [*self.argv, "image", "inspect", "--format", "{{.Id}}", image]


__all__ = ["DOCKER_ENV", "DockerCLI", "docker_argv"]
