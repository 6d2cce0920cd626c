"""``results.csv``: one row per experiment, its latest record, rewritten atomically."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from pathlib import Path

from llem_cli.atomic import atomic_write_text
from llem_cli.runs.record import RECORD_FIELDS, Record


def csv_text(records: Iterable[Record]) -> str:
    """Records as CSV: the fields of docs/design.md §3.4, params and metrics as JSON, null empty."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(RECORD_FIELDS)
    for record in records:
        row = []
        for name in RECORD_FIELDS:
            value = getattr(record, name)
            if isinstance(value, dict):
                value = json.dumps(value, sort_keys=True)
            row.append("" if value is None else value)
        writer.writerow(row)
    return buffer.getvalue()


def write_results_csv(path: Path, records: Iterable[Record]) -> None:
    """Write ``results.csv`` atomically (a reader never sees half a file)."""
    atomic_write_text(path, csv_text(records))
