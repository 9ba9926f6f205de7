"""Tests for ROBE-Z (membed/strategies/robe.py)."""

from __future__ import annotations

import numpy as np
import pytest
import strategy_checks as checks
from keras import ops

from membed.strategies import registry
from membed.strategies.robe import ROBEEmbedding


@pytest.mark.parametrize(
    "vocab_size, dim, options, params",
    [
        (1000, 8, {"size": 777, "block_size": 4}, 777),
        (5000, 17, {}, 850),  # default ceil(V * dim / 100); block_size min(dim, 32) = 17
        (5000, 64, {}, 3200),
        (37, 4, {}, 4),  # ceil(1.48) = 2, raised to the block size 4
        (2, 1, {}, 1),
    ],
)
def test_cost_matches_hand_count_and_built_layer(vocab_size, dim, options, params):
    checks.cost("robe", vocab_size, dim, options, params)


def test_default_block_size():
    assert ROBEEmbedding(1000, 17).block_size == 17
    assert ROBEEmbedding(1000, 64).block_size == 32
    assert ROBEEmbedding(1000, 64).num_blocks == 2


@pytest.mark.parametrize(
    "options, message",
    [
        ({"block_size": 0}, r"ROBEEmbedding: invalid `block_size`: 0\. It must be an integer >= 1\."),
        ({"block_size": 9}, r"invalid `block_size`: 9\. It must be <= dim \(8\)\."),
        ({"size": 0}, r"invalid `size`: 0\. It must be an integer >= 1\."),
        ({"size": 8001}, r"invalid `size`: 8001\. It must be <= vocab_size \* dim \(8000\)\."),
        ({"seed": -2}, r"invalid `seed`: -2"),
    ],
)
def test_bad_options(options, message):
    checks.bad_options(ROBEEmbedding, options, message)


def test_offsets_are_pinned_and_match_numpy_reference():
    layer = ROBEEmbedding(1000, 8, size=1000, block_size=4, seed=0)
    pinned = [[935, 951], [395, 537], [739, 319], [523, 43], [909, 613], [530, 91]]
    checks.pinned_map(layer.offsets, pinned, count=2, num_buckets=1000)


def test_blocks_are_consecutive_wrap_around_and_are_cut_to_dim():
    # dim 10 in blocks of 4: two whole blocks and the first 2 values of a third.
    layer = ROBEEmbedding(50, 10, size=7, block_size=4, seed=1)
    ids = np.arange(50, dtype="int32")
    offsets = ops.convert_to_numpy(layer.offsets(ids))
    positions = ops.convert_to_numpy(layer.positions(ids))
    assert offsets.shape == (50, 3) and positions.shape == (50, 10)
    block = np.arange(10) // 4
    within = np.arange(10) % 4
    np.testing.assert_array_equal(positions, (offsets[:, block] + within) % 7)
    assert (positions.max(axis=1) < 7).all() and (positions == 0).any()


def test_lookup_reads_the_shared_array():
    layer = registry.build("robe", 300, 6, size=50, block_size=3, seed=4)
    memory = np.random.default_rng(0).normal(size=50).astype("float32")
    layer.set_weights([memory])
    ids = np.array([[5, 299], [0, 17]], dtype="int32")
    out = ops.convert_to_numpy(layer(ids))
    positions = ops.convert_to_numpy(layer.positions(ids.reshape(-1))).reshape(2, 2, 6)
    np.testing.assert_array_equal(out, memory[positions])


def test_huge_vocabulary_uses_int64_ids():
    checks.huge_vocabulary("robe", count=2, num_buckets=1000, hashed="offsets", size=1000, block_size=2)


def test_learns_a_planted_array():
    checks.learns_from_teacher("robe", {"size": 400, "block_size": 4, "seed": 3})


@pytest.mark.parametrize("compression", [5, 20, 100])
def test_options_for_compression(compression):
    checks.reaches_compression(ROBEEmbedding, compression)


def test_options_for_compression_out_of_reach():
    with pytest.raises(ValueError, match="cannot reach 5x compression at vocab_size=2, dim=1"):
        ROBEEmbedding.options_for_compression(2, 1, 5)
