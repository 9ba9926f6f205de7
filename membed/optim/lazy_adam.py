"""Lazy Adam: the moments of the rows a batch touches, and only those, are updated."""

from __future__ import annotations

import keras
import tensorflow as tf

from membed.optim.base import RowSparseOptimizer, compute_dtype, handle, itemsize, tf_variable


@keras.saving.register_keras_serializable(package="membed")
class LazyAdam(RowSparseOptimizer):
    """Adam that updates a sparse gradient's rows and their moments only.

    For the rows `r` a batch touches, with `g` their summed gradient and `t`
    the optimizer's global step (`iterations + 1`):

        m[r] = beta_1 * m[r] + (1 - beta_1) * g
        v[r] = beta_2 * v[r] + (1 - beta_2) * g**2
        var[r] -= learning_rate * sqrt(1 - beta_2**t) / (1 - beta_1**t) * m[r] / (sqrt(v[r]) + epsilon)

    as TF Addons' `LazyAdam` did. How it differs from dense Adam: dense Adam
    decays every row's moments every step and so keeps moving a row for many
    steps after its last gradient (momentum); here a row that no batch
    touches keeps its value and its moments unchanged, and the bias
    correction still follows the global step, not the row's own count of
    updates. On rows touched every step the two are the same; for rare ids
    the lazy update is the one that does not drift. Memory: the two moments
    (2 x the table) and no temporary of the table's size, where Keras's Adam
    rewrites both moments in full each step.

    Dense gradients get textbook Adam in one `ResourceApplyAdam` (as
    `FusedAdam`).

    Args:
        learning_rate: step size (Keras's default, 0.001).
        beta_1, beta_2: moment decay rates (0.9, 0.999).
        epsilon: added to the denominator (Keras's default, 1e-7).
        **kwargs: other `keras.optimizers.Optimizer` arguments.

    Example:
        >>> model.compile(optimizer=LazyAdam(learning_rate=1e-3), loss="mse")

    References:
        Kingma and Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
    """

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, name="lazy_adam", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        for label, beta in (("beta_1", beta_1), ("beta_2", beta_2)):
            if not 0 <= beta < 1:
                raise ValueError(f"LazyAdam: `{label}` must be in [0, 1); got {beta!r}.")
        if epsilon < 0:
            raise ValueError(f"LazyAdam: `epsilon` must be >= 0; got {epsilon!r}.")
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)

    @classmethod
    def state_bytes_per_row(cls, dim: int, dtype: str = "float32") -> int:
        return 2 * dim * itemsize(dtype)

    def build_slots(self, variable):
        return (
            self.add_variable_from_reference(variable, "momentum"),
            self.add_variable_from_reference(variable, "velocity"),
        )

    def _step_size(self, learning_rate, dtype):
        """(learning_rate * sqrt(1 - beta_2**t) / (1 - beta_1**t), beta_1**t, beta_2**t) in `dtype`."""
        step = tf.cast(self.iterations + 1, dtype)
        beta_1_power = tf.pow(tf.cast(self.beta_1, dtype), step)
        beta_2_power = tf.pow(tf.cast(self.beta_2, dtype), step)
        step_size = tf.cast(learning_rate, dtype) * tf.sqrt(1 - beta_2_power) / (1 - beta_1_power)
        return step_size, beta_1_power, beta_2_power

    def apply_dense(self, variable, slots, gradient, learning_rate):
        dtype = variable.dtype
        if dtype.size == 2 and variable.shape.rank:
            # In 16 bits beta_2 rounds to 1 and ResourceApplyAdam never moves; the
            # row rule computes in float32. Every row of a dense gradient is touched.
            rows = tf.range(tf.shape(gradient)[0])
            return self.apply_rows(variable, slots, rows, gradient, learning_rate)
        _, beta_1_power, beta_2_power = self._step_size(learning_rate, dtype)
        tf.raw_ops.ResourceApplyAdam(
            var=handle(variable),
            m=handle(slots[0]),
            v=handle(slots[1]),
            beta1_power=beta_1_power,
            beta2_power=beta_2_power,
            lr=tf.cast(learning_rate, dtype),
            beta1=tf.constant(self.beta_1, dtype),
            beta2=tf.constant(self.beta_2, dtype),
            epsilon=tf.constant(self.epsilon, dtype),
            grad=gradient,
        )

    def apply_rows(self, variable, slots, rows, values, learning_rate):
        compute = compute_dtype(variable.dtype)
        step_size, _, _ = self._step_size(learning_rate, compute)
        momentum, velocity = tf_variable(slots[0]), tf_variable(slots[1])
        values = tf.cast(values, compute)
        m_rows = self.beta_1 * tf.cast(tf.gather(momentum, rows), compute) + (1 - self.beta_1) * values
        v_rows = self.beta_2 * tf.cast(tf.gather(velocity, rows), compute) + (1 - self.beta_2) * tf.square(values)
        momentum.scatter_update(tf.IndexedSlices(tf.cast(m_rows, momentum.dtype), rows))
        velocity.scatter_update(tf.IndexedSlices(tf.cast(v_rows, velocity.dtype), rows))
        update = step_size * m_rows / (tf.sqrt(v_rows) + self.epsilon)
        variable.scatter_sub(tf.IndexedSlices(tf.cast(update, variable.dtype), rows))

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}
