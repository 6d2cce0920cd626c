"""What a lane's override must know about the user's services, read without a GPU.

Pinning a lane (``override.LanePin``) replaces a GPU reservation only where the user's service has
one, and resets ``container_name`` and published ``ports`` only where it sets them. Those facts
come from the merged model Compose itself prints: ``config --format json`` over the user's files
only (never llem's override, which would hide what it resets). ``config`` needs no image, no GPU
and no daemon, and touches nothing, so ``--dry-run`` can read the facts with a real runner too.

Resetting and replacing use Compose's merge tags ``!reset``/``!override``, which Compose 2.24.4
brought; with an older Compose a service that needs them cannot be pinned per lane
(:func:`lane_limit_reason`).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from llem_cli.docker.compose import ComposeCLI, ComposeProject
from llem_cli.docker.proc import Runner, last_line
from llem_cli.errors import EnvironmentProblem

#: the first Compose with ``!override`` (``!reset`` is older)
MERGE_TAGS_VERSION = (2, 24, 4)

_CONFIG_TIMEOUT_S = 60.0
#: device-request capabilities and drivers Docker hands to the NVIDIA runtime
_GPU_CAPABILITIES = frozenset({"gpu", "nvidia"})
_GPU_DRIVERS = frozenset({"nvidia"})
_CDI_GPU_PREFIX = "nvidia.com/gpu"


@dataclass(frozen=True)
class ServiceFacts:
    """One service of the user's compose files, as far as pinning it to a lane goes.

    ``reserves_gpus``: ``deploy.resources.reservations.devices`` has a GPU request (capability
    ``gpu``/``nvidia``, driver ``nvidia``, or a CDI ``nvidia.com/gpu`` device); ``other_devices``
    keeps that list's other entries as Compose printed them, since the replacement replaces the
    whole list. ``uses_gpus_key``: the service-level ``gpus:``. ``has_ports``: some port is
    published on the host (one without a host port gets a free one, and collides with nothing).
    ``env_visible_devices``: the service's own ``NVIDIA_VISIBLE_DEVICES`` (None: unset or
    passed through without a value).
    """

    reserves_gpus: bool = False
    uses_gpus_key: bool = False
    container_name: str | None = None
    has_ports: bool = False
    privileged: bool = False
    env_visible_devices: str | None = None
    other_devices: tuple[Mapping[str, Any], ...] = ()

    @property
    def needs_reset(self) -> bool:
        """True when the service sets what would collide between lanes."""
        return self.container_name is not None or self.has_ports

    @property
    def reserves_any_gpu(self) -> bool:
        """True when a reservation (deploy devices or ``gpus:``) must be replaced by the pin."""
        return self.reserves_gpus or self.uses_gpus_key


def is_gpu_request(device: Mapping[str, Any]) -> bool:
    """True for a device request Docker serves with GPUs."""
    capabilities = device.get("capabilities") or []
    if isinstance(capabilities, str):
        capabilities = [capabilities]
    if any(str(c).lower() in _GPU_CAPABILITIES for c in capabilities):
        return True
    if str(device.get("driver") or "").lower() in _GPU_DRIVERS:
        return True
    ids = device.get("device_ids") or []
    return any(str(i).startswith(_CDI_GPU_PREFIX) for i in ids)


def _get(mapping: Any, key: str) -> Any:
    """``mapping[key]`` when ``mapping`` is a mapping that has it, else None."""
    return mapping.get(key) if isinstance(mapping, Mapping) else None


def _published(port: Any) -> bool:
    if isinstance(port, Mapping):
        return port.get("published") not in (None, "", 0, "0")
    if isinstance(port, str):  # Compose v1 prints the short syntax: "8080:80/tcp"
        return ":" in port.split("/")[0]
    return False


def _environment(env: Any) -> dict[str, str | None]:
    if isinstance(env, Mapping):
        return {str(k): None if v is None else str(v) for k, v in env.items()}
    out: dict[str, str | None] = {}
    if isinstance(env, list):
        for item in env:
            name, sep, value = str(item).partition("=")
            out[name] = value if sep else None
    return out


def facts_of_service(service: Mapping[str, Any]) -> ServiceFacts:
    """The facts of one service of Compose's merged model (``config`` output)."""
    reservations = _get(_get(_get(service, "deploy"), "resources"), "reservations")
    listed = _get(reservations, "devices") or []
    devices = [d for d in listed if isinstance(d, Mapping)] if isinstance(listed, list) else []
    gpu = [d for d in devices if is_gpu_request(d)]
    name = service.get("container_name")
    return ServiceFacts(
        reserves_gpus=bool(gpu),
        uses_gpus_key=bool(service.get("gpus")),
        container_name=str(name) if name else None,
        has_ports=any(_published(p) for p in service.get("ports") or []),
        privileged=bool(service.get("privileged")),
        env_visible_devices=_environment(service.get("environment")).get("NVIDIA_VISIBLE_DEVICES"),
        other_devices=tuple(dict(d) for d in devices if not is_gpu_request(d)) if gpu else (),
    )


def facts_from_config(config: Mapping[str, Any]) -> dict[str, ServiceFacts]:
    """Every service's facts from Compose's merged model."""
    services = config.get("services") or {}
    if not isinstance(services, Mapping):
        raise ValueError("'services' is not a mapping")
    return {
        str(name): facts_of_service(svc if isinstance(svc, Mapping) else {})
        for name, svc in services.items()
    }


def read_service_facts(
    runner: Runner,
    compose: ComposeCLI,
    files: Sequence[Path],
    project: str,
    *,
    services: Iterable[str] = (),
    project_dir: Path | None = None,
    timeout: float = _CONFIG_TIMEOUT_S,
) -> dict[str, ServiceFacts]:
    """Ask Compose for the merged model of the user's ``files`` and return each service's facts.

    ``services`` names those llem uses (they are listed even behind a profile); without them,
    Compose's default profile set. ``runner`` must really run commands (not a dry run): ``config``
    changes nothing. Compose rejecting the files raises :class:`EnvironmentProblem` naming them.
    """
    if runner.dry_run:
        raise ValueError("reading the service facts needs a runner that runs commands")
    files = tuple(Path(f) for f in files)
    named = ", ".join(str(f) for f in files)
    spec = ComposeProject(compose, project, files, override=None, project_dir=project_dir)
    hint = f"check with: {shlex.join(compose.argv)} -f FILE config"
    result = runner.run(spec.config_json(services), timeout=timeout, check=False)
    if not result.ok:
        why = "timed out" if result.timed_out else last_line(result.stderr) or "no reason given"
        raise EnvironmentProblem(f"Docker Compose cannot read {named}: {why}", hint=hint)
    try:
        model = json.loads(result.stdout) if not compose.is_v1 else yaml.safe_load(result.stdout)
        if not isinstance(model, Mapping):
            raise ValueError("not a mapping")
        return facts_from_config(model)
    except (ValueError, yaml.YAMLError) as exc:
        raise EnvironmentProblem(
            f"Docker Compose printed no readable model of {named}: {str(exc).splitlines()[0]}",
            hint=hint,
        ) from None


def supports_reset(compose: ComposeCLI) -> bool:
    """True when Compose knows ``!reset`` and ``!override`` (2.24.4 and later)."""
    return not compose.is_v1 and compose.version >= MERGE_TAGS_VERSION


def lane_limits(facts: Mapping[str, ServiceFacts], compose: ComposeCLI) -> dict[str, str]:
    """Service -> what in it this Compose cannot change per lane (all fine: empty)."""
    if supports_reset(compose):
        return {}
    out: dict[str, str] = {}
    for service, fact in facts.items():
        what = []
        if fact.container_name is not None:
            what.append("container_name")
        if fact.has_ports:
            what.append("published ports")
        if fact.reserves_any_gpu:
            what.append("a GPU reservation")
        if what:
            out[service] = " and ".join(what)
    return out


def lane_limit_reason(facts: Mapping[str, ServiceFacts], compose: ComposeCLI) -> str | None:
    """One line saying which services run in one lane only with this Compose, or None.

    Lanes need ``!reset`` for ``container_name``/published ``ports`` (they would collide) and
    ``!override`` to replace a GPU reservation by the lane's GPUs; both came with Compose 2.24.4.
    """
    limits = lane_limits(facts, compose)
    if not limits:
        return None
    services = "; ".join(f"service '{s}' has {what}" for s, what in limits.items())
    need = ".".join(map(str, MERGE_TAGS_VERSION))
    return (
        f"{services}, which {compose.describe()} cannot reset or replace per lane "
        f"(Compose {need} or later can): such a service runs in one lane only"
    )


__all__ = [
    "MERGE_TAGS_VERSION",
    "ServiceFacts",
    "facts_from_config",
    "facts_of_service",
    "is_gpu_request",
    "lane_limit_reason",
    "lane_limits",
    "read_service_facts",
    "supports_reset",
]
