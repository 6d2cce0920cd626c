"""``llem results``: one record per experiment, and per-group statistics."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

from llem_cli.errors import UsageProblem
from llem_cli.output import Output
from llem_cli.results.aggregate import GroupStats, aggregate, group_axes, stats_rows, unknown_axes
from llem_cli.results.jsonout import write_json_list
from llem_cli.results.load import load_run_records
from llem_cli.results.stats import CI_MIN_N, NOTE_CONSTANT, NOTE_TOO_FEW, Summary
from llem_cli.runs.results_csv import csv_text

_ALWAYS_SHOWN = {"energy_j"}  # shown even when nothing was measured, to say so


def _fmt(value: float | None) -> str:
    if value is None:
        return "—"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def _label_value(value: Any) -> str:
    """A group's value as the campaign wrote it: ``true``, ``1``, ``1.0``, ``null``.

    A string prints bare, but quoted where bare it would read as another value
    (``"true"`` beside ``true``, ``"8"`` beside ``8``).
    """
    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError:
            return value
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def _csv_value(value: Any) -> Any:
    """A cell: numbers and strings as they are, anything else (bool, dict, list) as JSON."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    return json.dumps(value, default=str)


def show_results(
    run_dir: Path,
    *,
    fmt: str,
    group_by: list[str] | None,
    per: list[str],
    stats_only: bool,
    out: Output,
) -> int:
    """Print the run's records or statistics in the chosen format."""
    loaded = load_run_records(run_dir)
    records = loaded.records
    unknown = unknown_axes(records, group_by or [])
    if unknown:
        valid = ", ".join(group_axes(records))
        fields = "no such field" if len(unknown) == 1 else "no such fields"
        raise UsageProblem(f"--group-by {','.join(unknown)}: {fields} (valid: {valid})")
    if fmt in ("json", "csv") and not stats_only:  # the records alone: no statistics to compute
        if fmt == "json":  # streamed: 100k records never sit in memory as one text
            write_json_list((r.to_json() for r in records), sys.stdout)
        else:
            sys.stdout.write(csv_text(records))
        return 0
    groups = aggregate(records, group_by, per or loaded.energy_per)
    if fmt == "json":
        write_json_list(stats_rows(groups), sys.stdout)
        return 0
    if fmt == "csv":
        sys.stdout.write(_rows_csv(stats_rows(groups)))
        return 0
    simulated = any((r.measurement or {}).get("simulated") is True for r in records)
    _table(
        loaded.run.run_id, groups, len(records), out, per_config=not group_by, simulated=simulated
    )
    return 0


def _rows_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    names: list[str] = []
    for row in rows:
        names.extend(k for k in row if k not in names)
    writer = csv.DictWriter(buffer, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_value(v) for k, v in row.items()})
    return buffer.getvalue()


CLIPPED_MARK = "*"
#: printed under the table when a row shows ``0*``: the marker alone would read as a measured 0
CLIPPED_FOOTNOTE = (
    f"0{CLIPPED_MARK} lower bound clipped at 0: the interval reached below 0, which this "
    "quantity cannot; more cycles narrow it."
)


def _ci_cell(summary: Summary, *, per_config: bool) -> str:
    """The interval column: ``low – high (method)``, or in words why there is none.

    Below 3 values the cell says what would give one (per configuration, n counts its ok
    cycles that measured the quantity, so "cycles"; with --group-by it counts records); a
    constant prints no ``v – v``, its value is the mean beside it.
    """
    ci = summary.ci
    if ci is not None:
        low = f"0{CLIPPED_MARK}" if summary.ci_low_clipped else _fmt(ci[0])
        return f"{low} – {_fmt(ci[1])} ({summary.ci_method})"
    note = summary.ci_note
    if note == NOTE_TOO_FEW:
        return f"CI needs ≥ {CI_MIN_N} {'cycles' if per_config else 'values'}"
    if note == NOTE_CONSTANT:
        return "constant: no spread"
    return "—"  # no values (the mean says which case) or too large (the mean says so)


#: printed before the table when any record was measured on llem's stand-in NVML (make demo)
SIMULATED_BANNER = "SIMULATED GPU: energy figures from llem's stand-in NVML, not a measurement"


def _table(
    run_id: str,
    groups: list[GroupStats],
    n_records: int,
    out: Output,
    *,
    per_config: bool,
    simulated: bool = False,
) -> None:
    from rich.table import Table

    table = Table(title=f"run {run_id}: {n_records} records, mean and 95 % CI over ok experiments")
    labels = ["\n".join(f"{k}={_label_value(v)}" for k, v in g.label.items()) for g in groups]
    widest = max((len(line) for label in labels for line in label.splitlines()), default=5)
    table.add_column("group", min_width=min(widest, 30), overflow="fold")
    table.add_column("quantity", no_wrap=True)
    table.add_column("n", justify="right")
    table.add_column("mean", justify="right", no_wrap=True)
    table.add_column("95 % CI (method)")
    clipped = False
    for group, label in zip(groups, labels, strict=True):
        statuses = ", ".join(f"{n} {s}" for s, n in sorted(group.statuses.items()))
        first = True
        for name, summary in group.quantities.items():
            if summary.n == 0 and name not in _ALWAYS_SHOWN:
                continue
            if summary.n == 0:  # stats use only ok records: say which case this is
                mean = "not measured" if group.statuses.get("ok") else "no ok experiment"
            elif summary.mean is None:  # values were there, but their sum overflows a float
                mean = "too large"
            else:
                mean = _fmt(summary.mean)
            clipped = clipped or summary.ci_low_clipped
            table.add_row(
                f"{label}\n({statuses})" if first else "",
                name,
                str(summary.n),
                mean,
                _ci_cell(summary, per_config=per_config),
                end_section=False,
            )
            first = False
        table.add_section()
    console = out.console()
    if simulated:
        console.print(
            SIMULATED_BANNER, style="bold yellow", markup=False, highlight=False, soft_wrap=True
        )
    console.print(table)
    if clipped:
        console.print(CLIPPED_FOOTNOTE)
