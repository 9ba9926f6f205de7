"""Tests for double hashing (membed/strategies/double_hash.py)."""

from __future__ import annotations

import numpy as np
import pytest
import strategy_checks as checks
from keras import ops

from membed.strategies import registry
from membed.strategies.double_hash import DoubleHashEmbedding


@pytest.mark.parametrize(
    "vocab_size, dim, options, params",
    [
        (1000, 8, {"num_rows": 100}, 2 * 100 * 8),
        (1000, 8, {"num_rows": 100, "combiner": "concat"}, 100 * 8),
        (1000, 7, {"num_rows": 10, "combiner": "concat"}, 10 * 4 + 10 * 3),  # dim split 4 + 3
        (5000, 17, {}, 2 * 250 * 17),  # default sum: round(V / 20) rows per table
        (5000, 17, {"combiner": "concat"}, 500 * 17),  # default concat: round(V / 10)
        (2, 1, {}, 2),
    ],
)
def test_cost_matches_hand_count_and_built_layer(vocab_size, dim, options, params):
    checks.cost("double_hash", vocab_size, dim, options, params)


@pytest.mark.parametrize(
    "dim, options, message",
    [
        (8, {"num_rows": 0}, r"DoubleHashEmbedding: invalid `num_rows`: 0\. It must be an integer >= 1\."),
        (8, {"num_rows": 1001}, r"invalid `num_rows`: 1001\. It must be <= vocab_size \(1000\)"),
        (8, {"combiner": "max"}, r"invalid `combiner`: 'max'\. Use one of: sum, concat\."),
        (1, {"combiner": "concat"}, r"`combiner='concat'` .* needs dim >= 2, got 1"),
        (8, {"seed": -1}, r"invalid `seed`: -1"),
    ],
)
def test_bad_options(dim, options, message):
    checks.bad_options(DoubleHashEmbedding, options, message, dim=dim)


def test_row_maps_are_pinned_and_match_numpy_reference():
    layer = DoubleHashEmbedding(1000, 8, num_rows=100, seed=0)
    pinned = [[35, 51], [95, 37], [39, 19], [23, 43], [9, 13], [30, 91]]
    checks.pinned_map(layer.rows, pinned, count=2, num_buckets=100)


@pytest.mark.parametrize("combiner", ["sum", "concat"])
def test_lookup_combines_the_two_rows(combiner):
    layer = registry.build("double_hash", 300, 5, num_rows=40, combiner=combiner, seed=7)
    first, second = (
        np.random.default_rng(j).normal(size=w.shape).astype("float32")
        for j, w in enumerate(layer.get_weights())
    )
    layer.set_weights([first, second])
    ids = np.array([5, 299, 0, 17], dtype="int32")
    rows = ops.convert_to_numpy(layer.rows(ids))
    out = ops.convert_to_numpy(layer(ids))
    assert out.shape == (4, 5)
    if combiner == "sum":
        expected = first[rows[:, 0]] + second[rows[:, 1]]
    else:
        assert first.shape == (40, 3) and second.shape == (40, 2)
        expected = np.concatenate([first[rows[:, 0]], second[rows[:, 1]]], axis=1)
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_two_hashes_separate_ids_that_one_hash_merges():
    # 2000 ids into 50 rows: one hash leaves no id alone, but pairs of rows
    # (2500 cells) tell most ids apart.
    rows = ops.convert_to_numpy(
        DoubleHashEmbedding(2000, 4, num_rows=50, seed=0).rows(np.arange(2000, dtype="int32"))
    )
    pairs = rows[:, 0] * 50 + rows[:, 1]
    assert len(np.unique(rows[:, 0])) == 50
    assert len(np.unique(pairs)) > 1000


def test_huge_vocabulary_uses_int64_ids():
    checks.huge_vocabulary("double_hash", count=2, num_buckets=1000, num_rows=1000)


@pytest.mark.parametrize("combiner", ["sum", "concat"])
def test_learns_a_planted_table(combiner):
    checks.learns_from_teacher("double_hash", {"num_rows": 50, "combiner": combiner, "seed": 3})


@pytest.mark.parametrize("compression", [5, 20, 100])
def test_options_for_compression(compression):
    assert checks.reaches_compression(DoubleHashEmbedding, compression)["combiner"] == "sum"


def test_options_for_compression_falls_back_to_concat_then_gives_up():
    # 100 ids: sum reaches 50x at most (one row in each of two full-width tables).
    options = DoubleHashEmbedding.options_for_compression(100, 8, 90)
    assert options == {"num_rows": 1, "combiner": "concat", "seed": 0}  # 100x, within 20% of 90x
    assert DoubleHashEmbedding.options_for_compression(100, 8, 25) == {
        "num_rows": 2,
        "combiner": "sum",
        "seed": 0,
    }
    with pytest.raises(ValueError, match="cannot reach 500x compression at vocab_size=100"):
        DoubleHashEmbedding.options_for_compression(100, 8, 500)
