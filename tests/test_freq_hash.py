"""Tests for frequency-based hybrid hashing (membed/strategies/freq_hash.py)."""

from __future__ import annotations

import numpy as np
import pytest
import strategy_checks as checks
from keras import ops

from membed.strategies import registry
from membed.strategies._hashing import HashFamily
from membed.strategies.freq_hash import FreqHashEmbedding


@pytest.mark.parametrize(
    "vocab_size, dim, options, params, index_bytes",
    [
        (1000, 8, {"top_k": 30, "num_rows": 70}, 100 * 8, 30 * 4),
        (1000, 8, {"top_k": 0, "num_rows": 70}, 70 * 8, 0),
        (5000, 17, {}, (250 + 250) * 17, 250 * 4),  # defaults: round(V / 20) each
        (2, 1, {}, 1, 0),  # no private row, one shared row
        (3 * 2**31, 4, {"top_k": 5, "num_rows": 10}, 15 * 4, 5 * 8),  # int64 ids, int64 index
    ],
)
def test_cost_matches_hand_count(vocab_size, dim, options, params, index_bytes):
    checks.cost("freq_hash", vocab_size, dim, options, params, index_bytes, build=vocab_size < 10**6)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"num_rows": 0}, r"FreqHashEmbedding: invalid `num_rows`: 0\. It must be an integer >= 1\."),
        ({"top_k": -1}, r"invalid `top_k`: -1\. It must be an integer >= 0\."),
        ({"top_k": 1000}, r"invalid `top_k`: 1000\. It must be < vocab_size \(1000\)"),
        (
            {"top_k": 900, "num_rows": 101},
            r"invalid `num_rows`: 101\. It must be <= vocab_size - top_k \(100\)",
        ),
        ({"seed": 1.5}, r"invalid `seed`: 1\.5"),
    ],
)
def test_bad_options(options, message):
    checks.bad_options(FreqHashEmbedding, options, message)


def test_bad_counts():
    with pytest.raises(ValueError, match=r"`counts` must have one entry per id, shape \(1000,\)"):
        FreqHashEmbedding(1000, 8, top_k=10, counts=np.ones(999))


def test_top_ids_come_from_counts_and_get_private_rows():
    counts = np.zeros(1000, dtype=np.int64)
    frequent = np.array([917, 3, 450, 12, 700])
    counts[frequent] = [50, 40, 30, 20, 10]
    layer = FreqHashEmbedding(1000, 8, top_k=5, num_rows=20, seed=0, counts=counts)
    # The index is k-sized: the sorted top ids, nothing V-sized.
    np.testing.assert_array_equal(ops.convert_to_numpy(layer.index("top_ids")), np.sort(frequent))
    assert layer.index_bytes == 5 * 4
    slots = ops.convert_to_numpy(layer.rows(np.arange(1000, dtype="int32")))
    private = slots < 5
    np.testing.assert_array_equal(np.flatnonzero(private), np.sort(frequent))
    assert sorted(slots[private].tolist()) == [0, 1, 2, 3, 4]
    tail = np.setdiff1d(np.arange(1000), frequent)
    np.testing.assert_array_equal(slots[tail] - 5, HashFamily(0, 1).buckets_numpy(tail, 20)[:, 0])


def test_without_counts_the_lowest_ids_are_the_top_ids():
    layer = FreqHashEmbedding(1000, 8, top_k=10, num_rows=20, seed=0)
    slots = ops.convert_to_numpy(layer.rows(np.array([0, 1, 2, 3, 500, 999], dtype="int32")))
    # Recorded in another process: private rows 0..3, then hashed rows offset by top_k.
    assert slots.tolist() == [0, 1, 2, 3, 10 + 9, 10 + 10]


def test_lookup_reads_private_or_shared_rows():
    counts = np.arange(300)[::-1]  # id 0 most frequent
    layer = registry.build("freq_hash", 300, 4, counts=counts, top_k=7, num_rows=11, seed=2)
    shared, private = (
        np.random.default_rng(j).normal(size=w.shape).astype("float32")
        for j, w in enumerate(layer.get_weights())
    )
    layer.set_weights([shared, private])
    ids = np.array([[0, 6], [7, 299]], dtype="int32")
    out = ops.convert_to_numpy(layer(ids))
    table = np.concatenate([private, shared])
    slots = ops.convert_to_numpy(layer.rows(ids.reshape(-1))).reshape(2, 2)
    np.testing.assert_array_equal(out, table[slots])
    assert slots[0].tolist() == [0, 6] and (slots[1] >= 7).all()


def test_index_survives_save_and_reload(tmp_path):
    counts = np.random.default_rng(0).zipf(1.5, 500)
    layer = registry.build("freq_hash", 500, 4, counts=counts, top_k=25, num_rows=30, layer_name="emb")
    ids = np.arange(500, dtype="int32")
    loaded = checks.keras_file_round_trip(layer, ids, tmp_path / "freq_hash.keras").get_layer("emb")
    np.testing.assert_array_equal(
        ops.convert_to_numpy(loaded.index("top_ids")), ops.convert_to_numpy(layer.index("top_ids"))
    )
    np.testing.assert_array_equal(ops.convert_to_numpy(loaded(ids)), ops.convert_to_numpy(layer(ids)))


def test_huge_vocabulary_uses_int64_ids():
    layer = registry.build("freq_hash", checks.HUGE_VOCAB, 4, top_k=5, num_rows=1000)
    assert ops.convert_to_numpy(layer.index("top_ids")).dtype == np.int64
    ids = np.array([0, 4, 2**31 + 5, checks.HUGE_VOCAB - 1], dtype=np.int64)
    assert ops.convert_to_numpy(layer(ids)).shape == (4, 4)
    slots = ops.convert_to_numpy(layer.rows(ids))
    assert slots[:2].tolist() == [0, 4]
    np.testing.assert_array_equal(slots[2:] - 5, HashFamily(0, 1).buckets_numpy(ids[2:], 1000)[:, 0])


def test_learns_a_planted_table():
    counts = np.random.default_rng(1).zipf(1.3, 200)
    checks.learns_from_teacher("freq_hash", {"top_k": 20, "num_rows": 40, "seed": 3}, counts=counts)


@pytest.mark.parametrize("compression", [5, 20, 100])
def test_options_for_compression(compression):
    options = checks.reaches_compression(FreqHashEmbedding, compression)
    assert options["top_k"] > 0 and options["num_rows"] > 0


def test_options_for_compression_out_of_reach():
    with pytest.raises(ValueError, match="cannot reach 500x compression at vocab_size=100"):
        FreqHashEmbedding.options_for_compression(100, 8, 500)
