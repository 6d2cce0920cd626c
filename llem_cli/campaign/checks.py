"""Checks that relate parts of a valid-shaped campaign to each other.

They run after the pydantic model accepted the structure, on the expansion the
plan will use, so "validate says ok" and "plan runs" can never disagree.
"""

from __future__ import annotations

import re
from pathlib import Path

from llem_cli.campaign.compose_services import ComposeFileError, read_compose_services
from llem_cli.campaign.expansion import Expansion, expand
from llem_cli.campaign.model import NAME_PATTERN, Campaign, MetricFormula
from llem_cli.campaign.placeholders import BUILTINS, PER_EXPERIMENT, placeholder_names
from llem_cli.campaign.problems import Problem, did_you_mean, dotted
from llem_cli.campaign.yaml_source import PathKey, SourceDoc, child


class _Collector:
    """Collects problems with positions taken from the source document."""

    def __init__(self, doc: SourceDoc, file: str) -> None:
        self.doc, self.file = doc, file
        self.problems: list[Problem] = []

    def error(self, path: PathKey, message: str, *, of_key: bool = False) -> None:
        pos = self.doc.position(path, of_key=of_key)
        self.problems.append(Problem(self.file, pos, path, message))

    def warn(self, path: PathKey, message: str, *, of_key: bool = False) -> None:
        pos = self.doc.position(path, of_key=of_key)
        self.problems.append(Problem(self.file, pos, path, message, warning=True))


def check_campaign(
    campaign: Campaign, doc: SourceDoc, file: str, base_dir: Path
) -> tuple[Expansion | None, list[Problem]]:
    """Every cross-field problem of ``campaign``; the expansion when it could be made."""
    out = _Collector(doc, file)
    _check_compose_files(campaign, base_dir, out)
    backends_ok = _check_backend_names(campaign, out)
    if not backends_ok:
        return None, out.problems
    if not _check_gpu_setting_names(campaign, out):
        return None, out.problems
    expansion = expand(campaign)
    for origin, config_id in expansion.duplicates:
        where = "the grid" if origin == ("grid",) else "an earlier configuration"
        out.error(
            origin, f"duplicate configuration (same backend and params as {where}; {config_id})"
        )
    for index, hits in enumerate(expansion.exclude_hits):
        if hits == 0:
            out.warn(("exclude", index), "matches no configuration")
    if not expansion.configs:
        out.error((), "the campaign expands to no configuration (add a grid or experiments)")
        return expansion, out.problems
    _check_placeholders(campaign, expansion, out)
    _check_serving(campaign, out)
    _check_metric_params(campaign, expansion, out)
    _check_prune_axes(campaign, expansion, out)
    _warn_number_like_text(out)
    used = {config.backend for config in expansion.configs}
    for name in campaign.backends:
        if name not in used:
            out.warn(("backends", name), "has no configuration: it will never run", of_key=True)
    return expansion, out.problems


_PARAM_SECTIONS = ("grid", "per_backend", "experiments", "exclude")


def _warn_number_like_text(out: _Collector) -> None:
    """``lr: [1e-5]`` is the text "1e-5" to YAML 1.1 (PyYAML): a surprise worth a warning.

    It still works as a placeholder (the command gets ``1e-5``), but ``1e-5`` and ``0.00001``
    are then two configurations, and ``results --group-by`` sorts the value as text.
    """
    for path in sorted(out.doc.number_like_text, key=str):
        if path and path[0] in _PARAM_SECTIONS:
            text = doc_value(out.doc, path)
            out.warn(
                path,
                f"{text} is read as text, not a number (YAML 1.1 wants a dot and a signed "
                f"exponent: write {_with_dot(str(text))}, or quote it to keep it as text)",
            )


def _with_dot(text: str) -> str:
    """The YAML 1.1 float spelling of ``text``: a dot in the mantissa, a sign on the exponent."""
    mantissa, _, exponent = text.lower().partition("e")
    if "." not in mantissa:
        mantissa += ".0"
    if exponent[:1] not in ("+", "-"):
        exponent = "+" + exponent
    return f"{mantissa}e{exponent}"


def _check_compose_files(campaign: Campaign, base_dir: Path, out: _Collector) -> None:
    _check_compose_paths(campaign.compose_files, base_dir, out)
    backends = [(name, backend.service) for name, backend in campaign.backends.items()]
    _check_compose_services(campaign.compose_files, backends, base_dir, out)


def _check_compose_paths(paths: list[str], base_dir: Path, out: _Collector) -> None:
    several = isinstance(doc_value(out.doc, ("compose",)), list)
    for index, rel in enumerate(paths):
        path = ("compose", index) if several else ("compose",)
        target = base_dir / rel
        if not target.is_file():
            out.error(
                path, f"compose file not found: {target} (paths are relative to the campaign file)"
            )


def _check_compose_services(
    paths: list[str], backends: list[tuple[str, str | None]], base_dir: Path, out: _Collector
) -> None:
    """Each compose file must be one Compose can read, and hold every backend's service.

    Read with PyYAML, no engine. Services are the union over all the files; the membership
    check is skipped when that union is not known for sure: a file missing (reported above),
    unreadable, too large to read, or with an ``include:`` (services may come from there).
    """
    several = isinstance(doc_value(out.doc, ("compose",)), list)
    services: list[str] = []
    known = True
    for index, rel in enumerate(paths):
        target = base_dir / rel
        if not target.is_file():
            known = False
            continue
        try:
            found = read_compose_services(target)
        except ComposeFileError as exc:
            path = ("compose", index) if several else ("compose",)
            out.error(path, f"{target}: not a valid compose file: {exc.message}")
            known = False
            continue
        if found is None or found.has_include:
            known = False
            continue
        services += [name for name in found.services if name not in services]
    if not known:
        return
    where = ", ".join(str(base_dir / rel) for rel in paths)
    if not services:
        listing = "it defines no service" if len(paths) == 1 else "they define no service"
    else:
        listing = f"{'its' if len(paths) == 1 else 'their'} services are: {', '.join(services)}"
    for name, service in backends:
        wanted = service or name
        if wanted in services:
            continue
        hint = did_you_mean(wanted, services)
        default = "" if service else " (the backend's name: set 'service' to use another)"
        out.error(
            ("backends", name, "service"),
            f"service '{wanted}'{default} is not in {where}; {listing}{hint}",
            of_key=service is None,
        )


def _raw_backends(doc: SourceDoc) -> list[tuple[str, str | None]]:
    """(name, service) of each backend whose name and service are well-formed in the raw data."""
    backends = doc_value(doc, ("backends",))
    found: list[tuple[str, str | None]] = []
    if not isinstance(backends, dict):
        return found
    for name, entry in backends.items():
        if not isinstance(name, str) or not re.match(NAME_PATTERN, name):
            continue
        service = entry.get("service") if isinstance(entry, dict) else None
        if service is None or isinstance(service, str):
            found.append((name, service))
    return found


def check_raw(doc: SourceDoc, file: str, base_dir: Path) -> list[Problem]:
    """The checks that still make sense when the structure is invalid, on the raw YAML data.

    So a file with a typo in ``execution`` also reports its missing compose file and a
    ``grid.backend`` value naming no backend, instead of one round of fixes per run.
    """
    out = _Collector(doc, file)
    compose = doc_value(doc, ("compose",))
    given = [compose] if isinstance(compose, str) else compose if isinstance(compose, list) else []
    paths = [p for p in given if isinstance(p, str)]
    _check_compose_paths(paths, base_dir, out)
    if paths and len(paths) == len(given):
        _check_compose_services(paths, _raw_backends(doc), base_dir, out)
    backends = doc_value(doc, ("backends",))
    names = doc_value(doc, ("grid", "backend"))
    if isinstance(backends, dict) and backends and isinstance(names, list):
        listing = ", ".join(str(k) for k in backends)
        for index, value in enumerate(names):
            if isinstance(value, str) and value not in backends:
                out.error(
                    ("grid", "backend", index), f"'{value}' names no backend (backends: {listing})"
                )
    return out.problems


def doc_value(doc: SourceDoc, path: PathKey) -> object:
    """The raw value at ``path`` in the loaded YAML, or None."""
    node: object = doc.data
    for part in path:
        found, node = child(node, part)
        if not found:
            return None
    return node


def _check_backend_names(campaign: Campaign, out: _Collector) -> bool:
    """``backend`` values and ``per_backend`` keys must name declared backends."""
    known = list(campaign.backends)
    listing = ", ".join(known)
    ok = True

    def check(value: object, path: PathKey) -> None:
        nonlocal ok
        if not isinstance(value, str) or value not in campaign.backends:
            out.error(path, f"'{value}' names no backend (backends: {listing})")
            ok = False

    for index, value in enumerate((campaign.grid or {}).get("backend", [])):
        check(value, ("grid", "backend", index))
    for name, axes in campaign.per_backend.items():
        if name not in campaign.backends:
            out.error(
                ("per_backend", name),
                f"'{name}' names no backend (backends: {listing})",
                of_key=True,
            )
            ok = False
        for axis in axes:
            if axis == "backend":
                out.error(
                    ("per_backend", name, axis),
                    "'backend' cannot be a per-backend axis",
                    of_key=True,
                )
                ok = False
            elif axis in (campaign.grid or {}):
                out.error(
                    ("per_backend", name, axis), f"'{axis}' is already a grid axis", of_key=True
                )
                ok = False
    for index, entry in enumerate(campaign.experiments):
        if "backend" in entry:
            check(entry["backend"], ("experiments", index, "backend"))
        elif len(known) > 1:
            out.error(("experiments", index), f"needs a 'backend' key (backends: {listing})")
            ok = False
    for index, entry in enumerate(campaign.exclude):
        if "backend" in entry:
            check(entry["backend"], ("exclude", index, "backend"))
    return ok


def _check_placeholders(campaign: Campaign, expansion: Expansion, out: _Collector) -> None:
    """Each placeholder must be a built-in or a param of every configuration of its backend."""
    shapes: dict[str, dict[frozenset[str], PathKey]] = {}
    for config in expansion.configs:
        shapes.setdefault(config.backend, {}).setdefault(frozenset(config.params), config.origin)
    for name, backend in campaign.backends.items():
        backend_shapes = shapes.get(name, {})
        if not backend_shapes:
            continue
        everywhere = frozenset.intersection(*backend_shapes)
        argvs = [("command", backend.command)]
        argvs += [(part, argv) for part in ("serve", "ready") if (argv := getattr(backend, part))]
        for part, argv in argvs:
            for index, item in enumerate(argv):
                _check_item(name, part, index, item, everywhere, backend_shapes, out)


def _check_gpu_setting_names(campaign: Campaign, out: _Collector) -> bool:
    """A ``gpu_settings`` axis becomes a param of that name: the same name set elsewhere
    (grid, per_backend, experiments) would be two values for one param."""
    if campaign.gpu_settings is None:
        return True
    names = set(campaign.gpu_settings.axes())
    clashes: list[PathKey] = []
    for name in sorted(names & set(campaign.grid or {})):
        clashes.append(("grid", name))
    for backend, axes in campaign.per_backend.items():
        clashes += [("per_backend", backend, n) for n in sorted(names & set(axes))]
    for index, entry in enumerate(campaign.experiments):
        clashes += [("experiments", index, n) for n in sorted(names & set(entry))]
    for path in clashes:
        out.error(
            path,
            f"{path[-1]} is a gpu_settings axis (llem applies it to the GPUs and makes it a "
            "param); set it in gpu_settings only",
            of_key=True,
        )
    return not clashes


def _check_serving(campaign: Campaign, out: _Collector) -> None:
    """A serving backend needs ``ready``; ``ready`` without ``serve`` has nothing to wait for."""
    for name, backend in campaign.backends.items():
        if backend.serve is not None and backend.ready is None:
            out.error(
                ("backends", name, "serve"),
                "a serving backend needs ready: a command exec'd until it exits 0 once the "
                "server answers (e.g. ready: [curl, -sf, http://localhost:8000/health])",
            )
        if backend.ready is not None and backend.serve is None:
            out.error(
                ("backends", name, "ready"),
                "ready waits for a server: add serve (the server argv), or remove ready",
            )


def _check_item(
    name: str,
    part: str,
    index: int,
    item: str,
    everywhere: frozenset[str],
    backend_shapes: dict[frozenset[str], PathKey],
    out: _Collector,
) -> None:
    """One argv item's placeholders: a built-in or a param of every configuration."""
    for placeholder in placeholder_names(item):
        path = ("backends", name, part, index)
        if part != "command" and placeholder in PER_EXPERIMENT:
            out.error(
                path,
                f"{{{placeholder}}} changes with every experiment, so a server would start for "
                f"each: use it in command (the client), not in {part}",
            )
            continue
        if placeholder in BUILTINS or placeholder in everywhere:
            continue
        lacking = [o for keys, o in backend_shapes.items() if placeholder not in keys]
        if len(lacking) < len(backend_shapes):
            out.error(
                path,
                f"placeholder {{{placeholder}}} is missing from some configurations of "
                f"'{name}' (e.g. {dotted(lacking[0])}); "
                f"add it there or write {{{{{placeholder}}}}}",
            )
        else:
            params = ", ".join(sorted(everywhere)) or "none"
            out.error(
                path,
                f"placeholder {{{placeholder}}} matches no param of '{name}' "
                f"(params: {params}; built-ins: {', '.join(BUILTINS)}); "
                f"write {{{{{placeholder}}}}} for a literal",
            )


def _check_metric_params(campaign: Campaign, expansion: Expansion, out: _Collector) -> None:
    """A metric computed from params needs each one, as a number, in every configuration of its
    backend: otherwise the metric would be null in some records for a reason the campaign
    already shows, and validate should say so before a run spends hours."""
    for name, backend in campaign.backends.items():
        configs = [c for c in expansion.configs if c.backend == name]
        if not configs:
            continue
        for metric, source in backend.metrics.mapped().items():
            if not isinstance(source, MetricFormula):
                continue
            for index, param in enumerate(source.params):
                path = ("backends", name, "metrics", metric, "params", index)
                lacking = [c for c in configs if param not in c.params]
                if len(lacking) == len(configs):
                    known = sorted({k for c in configs for k in c.params})
                    listing = ", ".join(known) or "none"
                    hint = did_you_mean(param, known)
                    out.error(
                        path, f"'{param}' is not a param of '{name}' (params: {listing}){hint}"
                    )
                elif lacking:
                    out.error(
                        path,
                        f"'{param}' is missing from some configurations of '{name}' "
                        f"(e.g. {dotted(lacking[0].origin)})",
                    )
                elif not all(_is_number(c.params[param]) for c in configs):
                    out.error(path, f"'{param}' has non-numeric values: a metric needs numbers")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_prune_axes(campaign: Campaign, expansion: Expansion, out: _Collector) -> None:
    """``prune_on_oom`` axes must exist and be numeric, or pruning would silently do nothing."""
    axes = campaign.execution.prune_on_oom
    if not axes:
        return
    for index, axis in enumerate(axes):
        values = [c.params[axis] for c in expansion.configs if axis in c.params]
        path = ("execution", "prune_on_oom", index)
        if not values:
            out.error(path, f"'{axis}' is not a param of any configuration")
        elif not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            out.error(path, f"'{axis}' has non-numeric values: pruning needs numbers")
