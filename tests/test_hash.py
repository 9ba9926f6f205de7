"""Tests for the hashing-trick embedding (membed/strategies/hash.py)."""

from __future__ import annotations

import numpy as np
import pytest
import strategy_checks as checks
from keras import ops

from membed.strategies import registry
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
    checks.cost("hash", vocab_size, dim, options, params)


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
    checks.bad_options(HashEmbedding, options, message)


def test_row_map_is_pinned_and_matches_numpy_reference():
    layer = HashEmbedding(1000, 8, num_rows=100, seed=0)
    checks.pinned_map(layer.rows, [35, 95, 39, 23, 9, 30], count=1, num_buckets=100)


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
    checks.huge_vocabulary("hash", count=1, num_buckets=1000, num_rows=1000)


def test_learns_a_planted_table():
    checks.learns_from_teacher("hash", {"num_rows": 50, "seed": 3})


@pytest.mark.parametrize("compression", [5, 20, 100])
def test_options_for_compression(compression):
    checks.reaches_compression(HashEmbedding, compression)


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
