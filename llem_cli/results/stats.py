"""Summary statistics for repeated experiments: mean, sample std, 95 % confidence intervals.

Why here and not scipy: llem must install light, and it needs only the Student t
quantile, which :func:`t_quantile` computes from the regularized incomplete beta
function (continued fraction, as in Numerical Recipes §6.4) and bisection.

Every function takes a sequence of floats that may hold ``None`` (a quantity that was
not measured); ``None`` values are ignored and :class:`Summary` reports how many were
used (``n``) and left out (``n_missing``). A value that is no finite float (NaN, an
infinity, an int too large for a float) counts as missing too. A statistic that would
overflow a float (values near 1e308) is ``None``, never an infinity or a crash. Units are
those of the input.

What :class:`Summary` reports as *the* interval (:attr:`Summary.ci`) is more careful than
the raw :func:`t_interval`, because people read it as "where the mean lies":

- below :data:`CI_MIN_N` values there is none: with 2 values the 95 % t quantile is 12.7,
  and the interval of two rates 7,186 and 8,534 is -704 to 16,424, which says nothing;
- a constant (every value equal, zero spread) has none: ``1,024 - 1,024`` is no interval,
  the value itself is the answer;
- a quantity that cannot be negative (``nonnegative``) has its lower bound clipped at 0,
  and says so (:attr:`Summary.ci_low_clipped`). Clipping keeps the interval one for the
  arithmetic mean that is printed beside it; a t-interval on the log scale would bracket
  the geometric mean instead, and breaks on a value of 0.

:attr:`Summary.ci_note` says, in words, why there is no interval or why it was clipped.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

DEFAULT_LEVEL = 0.95
BOOTSTRAP_MIN_N = 10
"""From this many values on, the bootstrap interval is the one reported."""
DEFAULT_RESAMPLES = 2000
DEFAULT_SEED = 0
CI_MIN_N = 3
"""Below this many values no interval is reported (see the module's docstring)."""

#: :attr:`Summary.ci_note` values: why no interval is reported, or why it was changed
NOTE_NO_VALUES = "no values"
NOTE_TOO_FEW = f"needs n >= {CI_MIN_N}"
NOTE_CONSTANT = "constant"
NOTE_OVERFLOW = "too large for a float"
NOTE_CLIPPED = "lower bound clipped at 0 (cannot be negative)"


def finite_float(value: object) -> float | None:
    """``value`` as a float if it is a number that is a finite float, else None (never raises)."""
    if not isinstance(value, int | float):
        return None
    try:
        x = float(value)
    except OverflowError:  # an int beyond 1.8e308
        return None
    return x if math.isfinite(x) else None


def present(values: Iterable[float | None]) -> list[float]:
    """The values that are finite numbers, as floats (None, NaN, infinities left out)."""
    return [x for x in map(finite_float, values) if x is not None]


def _fsum(xs: Iterable[float]) -> float | None:
    """``math.fsum``, or None where the sum overflows a float."""
    try:
        return finite_float(math.fsum(xs))
    except (OverflowError, ValueError):  # ValueError: inf - inf, should one slip in
        return None


def _mean_of(xs: Sequence[float]) -> float | None:
    total = _fsum(xs)
    return None if total is None or not xs else finite_float(total / len(xs))


def _std_of(xs: Sequence[float]) -> float | None:
    """Sample standard deviation of finite ``xs`` (len >= 2), None where it overflows."""
    m = _mean_of(xs)
    if m is None:
        return None
    squares = _fsum((x - m) * (x - m) for x in xs)  # a float product overflows to inf
    return None if squares is None else finite_float(math.sqrt(squares / (len(xs) - 1)))


def mean(values: Iterable[float | None]) -> float | None:
    """Arithmetic mean of the present values; None when there are none or it overflows."""
    return _mean_of(present(values))


def sample_std(values: Iterable[float | None]) -> float | None:
    """Sample standard deviation (n - 1 in the denominator); None below 2 values or on overflow."""
    xs = present(values)
    return _std_of(xs) if len(xs) >= 2 else None


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction for the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def regularized_incomplete_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"x must lie in [0, 1], got {x}")
    if x in (0.0, 1.0):
        return x
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    front = math.exp(log_front)
    # The continued fraction converges fast for x < (a + 1) / (a + b + 2); use symmetry otherwise.
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` > 0 degrees of freedom."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    tail = 0.5 * regularized_incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


@functools.lru_cache(maxsize=1024)  # a run's groups ask for the same few (p, df) pairs
def t_quantile(p: float, df: float) -> float:
    """The t such that P(T <= t) = p (Student's t, ``df`` degrees of freedom).

    Bisection on :func:`t_cdf` to double precision; e.g. ``t_quantile(0.975, 10)``
    is 2.228.
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must lie in (0, 1), got {p}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    if p == 0.5:
        return 0.0
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if mid in (lo, hi):
            break
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


def t_interval(
    values: Iterable[float | None], level: float = DEFAULT_LEVEL
) -> tuple[float, float] | None:
    """Student t confidence interval for the mean: mean ± t * s / sqrt(n); None below n = 2
    or where a bound overflows a float."""
    xs = present(values)
    if len(xs) < 2:
        return None
    m, s = _mean_of(xs), _std_of(xs)
    if m is None or s is None:
        return None
    half = t_quantile(0.5 + level / 2.0, len(xs) - 1) * s / math.sqrt(len(xs))
    low, high = finite_float(m - half), finite_float(m + half)
    return None if low is None or high is None else (low, high)


def _percentile(sorted_xs: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default), q in [0, 1]."""
    pos = q * (len(sorted_xs) - 1)
    low = math.floor(pos)
    high = min(low + 1, len(sorted_xs) - 1)
    return sorted_xs[low] + (sorted_xs[high] - sorted_xs[low]) * (pos - low)


def bootstrap_interval(
    values: Iterable[float | None],
    level: float = DEFAULT_LEVEL,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> tuple[float, float] | None:
    """Percentile bootstrap interval for the mean; None below two values or on overflow.

    The fixed ``seed`` makes ``llem results`` print the same interval every time.
    """
    xs = present(values)
    if len(xs) < 2:
        return None
    if _mean_of(xs) is None:  # the sum overflows: so would the resamples' sums
        return None
    rng = random.Random(seed)
    n = len(xs)
    means = []
    for _ in range(resamples):
        resampled = _mean_of(rng.choices(xs, k=n))
        if resampled is None:
            return None
        means.append(resampled)
    means.sort()
    alpha = (1.0 - level) / 2.0
    low = finite_float(_percentile(means, alpha))
    high = finite_float(_percentile(means, 1.0 - alpha))
    return None if low is None or high is None else (low, high)


@dataclass(frozen=True)
class Summary:
    """n values used (n_missing None values ignored), mean, sample std, confidence intervals.

    ``t_ci`` and ``bootstrap_ci`` are the raw intervals (bootstrap only where n >=
    :data:`BOOTSTRAP_MIN_N`). :attr:`ci` is the one to report: the bootstrap one where
    there is one, else the t one, withheld below :data:`CI_MIN_N` values and for a
    constant, and clipped at 0 where ``nonnegative``; :attr:`ci_note` says which of these
    happened, :attr:`ci_method` how the reported interval was computed.
    """

    n: int
    n_missing: int
    mean: float | None
    std: float | None
    t_ci: tuple[float, float] | None
    bootstrap_ci: tuple[float, float] | None
    level: float = DEFAULT_LEVEL
    nonnegative: bool = False
    constant: bool = False
    """Every value equal (n >= 2): zero spread, so no interval."""

    @property
    def _raw_ci(self) -> tuple[float, float] | None:
        return self.bootstrap_ci if self.bootstrap_ci is not None else self.t_ci

    @property
    def ci_note(self) -> str | None:
        """Why :attr:`ci` is None or differs from the raw interval; None when it is plain.

        One of :data:`NOTE_NO_VALUES`, :data:`NOTE_OVERFLOW`, :data:`NOTE_CONSTANT`,
        :data:`NOTE_TOO_FEW`, :data:`NOTE_CLIPPED` (checked in that order: a constant of
        two values is a constant, more cycles would not give it a spread).
        """
        if self.n == 0:
            return NOTE_NO_VALUES
        if self.mean is None:
            return NOTE_OVERFLOW
        if self.constant:
            return NOTE_CONSTANT
        if self.n < CI_MIN_N:
            return NOTE_TOO_FEW
        raw = self._raw_ci
        if raw is None:
            return NOTE_OVERFLOW
        if self.nonnegative and raw[0] < 0.0:
            return NOTE_CLIPPED
        return None

    @property
    def ci(self) -> tuple[float, float] | None:
        """The interval to report (see the class docstring); None where there is none."""
        note = self.ci_note
        raw = self._raw_ci
        if raw is None or note not in (None, NOTE_CLIPPED):
            return None
        return (0.0, raw[1]) if note == NOTE_CLIPPED else raw

    @property
    def ci_low_clipped(self) -> bool:
        """Whether :attr:`ci`'s lower bound is 0 because the raw one fell below it."""
        return self.ci_note == NOTE_CLIPPED

    @property
    def ci_method(self) -> str | None:
        """``bootstrap``, ``t`` or None, matching :attr:`ci`."""
        if self.ci is None:
            return None
        return "bootstrap" if self.bootstrap_ci is not None else "t"


def summarize(
    values: Iterable[float | None],
    level: float = DEFAULT_LEVEL,
    *,
    seed: int = DEFAULT_SEED,
    nonnegative: bool = False,
) -> Summary:
    """Everything ``llem results`` prints for one quantity of one configuration.

    ``nonnegative``: the quantity cannot be below 0 (energy, a rate, a duration), so the
    reported interval is clipped at 0; the caller knows what the numbers are, this does not.
    """
    given = list(values)
    xs = present(given)
    return Summary(
        n=len(xs),
        n_missing=len(given) - len(xs),
        mean=mean(xs),
        std=sample_std(xs),
        t_ci=t_interval(xs, level),
        bootstrap_ci=bootstrap_interval(xs, level, seed=seed)
        if len(xs) >= BOOTSTRAP_MIN_N
        else None,
        level=level,
        nonnegative=nonnegative,
        constant=len(xs) >= 2 and min(xs) == max(xs),
    )
