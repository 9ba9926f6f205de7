"""Optimizers for embedding tables, by name: the ones that update only the rows a batch touches.

Keras 3's optimizers rewrite every row of their slots each step, even for the
sparse (`tf.IndexedSlices`) gradient of a table lookup, so one training step
of a table of V rows costs several V-sized temporaries. The optimizers here
(`sgd`, `adagrad`, `rowwise_adagrad`, `lazy_adam`) update only the rows a
batch looks up; `adam` is Keras's dense Adam, kept as the reference.

Example:
    >>> model.compile(optimizer=membed.optim.get("rowwise_adagrad", learning_rate=0.05), loss="mse")
    >>> membed.optim.state_bytes_per_row("lazy_adam", dim=64)
    512
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import keras

from membed.optim.adagrad import Adagrad
from membed.optim.base import BYTES_PER_FLOAT, FLOAT_DTYPES, RowSparseOptimizer, itemsize, summed_rows
from membed.optim.fused_adam import FusedAdam
from membed.optim.lazy_adam import LazyAdam
from membed.optim.rowwise_adagrad import RowwiseAdagrad
from membed.optim.sgd import SGD


@dataclasses.dataclass(frozen=True)
class OptimizerEntry:
    """One named optimizer.

    Attributes:
        name: the registry name (`--optimizer` on the command line).
        factory: builds the optimizer from keyword arguments.
        row_sparse: whether a sparse gradient updates only the rows it touches.
        state_bytes_per_row: (dim, dtype) -> optimizer-state bytes per row of a
            trainable table; a table of V rows holds V times this.
    """

    name: str
    factory: Callable[..., keras.optimizers.Optimizer]
    row_sparse: bool
    state_bytes_per_row: Callable[[int, str], int]


def _adam_state_bytes(dim: int, dtype: str = "float32") -> int:
    return 2 * dim * itemsize(dtype)  # Keras's Adam: two moments in the variable's dtype


OPTIMIZERS: dict[str, OptimizerEntry] = {
    entry.name: entry
    for entry in (
        OptimizerEntry("adam", keras.optimizers.Adam, False, _adam_state_bytes),
        OptimizerEntry("lazy_adam", LazyAdam, True, LazyAdam.state_bytes_per_row),
        OptimizerEntry("adagrad", Adagrad, True, Adagrad.state_bytes_per_row),
        OptimizerEntry("rowwise_adagrad", RowwiseAdagrad, True, RowwiseAdagrad.state_bytes_per_row),
        OptimizerEntry("sgd", SGD, True, SGD.state_bytes_per_row),
    )
}
NAMES: tuple[str, ...] = tuple(OPTIMIZERS)


def entry(name: str) -> OptimizerEntry:
    """The registry entry of optimizer `name`; ValueError listing the valid names otherwise."""
    try:
        return OPTIMIZERS[name]
    except (KeyError, TypeError):
        raise ValueError(f"Unknown optimizer {name!r}. Use one of: {', '.join(NAMES)}.") from None


def get(name: str, learning_rate: float | None = None, **options) -> keras.optimizers.Optimizer:
    """A new optimizer `name`, at its default learning rate unless one is given.

    Args:
        name: one of `NAMES`.
        learning_rate: the step size; None keeps the optimizer's default.
        **options: further constructor arguments (`epsilon`, `beta_1`, ...).

    Example:
        >>> get("rowwise_adagrad", learning_rate=0.05)
    """
    factory = entry(name).factory
    if learning_rate is not None:
        options["learning_rate"] = float(learning_rate)
    return factory(**options)


def state_bytes_per_row(name: str, dim: int, dtype: str = "float32") -> int:
    """Optimizer-state bytes per row of a trainable `dim`-wide table of `dtype`.

    adam and lazy_adam: 2 * dim values; adagrad: dim values (in the table's
    dtype); rowwise_adagrad: one float32; sgd: 0. Non-trainable tables (int8)
    carry no state at all.

    Example:
        >>> state_bytes_per_row("rowwise_adagrad", 64)
        4
    """
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"state_bytes_per_row: invalid `dim`: {dim!r}. It must be an integer >= 1.")
    return entry(name).state_bytes_per_row(dim, dtype)


__all__ = [
    "NAMES", "OPTIMIZERS", "BYTES_PER_FLOAT", "FLOAT_DTYPES", "OptimizerEntry", "RowSparseOptimizer",
    "Adagrad", "FusedAdam", "LazyAdam", "RowwiseAdagrad", "SGD", "entry", "get", "state_bytes_per_row",
    "summed_rows",
]
