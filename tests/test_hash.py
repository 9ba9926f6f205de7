"""Tests for the hashing-trick embedding (membed/strategies/hash.py)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops

from helpers import fit_to_teacher, randomise_weights

from membed.strategies import registry
from membed.strategies._hashing import HashFamily
from membed.strategies.hash import HashEmbedding


@pytest.mark.parametrize(
    "vocab_size, dim, options, params",
    [
        (1000, 8, {"num_rows": 100}, 800),
        (5000, 17, {}, 500 * 17),  # default: round(V / 10) rows
        (37, 4, {}, 4 * 4),
        (2, 1, {}, 1),  # at least one row
    ],
)
def test_cost_matches_hand_count_and_built_layer(vocab_size, dim, options, params):
    cost = HashEmbedding.cost(vocab_size, dim, **options)
    assert cost.params == params
    assert cost.bytes_by_dtype == {"float32": 4 * params}
    assert cost.index_bytes == 0
    assert registry.build("hash", vocab_size, dim, **options).count_params() == params


@pytest.mark.parametrize(
    "options, message",
    [
        ({"num_rows": 0}, r"HashEmbedding: invalid `num_rows`: 0\. It must be an integer >= 1\."),
        ({"num_rows": 1001}, r"invalid `num_rows`: 1001\. It must be <= vocab_size \(1000\)"),
        ({"num_rows": 2.5}, r"invalid `num_rows`: 2\.5"),
        ({"seed": -3}, r"invalid `seed`: -3\. It must be an integer >= 0\."),
    ],
)
def test_bad_options(options, message):
    with pytest.raises(ValueError, match=message):
        HashEmbedding(1000, 8, **options)
    with pytest.raises(ValueError, match=message):
        HashEmbedding.cost(1000, 8, **options)


def test_row_map_is_pinned_and_matches_numpy_reference():
    layer = HashEmbedding(1000, 8, num_rows=100, seed=0)
    ids = np.array([0, 1, 2, 3, 500, 999], dtype="int32")
    rows = ops.convert_to_numpy(layer.rows(ids))
    # Recorded in another process; fails if placement ever changes.
    assert rows.tolist() == [35, 95, 39, 23, 9, 30]
    all_ids = np.arange(1000, dtype="int32")
    np.testing.assert_array_equal(
        ops.convert_to_numpy(layer.rows(all_ids)), HashFamily(0, 1).buckets_numpy(all_ids, 100)[:, 0]
    )


def test_lookup_reads_the_hashed_row():
    layer = registry.build("hash", 300, 3, num_rows=40, seed=7)
    table = np.arange(40 * 3, dtype="float32").reshape(40, 3)
    layer.set_weights([table])
    ids = np.array([[5, 299], [0, 17]], dtype="int32")
    out = ops.convert_to_numpy(layer(ids))
    rows = ops.convert_to_numpy(layer.rows(ids.reshape(-1))).reshape(2, 2)
    np.testing.assert_array_equal(out, table[rows])
    assert out.shape == (2, 2, 3)


def test_seed_changes_the_map_and_every_row_is_used():
    ids = np.arange(2000, dtype="int32")
    first = ops.convert_to_numpy(HashEmbedding(2000, 4, num_rows=50, seed=0).rows(ids))
    second = ops.convert_to_numpy(HashEmbedding(2000, 4, num_rows=50, seed=1).rows(ids))
    assert np.mean(first == second) < 0.1
    assert set(first.tolist()) == set(range(50))


def test_huge_vocabulary_uses_int64_ids():
    vocab_size = 3 * 2**31
    layer = registry.build("hash", vocab_size, 4, num_rows=1000)
    ids = np.array([0, 2**31 + 5, vocab_size - 1], dtype=np.int64)
    assert ops.convert_to_numpy(layer(ids)).shape == (3, 4)
    np.testing.assert_array_equal(
        ops.convert_to_numpy(layer.rows(ids)), HashFamily(0, 1).buckets_numpy(ids, 1000)[:, 0]
    )


def test_learns_a_planted_table():
    keras.utils.set_random_seed(0)
    ids = np.arange(200, dtype="int32")
    teacher = registry.build("hash", 200, 8, num_rows=50, seed=3)
    randomise_weights(teacher)
    student = registry.build("hash", 200, 8, num_rows=50, seed=3)
    before, after = fit_to_teacher(student, teacher, ids)
    assert after < 0.01 * before


@pytest.mark.parametrize("compression", [5, 20, 100])
def test_options_for_compression(compression):
    vocab_size, dim = 100_000, 64
    options = HashEmbedding.options_for_compression(vocab_size, dim, compression)
    reached = vocab_size * dim / HashEmbedding.cost(vocab_size, dim, **options).params
    assert abs(reached / compression - 1) < 0.2


def test_options_for_compression_out_of_reach():
    with pytest.raises(ValueError, match="cannot reach 500x compression at vocab_size=100"):
        HashEmbedding.options_for_compression(100, 8, 500)
    with pytest.raises(ValueError, match=r"invalid compression 0\.5\. It must be a number >= 1\."):
        HashEmbedding.options_for_compression(100, 8, 0.5)


def test_built_from_registry_spec():
    name, options = registry.parse_spec("hash:num_rows=30,seed=4")
    layer = registry.build(name, 500, 6, **options)
    assert isinstance(layer, HashEmbedding)
    assert (layer.num_rows, layer.seed) == (30, 4)
    assert layer.get_config()["num_rows"] == 30
