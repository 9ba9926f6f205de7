"""Means over seeds with a 95% confidence half-width (Student's t), and telling two such means apart.

The accuracy suite trains each case once per seed; a metric's record holds
the per-seed values, their mean and `t(0.975, n - 1) * s / sqrt(n)`, the
half-width of a 95% confidence interval of the mean (s: the sample standard
deviation). Standard library only, so the report and the gate use it
without NumPy or SciPy.
"""

from __future__ import annotations

import math
import statistics
from typing import Any, Mapping, Sequence

# Two-sided 95% quantiles of Student's t, t(0.975, df), for df = 1 .. 30 (standard tables);
# beyond 30 degrees of freedom the normal quantile is within 2% of them.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
         2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
         2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
_Z975 = 1.960


def t975(df: int) -> float:
    """t(0.975, df): the multiplier of the standard error in a 95% interval from df + 1 values.

    Example:
        >>> t975(4)
        2.776
    """
    if isinstance(df, bool) or not isinstance(df, int) or df < 1:
        raise ValueError(f"t975: invalid degrees of freedom {df!r}. It must be an integer >= 1.")
    return _T975[df - 1] if df <= len(_T975) else _Z975


def mean_ci95(values: Sequence[float]) -> tuple[float, float]:
    """(mean, 95% half-width) of per-seed values; the half-width is NaN for one value.

    Example:
        >>> mean, half = mean_ci95([0.86, 0.88, 0.88, 0.86])
        >>> round(mean, 3), round(half, 4)
        (0.87, 0.0184)
    """
    values = [float(value) for value in values]
    if not values:
        raise ValueError("mean_ci95: no values. Pass one value per seed (at least one).")
    mean = statistics.fmean(values)
    if len(values) == 1:
        return mean, math.nan
    return mean, t975(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))


def distinguishable(first: tuple[float, float], second: tuple[float, float]) -> bool | None:
    """Whether two (mean, half-width) intervals do not overlap; None when a half-width is unknown (one seed).

    Non-overlapping 95% intervals is a conservative test (it says "apart" less
    often than a two-sample t-test would), which is what a claim should meet.

    Example:
        >>> distinguishable((0.85, 0.01), (0.90, 0.01)), distinguishable((0.85, 0.03), (0.90, 0.03))
        (True, False)
    """
    (mean_a, half_a), (mean_b, half_b) = first, second
    if math.isnan(half_a) or math.isnan(half_b):
        return None
    return abs(mean_a - mean_b) > half_a + half_b


def per_seed(row: Mapping[str, Any]) -> dict[int, float]:
    """seed -> test loss of an accuracy record or row (`test_mse_per_seed`, else `test_logloss_per_seed`).

    Empty where the row has no per-seed values (one result file per seed, or
    records from before the seeds).
    """
    values = row.get("test_mse_per_seed")
    if not isinstance(values, list):
        values = row.get("test_logloss_per_seed")
    seeds = row.get("seeds")
    if not isinstance(values, list) or not isinstance(seeds, list) or len(values) != len(seeds):
        return {}
    return {int(seed): float(value) for seed, value in zip(seeds, values)}


def paired_difference(first: Mapping[str, Any], second: Mapping[str, Any]) -> tuple[float, float]:
    """(first - second, the 95% half-width of the difference) of two accuracy rows' losses (`loss`, `loss_ci95`).

    Paired where both rows trained the same seeds (at least two): a seed draws
    the split, so two strategies' losses on one seed share its test rows, and
    the difference's spread is that of the per-seed differences, not the sum
    of both spreads (on synthetic-ctr the split alone moves the log loss by
    +-0.007, the strategies by a few thousandths). Else from the two
    half-widths, as if independent; NaN without seeds.

    Example:
        >>> row = lambda losses: {"seeds": [1, 2, 3], "test_mse_per_seed": losses, "loss": 0.0, "loss_ci95": 0.1}
        >>> difference, half = paired_difference(row([0.9, 1.0, 1.1]), row([0.88, 0.98, 1.08]))
        >>> round(difference, 3), round(half, 3)
        (0.02, 0.0)
    """
    mine, theirs = per_seed(first), per_seed(second)
    shared = sorted(set(mine) & set(theirs))
    if len(shared) >= 2:
        return mean_ci95([mine[seed] - theirs[seed] for seed in shared])
    return float(first["loss"]) - float(second["loss"]), math.hypot(float(first["loss_ci95"]),
                                                                    float(second["loss_ci95"]))
