"""The generated ``compose.override.yaml`` (docs/design.md §3.5).

llem never edits the user's compose file; it passes this file after theirs. For each service used
it adds the run directory bind-mounted at ``/llem/run``, a keep-alive command so the container stays
up between experiments, ``init: true`` so signals reach the process and zombies are reaped, and the
label ``llem.run=<run_id>`` by which teardown finds containers even when compose state is off.

A lane (../shared/DESIGN.md "Lanes") writes its own file, ``compose.override.l<lane>.yaml``, with a
:class:`LanePin`: each service also gets ``NVIDIA_VISIBLE_DEVICES=<uuid,...>`` in its environment
(a mapping, so Compose merges it over the user's, map or list, and ours wins) and the label
``llem.lane=<lane>``. What else it needs depends on the user's service, read beforehand without a
GPU (:mod:`llem_cli.docker.service_facts`):

* a GPU reservation (``deploy.resources.reservations.devices`` or the service-level ``gpus:``) is
  replaced by ``device_ids: [<uuid>, ...]`` with ``!override``: Compose appends lists, and the
  user's ``count: all`` beside ours would still give the container every GPU;
* ``container_name`` and published ``ports`` would collide between the lanes' projects: they are
  removed with ``!reset``.

Both tags need Compose 2.24.4 or later (``service_facts.supports_reset``). Without facts a pin adds
only the environment and the label. Without a pin the file is what it always was.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from llem_cli.atomic import atomic_write_text

if TYPE_CHECKING:
    from llem_cli.docker.service_facts import ServiceFacts

OVERRIDE_NAME = "compose.override.yaml"
RUN_MOUNT = "/llem/run"
RUN_LABEL = "llem.run"
LANE_LABEL = "llem.lane"
#: on a lane's containers: the campaign's compose project, which the lane's project extends
#: (``<project>-l<lane>``), so ``llem down`` finds every lane's containers by one label
BASE_PROJECT_LABEL = "llem.project"
VISIBLE_DEVICES = "NVIDIA_VISIBLE_DEVICES"
KEEPALIVE_COMMAND = ["sleep", "infinity"]

#: Compose's merge tags: drop the earlier files' value / replace it instead of merging
RESET_TAG = "!reset"
OVERRIDE_TAG = "!override"


@dataclass(frozen=True)
class LanePin:
    """The GPUs one lane's containers are pinned to, by UUID (``GPU-...``, ``MIG-...``)."""

    lane: int
    uuids: tuple[str, ...]
    #: the campaign's compose project (label :data:`BASE_PROJECT_LABEL`); None: no label
    base_project: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.lane, bool) or not isinstance(self.lane, int) or self.lane < 0:
            raise ValueError(f"lane must be a non-negative integer, not {self.lane!r}")
        if isinstance(self.uuids, str) or not self.uuids:
            raise ValueError("a lane is pinned to at least one GPU UUID (a tuple of them)")
        for uuid in self.uuids:
            if not isinstance(uuid, str) or not uuid or any(c in uuid for c in ", \t\n"):
                raise ValueError(f"not a GPU UUID: {uuid!r}")
        if len(set(self.uuids)) != len(self.uuids):
            raise ValueError(f"GPU UUIDs repeat: {', '.join(self.uuids)}")

    @property
    def visible_devices(self) -> str:
        """The value of ``NVIDIA_VISIBLE_DEVICES``: the UUIDs, comma-separated."""
        return ",".join(self.uuids)


@dataclass(frozen=True)
class Tagged:
    """A value written with a YAML tag (``!reset []``, ``!override [...]``)."""

    tag: str
    value: Any


class OverrideDumper(yaml.SafeDumper):
    """``yaml.SafeDumper`` that also writes :class:`Tagged` values."""

    def choose_scalar_style(self) -> str:
        """A tagged null is written ``!reset null``, not ``!reset 'null'`` (Compose reads both)."""
        event = self.event
        if (
            isinstance(event, yaml.ScalarEvent)
            and event.tag in (RESET_TAG, OVERRIDE_TAG)
            and event.value == "null"
            and not event.style
        ):
            return ""
        return str(super().choose_scalar_style())


def _represent_tagged(dumper: OverrideDumper, data: Tagged) -> yaml.Node:
    value = data.value
    if isinstance(value, Mapping):
        return dumper.represent_mapping(data.tag, value)
    if isinstance(value, list | tuple):
        return dumper.represent_sequence(data.tag, list(value))
    if value is None:
        return dumper.represent_scalar(data.tag, "null")
    return dumper.represent_scalar(data.tag, str(value))


OverrideDumper.add_representer(Tagged, _represent_tagged)


def _lane_of(pin: LanePin | Mapping[str, LanePin] | None) -> int | None:
    """The lane a pin (or a service -> pin mapping) belongs to."""
    if isinstance(pin, Mapping):
        return next((p.lane for p in pin.values()), None)
    return None if pin is None else pin.lane


def override_name(lane: int | None) -> str:
    """The override's file name: ``compose.override.yaml``, or ``compose.override.l<N>.yaml``."""
    if lane is None:
        return OVERRIDE_NAME
    return f"compose.override.l{lane}.yaml"


def gpu_request(uuids: Iterable[str]) -> dict[str, Any]:
    """A GPU reservation of exactly these devices (an entry of ``devices:`` or ``gpus:``)."""
    return {"driver": "nvidia", "device_ids": list(uuids), "capabilities": ["gpu"]}


def _pin_entry(entry: dict[str, Any], pin: LanePin, facts: ServiceFacts | None) -> None:
    """Add the lane's pin to one service's entry (in place)."""
    entry["labels"][LANE_LABEL] = str(pin.lane)
    if pin.base_project is not None:
        entry["labels"][BASE_PROJECT_LABEL] = pin.base_project
    entry["environment"] = {VISIBLE_DEVICES: pin.visible_devices}
    if facts is None:
        return
    if facts.reserves_gpus:
        devices = [*facts.other_devices, gpu_request(pin.uuids)]
        entry["deploy"] = {
            "resources": {"reservations": {"devices": Tagged(OVERRIDE_TAG, devices)}}
        }
    if facts.uses_gpus_key:
        entry["gpus"] = Tagged(OVERRIDE_TAG, [gpu_request(pin.uuids)])
    if facts.container_name is not None:
        entry["container_name"] = Tagged(RESET_TAG, None)
    if facts.has_ports:
        entry["ports"] = Tagged(RESET_TAG, [])


def override_document(
    run_id: str,
    run_dir: Path,
    services: Mapping[str, bool] | Iterable[str],
    *,
    pin: LanePin | Mapping[str, LanePin] | None = None,
    facts: Mapping[str, ServiceFacts] | None = None,
    commands: Mapping[str, Sequence[str]] | None = None,
    env_names: Mapping[str, Iterable[str]] | None = None,
) -> dict[str, Any]:
    """The override as data; ``services`` maps service -> keepalive (an iterable means all True).

    ``pin`` may also map each service to its own pin (backends asking fewer GPUs than the lane
    owns pin their service to fewer). With ``pin`` every service is pinned to the lane's GPUs;
    ``facts`` (the user's services as
    :func:`llem_cli.docker.service_facts.read_service_facts` reads them) must then name every
    service, and decide which reservations are replaced and what is reset. The values that need
    Compose's merge tags are :class:`Tagged`: dump them with :class:`OverrideDumper`.
    """
    keepalive = dict(services) if isinstance(services, Mapping) else dict.fromkeys(services, True)
    if pin is not None and facts is not None:
        missing = [s for s in keepalive if s not in facts]
        if missing:
            raise ValueError(f"no facts for service(s): {', '.join(missing)}")
    source = str(Path(run_dir).resolve())
    doc: dict[str, Any] = {"services": {}}
    for service, keep in keepalive.items():
        entry: dict[str, Any] = {
            "volumes": [{"type": "bind", "source": source, "target": RUN_MOUNT}],
            "init": True,
            "labels": {RUN_LABEL: run_id},
        }
        if commands is not None and service in commands:
            # a serving backend's server is the container's main process; Compose would
            # interpolate ${...} in the file, so every $ is written $$ (the argv as given)
            entry["command"] = [item.replace("$", "$$") for item in commands[service]]
        elif keep:
            entry["command"] = list(KEEPALIVE_COMMAND)
        service_pin = pin.get(service) if isinstance(pin, Mapping) else pin
        if service_pin is not None:
            _pin_entry(entry, service_pin, None if facts is None else facts[service])
        names = list((env_names or {}).get(service, ()))
        if names:
            # a server's environment (the backend's env): names only, with no value, so
            # Compose takes each value from llem's environment when it runs `up`; a secret
            # is never written into the file
            entry["environment"] = {
                **dict.fromkeys(names),
                **entry.get("environment", {}),
            }
        doc["services"][service] = entry
    return doc


def render_override(
    run_id: str,
    run_dir: Path,
    services: Mapping[str, bool] | Iterable[str],
    *,
    pin: LanePin | Mapping[str, LanePin] | None = None,
    facts: Mapping[str, ServiceFacts] | None = None,
    commands: Mapping[str, Sequence[str]] | None = None,
    env_names: Mapping[str, Iterable[str]] | None = None,
) -> str:
    """The override file's text."""
    lane_no = _lane_of(pin)
    lane = "" if lane_no is None else f" lane {lane_no}"
    header = f"# generated by llem for run {run_id}{lane}; do not edit\n"
    doc = override_document(
        run_id, run_dir, services, pin=pin, facts=facts, commands=commands, env_names=env_names
    )
    body = yaml.dump(doc, Dumper=OverrideDumper, sort_keys=False, default_flow_style=False)
    return header + body


def write_override(
    run_id: str,
    run_dir: Path,
    services: Mapping[str, bool] | Iterable[str],
    *,
    pin: LanePin | Mapping[str, LanePin] | None = None,
    facts: Mapping[str, ServiceFacts] | None = None,
    name: str | None = None,
    commands: Mapping[str, Sequence[str]] | None = None,
    env_names: Mapping[str, Iterable[str]] | None = None,
    directory: Path | None = None,
) -> Path:
    """Write ``<directory>/<name>`` atomically and return its path.

    ``name`` defaults to :func:`override_name` of the pin's lane (``compose.override.yaml``
    without a pin), so lanes never share a file; ``directory`` defaults to ``run_dir`` (a
    shard of a sharded run writes into its own ``shards/s<k>/``, so shards never share one).
    """
    run_dir = Path(run_dir)
    folder = Path(directory) if directory is not None else run_dir
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (name or override_name(_lane_of(pin)))
    text = render_override(
        run_id, run_dir, services, pin=pin, facts=facts, commands=commands, env_names=env_names
    )
    atomic_write_text(path, text)
    return path
