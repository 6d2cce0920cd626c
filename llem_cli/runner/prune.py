"""OOM-aware pruning: skip configurations a GPU out-of-memory failure makes hopeless.

When ``batch_size: 32`` runs out of GPU memory, ``batch_size: 64`` with every
other param the same will too; running it costs a timeout-sized slot, a
restart and a share of ``max_restarts`` for a record we can already write.
Only axes the user lists in ``execution.prune_on_oom`` are trusted to grow
memory use monotonically; anything else is left alone.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar


class Configuration(Protocol):
    """Anything with a backend and params: a planned experiment, a test tuple."""

    @property
    def backend(self) -> str:
        """The backend (compose service group) the configuration runs on."""
        ...

    @property
    def params(self) -> Mapping[str, Any]:
        """The configuration's params, without the backend."""
        ...


C = TypeVar("C", bound=Configuration)


def _number(value: Any) -> float | None:
    """The value as a finite number, or None (bools, strings, NaN are not sizes)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _same(a: Any, b: Any) -> bool:
    """Equality that does not take ``True`` for ``1`` (YAML gives both)."""
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def dominates(
    failed_params: Mapping[str, Any], params: Mapping[str, Any], axes: Sequence[str]
) -> bool:
    """Whether ``params`` is at least as large as ``failed_params`` and strictly larger somewhere.

    Params outside ``axes`` must be equal (and the same names must be set).
    On a listed axis, equal values are neutral whatever their type; differing
    values must both be finite numbers, none smaller, one larger. A differing
    non-numeric value (``"auto"`` vs ``8``) never prunes: no order is known.
    """
    if failed_params.keys() != params.keys():
        return False
    listed = set(axes)
    larger = False
    for name, failed_value in failed_params.items():
        value = params[name]
        if _same(failed_value, value):
            continue
        if name not in listed:
            return False
        a, b = _number(failed_value), _number(value)
        if a is None or b is None or b < a:
            return False
        larger = larger or b > a
    return larger


def to_prune(
    failed_backend: str,
    failed_params: Mapping[str, Any],
    remaining: Iterable[C],
    axes: Sequence[str],
) -> list[C]:
    """The not-yet-run configurations to record ``pruned`` after ``failed`` hit gpu_oom.

    Returns the members of ``remaining`` (same objects, same order) of the same
    backend that :func:`dominates` the failed params on ``axes``. No axes, no
    pruning.
    """
    if not axes:
        return []
    return [
        c
        for c in remaining
        if c.backend == failed_backend and dominates(failed_params, c.params, axes)
    ]
