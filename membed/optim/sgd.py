"""Plain stochastic gradient descent, touching only the rows a batch looks up."""

from __future__ import annotations

import keras
import tensorflow as tf

from membed.optim.base import RowSparseOptimizer, handle


@keras.saving.register_keras_serializable(package="membed")
class SGD(RowSparseOptimizer):
    """`var -= learning_rate * gradient`, with no optimizer state.

    A sparse gradient subtracts from its rows only (one scatter); a dense
    gradient is one `ResourceApplyGradientDescent`. The cheapest rule in
    memory (no slots at all) and the one every other rule reduces to.

    Args:
        learning_rate: step size (Keras's `SGD` default, 0.01).
        **kwargs: other `keras.optimizers.Optimizer` arguments.

    Example:
        >>> model.compile(optimizer=SGD(learning_rate=0.1), loss="mse")
    """

    def __init__(self, learning_rate=0.01, name="sgd", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)

    @classmethod
    def state_bytes_per_row(cls, dim: int, dtype: str = "float32") -> int:
        return 0

    def apply_dense(self, variable, slots, gradient, learning_rate):
        tf.raw_ops.ResourceApplyGradientDescent(
            var=handle(variable), alpha=tf.cast(learning_rate, variable.dtype), delta=gradient
        )

    def apply_rows(self, variable, slots, rows, values, learning_rate):
        step = tf.cast(learning_rate, variable.dtype) * values
        variable.scatter_sub(tf.IndexedSlices(step, rows))
