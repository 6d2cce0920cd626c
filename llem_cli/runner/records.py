"""Turning an exec outcome into the record of DESIGN.md, and the run's ``results.csv``."""

from __future__ import annotations

import csv
import errno
import io
import json
import os
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from llem_cli.atomic import atomic_write_text
from llem_cli.docker.compose import daemon_problem, daemon_unreachable
from llem_cli.docker.outcome import ExecOutcome
from llem_cli.docker.proc import redact_text
from llem_cli.errors import EnvironmentProblem
from llem_cli.runner.schedule import Experiment
from llem_cli.runs.record import RECORD_FIELDS, Record

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


#: the largest ``result.json`` merged into a record: every record is copied into the journal
#: and results.csv and read back by every status/results/resume, so a benchmark that dumps its
#: per-request samples there (tens of MB) would make each of those slow and large
MAX_RESULT_BYTES = 1 << 20


def read_metrics(experiment_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The experiment's own ``result.json`` (a JSON object), or None and why not."""
    path = experiment_dir / RESULT_FILE
    if not path.exists():
        return None, None
    try:
        size = path.stat().st_size
        if size > MAX_RESULT_BYTES:
            return None, (
                f"result.json not merged: {size} bytes > {MAX_RESULT_BYTES} "
                "(keep summary metrics there; it stays in the experiment directory)"
            )
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return None, f"result.json unreadable: {exc}"
    if not isinstance(data, dict):
        return None, "result.json is not a JSON object"
    return data, None


def check_space_for_logs(experiment_dir: Path) -> None:
    """Raise ENOSPC when the experiment's filesystem is full.

    The docker client exits non-zero when it cannot write the experiment's output to
    ``stdout.log``: on a full results filesystem a good experiment would be recorded ``failed``
    (and never run again). Its record must not be written at all: the run stops (exit 3) and
    ``--resume`` runs it again once there is space.
    """
    try:
        st = os.statvfs(experiment_dir)
    except OSError:
        return
    if st.f_blocks and st.f_bavail == 0:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(experiment_dir))


def check_daemon_after_failure(outcome: ExecOutcome) -> None:
    """Raise EnvironmentProblem when a failed exec failed because the daemon is gone.

    ``docker compose exec`` against a stopped daemon exits 1 with "Cannot connect to the Docker
    daemon": recorded as it is, every remaining experiment would be settled ``failed`` in a few
    milliseconds each and never run again. Confirmed with ``docker version`` (the experiment
    itself might print such a line), the run stops instead (exit 3) without a record for this
    experiment, so ``--resume`` runs it once the daemon is back.
    """
    if not daemon_unreachable(outcome.stderr_tail):
        return
    why = daemon_problem()
    if why is None:
        return
    raise EnvironmentProblem(
        f"the Docker daemon is not reachable: {why}",
        hint="start it again, then run with --resume",
    )


def identity(experiment: Experiment) -> dict[str, Any]:
    """The fields that name an experiment in its record (DESIGN.md's first six)."""
    return {
        "key": experiment.key,
        "config_id": experiment.config.config_id,
        "cycle": experiment.cycle,
        "backend": experiment.config.backend,
        "service": experiment.service,
        "params": experiment.config.params,
    }


def record_interrupted(
    experiment: Experiment,
    attempt: int,
    restarts_before: int,
    *,
    started_at: datetime,
    duration_s: float,
) -> Record:
    """The record of an experiment a signal stopped: not final, so a resume runs it again.

    Its start and how long it ran before the signal are known and recorded; the exit code and
    every energy figure are not (the exec did not finish), so they stay null.
    """
    return Record(
        **identity(experiment),
        status="interrupted",
        attempts=attempt,
        started_at=iso(started_at),
        ended_at=iso(started_at + timedelta(seconds=duration_s)),
        duration_s=round(duration_s, 6),
        restarts_before=restarts_before,
        error="interrupted by a signal; runs again on --resume",
    )


def record_from_outcome(
    experiment: Experiment,
    outcome: ExecOutcome,
    *,
    attempts: int,
    restarts_before: int,
    experiment_dir: Path,
    status: str | None = None,
    measured: dict[str, Any] | None = None,
    secret_env: dict[str, str] | None = None,
) -> Record:
    """The final record of one experiment (energy fields stay None until measured).

    ``secret_env`` (the backend's ``env``) adds its secret-looking values to those redacted
    from the error text, beside llem's own environment.
    """
    status = status or outcome.status
    if status != "ok":
        check_space_for_logs(experiment_dir)
        check_daemon_after_failure(outcome)
    metrics, metrics_error = read_metrics(experiment_dir)
    error = None
    if status != "ok":
        error = outcome.detail or status
    if metrics_error:
        error = f"{error}; {metrics_error}" if error else metrics_error
    if error:
        # the detail quotes the experiment's stderr, which may echo a token from its environment
        error = redact_text(error, secret_env)
    return Record(
        **identity(experiment),
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
        **identity(experiment),
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
