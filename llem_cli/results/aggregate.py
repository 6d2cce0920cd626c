"""Per-group statistics of a run: n, mean and 95 % confidence interval per quantity.

Only ``ok`` records enter the statistics (a failed experiment's energy is not a
measurement of the configuration); missing values are skipped and counted, never
read as 0. Student t intervals, bootstrap (fixed seed) where n >= 10; none below n = 3 or
for a constant, and clipped at 0 for a quantity that cannot be negative (see
:func:`nonnegative_names` and :mod:`llem_cli.results.stats`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from llem_cli.campaign.names import METRIC_NAMES
from llem_cli.results.stats import Summary, summarize
from llem_cli.runs.record import Record, energy_per, energy_per_name, finite_number

QUANTITIES = ("duration_s", "energy_j", "net_energy_j", "avg_power_w", "max_temp_c")

#: words that make a quantity's name signed: a difference or an offset can be negative even
#: where every value seen so far is positive (``net_energy_j`` is energy minus the idle
#: baseline's over the same time, below 0 when a light experiment drew less than idle did)
SIGNED_WORDS = frozenset({"net", "delta", "diff", "difference", "change", "offset", "drift"})

#: record fields ``--group-by`` accepts besides the params (a param of the same name wins,
#: except ``backend``, which is always the record's); ``gpu`` is the record's ``gpu_uuids``
#: joined with ``,`` (None without them)
RECORD_AXES = ("backend", "service", "config_id", "cycle", "lane", "gpu")
#: the axes of runs with lanes: named among the valid ``--group-by`` fields only where a record
#: has them (a run without lanes has one group for each: null), though always accepted
LANE_AXES = ("lane", "gpu")


def record_axis(record: Record, axis: str) -> Any:
    """The value of the record axis ``axis`` (one of :data:`RECORD_AXES`) for ``record``."""
    if axis == "gpu":
        return ",".join(record.gpu_uuids) if record.gpu_uuids else None
    return getattr(record, axis)


@dataclass
class GroupStats:
    """One group (a configuration, or the records sharing the ``--group-by`` axes)."""

    label: dict[str, Any]
    statuses: dict[str, int]
    quantities: dict[str, Summary] = field(default_factory=dict)


def _value_key(value: Any) -> str:
    """A value as its canonical JSON text: ``true``, ``1`` and ``1.0`` stay apart.

    Python's ``True == 1 == 1.0`` would pool them, though a grid ``[1, true, 1.0]`` makes
    three configurations (``make_config_id`` hashes the same JSON text).
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=repr)


def group_key(record: Record, axes: Sequence[str] | None) -> tuple[str, ...]:
    """The group a record belongs to: its configuration (``config_id``), or the chosen axes."""
    if not axes:
        return ("config_id", record.config_id)
    return tuple(_value_key(value) for _, value in group_label(record, axes).items())


def group_label(record: Record, axes: Sequence[str] | None) -> dict[str, Any]:
    """What a group is called: backend and params, or the chosen axes, values as written."""
    if not axes:
        return {"backend": record.backend, **dict(sorted(record.params.items()))}
    label: dict[str, Any] = {}
    for axis in axes:
        value: Any
        if axis == "backend":
            value = record.backend
        elif axis in record.params or axis not in RECORD_AXES:
            value = record.params.get(axis)
        else:
            value = record_axis(record, axis)
        label[axis] = value
    return label


def group_axes(records: Iterable[Record]) -> list[str]:
    """The names ``--group-by`` accepts for these records: record fields, then param names
    (``lane`` and ``gpu`` only where a record has them; :func:`unknown_axes` accepts them
    anyway)."""
    records = list(records)
    laned = any(r.lane is not None or r.gpu_uuids for r in records)
    names = [axis for axis in RECORD_AXES if laned or axis not in LANE_AXES]
    for record in records:
        names.extend(name for name in record.params if name not in names)
    return names


def unknown_axes(records: Sequence[Record], axes: Sequence[str]) -> list[str]:
    """The ``axes`` that name neither a record field nor a param of any record."""
    valid = {*group_axes(records), *RECORD_AXES}
    return [axis for axis in axes if axis not in valid]


#: the count metrics energy is divided by when neither ``--per`` nor ``results.per`` names one,
#: the first that any ok record reports: llem's normalized ``output_tokens`` (mapped by the
#: backend's ``metrics``), else ``tokens`` (what llem's transformers script writes itself)
DEFAULT_PER = ("output_tokens", "tokens")


def _count_metric(per: Sequence[str], records: Iterable[Record]) -> list[str]:
    """The count metrics to divide energy by: ``--per`` or ``results.per``, else the first of
    :data:`DEFAULT_PER` that an ok record reports."""
    if per:
        return list(per)
    reported: set[str] = set()
    for record in records:
        if record.status == "ok" and record.metrics:
            metrics = record.metrics
            reported.update(n for n in DEFAULT_PER if finite_number(metrics.get(n)) is not None)
    return [name for name in DEFAULT_PER if name in reported][:1]


def _metric_names(records: Iterable[Record]) -> list[str]:
    """The numeric metrics of ``records``: llem's normalized names first, in their own order,
    so every backend's table reads alike; then the engines' own keys as they first appear."""
    seen: list[str] = []
    for record in records:
        for name, value in (record.metrics or {}).items():
            if name not in seen and finite_number(value) is not None:
                seen.append(name)
    normalized = [name for name in METRIC_NAMES if name in seen]
    return normalized + [name for name in seen if name not in normalized]


def signed_name(name: str) -> bool:
    """Whether ``name`` suggests a quantity that can be negative (a word of SIGNED_WORDS).

    Words are split at anything but letters and digits, and at camelCase humps:
    ``metrics.power_delta_w`` and ``metrics.netEnergy`` are signed, ``metrics.tokens`` not.
    """
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()
    return any(word in SIGNED_WORDS for word in re.split(r"[^a-z0-9]+", spaced))


def nonnegative_names(values: Iterable[dict[str, list[float | None]]]) -> set[str]:
    """The quantities whose confidence interval is clipped at 0.

    The rule, one for every quantity (record fields, energy per count, result.json metrics):
    non-negative when no observed value in the whole run (every group, ok records) is below
    0 and :func:`signed_name` does not call it signed. Energy, power, durations, token
    counts, rates, latencies and temperatures in C pass; ``net_energy_j`` does not. The
    whole run decides, not one group, so a metric seen negative anywhere is never clipped.
    """
    seen: set[str] = set()
    negative: set[str] = set()
    for per_group in values:
        for name, xs in per_group.items():
            seen.add(name)
            if any(x is not None and x < 0 for x in xs):
                negative.add(name)
    return {name for name in seen - negative if not signed_name(name)}


def aggregate(
    records: Sequence[Record], axes: Sequence[str] | None = None, per: Sequence[str] = ()
) -> list[GroupStats]:
    """Statistics per group, groups in the order their first record appears."""
    groups: dict[tuple[str, ...], list[Record]] = {}
    for record in records:
        groups.setdefault(group_key(record, axes), []).append(record)
    per_metrics = _count_metric(per, records)
    collected: list[tuple[GroupStats, dict[str, list[float | None]]]] = []
    for members in groups.values():
        statuses: dict[str, int] = {}
        for record in members:
            statuses[record.status] = statuses.get(record.status, 0) + 1
        ok = [r for r in members if r.status == "ok"]
        values: dict[str, list[float | None]] = {}
        for name in QUANTITIES:
            values[name] = [finite_number(getattr(r, name)) for r in ok]
        for metric in per_metrics:
            values[energy_per_name(metric)] = [energy_per(r, metric) for r in ok]
        for name in _metric_names(ok):
            values[f"metrics.{name}"] = [finite_number((r.metrics or {}).get(name)) for r in ok]
        collected.append((GroupStats(group_label(members[0], axes), statuses), values))
    nonnegative = nonnegative_names(values for _, values in collected)
    for stats, values in collected:
        for name, xs in values.items():
            stats.quantities[name] = summarize(xs, nonnegative=name in nonnegative)
    return [stats for stats, _ in collected]


def stats_rows(groups: Sequence[GroupStats]) -> list[dict[str, Any]]:
    """One flat row per group and quantity, for CSV/JSON output.

    ``ci_low``/``ci_high`` are the reported interval (null below n = 3, for a constant, or
    on overflow; ``ci_low`` 0 where clipped), ``ci_note`` says why in words (null when the
    interval is plain), ``ci_low_clipped`` whether ``ci_low`` was raised to 0.
    """
    rows = []
    for group in groups:
        for name, summary in group.quantities.items():
            ci = summary.ci
            rows.append(
                {
                    **{f"group.{k}": v for k, v in group.label.items()},
                    "quantity": name,
                    "n": summary.n,
                    "missing": summary.n_missing,
                    "mean": summary.mean,
                    "std": summary.std,
                    "ci_low": ci[0] if ci else None,
                    "ci_high": ci[1] if ci else None,
                    "ci_method": summary.ci_method,
                    "ci_note": summary.ci_note,
                    "ci_low_clipped": summary.ci_low_clipped,
                    "statuses": group.statuses,
                }
            )
    return rows
