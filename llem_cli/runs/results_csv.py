"""``results.csv``: one row per experiment, its latest record, rewritten atomically.

The record's fields come first, in their documented order (``params``, ``metrics``,
``gpu_uuids`` and the other dicts and lists as JSON text; ``lane`` a number, empty without
lanes); then llem's normalized metrics as columns of their own (``metrics.output_tokens``, ...)
and ``energy_per_output_token_j``, because a JSON cell is what a spreadsheet or
``pandas.read_csv`` cannot compare across engines without unpacking it first.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from llem_cli.atomic import atomic_write_text
from llem_cli.campaign.names import METRIC_NAMES
from llem_cli.runs.record import RECORD_FIELDS, Record, energy_per, energy_per_name

#: the columns after the record's fields: each normalized metric, then energy per output token
METRIC_COLUMNS: tuple[str, ...] = tuple(f"metrics.{name}" for name in METRIC_NAMES)
ENERGY_PER_OUTPUT_TOKEN = energy_per_name("output_tokens")
CSV_COLUMNS: tuple[str, ...] = (*RECORD_FIELDS, *METRIC_COLUMNS, ENERGY_PER_OUTPUT_TOKEN)


def _number(value: Any) -> float | int | None:
    """``value`` if it is a finite number (not a boolean), else None: an empty cell."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def csv_text(records: Iterable[Record]) -> str:
    """Records as CSV (:data:`CSV_COLUMNS`): dicts and lists as JSON, null empty."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for record in records:
        row = []
        for name in RECORD_FIELDS:
            value = getattr(record, name)
            if isinstance(value, dict | list):  # params, metrics, gpu_uuids...: JSON text
                value = json.dumps(value, sort_keys=True)
            row.append("" if value is None else value)
        metrics = record.metrics or {}
        for name in METRIC_NAMES:
            value = _number(metrics.get(name))
            row.append("" if value is None else value)
        per_token = energy_per(record, "output_tokens")
        row.append("" if per_token is None else per_token)
        writer.writerow(row)
    return buffer.getvalue()


def write_results_csv(path: Path, records: Iterable[Record]) -> None:
    """Write ``results.csv`` atomically (a reader never sees half a file)."""
    atomic_write_text(path, csv_text(records))
