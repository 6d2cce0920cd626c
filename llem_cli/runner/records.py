"""Turning an exec outcome into the record of DESIGN.md, and the run's ``results.csv``."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from llem_cli.docker.outcome import ExecOutcome
from llem_cli.plan import Experiment
from llem_cli.run.journal import RECORD_FIELDS, Record
from llem_cli.run.rundir import atomic_write_text

RESULT_FILE = "result.json"


def iso(moment: datetime) -> str:
    """UTC ISO 8601 with milliseconds, the journal's time format."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def set_aside_stale_result(experiment_dir: Path) -> Path | None:
    """Rename a ``result.json`` left by an earlier attempt to ``result.attempt-N.json``.

    A retried or resumed experiment must not have the old attempt's report merged
    into its record (nor appended to, as SGLang's --result-filename does), and
    the old report must not be lost either.
    """
    stale = experiment_dir / RESULT_FILE
    if not stale.exists():
        return None
    number = 1
    while (experiment_dir / f"result.attempt-{number}.json").exists():
        number += 1
    target = experiment_dir / f"result.attempt-{number}.json"
    stale.rename(target)
    return target


def read_metrics(experiment_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The experiment's own ``result.json`` (a JSON object), or None and why not."""
    path = experiment_dir / RESULT_FILE
    if not path.exists():
        return None, None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return None, f"result.json unreadable: {exc}"
    if not isinstance(data, dict):
        return None, "result.json is not a JSON object"
    return data, None


def record_from_outcome(
    experiment: Experiment,
    outcome: ExecOutcome,
    *,
    attempts: int,
    restarts_before: int,
    experiment_dir: Path,
    status: str | None = None,
    measured: dict[str, Any] | None = None,
) -> Record:
    """The final record of one experiment (energy fields stay None until measured)."""
    metrics, metrics_error = read_metrics(experiment_dir)
    status = status or outcome.status
    error = None
    if status != "ok":
        error = outcome.detail or status
    if metrics_error:
        error = f"{error}; {metrics_error}" if error else metrics_error
    return Record(
        key=experiment.key,
        config_id=experiment.config.config_id,
        cycle=experiment.cycle,
        backend=experiment.config.backend,
        service=experiment.service,
        params=experiment.config.params,
        status=status,
        attempts=attempts,
        exit_code=outcome.exit_code,
        started_at=iso(outcome.started_at),
        ended_at=iso(outcome.ended_at),
        duration_s=round(outcome.duration_s, 6),
        restarts_before=restarts_before,
        metrics=metrics,
        error=error,
        **(measured or {}),
    )


def record_not_run(experiment: Experiment, status: str, why: str, restarts_before: int) -> Record:
    """A record for an experiment settled without running (pruned, skipped)."""
    return Record.not_run(
        key=experiment.key,
        config_id=experiment.config.config_id,
        cycle=experiment.cycle,
        backend=experiment.config.backend,
        service=experiment.service,
        params=experiment.config.params,
        status=status,
        error=why,
        restarts_before=restarts_before,
    )


def csv_text(records: Iterable[Record]) -> str:
    """Records as CSV: DESIGN.md's fields, params and metrics as JSON, null as empty."""
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
