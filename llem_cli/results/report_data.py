"""What ``llem report`` draws and tabulates, as plain data (no matplotlib, no HTML).

Per configuration of each run (its ``ok`` records, grouped by ``config_id``): the energy
axis (energy per output token, ``energy_j / metrics.output_tokens`` per record; or energy per
experiment where no record reports a token count) and the throughput axis
(``metrics.output_tokens_per_s``, else ``output_tokens / duration_s`` per record; or
experiments per second, ``1 / duration_s``, where no record gives tokens), each as a mean with
the 95 % interval of :mod:`llem_cli.results.stats` (none below n = 3, clipped at 0: neither
quantity can be negative). The axes are chosen once for the whole report, so every point is in
the same units; an axis that falls back says so in :attr:`Axis.note`, and a configuration
that has no value for an axis is left out of the scatter with the reason
(:attr:`ReportData.left_out`).

The Pareto front (:func:`pareto_front`) is the set of configurations no other beats on both
axes at once: lower energy per token and higher throughput. Besides, per run, what the
measurement was (:class:`RunFacts`): methods, GPUs the journal's telemetry events name, the
idle baseline, the thermal gate, flags and the reasons for nulls.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from llem_cli.results.stats import Summary, summarize
from llem_cli.runs.record import Record, finite_number

#: the count metrics energy is divided by, the first any ok record reports (as ``llem results``)
TOKEN_METRICS = ("output_tokens", "tokens")
#: the reported rate that is the throughput axis when a record has it
RATE_METRIC = "output_tokens_per_s"


@dataclass(frozen=True)
class Axis:
    """What one axis shows, for every point of the report.

    ``name`` is the quantity (``energy_per_output_token_j``, ``energy_j``,
    ``output_tokens_per_s``, ``experiments_per_s``), ``label`` its axis title with the
    unit, ``note`` why it falls back (None: it shows what was asked for).
    """

    name: str
    label: str
    note: str | None = None


@dataclass
class ConfigPoint:
    """One configuration of one run: its two axes, its energy per experiment and its facts.

    ``energy`` and ``throughput`` follow the report's axes (:class:`ReportData`);
    ``energy_j`` is energy per experiment whatever the axis. ``why_missing`` says, per axis,
    why a configuration has no value there (and so no point in the scatter).
    """

    run_id: str
    config_id: str
    backend: str
    params: dict[str, Any]
    statuses: dict[str, int]
    energy: Summary
    throughput: Summary
    energy_j: Summary
    power_limit_w: float | None = None
    gpu: str | None = None
    flags: dict[str, int] = field(default_factory=dict)
    throughput_derived: int = 0
    why_missing: dict[str, str] = field(default_factory=dict)
    simulated: bool = False

    @property
    def point_id(self) -> str:
        """A name for the point, unique in the report: ``<run_id>/<config_id>``."""
        return f"{self.run_id}/{self.config_id}"

    @property
    def n_ok(self) -> int:
        """How many of its experiments finished ``ok``."""
        return self.statuses.get("ok", 0)

    @property
    def plotted(self) -> bool:
        """Whether both axes have a mean, so the scatter has a point for it."""
        return self.energy.mean is not None and self.throughput.mean is not None

    def label(self, *, with_run: bool = False) -> str:
        """``backend k=v ...`` (params sorted, the backend axis left out), ``run_id:`` first
        when the report holds several runs."""
        params = " ".join(
            f"{k}={_short(v)}" for k, v in sorted(self.params.items()) if k != "backend"
        )
        text = f"{self.backend} {params}".strip()
        return f"{self.run_id}: {text}" if with_run else text


def svg_id(*parts: str) -> str:
    """An SVG/HTML id from ``parts``: characters outside ``[A-Za-z0-9_.-]`` become ``_``."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", "-".join(parts))


def _short(value: Any) -> str:
    text = str(value)
    return text.rsplit("/", 1)[-1] if "/" in text else text  # a model id: its name


@dataclass
class RunFacts:
    """How one run measured (the report's measurement section).

    ``methods`` counts ``measurement.method`` over ok records (``none`` where energy is null);
    ``gpus`` are what its ``telemetry`` events say about the host GPUs (notes, names, driver);
    ``idle_baseline_w`` the idle power per GPU index from the baseline event (None: none
    measured); ``thermal`` the gate's waits; ``flags`` counts every record's flags;
    ``null_reasons`` counts ``(field, reason)`` pairs of ``measurement.reasons``.
    """

    run_id: str
    campaign: str | None
    records: int
    statuses: dict[str, int]
    methods: dict[str, int] = field(default_factory=dict)
    gpus: list[str] = field(default_factory=list)
    idle_baseline_w: dict[str, float] | None = None
    idle_note: str | None = None
    thermal_waits: int = 0
    thermal_waited_s: float = 0.0
    thermal_timeouts: int = 0
    flags: dict[str, int] = field(default_factory=dict)
    null_reasons: dict[tuple[str, str], int] = field(default_factory=dict)
    simulated: int = 0


@dataclass
class ReportData:
    """Everything a report shows, runs in the order given."""

    runs: list[RunFacts]
    points: list[ConfigPoint]
    energy_axis: Axis
    throughput_axis: Axis
    front: list[ConfigPoint]
    left_out: list[tuple[ConfigPoint, str]]

    @property
    def simulated(self) -> bool:
        """Whether any record says its GPU was simulated (``measurement.simulated``)."""
        return any(run.simulated for run in self.runs)

    @property
    def has_ok(self) -> bool:
        """Whether any experiment of any run finished ``ok``."""
        return any(run.statuses.get("ok") for run in self.runs)

    @property
    def plotted(self) -> list[ConfigPoint]:
        """The configurations with a point in the scatter, in report order."""
        return [p for p in self.points if p.plotted]


# ---- the Pareto front ----


def pareto_front(points: Sequence[tuple[float | None, float | None]]) -> list[int]:
    """Indexes (ascending) of the points on the Pareto front of ``(energy, throughput)``.

    Minimise energy, maximise throughput: point ``a`` dominates ``b`` when it is no worse
    on both axes and better on one. The front is every point no other dominates, so equal
    points are on it together (neither is better). A point with a None or non-finite
    coordinate is skipped: it is on no front and dominates nothing.
    """
    valid: list[tuple[int, float, float]] = []
    for i, (e, t) in enumerate(points):
        energy, throughput = _finite(e), _finite(t)
        if energy is not None and throughput is not None:
            valid.append((i, energy, throughput))
    # sweep by energy ascending, throughput descending: a point is on the front iff its
    # throughput beats every point of strictly lower energy, and no point of equal energy
    # has a higher throughput (the first of its energy, or tied with it)
    valid.sort(key=lambda p: (p[1], -p[2]))
    front: list[int] = []
    best = -math.inf  # the highest throughput at a strictly lower energy
    k = 0
    while k < len(valid):
        energy = valid[k][1]
        j = k
        while j < len(valid) and valid[j][1] == energy:
            j += 1
        top = valid[k][2]  # the highest throughput at this energy
        if top > best:
            front.extend(i for i, _, t in valid[k:j] if t == top)
        best = max(best, top)
        k = j
    return sorted(front)


def _finite(value: float | None) -> float | None:
    return finite_number(value)


# ---- per-record values ----


def _metric(record: Record, name: str) -> float | None:
    return finite_number((record.metrics or {}).get(name))


def token_metric(records: Iterable[Record]) -> str | None:
    """The count metric of the energy axis: the first of :data:`TOKEN_METRICS` an ok
    record reports (a positive number), None when none does."""
    reported = {
        name
        for r in records
        if r.status == "ok"
        for name in TOKEN_METRICS
        if (_metric(r, name) or 0) > 0
    }
    return next((name for name in TOKEN_METRICS if name in reported), None)


def energy_per_count(record: Record, metric: str) -> float | None:
    """``energy_j / metrics[metric]``; None where either is missing or the count is 0."""
    energy, count = finite_number(record.energy_j), _metric(record, metric)
    if energy is None or not count:
        return None
    return finite_number(energy / count)


def record_throughput(record: Record, metric: str | None) -> tuple[float | None, bool]:
    """Output tokens per second of ``record`` and whether it was derived.

    ``metrics.output_tokens_per_s`` as reported; else ``metrics[metric] / duration_s``
    (derived: True); None where neither is there.
    """
    rate = _metric(record, RATE_METRIC)
    if rate is not None:
        return rate, False
    count = _metric(record, metric) if metric else None
    duration = finite_number(record.duration_s)
    if count is None or not duration or duration <= 0:
        return None, False
    return finite_number(count / duration), True


def experiments_per_s(record: Record) -> float | None:
    """``1 / duration_s`` (None without a positive duration)."""
    duration = finite_number(record.duration_s)
    return finite_number(1.0 / duration) if duration and duration > 0 else None


def power_limit(record: Record) -> float | None:
    """The power limit the record ran under: ``gpu_settings.power_limit_w`` as applied, else
    the ``power_limit_w`` param (None: no such axis)."""
    settings = getattr(record, "gpu_settings", None)
    if isinstance(settings, dict):
        value = finite_number(settings.get("power_limit_w"))
        if value is not None:
            return value
    return finite_number(record.params.get("power_limit_w"))


def record_gpu(record: Record) -> str | None:
    """The GPUs a lane pinned the record to (``gpu_uuids`` joined; None: not pinned)."""
    return ",".join(record.gpu_uuids) if record.gpu_uuids else None


def is_simulated(record: Record) -> bool:
    """Whether the record says its GPU was simulated (``measurement.simulated: true``)."""
    return bool((record.measurement or {}).get("simulated") is True)


# ---- building the report ----


@dataclass
class RunInput:
    """One run as the report reads it: its id, campaign name, records and journal events."""

    run_id: str
    campaign: str | None
    records: list[Record]
    telemetry: list[dict[str, Any]] = field(default_factory=list)


def _summary(values: list[float | None]) -> Summary:
    return summarize(values, nonnegative=True)


def _axes(records: Sequence[Record]) -> tuple[str | None, Axis, Axis]:
    metric = token_metric(records)
    ok = [r for r in records if r.status == "ok"]
    if metric is None:
        energy = Axis(
            "energy_j",
            "energy per experiment (J)",
            "no ok experiment reports output_tokens: energy per experiment instead of per token",
        )
    else:
        name = (
            "energy_per_output_token_j" if metric == "output_tokens" else f"energy_per_{metric}_j"
        )
        note = None if metric == "output_tokens" else f"no output_tokens: energy per {metric}"
        energy = Axis(
            name, f"energy per {'output token' if metric == 'output_tokens' else metric} (J)", note
        )
    has_rate = any(record_throughput(r, metric)[0] is not None for r in ok)
    if has_rate:
        derived = any(
            _metric(r, RATE_METRIC) is None and record_throughput(r, metric)[1] for r in ok
        )
        unit = "output tokens" if metric in (None, "output_tokens") else metric
        throughput = Axis(
            "output_tokens_per_s",
            f"throughput ({unit}/s)",
            f"{RATE_METRIC} not reported by every experiment: {metric} / duration_s where missing"
            if derived
            else None,
        )
    else:
        throughput = Axis(
            "experiments_per_s",
            "experiments per second (1 / duration_s)",
            "no ok experiment reports output_tokens_per_s or a token count: "
            "experiments per second (1 / duration_s) instead",
        )
    return metric, energy, throughput


def _point(
    run: RunInput,
    members: list[Record],
    metric: str | None,
    energy_axis: Axis,
    throughput_axis: Axis,
) -> ConfigPoint:
    first = members[0]
    ok = [r for r in members if r.status == "ok"]
    statuses = dict(Counter(r.status for r in members))
    energies = [finite_number(r.energy_j) for r in ok]
    if energy_axis.name == "energy_j":
        energy_values = energies
    else:
        energy_values = [energy_per_count(r, metric) for r in ok] if metric else []
    derived = 0
    if throughput_axis.name == "experiments_per_s":
        rates = [experiments_per_s(r) for r in ok]
    else:
        rates = []
        for r in ok:
            rate, was_derived = record_throughput(r, metric)
            rates.append(rate)
            derived += rate is not None and was_derived
    flags: Counter[str] = Counter()
    for r in members:
        flags.update(str(f) for f in (r.measurement or {}).get("flags") or [])
    point = ConfigPoint(
        run_id=run.run_id,
        config_id=first.config_id,
        backend=first.backend,
        params=dict(first.params),
        statuses=statuses,
        energy=_summary(energy_values),
        throughput=_summary(rates),
        energy_j=_summary(energies),
        power_limit_w=next((v for v in map(power_limit, members) if v is not None), None),
        gpu=next((g for g in map(record_gpu, ok or members) if g), None),
        flags=dict(sorted(flags.items())),
        throughput_derived=derived,
        simulated=any(is_simulated(r) for r in members),
    )
    if not ok:
        point.why_missing["all"] = "no ok experiment"
    else:
        if point.energy.mean is None:
            point.why_missing["energy"] = _why_no_energy(ok, metric, energy_axis)
        if point.throughput.mean is None:
            point.why_missing["throughput"] = _why_no_throughput(throughput_axis, metric)
    return point


def _why_no_energy(ok: list[Record], metric: str | None, axis: Axis) -> str:
    if all(finite_number(r.energy_j) is None for r in ok):
        reasons = {
            str((r.measurement or {}).get("reasons", {}).get("energy_j"))
            for r in ok
            if (r.measurement or {}).get("reasons", {}).get("energy_j")
        }
        return "energy not measured" + (f" ({'; '.join(sorted(reasons))})" if reasons else "")
    return f"no {metric} reported" if axis.name != "energy_j" else "energy not measured"


def _why_no_throughput(axis: Axis, metric: str | None) -> str:
    if axis.name == "experiments_per_s":
        return "no duration"
    return f"neither {RATE_METRIC} nor {metric or 'output_tokens'} with a duration"


def build_report(runs: Sequence[RunInput]) -> ReportData:
    """The report's data from runs given in order (the same ``config_id`` in two runs is
    two configurations: each point says its run)."""
    every = [r for run in runs for r in run.records]
    metric, energy_axis, throughput_axis = _axes(every)
    points: list[ConfigPoint] = []
    for run in runs:
        groups: dict[str, list[Record]] = {}
        for record in run.records:
            groups.setdefault(record.config_id, []).append(record)
        for members in groups.values():
            points.append(_point(run, members, metric, energy_axis, throughput_axis))
    plotted = [p for p in points if p.plotted]
    front_idx = pareto_front([(p.energy.mean, p.throughput.mean) for p in plotted])
    front = sorted((plotted[i] for i in front_idx), key=lambda p: p.energy.mean or 0.0)
    left_out = [
        (p, "; ".join(f"{k}: {v}" if k != "all" else v for k, v in p.why_missing.items()))
        for p in points
        if not p.plotted
    ]
    return ReportData(
        runs=[run_facts(run) for run in runs],
        points=points,
        energy_axis=energy_axis,
        throughput_axis=throughput_axis,
        front=front,
        left_out=left_out,
    )


#: keys a ``telemetry`` event may carry that name the host GPUs (model, driver, ...)
_GPU_KEYS = (
    "gpu_names",
    "gpu_name",
    "names",
    "name",
    "model",
    "driver",
    "driver_version",
    "cuda_version",
    "nvml_version",
)


def _describe_telemetry(event: dict[str, Any]) -> str | None:
    parts = [
        f"{key}: {_text(event[key])}" for key in _GPU_KEYS if event.get(key) not in (None, "", [])
    ]
    note = event.get("note")
    if isinstance(note, str) and not event.get("idle_power_w"):
        parts.insert(0, note)
    return "; ".join(parts) or None


def _text(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value))
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items())
    return str(value)


def run_facts(run: RunInput) -> RunFacts:
    """The measurement section's facts of one run."""
    facts = RunFacts(
        run_id=run.run_id,
        campaign=run.campaign,
        records=len(run.records),
        statuses=dict(Counter(r.status for r in run.records)),
    )
    methods: Counter[str] = Counter()
    flags: Counter[str] = Counter()
    reasons: Counter[tuple[str, str]] = Counter()
    for r in run.records:
        detail = r.measurement or {}
        if r.status == "ok":
            methods[str(detail.get("method") or "none")] += 1
        flags.update(str(f) for f in detail.get("flags") or [])
        for name, why in (detail.get("reasons") or {}).items():
            reasons[(str(name), str(why))] += 1
        thermal = detail.get("thermal")
        if isinstance(thermal, dict):
            facts.thermal_waits += 1
            facts.thermal_waited_s += finite_number(thermal.get("waited_s")) or 0.0
            facts.thermal_timeouts += bool(thermal.get("timed_out"))
        facts.simulated += is_simulated(r)
    facts.methods = dict(sorted(methods.items()))
    facts.flags = dict(sorted(flags.items()))
    facts.null_reasons = dict(sorted(reasons.items()))
    for event in run.telemetry:
        idle = event.get("idle_power_w")
        if isinstance(idle, dict):
            facts.idle_baseline_w = {
                str(k): v for k, v in idle.items() if finite_number(v) is not None
            }
            why = event.get("reasons")
            facts.idle_note = _text(why) if why else None
            continue
        text = _describe_telemetry(event)
        if text and text not in facts.gpus:
            facts.gpus.append(text)
    return facts


def energy_groups(points: Sequence[ConfigPoint]) -> list[tuple[str, list[ConfigPoint]]]:
    """The configurations with an energy mean, grouped for the per-configuration figure:
    by backend, then power limit and lane GPU where a record has them; groups and their
    members in report order."""
    groups: dict[str, list[ConfigPoint]] = {}
    for point in points:
        if point.energy.mean is None:
            continue
        parts = [point.backend]
        if point.power_limit_w is not None:
            parts.append(f"{point.power_limit_w:g} W")
        if point.gpu:
            parts.append(f"GPU {point.gpu}")
        groups.setdefault(" · ".join(parts), []).append(point)
    return list(groups.items())
