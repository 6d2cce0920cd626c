"""Expanding a campaign into configurations: grid product, per-backend axes, explicit
experiments, minus ``exclude``; each configuration with its stable ``config_id``.

Expansion is linear in the number of configurations, so a 100,000-configuration grid expands
in well under a second. A ``config_id`` hashes only backend and params, never a position, so
shuffled or edited campaigns keep their keys and resume correctly.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llem_cli.campaign.model import Campaign

PathKey = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Config:
    """One configuration: a backend and its params. ``origin`` is where it came from."""

    backend: str
    params: dict[str, Any]
    config_id: str
    origin: PathKey


def make_config_id(backend: str, params: Mapping[str, Any]) -> str:
    """A stable 12-hex-digit hash of backend and params, independent of key order."""
    canonical = json.dumps(
        {"backend": backend, "params": params},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]


def same_value(a: object, b: object) -> bool:
    """Equality as a user means it in a campaign: 1 == 1.0, but True is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return a == b


def matches(selector: Mapping[str, Any], backend: str, params: Mapping[str, Any]) -> bool:
    """Whether a configuration matches every key of an ``exclude`` entry."""
    for name, wanted in selector.items():
        if name == "backend":
            if not same_value(backend, wanted):
                return False
        elif name not in params or not same_value(params[name], wanted):
            return False
    return True


@dataclass
class Expansion:
    """The configurations of a campaign and what was noticed while expanding it."""

    configs: list[Config]
    duplicates: list[tuple[PathKey, str]]
    exclude_hits: list[int]


def _grid_combos(campaign: Campaign) -> Iterator[tuple[str, dict[str, Any]]]:
    """The grid's cartesian product, as (backend, params), backend axis first."""
    grid = dict(campaign.grid or {})
    if not grid:
        return
    backends = grid.pop("backend", None)
    if backends is None:
        backends = list(campaign.backends)
    names = list(grid)
    for backend in backends:
        extra = campaign.per_backend.get(str(backend), {})
        extra_names = list(extra)
        for values in itertools.product(*grid.values()):
            params = dict(zip(names, values, strict=True))
            if not extra:
                yield str(backend), params
                continue
            for extra_values in itertools.product(*extra.values()):
                yield str(backend), {**params, **dict(zip(extra_names, extra_values, strict=True))}


def expand(campaign: Campaign) -> Expansion:
    """Grid product, per-backend axes, explicit experiments, each times the ``gpu_settings``
    axes, minus ``exclude``."""
    seen: set[str] = set()
    configs: list[Config] = []
    duplicates: list[tuple[PathKey, str]] = []
    exclude = campaign.exclude
    exclude_hits = [0] * len(exclude)
    only_backend = next(iter(campaign.backends)) if len(campaign.backends) == 1 else None

    settings = campaign.gpu_settings.axes() if campaign.gpu_settings is not None else {}
    setting_names = list(settings)
    setting_combos = list(itertools.product(*settings.values())) if settings else [()]

    def add(backend: str, base: dict[str, Any], origin: PathKey) -> None:
        # gpu_settings multiply every configuration, like grid axes
        for values in setting_combos:
            add_one(backend, {**base, **dict(zip(setting_names, values, strict=True))}, origin)

    def add_one(backend: str, params: dict[str, Any], origin: PathKey) -> None:
        for index, selector in enumerate(exclude):
            if matches(selector, backend, params):
                exclude_hits[index] += 1
                return
        config_id = make_config_id(backend, params)
        if config_id in seen:
            duplicates.append((origin, config_id))
            return
        seen.add(config_id)
        configs.append(Config(backend, params, config_id, origin))

    for backend, params in _grid_combos(campaign):
        add(backend, params, ("grid",))
    for index, entry in enumerate(campaign.experiments):
        params = {k: v for k, v in entry.items() if k != "backend"}
        # None only with several backends, which check_campaign refuses before expanding
        backend_name = entry.get("backend", only_backend)
        add(str(backend_name), params, ("experiments", index))
    return Expansion(configs, duplicates, exclude_hits)
