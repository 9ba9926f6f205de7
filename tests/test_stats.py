"""analysis.stats: means over seeds with Student-t 95% half-widths, and telling two apart."""

import math
import statistics

import pytest

from analysis.stats import distinguishable, mean_ci95, t975


def test_half_width_is_t_times_the_standard_error():
    values = [0.86, 0.88, 0.85, 0.90, 0.87]
    mean, half = mean_ci95(values)
    assert mean == pytest.approx(statistics.fmean(values))
    assert half == pytest.approx(2.776 * statistics.stdev(values) / math.sqrt(5))


def test_one_seed_has_no_interval_and_many_use_the_normal_quantile():
    assert math.isnan(mean_ci95([0.9])[1])
    assert t975(1) == 12.706 and t975(30) == 2.042 and t975(31) == 1.96


def test_overlapping_intervals_are_not_apart_and_unknown_ones_are_undecided():
    assert distinguishable((0.80, 0.01), (0.85, 0.02)) is True
    assert distinguishable((0.80, 0.03), (0.85, 0.03)) is False
    assert distinguishable((0.80, math.nan), (0.85, 0.01)) is None


@pytest.mark.parametrize("call, message", [
    (lambda: mean_ci95([]), "no values"),
    (lambda: t975(0), "degrees of freedom 0"),
])
def test_bad_input_says_what_is_valid(call, message):
    with pytest.raises(ValueError, match=message):
        call()
