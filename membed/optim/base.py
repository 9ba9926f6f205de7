"""The base of membed's row-sparse optimizers: a sparse gradient updates only the rows it touches."""

from __future__ import annotations

from typing import Any, Sequence

import keras
import tensorflow as tf

# The element types an optimizer can update, with their bytes per value; anything
# else (an int8 table) is not trained. (NumPy has no bfloat16 to ask.)
BYTES_PER_FLOAT = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8}
FLOAT_DTYPES = tuple(BYTES_PER_FLOAT)


def itemsize(dtype: str) -> int:
    """Bytes per value of a float dtype; ValueError naming the valid ones otherwise."""
    if dtype not in BYTES_PER_FLOAT:
        raise ValueError(f"Unknown float dtype {dtype!r}. Use one of: {', '.join(FLOAT_DTYPES)}.")
    return BYTES_PER_FLOAT[dtype]


def compute_dtype(dtype):
    """The dtype to do a row update's arithmetic in: float64 for float64, else float32.

    In 16 bits Adam's `beta_2 = 0.999` rounds to 1 (and the step to 0); the
    rows a batch touches are few, so computing them in float32 costs nothing.
    The results are stored back in the variable's dtype.
    """
    return tf.float64 if tf.as_dtype(dtype) == tf.float64 else tf.float32


def handle(variable):
    """The resource handle of a Keras (or TensorFlow) variable, for `tf.raw_ops`."""
    return tf_variable(variable).handle


def tf_variable(variable):
    """The `tf.Variable` under a Keras variable (a `tf.Variable` passes through)."""
    return variable.value if isinstance(variable, keras.Variable) else variable


def check_trainable(variables: Sequence[Any], optimizer: str) -> None:
    """Raises ValueError naming the first variable an optimizer cannot update.

    Non-trainable weights (the int8 table of a post-training quantized
    embedding, an index) have no optimizer state and take no updates.
    """
    for variable in variables:
        dtype = keras.backend.standardize_dtype(variable.dtype)
        label = getattr(variable, "path", None) or variable.name
        if not variable.trainable:
            raise ValueError(
                f"{optimizer}: cannot update `{label}` ({dtype}): it is not trainable (an int8 table is "
                "post-training only). Pass trainable variables only, e.g. `model.trainable_variables`."
            )
        if dtype not in FLOAT_DTYPES:
            raise ValueError(
                f"{optimizer}: cannot update `{label}`: its dtype is {dtype}. Valid: {', '.join(FLOAT_DTYPES)}."
            )


class Fill(keras.initializers.Initializer):
    """Every value `value`, made in one buffer.

    Keras's `Constant` multiplies a tensor of ones by the value: two
    temporaries the size of the slot, which for a table's accumulator is the
    size of the table.
    """

    def __init__(self, value: float = 0.0):
        self.value = float(value)

    def __call__(self, shape, dtype=None):
        return keras.ops.full(shape, self.value, dtype=dtype or keras.backend.floatx())

    def get_config(self) -> dict:
        return {"value": self.value}


def summed_rows(gradient):
    """The distinct rows of a `tf.IndexedSlices` gradient and each row's summed gradient.

    A batch that looks an id up twice yields two slices for that row; the
    non-linear rules (AdaGrad, Adam) must see their sum, as a dense gradient
    would hold it, not one update per occurrence.

    Returns:
        (rows, values): int rows of shape (n,), values of shape (n, ...).
    """
    rows, position = tf.unique(gradient.indices)
    values = tf.math.unsorted_segment_sum(gradient.values, position, tf.size(rows))
    return rows, values


class RowSparseOptimizer(keras.optimizers.Optimizer):
    """A Keras optimizer whose sparse gradients update only the rows they touch.

    On the TensorFlow backend the gradient of `tf.gather(table, ids)` reaches
    `update_step` as a `tf.IndexedSlices` (Keras passes it through
    `apply_gradients` untouched). Keras's own optimizers then rewrite every
    row of every slot; subclasses of this class instead sum the slices of
    repeated ids (`summed_rows`) and update only those rows of the variable
    and of its slots, with scatter ops and `tf.raw_ops.ResourceSparseApply*`,
    so no temporary the size of the table is made. Dense gradients (dense
    layers, TT cores) get the dense form of the same rule.

    Slots are Keras optimizer variables created in `build`, so they are
    listed in `optimizer.variables` and saved and restored with the model.

    Look a table up with `tf.gather(variable.value, ids)` (a `ResourceGather`).
    After its first sparse update TensorFlow keeps a variable in copy-on-read
    mode, where every dense read (`ReadVariableOp`) copies the whole table:
    `tf.gather` on a Keras variable, and `keras.ops.take`, convert it with
    such a read first, which costs one table-sized copy per step (measured:
    a `full` table at V = 1e7 peaks at 2.0x the table with sgd instead of 1.0x).

    Subclasses implement `build_slots(variable) -> tuple`, `apply_dense` and
    `apply_rows`, and the classmethod `state_bytes_per_row(dim, dtype)`.

    `weight_decay` is refused: Keras applies it to every row of every
    variable each step (a temporary the size of the table).

    Args:
        learning_rate: float, schedule or callable, as for any Keras optimizer.
        **kwargs: the other `keras.optimizers.Optimizer` arguments
            (`clipnorm`, `name`, ...).

    Example:
        >>> model.compile(optimizer=RowwiseAdagrad(learning_rate=0.05), loss="mse")
    """

    def __init__(self, learning_rate, **kwargs):
        if keras.backend.backend() != "tensorflow":
            raise ValueError(
                f"{type(self).__name__} needs the TensorFlow backend; got {keras.backend.backend()!r}."
            )
        if kwargs.get("weight_decay"):
            raise ValueError(
                f"{type(self).__name__}: `weight_decay` is not supported (got {kwargs['weight_decay']!r}): "
                "Keras applies it to every row each step. Use weight_decay=None."
            )
        super().__init__(learning_rate=learning_rate, **kwargs)

    @classmethod
    def state_bytes_per_row(cls, dim: int, dtype: str = "float32") -> int:
        """Optimizer-state bytes per table row of `dim` values of `dtype`."""
        raise NotImplementedError

    def build_slots(self, variable) -> tuple:
        """Creates and returns the slot variables of one model variable."""
        return ()

    def apply_dense(self, variable, slots: tuple, gradient, learning_rate) -> None:
        raise NotImplementedError

    def apply_rows(self, variable, slots: tuple, rows, values, learning_rate) -> None:
        """Updates `rows` (distinct) of `variable` by their summed gradients `values`."""
        raise NotImplementedError

    def build(self, variables):
        check_trainable(variables, type(self).__name__)
        if self.built:
            return
        super().build(variables)
        self._slots = [
            () if self._overwrite_variable_with_gradient(variable) else self.build_slots(variable)
            for variable in variables
        ]

    def apply(self, grads, trainable_variables=None):
        if trainable_variables is not None:
            trainable_variables = list(trainable_variables)
            check_trainable(trainable_variables, type(self).__name__)
        return super().apply(grads, trainable_variables)

    def update_step(self, gradient, variable, learning_rate):
        slots = self._slots[self._get_variable_index(variable)]
        if isinstance(gradient, tf.IndexedSlices):
            rows, values = summed_rows(gradient)
            self.apply_rows(variable, slots, rows, tf.cast(values, variable.dtype), learning_rate)
        else:
            self.apply_dense(variable, slots, tf.cast(gradient, variable.dtype), learning_rate)

    def slot_variables(self, variable) -> tuple:
        """The slots of one model variable (empty for plain SGD)."""
        return tuple(self._slots[self._get_variable_index(variable)])
