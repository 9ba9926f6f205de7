"""Seeded train / validation (/ test) splits of ratings."""

from __future__ import annotations

import numpy as np


def _check_rows_and_seed(function: str, n, seed) -> None:
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0:
        raise ValueError(f"{function}: invalid `n`: {n!r}. It must be an integer >= 0.")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"{function}: invalid `seed`: {seed!r}. It must be an integer >= 0.")


def random_split(n: int, train_fraction: float = 0.85, seed: int = 42) -> tuple[np.ndarray, np.ndarray]:
    """Splits positions `0 .. n-1` into train and validation, each row to train with probability `train_fraction`.

    This is the Keras MovieLens examples' split (`np.random.rand(n) <= 0.85`),
    seeded: the train part holds about, not exactly, `train_fraction * n`
    rows. Both index arrays are sorted, disjoint, and together cover every row.

    Args:
        n: number of rows, >= 0.
        train_fraction: probability that a row goes to train, in (0, 1).
        seed: non-negative integer seed; the same seed gives the same split.

    Example:
        >>> train_index, val_index = random_split(len(data))
        >>> train, val = data.subset(train_index), data.subset(val_index)
    """
    _check_rows_and_seed("random_split", n, seed)
    if isinstance(train_fraction, bool) or not isinstance(train_fraction, (int, float, np.floating)) or not (
        0.0 < float(train_fraction) < 1.0
    ):
        raise ValueError(f"random_split: invalid `train_fraction`: {train_fraction!r}. It must be a number in (0, 1).")
    to_train = np.random.default_rng(seed).random(int(n)) < train_fraction
    return np.flatnonzero(to_train), np.flatnonzero(~to_train)


def train_val_test_split(n: int, val_fraction: float = 0.1, test_fraction: float = 0.1,
                         seed: int = 42) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Splits positions `0 .. n-1` into train, validation and test, each row drawn independently.

    A row goes to test with probability `test_fraction`, else to validation
    with probability `val_fraction`, else to train. Validation picks the
    epoch (early stopping) and the learning rate (the tune profile); test is
    touched once, after, so its metric is not tuned on. The three index
    arrays are sorted, disjoint, and together cover every row.

    Args:
        n: number of rows, >= 0.
        val_fraction, test_fraction: probabilities, each in (0, 1), summing to < 1.
        seed: non-negative integer seed; the same seed gives the same split.

    Example:
        >>> train_index, val_index, test_index = train_val_test_split(len(data), seed=1)
    """
    for option, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not 0.0 < float(value) < 1.0:
            raise ValueError(f"train_val_test_split: invalid `{option}`: {value!r}. It must be a number in (0, 1).")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(f"train_val_test_split: `val_fraction` + `test_fraction` is {val_fraction + test_fraction:g}. "
                         "It must be < 1, leaving rows to train on.")
    _check_rows_and_seed("train_val_test_split", n, seed)
    draw = np.random.default_rng(seed).random(int(n))
    test = draw < test_fraction
    val = ~test & (draw < test_fraction + val_fraction)
    return np.flatnonzero(~test & ~val), np.flatnonzero(val), np.flatnonzero(test)
