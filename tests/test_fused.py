"""Fused (XLA) inference lookups give the plain graph path's vectors and keep the range check."""

import numpy as np
import pytest
import tensorflow as tf

from membed import strategies
from membed.strategies import base

# The strategies whose lookups hand a part to `EmbeddingStrategy.fused`.
FUSING = {"qr", "hash", "double_hash", "robe", "dhe", "quantized"}
# With large tables, `qr` has nothing left to fuse (its index arithmetic is two ops).
FUSING_LARGE = FUSING - {"qr"}


def make(name: str, vocab_size: int, dim: int):
    counts = np.random.default_rng(vocab_size).zipf(1.3, vocab_size).astype(np.int64)
    return strategies.build(name, vocab_size, dim, counts=counts)


@pytest.mark.parametrize("small_table_bytes", [0, base.FUSED_GATHER_MAX_BYTES])
@pytest.mark.parametrize("name", strategies.names())
def test_fused_inference_matches_the_graph_path(name, small_table_bytes, monkeypatch):
    # 0 bytes: every table counts as large, so only the index arithmetic is fused.
    monkeypatch.setattr(base, "FUSED_GATHER_MAX_BYTES", small_table_bytes)
    layer = make(name, 5000, 16)
    ids = tf.constant(np.random.default_rng(0).integers(0, 5000, (32, 3)), dtype=tf.int32)
    fused = tf.function(lambda x: layer(x))(ids)
    graph = tf.function(lambda x: layer(x, training=True))(ids)
    np.testing.assert_allclose(fused.numpy(), graph.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer(ids).numpy(), graph.numpy(), rtol=1e-5, atol=1e-6)  # eager
    assert bool(layer.__dict__.get("_compiled")) == (name in (FUSING if small_table_bytes else FUSING_LARGE))


@pytest.mark.parametrize("name", sorted(FUSING))
def test_fused_lookup_still_checks_ids(name):
    layer = make(name, 1000, 8)
    lookup = tf.function(lambda x: layer(x))
    lookup(tf.constant([1, 2], dtype=tf.int32))
    with pytest.raises(tf.errors.InvalidArgumentError, match="out-of-range id"):
        lookup(tf.constant([3, -1], dtype=tf.int32))


def test_training_calls_and_opted_out_layers_are_not_fused():
    layer = make("hash", 1000, 8)
    ids = tf.constant([1, 2, 3])
    with tf.GradientTape() as tape:
        vectors = tf.function(lambda x: layer(x, training=True))(ids)
    assert "_compiled" not in layer.__dict__
    assert isinstance(tape.gradient(vectors, layer.embeddings.value), tf.IndexedSlices)  # sparse, as plain
    layer.fuse_lookup = False
    tf.function(lambda x: layer(x))(ids)
    assert "_compiled" not in layer.__dict__


@pytest.mark.parametrize("name", strategies.names())
def test_every_strategy_compiles_under_xla(name):
    # A jit-compiled caller (train_model(jit_compile=True)) puts the whole lookup in
    # one XLA cluster; mixed_dim then masks per block instead of partitioning.
    layer = make(name, 1000, 8)
    ids = tf.constant(np.random.default_rng(1).integers(0, 1000, 64), dtype=tf.int32)
    compiled = tf.function(lambda x: layer(x, training=True), jit_compile=True)(ids)
    graph = tf.function(lambda x: layer(x, training=True))(ids)
    np.testing.assert_allclose(compiled.numpy(), graph.numpy(), rtol=1e-5, atol=1e-6)
