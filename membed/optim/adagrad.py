"""AdaGrad with one accumulator per value, touching only the rows a batch looks up."""

from __future__ import annotations

import keras
import tensorflow as tf

from membed.optim.base import Fill, RowSparseOptimizer, handle, itemsize


class AdagradBase(RowSparseOptimizer):
    """The options both AdaGrads share: the starting accumulator and `epsilon`, checked and saved.

    Args:
        learning_rate: step size.
        initial_accumulator_value: starting accumulator, >= 0.
        epsilon: added to the denominator, >= 0.
        **kwargs: other `keras.optimizers.Optimizer` arguments.
    """

    def __init__(self, learning_rate, initial_accumulator_value, epsilon, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        if initial_accumulator_value < 0 or epsilon < 0:
            raise ValueError(
                f"{type(self).__name__}: `initial_accumulator_value` and `epsilon` must be >= 0; "
                f"got {initial_accumulator_value!r} and {epsilon!r}."
            )
        self.initial_accumulator_value = float(initial_accumulator_value)
        self.epsilon = float(epsilon)

    def get_config(self):
        return {
            **super().get_config(),
            "initial_accumulator_value": self.initial_accumulator_value,
            "epsilon": self.epsilon,
        }


@keras.saving.register_keras_serializable(package="membed")
class Adagrad(AdagradBase):
    """AdaGrad: `acc += g**2; var -= learning_rate * g / (sqrt(acc) + epsilon)`, per value.

    The accumulator has the variable's shape and dtype. A sparse gradient
    updates its rows with `ResourceSparseApplyAdagradV2` after repeated ids
    are summed; a dense gradient uses `ResourceApplyAdagradV2`. A row no
    batch touches keeps its value and its accumulator, exactly as dense
    AdaGrad would leave it (its gradient there is zero), so this is the
    dense rule, only cheaper.

    Unlike `keras.optimizers.Adagrad`, which divides by `sqrt(acc + epsilon)`,
    `epsilon` is added after the square root, as TensorFlow's kernels,
    PyTorch and DLRM do.

    Args:
        learning_rate: step size (Keras's default, 0.001).
        initial_accumulator_value: starting accumulator (Keras's default, 0.1).
        epsilon: added to the denominator (Keras's default, 1e-7).
        **kwargs: other `keras.optimizers.Optimizer` arguments.

    Example:
        >>> model.compile(optimizer=Adagrad(learning_rate=0.05), loss="mse")

    References:
        Duchi, Hazan and Singer, "Adaptive Subgradient Methods for Online
        Learning and Stochastic Optimization", JMLR 2011.
    """

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, name="adagrad", **kwargs):
        super().__init__(learning_rate, initial_accumulator_value, epsilon, name=name, **kwargs)

    @classmethod
    def state_bytes_per_row(cls, dim: int, dtype: str = "float32") -> int:
        return dim * itemsize(dtype)

    def build_slots(self, variable):
        initializer = Fill(self.initial_accumulator_value)
        return (self.add_variable_from_reference(variable, "accumulator", initializer=initializer),)

    def _constants(self, variable, learning_rate):
        return tf.cast(learning_rate, variable.dtype), tf.constant(self.epsilon, variable.dtype)

    def apply_dense(self, variable, slots, gradient, learning_rate):
        lr, epsilon = self._constants(variable, learning_rate)
        tf.raw_ops.ResourceApplyAdagradV2(
            var=handle(variable), accum=handle(slots[0]), lr=lr, epsilon=epsilon, grad=gradient
        )

    def apply_rows(self, variable, slots, rows, values, learning_rate):
        lr, epsilon = self._constants(variable, learning_rate)
        tf.raw_ops.ResourceSparseApplyAdagradV2(
            var=handle(variable), accum=handle(slots[0]), lr=lr, epsilon=epsilon, grad=values, indices=rows
        )

