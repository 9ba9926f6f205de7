"""FusedAdam takes the same steps as Keras's Adam (dense semantics on sparse gradients)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from membed.optim import FusedAdam


def run(optimizer, densify: bool, steps: int = 15):
    rng = np.random.default_rng(0)
    table = keras.Variable(rng.normal(size=(40, 4)).astype("float32"))
    scale = keras.Variable(np.ones((4,), "float32"))

    @tf.function
    def step(ids):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(tf.gather(table.value, ids) * scale.value - 1.0))
        grads = tape.gradient(loss, [table.value, scale.value])
        if densify:
            grads = [tf.convert_to_tensor(g) for g in grads]
        optimizer.apply_gradients(zip(grads, [table, scale]))

    for s in range(steps):
        step(tf.constant(np.random.default_rng(s).integers(0, 40, 8)))  # repeats included
    return table.numpy(), scale.numpy()


@pytest.mark.parametrize("sparse", [False, True])
def test_fused_adam_matches_keras_adam_on_dense_gradients(sparse):
    expected = run(keras.optimizers.Adam(learning_rate=1e-2), densify=True)
    # FusedAdam densifies sparse gradients itself: every row's moments decay each step.
    got = run(FusedAdam(learning_rate=1e-2), densify=not sparse)
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)


def test_fused_adam_round_trips_its_config():
    optimizer = FusedAdam(learning_rate=3e-3, beta_1=0.8)
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(restored, FusedAdam) and restored.get_config() == optimizer.get_config()
