"""The record of one experiment (docs/design.md §3.4) and the one definition of its statuses.

Every module that names a status imports it from here: the outcomes an exec can have, the
statuses llem gives without running (``pruned``, ``skipped``, ``interrupted``), which settle.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, get_args

#: What one exec of an experiment can come to, as the container layer classifies it.
OutcomeStatus = Literal[
    "ok", "failed", "gpu_oom", "oom_killed", "timeout", "container_died", "not_runnable"
]
OUTCOME_STATUSES: frozenset[str] = frozenset(get_args(OutcomeStatus))
#: Statuses llem gives an experiment it did not run to its end (pruned, skipped, a signal).
NOT_RUN_STATUSES = frozenset({"pruned", "skipped", "interrupted"})
#: Every record status (docs/design.md, "Run directory").
STATUSES = OUTCOME_STATUSES | NOT_RUN_STATUSES
#: Statuses that settle an experiment: a resume does not run it again.
FINAL_STATUSES = STATUSES - {"interrupted"}


@dataclass(slots=True)
class Record:
    """One experiment's result, field for field the record of docs/design.md §3.4.

    Quantities that were not measured stay None (``null`` in JSON), never 0:
    a zero energy would be a measurement, and averages over it would lie.
    """

    key: str
    config_id: str
    cycle: int
    backend: str
    service: str
    params: dict[str, Any]
    status: str
    attempts: int = 1
    exit_code: int | None = None
    started_at: str | None = None
    ended_at: str | None = None
    duration_s: float | None = None
    energy_j: float | None = None
    avg_power_w: float | None = None
    idle_power_w: float | None = None
    net_energy_j: float | None = None
    max_temp_c: float | None = None
    restarts_before: int = 0
    metrics: dict[str, Any] | None = None
    error: str | None = None
    #: the lane that ran it (None: a run without lanes, whose containers are not pinned)
    lane: int | None = None
    #: the host GPUs its container was pinned to and its energy was measured on (None: not pinned)
    gpu_uuids: list[str] | None = None
    #: the gpu_settings applied to its GPUs (values, read-back per GPU, warnings; None: none)
    gpu_settings: dict[str, Any] | None = None
    #: a serving backend's server configuration (12 hex digits; None outside serving backends)
    server_id: str | None = None
    #: the energy of each phase the client named in ``result.json``'s ``llem_phases``:
    #: ``{name: {energy_j, duration_s, avg_power_w[, output_tokens, energy_per_output_token_j]}
    #: or None}`` (None: it reported none; a null phase's reason is in
    #: ``measurement.reasons["phases.<name>"]``)
    phases: dict[str, Any] | None = None
    #: how the energy was measured (method, flags, warnings, reasons for nulls, thermal wait):
    #: llem's addition to the shared record fields (docs/design.md §3.4): a number says where it
    #: came from
    measurement: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown record status {self.status!r}")

    @property
    def final(self) -> bool:
        """Whether this record settles the experiment (anything but ``interrupted``)."""
        return self.status in FINAL_STATUSES

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON-ready dict, fields in the documented order (docs/design.md §3.4).

        A deep copy, as ``dataclasses.asdict`` makes, at a fifth of its cost.
        """
        return {name: _copied(getattr(self, name)) for name in RECORD_FIELDS}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Record:
        """Build from a journal dict; unknown keys (a newer llem) are ignored."""
        if tuple(data) == RECORD_FIELDS:  # as written by to_json: 4x faster, for replay
            return cls(*data.values())
        return cls(**{k: data[k] for k in RECORD_FIELDS if k in data})

    @classmethod
    def not_run(
        cls,
        *,
        key: str,
        config_id: str,
        cycle: int,
        backend: str,
        service: str,
        params: dict[str, Any],
        status: str,
        error: str,
        restarts_before: int = 0,
    ) -> Record:
        """A record for an experiment decided without running it (``pruned``, ``skipped``)."""
        return cls(
            key=key,
            config_id=config_id,
            cycle=cycle,
            backend=backend,
            service=service,
            params=params,
            status=status,
            attempts=0,
            restarts_before=restarts_before,
            error=error,
        )


RECORD_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Record))
_ATOMS = (str, int, float, bool, type(None))


def _copied(value: Any) -> Any:
    """A deep copy of a record field (JSON types fast; anything else as ``asdict`` copies it)."""
    kind = type(value)
    if kind in _ATOMS:
        return value
    if kind is dict:
        return {k: _copied(v) for k, v in value.items()}
    if kind is list:
        return [_copied(v) for v in value]
    return asdict(_Box(value))["value"]


@dataclass(slots=True)
class _Box:
    """Lets an odd field value (a tuple, a dict subclass) be copied by ``asdict`` itself."""

    value: Any


#: what energy per count is called for llem's normalized token counts: per token, singular, as
#: DESIGN.md writes it ("energy per token is energy_j / output_tokens")
_PER_TOKEN_NAMES = {
    "output_tokens": "energy_per_output_token_j",
    "input_tokens": "energy_per_input_token_j",
}


def energy_per_name(metric: str) -> str:
    """The name of energy divided by the count metric ``metric``: ``energy_per_<metric>_j``,
    but ``energy_per_output_token_j`` for the normalized ``output_tokens`` (the one name
    every output uses for it: tables, ``--stats``, the records' CSV)."""
    return _PER_TOKEN_NAMES.get(metric, f"energy_per_{metric}_j")


def finite_number(value: Any) -> float | None:
    """``value`` as a finite float, or None: not a number (a bool is not), NaN, infinite, or
    an int too large for a float (one such record must not sink a whole report)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def energy_per(record: Record, metric: str) -> float | None:
    """``energy_j / metrics[metric]`` (energy per token, per request...), or None when either is
    missing, no number, or the count is 0: the one definition the table, ``--stats`` and the
    CSV columns share."""
    energy = finite_number(record.energy_j)
    count = finite_number((record.metrics or {}).get(metric))
    if energy is None or not count:
        return None
    return finite_number(energy / count)


def finite_only(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by None: strict JSON has no NaN."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_only(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_only(v) for v in value]
    return value
