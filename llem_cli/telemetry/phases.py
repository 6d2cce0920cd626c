"""Energy of a client's phases: the ``llem_phases`` of its ``result.json`` against the window.

A client that knows its phases (load, warm-up, the measured requests...) writes them into its
``result.json``::

    "llem_phases": {
        "load":     [1767225600.10, 1767225642.35],
        "generate": {"start": 1767225642.40, "end": 1767225701.90, "output_tokens": 65536}
    }

Each phase is ``[start, end]`` or ``{"start": s, "end": e}``, Unix seconds on the wall clock
(containers share the host's); the object form may add ``output_tokens`` (llem's extension): the
tokens generated in that phase, for its energy per token. Other keys of the object are ignored.

llem measures each phase from the window's energy time series
(:class:`~llem_cli.telemetry.series.EnergySeries`): per GPU, the cumulative energy interpolated
linearly at the phase's start and end, by the method the window chose for that GPU (counter or
sampled power); the phase's energy is the sum over the window's GPUs. The record gets::

    "phases": {"load": {"energy_j": ..., "duration_s": ..., "avg_power_w": ...},
               "generate": {..., "output_tokens": 65536, "energy_per_output_token_j": ...}}

A phase that cannot be measured is ``null`` with the reason in ``measurement.reasons`` under
``phases.<name>``: malformed (not a pair or an object, a start or end that is not a finite
number, an end before its start, a zero length), outside the window or partly outside it,
covering fewer than two samples of a GPU, or a window without energy. ``llem_phases`` that is not
an object makes ``phases`` null, the reason under ``phases``. A malformed ``output_tokens`` leaves
the phase's energy and nulls the token figures (reason under ``phases.<name>.output_tokens``).

Everything here is pure: no NVML, no clock, no file.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llem_cli.telemetry.series import Points, select_curves

if TYPE_CHECKING:
    from llem_cli.telemetry.measurement import Measurement

PHASES_KEY = "llem_phases"
"""The key of ``result.json`` that names the client's phases."""

MIN_PHASE_SAMPLES = 2
"""Samples of every GPU a phase must cover (its ends included) to be measured."""

Phases = dict[str, dict[str, Any] | None]
"""A record's ``phases``: per phase name its figures, or None."""


@dataclass(frozen=True)
class PhaseSpec:
    """One phase as the client wrote it: Unix seconds, and its output tokens if given.

    ``has_tokens`` says whether the client gave ``output_tokens`` at all; ``tokens`` is their
    number, None with ``tokens_why`` when what it gave is no count.
    """

    start: float
    end: float
    has_tokens: bool = False
    tokens: float | None = None
    tokens_why: str | None = None


def parse_phases(raw: Any) -> tuple[dict[str, PhaseSpec | str] | None, str | None]:
    """``llem_phases`` as phases by name (a :class:`PhaseSpec`, or the reason it is malformed).

    Returns ``(None, why)`` when ``raw`` is not a JSON object.
    """
    if not isinstance(raw, dict):
        return None, f"{PHASES_KEY} is {_kind(raw)}, not an object of phases"
    return {str(name): _parse_one(value) for name, value in raw.items()}, None


def _parse_one(value: Any) -> PhaseSpec | str:
    tokens: Any = None
    has_tokens = False
    if isinstance(value, list | tuple):
        if len(value) != 2:
            return f"is a list of {len(value)} values, not [start, end]"
        raw_start, raw_end = value
    elif isinstance(value, dict):
        if "start" not in value or "end" not in value:
            absent = [k for k in ("start", "end") if k not in value]
            return f"has no {' or '.join(absent)} (an object needs start and end)"
        raw_start, raw_end = value["start"], value["end"]
        has_tokens = "output_tokens" in value
        tokens = value.get("output_tokens")
    else:
        return f"is {_kind(value)}, not [start, end] or {{start, end}}"
    start, end = _seconds(raw_start), _seconds(raw_end)
    if start is None:
        return f"start is {_kind(raw_start)}, not a number of seconds"
    if end is None:
        return f"end is {_kind(raw_end)}, not a number of seconds"
    if end < start:
        return f"ends before it starts ({_ts(end)} < {_ts(start)})"
    if end == start:
        return f"has zero length (starts and ends at {_ts(start)})"
    count, why = None, None
    if has_tokens:
        count = _seconds(tokens)
        if count is None or count < 0:
            count, why = None, f"output_tokens is {_kind(tokens)}, not a count"
    return PhaseSpec(start, end, has_tokens, count, why)


def measure_phases(
    raw: Any,
    curves: Mapping[int, Points] | None,
    window: tuple[float, float] | None,
    *,
    unavailable: str | None = None,
) -> tuple[Phases | None, dict[str, str]]:
    """The record's ``phases`` and the reasons for its nulls (keys ``phases``, ``phases.<name>``).

    ``raw`` is ``result.json``'s ``llem_phases``; ``curves`` each GPU's ``(wall times,
    cumulative joules)`` by the window's method; ``window`` its ``(start, end)`` in Unix
    seconds. Without curves every phase is null with ``unavailable`` as its reason.
    """
    specs, why = parse_phases(raw)
    if specs is None:
        return None, {"phases": why or "malformed"}
    phases: Phases = {}
    reasons: dict[str, str] = {}
    for name, spec in specs.items():
        key = f"phases.{name}"
        if isinstance(spec, str):
            phases[name], reasons[key] = None, f"phase {name!r} {spec}"
            continue
        if curves is None or window is None:
            phases[name] = None
            reasons[key] = unavailable or "the window measured no energy"
            continue
        figures, why = phase_energy(spec, curves, window)
        phases[name] = figures
        if figures is None:
            reasons[key] = f"phase {name!r} {why}"
            continue
        if spec.tokens_why:
            reasons[f"{key}.output_tokens"] = spec.tokens_why
        elif spec.has_tokens and figures.get("energy_per_output_token_j") is None:
            reasons[f"{key}.energy_per_output_token_j"] = "0 output tokens"
    return phases, reasons


def phase_energy(
    spec: PhaseSpec, curves: Mapping[int, Points], window: tuple[float, float]
) -> tuple[dict[str, Any] | None, str]:
    """One phase's figures, or None and why (a sentence that follows the phase's name)."""
    w_start, w_end = window
    span = f"[{_ts(spec.start)}, {_ts(spec.end)}]"
    inside = f"the window [{_ts(w_start)}, {_ts(w_end)}]"
    if spec.end <= w_start or spec.start >= w_end:
        return None, f"{span} is outside {inside}"
    if spec.start < w_start or spec.end > w_end:
        return None, f"{span} is partly outside {inside}"
    if not curves:
        return None, "has no GPU to measure"
    energy = 0.0
    for index in sorted(curves):
        times, joules = curves[index]
        if not times or times[0] > spec.start or times[-1] < spec.end:
            covered = f"[{_ts(times[0])}, {_ts(times[-1])}]" if times else "nothing"
            return None, f"{span}: the readings of GPU {index} cover {covered} only"
        covered_n = bisect_right(times, spec.end) - bisect_left(times, spec.start)
        if covered_n < MIN_PHASE_SAMPLES:
            return None, (
                f"{span} covers {covered_n} sample(s) of GPU {index}; "
                f"at least {MIN_PHASE_SAMPLES} are needed"
            )
        energy += _at(times, joules, spec.end) - _at(times, joules, spec.start)
    duration = spec.end - spec.start
    figures: dict[str, Any] = {
        "energy_j": round(energy, 6),
        "duration_s": round(duration, 6),
        "avg_power_w": round(energy / duration, 6),
    }
    if spec.has_tokens:
        tokens = spec.tokens
        figures["output_tokens"] = _count(tokens)
        figures["energy_per_output_token_j"] = round(energy / tokens, 9) if tokens else None
    return figures, ""


def _at(times: Sequence[float], joules: Sequence[float], t: float) -> float:
    """Cumulative joules at ``t`` (within the curve), linear between the points around it."""
    i = bisect_left(times, t)
    if i < len(times) and times[i] == t:
        return joules[i]
    t0, t1 = times[i - 1], times[i]
    j0, j1 = joules[i - 1], joules[i]
    return j0 + (j1 - j0) * (t - t0) / (t1 - t0)


@dataclass(frozen=True)
class PhaseSource:
    """What a record's phases are measured from: a window's measurement, or why there is none.

    :func:`~llem_cli.runner.measuring.record_fields` makes one per experiment and the record's
    builder applies it to the experiment's ``llem_phases``; it is never serialized.
    """

    measurement: Measurement | None = None
    unavailable: str | None = None

    def measure(self, raw: Any) -> tuple[Phases | None, dict[str, str], str | None]:
        """The record's ``phases``, their reasons and how they were computed (None: not)."""
        curves, window, why = self._curves()
        phases, reasons = measure_phases(raw, curves, window, unavailable=why)
        note = None
        if curves is not None and any(v is not None for v in (phases or {}).values()):
            note = _note(self.measurement, curves)
        return phases, reasons, note

    def _curves(
        self,
    ) -> tuple[dict[int, Points] | None, tuple[float, float] | None, str | None]:
        """Each GPU's curve by its window's method and the window's span, or why not."""
        m = self.measurement
        if self.unavailable is not None or m is None:
            return None, None, self.unavailable or "no host measurement"
        if m.energy_j is None:
            return None, None, m.reasons.get("energy_j") or "the window measured no energy"
        methods = {i: (g.method if (g := m.per_gpu.get(i)) else None) for i in m.gpu_indices}
        curves, why = select_curves(m.series, methods)
        return curves, (m.started_at, m.ended_at), why


def _note(m: Measurement | None, curves: Mapping[int, Points]) -> str:
    """How phases were computed, for ``measurement.computed["phases"]``."""
    method = m.method if m is not None else None
    spacing = max(
        ((t[-1] - t[0]) / (len(t) - 1) for t, _ in curves.values() if len(t) > 1), default=0.0
    )
    return (
        f"cumulative energy of each GPU by its method ({method}), interpolated linearly at each "
        f"phase's start and end; a sample every {spacing:.3f} s on average"
    )


def _seconds(value: Any) -> float | None:
    """``value`` as a finite float, or None (a bool is no number)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _count(value: float | None) -> int | float | None:
    """A token count as the client meant it: an int when it is whole."""
    if value is None:
        return None
    return int(value) if value.is_integer() else value


def _ts(seconds: float) -> str:
    return f"{seconds:.3f}"


def _kind(value: Any) -> str:
    """What a JSON value is, for a reason: ``a string ('soon')``, ``null``, ``true``..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        shown = value if len(value) <= 20 else value[:17] + "..."
        return f"a string ({shown!r})"
    if isinstance(value, int | float):  # not finite, negative, or too large
        shown = repr(value)
        return shown if len(shown) <= 20 else shown[:17] + "..."
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
