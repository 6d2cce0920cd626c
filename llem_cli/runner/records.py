"""An experiment's directory and record: prepared before its exec, the record built after.

The record's fields are those of docs/design.md §3.4; the experiment's own
``result.json`` is merged into its ``metrics``, with the backend's normalized names beside the
engine's keys (:mod:`llem_cli.runner.metrics`), and the phases it names (``llem_phases``) are
measured from the window's energy time series into ``phases`` (:mod:`llem_cli.telemetry.phases`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from llem_cli.campaign.model import MetricFormula
from llem_cli.docker.outcome import ExecOutcome
from llem_cli.redaction import redact_text
from llem_cli.runner.measuring import PHASE_SOURCE
from llem_cli.runner.metrics import normalize, parse_report
from llem_cli.runner.schedule import Experiment
from llem_cli.runs.layout import RunDir
from llem_cli.runs.record import Record
from llem_cli.telemetry.phases import PHASES_KEY, PhaseSource
from llem_cli.timestamps import iso

RESULT_FILE = "result.json"


def prepare_experiment_dir(run: RunDir, key: str) -> Path:
    """Create ``experiments/<key>/`` for an attempt: writable by the container's user (which
    may not be root), with an earlier attempt's ``result.json`` set aside."""
    path = run.make_experiment(key)
    path.chmod(0o777)
    set_aside_stale_result(path)
    return path


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
    """The experiment's own ``result.json`` (one JSON object, or the last object of JSON lines,
    see :func:`~llem_cli.runner.metrics.parse_report`), or None and why not."""
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
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"result.json unreadable: {exc}"
    return parse_report(text)


def with_normalized(
    metrics: dict[str, Any] | None,
    read_error: str | None,
    mapping: Mapping[str, str | MetricFormula],
    params: Mapping[str, Any],
    *,
    status: str,
    measured: dict[str, Any] | None,
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """``metrics`` with the backend's normalized names added, and ``measured`` with the reason
    for each that is null and how each computed one was made.

    The reasons go where the record keeps every other null's reason,
    ``measurement.reasons``, keyed as the column is named (``metrics.output_tokens``);
    formulas are named in ``measurement.computed``. An experiment that failed and wrote no
    report gets nothing: its ``error`` already says what happened, and no metric was expected
    of it. A normalized name replaces an engine key of the same name in the record (the file
    on disk keeps it).
    """
    if not mapping or (metrics is None and status != "ok"):
        return metrics, measured
    found = normalize(metrics, mapping, params, no_report=read_error or "no result.json")
    if metrics is not None:
        metrics = {**metrics, **found.values}
    fields = dict(measured or {})
    detail = dict(fields.get("measurement") or {})
    if found.reasons:
        reasons = dict(detail.get("reasons") or {})
        reasons.update({f"metrics.{name}": why for name, why in found.reasons.items()})
        detail["reasons"] = reasons
    if found.computed:
        detail["computed"] = {f"metrics.{name}": how for name, how in found.computed.items()}
    fields["measurement"] = detail or None
    return metrics, fields


def with_phases(
    metrics: dict[str, Any] | None,
    measured: dict[str, Any] | None,
    source: PhaseSource | None,
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The record's ``phases`` from ``result.json``'s ``llem_phases``, and ``measured`` with the
    reason for each null phase and how they were computed.

    ``phases`` is None when the report names no phases. ``source`` is the window's (see
    :func:`~llem_cli.runner.measuring.record_fields`); None: nothing was measured. The
    reasons go where every null's reason is, ``measurement.reasons``, under ``phases`` (the
    report's ``llem_phases`` is no object) or ``phases.<name>``; how they were computed under
    ``measurement.computed["phases"]``.
    """
    if metrics is None or PHASES_KEY not in metrics:
        return None, measured
    phases, reasons, note = (source or PhaseSource()).measure(metrics[PHASES_KEY])
    if not reasons and note is None:
        return phases, measured
    fields = dict(measured or {})
    detail = dict(fields.get("measurement") or {})
    if reasons:
        detail["reasons"] = {**(detail.get("reasons") or {}), **reasons}
    if note is not None:
        detail["computed"] = {**(detail.get("computed") or {}), "phases": note}
    fields["measurement"] = detail
    return phases, fields


def identity(experiment: Experiment) -> dict[str, Any]:
    """The fields that name an experiment in its record (the first six, docs/design.md §3.4)."""
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
    metrics_map: Mapping[str, str | MetricFormula] | None = None,
) -> Record:
    """The final record of one experiment (energy fields stay None until measured).

    ``secret_env`` (the backend's ``env``) adds its secret-looking values to those redacted
    from the error text, beside llem's own environment. ``metrics_map`` is the backend's
    ``metrics`` (normalized name -> source), see :func:`with_normalized`. ``measured`` is
    :func:`~llem_cli.runner.measuring.record_fields`' output: the record's measured fields, and
    under ``PHASE_SOURCE`` the window's time series for the report's phases (:func:`with_phases`).
    """
    status = status or outcome.status
    measured = dict(measured) if measured is not None else None
    phase_source = measured.pop(PHASE_SOURCE, None) if measured is not None else None
    metrics, metrics_error = read_metrics(experiment_dir)
    metrics, measured = with_normalized(
        metrics,
        metrics_error,
        metrics_map or {},
        experiment.config.params,
        status=status,
        measured=measured,
    )
    phases, measured = with_phases(metrics, measured, phase_source)
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
        phases=phases,
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
