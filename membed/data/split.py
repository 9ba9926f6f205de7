"""Seeded train / validation split of ratings."""

from __future__ import annotations

import numpy as np


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
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0:
        raise ValueError(f"random_split: invalid `n`: {n!r}. It must be an integer >= 0.")
    if isinstance(train_fraction, bool) or not isinstance(train_fraction, (int, float, np.floating)) or not (
        0.0 < float(train_fraction) < 1.0
    ):
        raise ValueError(f"random_split: invalid `train_fraction`: {train_fraction!r}. It must be a number in (0, 1).")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"random_split: invalid `seed`: {seed!r}. It must be an integer >= 0.")
    to_train = np.random.default_rng(seed).random(int(n)) < train_fraction
    return np.flatnonzero(to_train), np.flatnonzero(~to_train)
