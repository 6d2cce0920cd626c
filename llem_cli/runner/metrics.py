"""llem's normalized metrics, read out of an experiment's ``result.json`` (docs/design.md §3.4).

Engines name one quantity differently (``output_throughput``,
``performance.system_output_throughput_tok_s``, ...); a backend's ``metrics`` maps llem's
names to where its engine puts them, and this module follows that map for one report. Pure
functions over plain data: the record builder (:mod:`llem_cli.runner.records`) reads the file
and writes what they return into the record.

A value that cannot be had is ``None`` with the reason beside it, never 0, as for energy: a
path the report lacks, a value that is no number, a division by zero.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from llem_cli.campaign.model import MetricFormula

Number = int | float

TOO_LARGE = "the computed value is too large for a number"


def parse_report(text: str) -> tuple[dict[str, Any] | None, str | None]:
    """The report in a ``result.json``'s text: one JSON object, or the last JSON-lines object.

    SGLang's ``--result-filename`` appends one line per benchmark run, and other tools write
    a line per step: when the whole text is not one JSON value, the last line that is a JSON
    object is the report (blank lines and lines that are not objects are passed over).
    """
    try:
        whole = json.loads(text)
    except ValueError as exc:
        first_error = exc
    else:
        if isinstance(whole, dict):
            return whole, None
        return None, "result.json is not a JSON object"
    for line in reversed(text.splitlines()):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict):
            return item, None
    return None, f"result.json unreadable: {first_error}"


def lookup(report: Any, path: str) -> tuple[Any, str | None]:
    """The value at a dotted ``path`` in ``report``, or None and why it is not there.

    A part that is a whole number indexes a list (``results.0.tokens``); in a mapping every
    part is a key, so a key ``"0"`` is found too.
    """
    node = report
    walked: list[str] = []
    for part in path.split("."):
        where = ".".join(walked) or "the top level"
        if isinstance(node, dict):
            if part not in node:
                return None, f"{path} is not in result.json ({where} has no key '{part}')"
            node = node[part]
        elif isinstance(node, list):
            if not (part.isascii() and part.isdigit()):
                return None, f"{path} is not in result.json ({where} is a list: index it by number)"
            index = int(part)
            if index >= len(node):
                return None, (
                    f"{path} is not in result.json ({where} has {len(node)} item(s), "
                    f"no index {index})"
                )
            node = node[index]
        else:
            return None, f"{path} is not in result.json ({where} is {_kind(node)}, not a mapping)"
        walked.append(part)
    return node, None


def as_number(value: Any, what: str) -> tuple[Number | None, str | None]:
    """``value`` when it is a finite number (a boolean is not), else None and why."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None, f"{what} is {_kind(value)}, not a number"
    if isinstance(value, float) and not math.isfinite(value):
        return None, f"{what} is {value}, not a finite number"
    return value, None


def _kind(value: Any) -> str:
    """A value's JSON type in words, with a short quote of text."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        shown = value if len(value) <= 20 else value[:17] + "..."
        return f"text ({json.dumps(shown)})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


@dataclass
class Normalized:
    """What one report gives for a backend's mapped names.

    ``values`` holds every mapped name (None where it could not be had); ``reasons`` says why
    for each None; ``computed`` says how each value made by a formula was made.
    """

    values: dict[str, Number | None] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    computed: dict[str, str] = field(default_factory=dict)


def normalize(
    report: Mapping[str, Any] | None,
    mapping: Mapping[str, str | MetricFormula],
    params: Mapping[str, Any],
    *,
    no_report: str = "no result.json",
) -> Normalized:
    """Each mapped name's value from ``report`` (and ``params`` for a formula).

    Without a report every mapped name is None with ``no_report`` as its reason, a formula
    of params alone included: the params say what the workload was meant to be, only the
    engine's report says that it ran.
    """
    out = Normalized()
    for name, source in mapping.items():
        value: Number | None
        why: str | None
        if report is None:
            value, why = None, no_report
        elif isinstance(source, MetricFormula):
            value, why = evaluate(source, report, params)
            if why is None:
                out.computed[name] = describe(source)
        else:
            found, why = lookup(report, source)
            value = None
            if why is None:
                value, why = as_number(found, f"result.json's {source}")
        out.values[name] = value
        if why is not None:
            out.reasons[name] = why
    return out


def evaluate(
    formula: MetricFormula, report: Mapping[str, Any], params: Mapping[str, Any]
) -> tuple[Number | None, str | None]:
    """The formula's value: the product of its paths and params, divided by ``divide_by``."""
    product: Number = 1
    for path in formula.multiply:
        value, why = _path_number(report, path)
        if value is None:
            return None, why
        product *= value
    for name in formula.params:
        if name not in params:
            return None, f"param {name} is not set in this configuration"
        value, why = as_number(params[name], f"param {name}")
        if value is None:
            return None, why
        product *= value
    if formula.divide_by is None:
        return _finite(product)
    divisor, why = _path_number(report, formula.divide_by)
    if divisor is None:
        return None, why
    if divisor == 0:
        return None, f"result.json's {formula.divide_by} is 0: cannot divide by it"
    try:
        quotient = product / divisor
    except OverflowError:  # an int too large for a float
        return None, TOO_LARGE
    return _finite(quotient)


def _path_number(report: Mapping[str, Any], path: str) -> tuple[Number | None, str | None]:
    found, why = lookup(report, path)
    if why is not None:
        return None, why
    return as_number(found, f"result.json's {path}")


def _finite(value: Number) -> tuple[Number | None, str | None]:
    """A product of large ints may not fit a float: such a value is no measurement."""
    try:
        as_float = float(value)
    except OverflowError:
        return None, TOO_LARGE
    if not math.isfinite(as_float):
        return None, "the computed value is not a finite number"
    return value, None


def describe(formula: MetricFormula) -> str:
    """How a formula makes its value, in words a record keeps: ``num_prompts * output_len
    (params) / elapsed_time (result.json)``."""
    factors = []
    if formula.multiply:
        factors.append(" * ".join(formula.multiply) + " (result.json)")
    if formula.params:
        factors.append(" * ".join(formula.params) + " (params)")
    text = " * ".join(factors)
    if formula.divide_by is not None:
        text += f" / {formula.divide_by} (result.json)"
    return text
