"""Row-wise AdaGrad: one float32 accumulator per table row, as DLRM and FBGEMM train embeddings."""

from __future__ import annotations

import keras
import tensorflow as tf

from membed.optim.adagrad import AdagradBase
from membed.optim.base import Fill, tf_variable


@keras.saving.register_keras_serializable(package="membed")
class RowwiseAdagrad(AdagradBase):
    """AdaGrad with one accumulator per row: the embedding optimizer of production recommenders.

    For each row `r` a batch touches, with `g` the row's summed gradient:

        acc[r] += mean(g**2)            # mean over the row's values
        var[r] -= learning_rate * g / (sqrt(acc[r]) + epsilon)

    so every value of a row shares one adaptive step size. The state is one
    float32 per row (4 bytes, against `4 * dim` for AdaGrad and `8 * dim`
    for Adam): a table trains in about its own size. Rows no batch touches
    keep their values and accumulators. This is the rule of DLRM's
    `RWSAdagrad` and of FBGEMM's `EXACT_ROWWISE_ADAGRAD` (TorchRec's default
    for tables).

    A "row" is a slice along a variable's first axis, for every variable:
    a dense gradient (a Dense kernel, a TT core) updates all its rows by the
    same rule, and a rank-0 or rank-1 variable has one value per row, where
    this is plain AdaGrad. (DLRM gives its dense layers ordinary AdaGrad
    instead; their state is small either way.) The accumulator is float32
    whatever the variable's dtype: summed squares in 16 bits lose the small
    gradients AdaGrad divides by.

    Args:
        learning_rate: step size (DLRM's and TorchRec's default, 0.01).
        initial_accumulator_value: starting accumulator (0, as in DLRM and FBGEMM).
        epsilon: added to the denominator (FBGEMM's default, 1e-8).
        **kwargs: other `keras.optimizers.Optimizer` arguments.

    Example:
        >>> model.compile(optimizer=RowwiseAdagrad(learning_rate=0.05), loss="mse")

    References:
        Naumov et al., "Deep Learning Recommendation Model for Personalization
        and Recommendation Systems", 2019 (DLRM, `optim/rwsadagrad.py`);
        Gupta, Bengio and Weston, "Training Highly Multiclass Classifiers",
        JMLR 2014 (AdaGrad with a shared step size per row).
    """

    def __init__(self, learning_rate=0.01, initial_accumulator_value=0.0, epsilon=1e-8,
                 name="rowwise_adagrad", **kwargs):
        super().__init__(learning_rate, initial_accumulator_value, epsilon, name=name, **kwargs)

    @classmethod
    def state_bytes_per_row(cls, dim: int, dtype: str = "float32") -> int:
        return 4  # one float32 per row, whatever the table's dtype

    def build_slots(self, variable):
        label = getattr(variable, "path", variable.name).replace("/", "_").replace(":", "_")
        accumulator = self.add_variable(
            shape=tuple(variable.shape[:1]),
            initializer=Fill(self.initial_accumulator_value),
            dtype="float32",
            name=f"{label}_row_accumulator",
        )
        return (accumulator,)

    def _scaled(self, values, accumulated, learning_rate, dtype):
        """learning_rate * values / (sqrt(accumulated) + epsilon), one accumulator per row."""
        denominator = tf.sqrt(accumulated) + self.epsilon
        if values.shape.rank > 1:  # broadcast each row's denominator over the row
            denominator = tf.reshape(denominator, [-1] + [1] * (values.shape.rank - 1))
        return tf.cast(tf.cast(learning_rate, tf.float32) * tf.cast(values, tf.float32) / denominator, dtype)

    def apply_dense(self, variable, slots, gradient, learning_rate):
        accumulator = tf_variable(slots[0])
        accumulator.assign_add(_row_mean_square(gradient))
        variable.assign_sub(self._scaled(gradient, accumulator, learning_rate, variable.dtype))

    def apply_rows(self, variable, slots, rows, values, learning_rate):
        accumulator = tf_variable(slots[0])
        accumulated = tf.gather(accumulator, rows) + _row_mean_square(values)
        accumulator.scatter_update(tf.IndexedSlices(accumulated, rows))
        update = self._scaled(values, accumulated, learning_rate, variable.dtype)
        variable.scatter_sub(tf.IndexedSlices(update, rows))


def _row_mean_square(values):
    """mean(values**2) over every axis but the first, in float32 (unchanged for rank <= 1)."""
    squares = tf.square(tf.cast(values, tf.float32))
    return tf.reduce_mean(squares, axis=list(range(1, values.shape.rank))) if values.shape.rank > 1 else squares
