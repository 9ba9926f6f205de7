"""random_split: seeded, disjoint, covering, about the requested fraction."""

from __future__ import annotations

import numpy as np
import pytest

from membed import data
from membed.data import random_split


def test_split_is_deterministic_disjoint_and_covering():
    train, val = random_split(10_000)
    again_train, again_val = random_split(10_000)
    np.testing.assert_array_equal(train, again_train)
    np.testing.assert_array_equal(val, again_val)
    assert np.intersect1d(train, val).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(10_000))
    assert np.all(np.diff(train) > 0) and np.all(np.diff(val) > 0)
    assert train.dtype.kind == "i" and val.dtype.kind == "i"


def test_fraction_is_a_probability_per_row():
    train, _ = random_split(100_000, seed=1)
    # Binomial(100000, 0.85): standard deviation about 113 rows.
    assert abs(len(train) - 85_000) < 600
    small_train, _ = random_split(100_000, train_fraction=0.25, seed=1)
    assert abs(len(small_train) - 25_000) < 700


def test_seed_changes_the_split():
    assert not np.array_equal(random_split(1_000, seed=1)[0], random_split(1_000, seed=2)[0])


def test_empty_input():
    train, val = random_split(0)
    assert len(train) == 0 and len(val) == 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n": -1}, r"random_split: invalid `n`: -1\. It must be an integer >= 0\."),
        ({"n": 10.0}, r"invalid `n`: 10\.0"),
        ({"n": 10, "train_fraction": 1.0}, r"invalid `train_fraction`: 1\.0\. It must be a number in \(0, 1\)\."),
        ({"n": 10, "train_fraction": 0}, r"invalid `train_fraction`: 0"),
        ({"n": 10, "train_fraction": "0.8"}, r"invalid `train_fraction`: '0\.8'"),
        ({"n": 10, "seed": -1}, r"invalid `seed`: -1"),
    ],
)
def test_invalid_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        random_split(**kwargs)


def test_three_way_split_is_seeded_disjoint_and_covering():
    train, val, test = data.train_val_test_split(10_000, 0.1, 0.1, seed=4)
    assert np.array_equal(np.sort(np.concatenate([train, val, test])), np.arange(10_000))
    assert len(set(train) & set(val)) == len(set(val) & set(test)) == len(set(train) & set(test)) == 0
    assert 900 < len(val) < 1100 and 900 < len(test) < 1100
    again = data.train_val_test_split(10_000, 0.1, 0.1, seed=4)
    assert all(np.array_equal(a, b) for a, b in zip((train, val, test), again))
    assert not np.array_equal(test, data.train_val_test_split(10_000, 0.1, 0.1, seed=5)[2])


@pytest.mark.parametrize("kwargs, message", [
    ({"val_fraction": 0.0}, "invalid `val_fraction`"),
    ({"test_fraction": 1.2}, "invalid `test_fraction`"),
    ({"val_fraction": 0.5, "test_fraction": 0.5}, "must be < 1"),
    ({"seed": -1}, "invalid `seed`"),
])
def test_three_way_split_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        data.train_val_test_split(100, **kwargs)
