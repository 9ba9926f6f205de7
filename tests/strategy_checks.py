"""Checks shared by the strategy tests: each asserts one behaviour, given the numbers a strategy's test expects.

The tests of each strategy (tests/test_<strategy>.py) keep their own cases
and recorded values, and call these for the parts that every strategy, or
every hashing strategy, checks the same way.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from helpers import fit_to_teacher, randomise_weights
from keras import ops

from membed.strategies import registry
from membed.strategies._hashing import HashFamily

# The ids whose rows the pinned maps were recorded for (in another process).
PINNED_IDS = np.array([0, 1, 2, 3, 500, 999], dtype="int32")
# A vocabulary past int32: ids must stay int64 all the way through.
HUGE_VOCAB = 3 * 2**31
HUGE_IDS = np.array([0, 2**31 + 5, HUGE_VOCAB - 1], dtype=np.int64)


def cost(name: str, vocab_size: int, dim: int, options: dict, params: int, index_bytes: int = 0,
               build: bool = True) -> None:
    """The cost formula gives `params` float32 parameters and `index_bytes`; so does the built layer if `build`."""
    cost = registry.get(name).cost(vocab_size, dim, **options)
    assert (cost.params, cost.index_bytes) == (params, index_bytes), cost
    assert cost.bytes_by_dtype == {"float32": 4 * params}, cost
    if build:
        layer = registry.build(name, vocab_size, dim, **options)
        assert (layer.count_params(), layer.index_bytes) == (params, index_bytes)


def bad_options(cls, options: dict, message: str, vocab_size: int = 1000, dim: int = 8) -> None:
    """The constructor and the cost formula both reject `options` with an error matching `message`."""
    with pytest.raises(ValueError, match=message):
        cls(vocab_size, dim, **options)
    with pytest.raises(ValueError, match=message):
        cls.cost(vocab_size, dim, **options)


def reaches_compression(cls, compression: float, vocab_size: int = 100_000, dim: int = 64) -> dict:
    """`options_for_compression` lands within 20% of `compression`; returns its options."""
    options = cls.options_for_compression(vocab_size, dim, compression)
    reached = vocab_size * dim / cls.cost(vocab_size, dim, **options).params
    assert abs(reached / compression - 1) < 0.2, (options, reached)
    return options


def matches_reference(hashed, ids: np.ndarray, count: int, num_buckets: int, seed: int = 0) -> None:
    """`hashed(ids)` (one bucket per id, or `count`) equals the NumPy reference of the seeded hash family."""
    got = ops.convert_to_numpy(hashed(ids)).reshape(len(ids), -1)
    np.testing.assert_array_equal(got, HashFamily(seed, count).buckets_numpy(ids, num_buckets))


def pinned_map(hashed, pinned: list, count: int, num_buckets: int) -> None:
    """`hashed` maps PINNED_IDS as recorded, and ids 0..999 as the reference does: placement never changes."""
    assert ops.convert_to_numpy(hashed(PINNED_IDS)).tolist() == pinned
    matches_reference(hashed, np.arange(1000, dtype="int32"), count, num_buckets)


def huge_vocabulary(name: str, count: int, num_buckets: int, hashed: str = "rows", dim: int = 4,
                          **options) -> None:
    """At HUGE_VOCAB ids the layer looks int64 ids up, and its `hashed` method matches the reference."""
    layer = registry.build(name, HUGE_VOCAB, dim, **options)
    assert ops.convert_to_numpy(layer(HUGE_IDS)).shape == (len(HUGE_IDS), dim)
    matches_reference(getattr(layer, hashed), HUGE_IDS, count, num_buckets)


def learns_from_teacher(name: str, options: dict, counts: np.ndarray | None = None,
                              vocab_size: int = 200, dim: int = 8) -> None:
    """A fresh layer fits the outputs of a randomised twin to under 1% of its starting error."""
    keras.utils.set_random_seed(0)
    ids = np.arange(vocab_size, dtype="int32")
    teacher = registry.build(name, vocab_size, dim, counts=counts, **options)
    randomise_weights(teacher)
    student = registry.build(name, vocab_size, dim, counts=counts, **options)
    before, after = fit_to_teacher(student, teacher, ids)
    assert after < 0.01 * before, (before, after)


def fit_planted_table(layer, vocab_size: int, dim: int, optimizer, passes: int) -> tuple[float, float]:
    """MSE of `layer` against a planted random table, before and after fitting it.

    The fit is one epoch over `passes` shuffled copies of the ids: one trace, many passes.
    """
    target = np.random.default_rng(1).normal(scale=0.3, size=(vocab_size, dim)).astype("float32")
    ids = np.arange(vocab_size)
    start = float(np.mean((ops.convert_to_numpy(layer(ids)) - target) ** 2))
    inputs = keras.Input((), dtype="int32")
    model = keras.Model(inputs, layer(inputs))
    model.compile(optimizer, "mse")
    train_ids = np.random.default_rng(2).permutation(np.tile(ids, passes))
    model.fit(train_ids, target[train_ids], epochs=1, batch_size=32, verbose=0)
    end = float(np.mean((ops.convert_to_numpy(layer(ids)) - target) ** 2))
    return start, end


def keras_file_round_trip(layer, ids: np.ndarray, path) -> keras.Model:
    """A model of `layer` saved to `path` (.keras) reloads to the same outputs on `ids`; returns the reloaded one."""
    inputs = keras.Input(ids.shape[1:], dtype="int32")
    model = keras.Model(inputs, layer(inputs))
    model.save(path)
    reloaded = keras.models.load_model(path)
    np.testing.assert_array_equal(model.predict(ids, verbose=0), reloaded.predict(ids, verbose=0))
    return reloaded
