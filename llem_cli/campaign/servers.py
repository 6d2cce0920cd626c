"""Server configurations of serving backends: which params a server uses, and its id.

A serving backend (``serve``) runs one server per server configuration: the params its
``serve`` and ``ready`` argvs use. Experiments that agree on them share a server start; a
change starts a new one. Pure functions of the campaign (no Docker), shared by the schedule
(grouped order: server configuration by server configuration), ``llem plan`` (the server
starts an order implies) and the runner (when to start which server).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from llem_cli.campaign.expansion import Config, make_config_id
from llem_cli.campaign.placeholders import placeholder_names, render

if TYPE_CHECKING:
    from llem_cli.campaign.model import Backend, Campaign


def server_param_names(backend: Backend) -> list[str]:
    """The placeholders of ``serve`` and ``ready``, in order of first use (built-ins too)."""
    names: list[str] = []
    for item in [*(backend.serve or []), *(backend.ready or [])]:
        names.extend(n for n in placeholder_names(item) if n not in names)
    return names


def server_params(backend: Backend, config: Config) -> dict[str, Any]:
    """The configuration's params the server uses (its server configuration)."""
    used = set(server_param_names(backend))
    return {name: value for name, value in config.params.items() if name in used}


def server_id(campaign: Campaign, config: Config) -> str | None:
    """A stable 12-hex-digit id of the configuration's server (None: not a serving backend).

    The hash of backend and server params: equal ids share one server start.
    """
    backend = campaign.backends[config.backend]
    if backend.serve is None:
        return None
    return make_config_id(config.backend, server_params(backend, config))


def _values(run_id: str, config: Config) -> Mapping[str, Any]:
    return {**config.params, "run_id": run_id, "backend": config.backend}


def server_argv(campaign: Campaign, run_id: str, config: Config) -> list[str]:
    """The rendered ``serve`` argv of the configuration's server."""
    backend = campaign.backends[config.backend]
    assert backend.serve is not None
    values = _values(run_id, config)
    return [render(item, values) for item in backend.serve]


def ready_argv(campaign: Campaign, run_id: str, config: Config) -> list[str]:
    """The rendered ``ready`` argv (exec'd until it exits 0 after every server start)."""
    backend = campaign.backends[config.backend]
    assert backend.ready is not None
    values = _values(run_id, config)
    return [render(item, values) for item in backend.ready]


__all__ = ["ready_argv", "server_argv", "server_id", "server_param_names", "server_params"]
