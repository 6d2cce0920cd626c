"""Statistics against published values (t tables, closed forms, hand computation)."""

from __future__ import annotations

import math

import pytest

from llem_cli.results.stats import (
    NOTE_CLIPPED,
    NOTE_CONSTANT,
    NOTE_NO_VALUES,
    NOTE_TOO_FEW,
    bootstrap_interval,
    mean,
    regularized_incomplete_beta,
    sample_std,
    summarize,
    t_cdf,
    t_interval,
    t_quantile,
)


@pytest.mark.parametrize(
    ("p", "df", "expected"),
    [
        # Two-sided 95 % critical values from any t table.
        (0.975, 1, 12.706),
        (0.975, 2, 4.303),
        (0.975, 3, 3.182),
        (0.975, 5, 2.571),
        (0.975, 9, 2.262),
        (0.975, 10, 2.228),
        (0.975, 30, 2.042),
        (0.975, 100, 1.984),
        (0.995, 1, 63.657),
        (0.995, 10, 3.169),
        (0.95, 4, 2.132),
        (0.9, 20, 1.325),
    ],
)
def test_t_quantile_matches_tables(p, df, expected):
    assert t_quantile(p, df) == pytest.approx(expected, abs=5e-4)


def test_t_quantile_closed_forms():
    # df = 1 is Cauchy: tan(pi (p - 1/2)); df = 2: (2p - 1) / sqrt(2 p (1 - p)).
    for p in (0.6, 0.9, 0.975, 0.999):
        assert t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-9)
        assert t_quantile(p, 2) == pytest.approx((2 * p - 1) / math.sqrt(2 * p * (1 - p)), rel=1e-9)


def test_t_quantile_symmetry_and_normal_limit():
    assert t_quantile(0.5, 7) == 0.0
    assert t_quantile(0.025, 5) == pytest.approx(-t_quantile(0.975, 5))
    assert t_quantile(0.975, 1e7) == pytest.approx(1.959964, abs=1e-5)


def test_t_cdf_inverts_the_quantile():
    for df in (1, 3, 12.5, 50):
        for p in (0.01, 0.3, 0.8, 0.99):
            assert t_cdf(t_quantile(p, df), df) == pytest.approx(p, abs=1e-12)


def test_incomplete_beta_known_values():
    assert regularized_incomplete_beta(1, 1, 0.3) == pytest.approx(0.3)  # uniform
    assert regularized_incomplete_beta(2, 3, 0.4) == pytest.approx(0.5248)
    assert regularized_incomplete_beta(0.5, 0.5, 0.5) == pytest.approx(0.5)
    assert regularized_incomplete_beta(2, 3, 0.0) == 0.0
    with pytest.raises(ValueError):
        regularized_incomplete_beta(2, 3, 1.5)


def test_domain_errors():
    with pytest.raises(ValueError):
        t_quantile(1.0, 3)
    with pytest.raises(ValueError):
        t_cdf(1.0, 0)


def test_mean_and_sample_std_ignore_none():
    values = [2.0, 4.0, None, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]
    assert mean(values) == 5.0
    assert sample_std(values) == pytest.approx(math.sqrt(32 / 7))
    assert mean([None, None]) is None
    assert sample_std([3.0]) is None
    assert mean([float("nan"), 1.0]) == 1.0


def test_t_interval_by_hand():
    # mean 10.0; squared deviations sum to 0.30, s^2 = 0.075, se = sqrt(0.075 / 5);
    # t(0.975, 4) = 2.776445 (tables) -> half width 0.340044.
    low, high = t_interval([10.1, 9.8, 10.4, None, 10.0, 9.7])
    assert low == pytest.approx(10.0 - 2.776445 * math.sqrt(0.075 / 5), abs=1e-6)
    assert high == pytest.approx(10.340044, abs=1e-6)
    assert t_interval([1.0]) is None
    assert t_interval([3.0, 3.0, 3.0]) == (3.0, 3.0)


def test_bootstrap_is_reproducible_and_sensible():
    values = [float(x) for x in range(1, 21)]
    first = bootstrap_interval(values)
    assert first == bootstrap_interval(values)
    assert first != bootstrap_interval(values, seed=1)
    low, high = first
    t_low, t_high = t_interval(values)
    assert low < 10.5 < high
    # For a symmetric sample the percentile interval is close to the t interval.
    assert low == pytest.approx(t_low, abs=0.6)
    assert high == pytest.approx(t_high, abs=0.6)
    assert bootstrap_interval([5.0, 5.0, 5.0]) == (5.0, 5.0)
    assert bootstrap_interval([1.0]) is None


def test_summarize_chooses_t_below_ten_and_bootstrap_from_ten():
    small = summarize([1.0, 2.0, 3.0, None])
    assert (small.n, small.n_missing, small.mean) == (3, 1, 2.0)
    assert small.std == pytest.approx(1.0)
    assert small.ci_method == "t"
    assert small.bootstrap_ci is None
    half = 4.302652729911275 / math.sqrt(3)
    assert small.ci == pytest.approx((2.0 - half, 2.0 + half))

    large = summarize([float(x) for x in range(10)])
    assert large.n == 10
    assert large.ci_method == "bootstrap"
    assert large.ci == large.bootstrap_ci
    assert large.t_ci is not None

    empty = summarize([None, None])
    assert (empty.n, empty.n_missing, empty.mean, empty.std, empty.ci, empty.ci_method) == (
        0,
        2,
        None,
        None,
        None,
        None,
    )
    one = summarize([4.2])
    assert (one.mean, one.std, one.ci) == (4.2, None, None)


def test_values_that_are_no_finite_float_count_as_missing():
    summary = summarize([10**400, float("inf"), float("-inf"), 2.0, 4.0])
    assert (summary.n, summary.n_missing, summary.mean) == (2, 3, 3.0)
    assert mean([10**400]) is None
    assert sample_std([10**400, 1.0, 3.0]) == pytest.approx(math.sqrt(2))


def test_statistics_that_would_overflow_are_none():
    assert mean([1e308, 1e308]) is None  # the sum overflows
    assert sample_std([1e308, 1e308]) is None
    assert sample_std([1.5e154, -1.5e154]) is None  # the squares overflow
    assert sample_std([1e308, -1e308]) is None  # x - mean overflows
    assert t_interval([1e308, 1e308]) is None
    assert t_interval([1.5e154, -1.5e154]) is None  # the std overflows
    assert bootstrap_interval([1e308] * 12) is None
    assert bootstrap_interval([1e308, -1e308] * 6) is None  # some resamples overflow
    huge = summarize([1e308] * 12)
    assert (huge.n, huge.n_missing) == (12, 0)
    assert (huge.mean, huge.std, huge.ci, huge.ci_method) == (None, None, None, None)
    # just below overflow, the statistics are still numbers
    assert mean([8e307, 8e307]) == 8e307
    assert t_interval([8e307, 8e307]) == (8e307, 8e307)


# ---- the reported interval: none below n = 3 or for a constant, clipped where >= 0 ----------


def test_no_reported_interval_below_three_values():
    two = summarize([7186.0, 8534.0], nonnegative=True)
    assert two.t_ci is not None and two.t_ci[0] < 0  # the raw t-interval goes negative
    assert (two.n, two.mean) == (2, 7860.0)
    assert (two.ci, two.ci_method, two.ci_note) == (None, None, NOTE_TOO_FEW)
    assert not two.ci_low_clipped
    one = summarize([4.2, None])
    assert (one.ci, one.ci_note) == (None, NOTE_TOO_FEW)
    assert summarize([]).ci_note == NOTE_NO_VALUES


@pytest.mark.parametrize("values", [[1024.0] * 2, [1024.0] * 3, [50.0] * 12])
def test_a_constant_has_no_interval(values):
    summary = summarize(values, nonnegative=True)
    assert summary.constant
    assert summary.mean == values[0] and summary.std == 0.0
    assert (summary.ci, summary.ci_method, summary.ci_note) == (None, None, NOTE_CONSTANT)


def test_a_nonnegative_quantity_is_clipped_at_zero_and_says_so():
    values = [120.0, 30.0, 15.0]
    raw = t_interval(values)
    assert raw is not None and raw[0] < 0
    clipped = summarize(values, nonnegative=True)
    assert clipped.ci == (0.0, raw[1])
    assert clipped.ci_low_clipped and clipped.ci_note == NOTE_CLIPPED
    assert clipped.ci_method == "t"
    signed = summarize(values)  # a quantity that may be negative keeps the raw interval
    assert signed.ci == raw and signed.ci_note is None and not signed.ci_low_clipped


def test_an_interval_above_zero_is_left_as_it_is():
    summary = summarize([10.0, 12.0, 14.0], nonnegative=True)
    half = 4.302652729911275 * 2.0 / math.sqrt(3)
    assert summary.ci == pytest.approx((12.0 - half, 12.0 + half))
    assert (summary.ci_note, summary.ci_low_clipped, summary.ci_method) == (None, False, "t")
    large = summarize([float(x) for x in range(10)], nonnegative=True)
    assert large.ci == large.bootstrap_ci and large.ci_method == "bootstrap"
    assert large.ci is not None and large.ci[0] >= 0  # resampled means of values >= 0
    assert large.ci_note is None
