"""Initializers for embedding tables: the same draws as Keras's, at one copy of the table's memory."""

from __future__ import annotations

import math

import keras

# Tables of at least this many values are drawn inside a tf.function (see TableUniform).
_GRAPH_INIT_VALUES = 2**20


class TableUniform(keras.initializers.Initializer):
    """Uniform(-limit, limit) initializer whose peak memory is one copy of the table.

    Keras's `RandomUniform` draws [0, 1) values, then scales and shifts them
    op by op, so a 1 GB table briefly needs about 3 GB; at 1e8 ids that alone
    breaks a 2 GB budget. On the TensorFlow backend this draws the same
    distribution inside one `tf.function`, where TensorFlow reuses the draw's
    buffer for the scale and shift, and the variable adopts the result without
    a copy. The per-call seed comes from Keras's global seed state, so
    `keras.utils.set_random_seed` makes it reproducible. Other backends use
    `keras.random.uniform`.

    Args:
        limit: half-width of the interval; 0.05 matches Keras's "uniform".

    Example:
        >>> self.add_weight(shape=(rows, dim), initializer=TableUniform(0.05), name="table")
    """

    def __init__(self, limit: float = 0.05):
        self.limit = float(limit)

    def __call__(self, shape, dtype=None):
        dtype = keras.backend.standardize_dtype(dtype or keras.backend.floatx())
        # Small tables skip the tracing cost; their temporaries do not matter.
        if keras.backend.backend() != "tensorflow" or math.prod(shape) < _GRAPH_INIT_VALUES:
            return keras.random.uniform(shape, -self.limit, self.limit, dtype=dtype)
        import tensorflow as tf

        seed = keras.random.randint((2,), 0, 2**31 - 1, dtype="int32")
        shape = tuple(int(d) for d in shape)

        @tf.function(autograph=False)
        def draw(seed):
            return tf.random.stateless_uniform(
                shape, seed=seed, minval=-self.limit, maxval=self.limit, dtype=dtype
            )

        return draw(seed)

    def get_config(self) -> dict:
        return {"limit": self.limit}
