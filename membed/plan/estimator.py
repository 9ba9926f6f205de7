"""The training memory of an embedding layer, part by part, before building it.

Built the way TorchRec's planner sizes a table
(`shard_estimators.calculate_shard_storages`): the tensor's bytes, the
optimizer's state as a multiple of the trainable bytes that follows their
dtype, the per-batch inputs and outputs, and a reservation of its own
(`constants.Reservation`). Two things are specific to Keras 3 on
TensorFlow, and so modelled here per optimizer:

* Keras's `Adam` densifies a table's sparse gradient and rewrites both full
  moments every step, so its step allocates a few copies of every trainable
  table (`StepConstants.densified_copies`): `full` at V = 1e6 peaks at 6x its
  table, not the 3x of table + two moments;
* the row-sparse optimizers of `membed.optim` touch only the rows a batch
  reads, so their step allocates a few copies of the gathered rows, whatever
  the table's size.

A `Layout` says what a layer holds (its tables, its dense weights, their
dtypes, which are trainable, its index), from the strategy's cost formula
(`Layout.of`) or a built layer (`Layout.from_layer`); `estimate` turns a
layout, a batch size and an optimizer into an `Estimate`.

Example:
    >>> from membed.plan import estimate
    >>> e = estimate("full", 10**6, 64, optimizer="rowwise_adagrad")
    >>> e.weights.total, e.optimizer_state.total  # 4 * V * dim, one float32 per row
    (256000000, 4000000)
    >>> e.train_peak_bytes("adam") > 5 * e.weights.total  # Keras's Adam densifies
    True
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from membed.plan.constants import (
    ALLOCATOR,
    COMPUTE_BYTES,
    DEFAULT_OPTIMIZER,
    ID_BYTES,
    OPTIMIZER_NAMES,
    OPTIMIZERS,
    STEP,
    OptimizerModel,
    Reservation,
    StepConstants,
)
from membed.plan.layout import Bytes, Layout, Weight, itemsize

DEFAULT_BATCH_SIZE = 4096


def optimizer_model(name: str) -> OptimizerModel:
    """The model of optimizer `name`; ValueError listing the valid names otherwise."""
    try:
        return OPTIMIZERS[name]
    except (KeyError, TypeError):
        raise ValueError(f"Unknown optimizer {name!r}. Use one of: {', '.join(OPTIMIZER_NAMES)}.") from None


# ----- the estimate ----------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Estimate:
    """The memory of looking up and training one layer, part by part.

    Attributes:
        layout: what the layer holds.
        optimizer: the optimizer the training parts are for.
        batch_size: ids per step.
        weights: the weights' bytes by dtype.
        optimizer_state: the optimizer's slots by dtype (none for
            non-trainable weights; a 16-bit table's follow its dtype).
        index: bytes of the id-mapping index.
        activations: per-batch tensors at the backward pass's peak: ids,
            the output, the loss and their gradients, the gathered rows and
            their sparse gradients, dense layers' activations.
        lookup_activations: the same at the lookup's peak (forward only).
        step: what the optimizer's update allocates besides its state: the
            gradients it is handed and its temporaries (Keras's Adam: a few
            copies of the largest trainable table; row-sparse optimizers: of
            the rows a batch read).
        reservation: what is held back beyond these parts.

    A training step's two phases peak apart: the backward pass frees the
    forward's tensors before the optimizer creates its slots and updates,
    so the training peak is weights + index + max(activations, optimizer
    state + step), plus the reservation.

    Example:
        >>> e = estimate("full", 1000, 64, optimizer="sgd", batch_size=128)
        >>> e.train_peak_bytes() == e.reservation.bytes_for(e.modelled_train_bytes) + e.modelled_train_bytes
        True
    """

    layout: Layout
    optimizer: str
    batch_size: int
    weights: Bytes
    optimizer_state: Bytes
    index: int
    activations: int
    lookup_activations: int
    step: int
    reservation: Reservation
    constants: StepConstants = dataclasses.field(default=STEP, repr=False)

    @property
    def modelled_lookup_bytes(self) -> int:
        return self.weights.total + self.index + self.lookup_activations

    @property
    def modelled_train_bytes(self) -> int:
        held = self.weights.total + self.index
        return held + max(self.activations, self.optimizer_state.total + self.step)

    @property
    def trains(self) -> bool:
        """Whether the layer has trainable weights (an int8 table has none: no train step)."""
        return any(w.trainable for w in self.layout.weights)

    @property
    def state_bytes(self) -> int:
        """What training keeps between steps: weights, optimizer state, index."""
        return self.weights.total + self.optimizer_state.total + self.index

    @property
    def lookup_peak_bytes(self) -> int:
        """Peak bytes of looking up one batch: weights, index, forward tensors, reservation."""
        return self.modelled_lookup_bytes + self.reservation.bytes_for(self.modelled_lookup_bytes)

    def train_peak_bytes(self, optimizer: str | None = None) -> int:
        """Peak bytes of one training step with `optimizer` (default: this estimate's)."""
        if optimizer is not None and optimizer != self.optimizer:
            return self.with_optimizer(optimizer).train_peak_bytes()
        return self.modelled_train_bytes + self.reservation.bytes_for(self.modelled_train_bytes)

    def with_optimizer(self, optimizer: str) -> "Estimate":
        return estimate_layout(self.layout, optimizer, self.batch_size, self.reservation, self.constants)

    def as_dict(self) -> dict[str, Any]:
        """Flat JSON-ready fields (bytes), as a benchmark record or `plan --json` carries them."""
        return {
            "optimizer": self.optimizer,
            "batch_size": self.batch_size,
            "weights_bytes": self.weights.total,
            "weights_bytes_by_dtype": dict(self.weights.by_dtype),
            "optimizer_state_bytes": self.optimizer_state.total,
            "index_bytes": self.index,
            "activations_bytes": self.activations,
            "step_bytes": self.step,
            "reservation_bytes": self.reservation.bytes_for(self.modelled_train_bytes),
            "estimated_peak_bytes_lookup": self.lookup_peak_bytes,
            "estimated_peak_bytes_train": self.train_peak_bytes() if self.trains else None,
        }


def estimate_layout(layout: Layout, optimizer: str = DEFAULT_OPTIMIZER, batch_size: int = DEFAULT_BATCH_SIZE,
                    reservation: Reservation = ALLOCATOR, constants: StepConstants = STEP) -> Estimate:
    """The estimate of a `Layout`: each part from the constants, the optimizer's from its model.

    Example:
        >>> estimate_layout(Layout.of("full", 1000, 64), "adagrad").optimizer_state.total
        256000
    """
    model = optimizer_model(optimizer)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"estimate: invalid `batch_size`: {batch_size!r}. It must be an integer >= 1.")
    c = constants
    batch, dim = int(batch_size), layout.dim
    trainable = [w for w in layout.weights if w.trainable]
    tables = [w for w in trainable if w.table]
    dense = [w for w in trainable if not w.table]

    def state_of(w: Weight) -> Bytes:
        if not w.table:
            return Bytes.of(w.dtype, model.dense_slots * w.bytes)
        return (Bytes.of(w.dtype, w.rows * model.value_slots * w.row_values * itemsize(w.dtype))
                + Bytes.of("float32", w.rows * model.row_slots * COMPUTE_BYTES))

    states = [state_of(w) for w in trainable]
    state = Bytes.sum(states)

    # What the gathers return per batch: a row per id per table; a 1-D table
    # (ROBE's array) is read `dim` values per id, each through int64 index arithmetic.
    def gathered_bytes(w: Weight) -> float:
        return batch * (dim * c.flat_gather_bytes if len(w.shape) == 1 else w.row_values * COMPUTE_BYTES)

    # A sparse gradient holds a float32 row and an int64 index per gathered row.
    def sparse_gradient_bytes(w: Weight) -> int:
        rows = batch * (dim if len(w.shape) == 1 else 1)
        return rows * (w.row_values * COMPUTE_BYTES + ID_BYTES)

    gathered = sum(gathered_bytes(w) for w in layout.tables)
    sparse_gradients = [sparse_gradient_bytes(w) for w in tables]
    # A lone float32 table of `dim`-wide rows returns its gather as the output itself.
    plain = (len(layout.tables) == 1 and not dense and layout.tables[0].shape[1:] == (dim,)
             and layout.tables[0].dtype == "float32")
    kernels = [w.shape for w in dense if len(w.shape) == 2]
    dense_activations = c.dense_activations * batch * sum(n_in + n_out for n_in, n_out in kernels) * COMPUTE_BYTES
    outputs = batch * dim * COMPUTE_BYTES
    ids = batch * ID_BYTES
    lookup_activations = int(ids + c.lookup_outputs * outputs + (0 if plain else c.gathered * gathered)
                             + dense_activations)
    activations = int(ids + c.train_outputs * outputs + (0 if plain else c.train_gathered * gathered)
                      + sum(sparse_gradients) + dense_activations)

    # The update is handed every gradient at once (sparse ones and dense
    # ones), then updates one variable after another: its temporaries are
    # those of its largest variable, not of all of them together.
    gradients = c.update_alive * activations + sum(w.bytes for w in dense)
    largest = max([w.bytes for w in trainable] + [0])
    largest_dense = max([w.bytes for w in dense] + [0])
    if model.row_sparse:  # the summed rows, the slots' rows read and written
        temporaries = max(c.dense_copies * largest_dense, c.row_update_copies * max(sparse_gradients + [0]))
    else:  # Keras's Adam: the gradient densified, the moments rewritten in full
        temporaries = c.densified_copies * largest
    # Slots are created in the first step; a constant initializer's fill is a copy of the slot.
    temporaries = max(temporaries, model.slot_init_copies * max([s.total for s in states] + [0]))
    step = gradients + temporaries
    if not trainable:
        activations, step = lookup_activations, 0
    return Estimate(
        layout=layout,
        optimizer=model.name,
        batch_size=batch,
        weights=layout.weight_bytes,
        optimizer_state=state,
        index=layout.index_bytes,
        activations=activations,
        lookup_activations=lookup_activations,
        step=int(step),
        reservation=reservation,
        constants=constants,
    )


def estimate(strategy: str, vocab_size: int, dim: int, options: Mapping[str, Any] | None = None,
             optimizer: str = DEFAULT_OPTIMIZER, batch_size: int = DEFAULT_BATCH_SIZE,
             reservation: Reservation = ALLOCATOR, storage: str | None = None, counts=None) -> Estimate:
    """The memory estimate of strategy `strategy` at `vocab_size x dim`, from its cost formula.

    Args:
        strategy: a registered strategy name.
        vocab_size, dim: the table's size.
        options: the strategy's options (defaults for those not given).
        optimizer: `adam`, `lazy_adam`, `adagrad`, `rowwise_adagrad` or `sgd`.
        batch_size: ids per step.
        reservation: `constants.ALLOCATOR` to compare with an allocator peak
            (the default), `constants.HOST` to plan a process on a host.
        storage: the tables' storage, if not the strategy's own (see `Layout.of`).
        counts: per-id counts the layer is built with (see `Layout.of`).

    Example:
        >>> estimate("qr", 10**6, 64, optimizer="rowwise_adagrad").optimizer_state.total
        8000
    """
    optimizer_model(optimizer)  # a bad name fails before the strategy is looked at
    layout = Layout.of(strategy, vocab_size, dim, options, storage, counts)
    return estimate_layout(layout, optimizer, batch_size, reservation)


def estimate_layer(layer, optimizer: str = DEFAULT_OPTIMIZER, batch_size: int = DEFAULT_BATCH_SIZE,
                   reservation: Reservation = ALLOCATOR) -> Estimate:
    """The estimate of a built layer (its weights read, not its formula).

    Example:
        >>> estimate_layer(strategies.build("hash", 10**5, 64)).weights.total
        2560000
    """
    return estimate_layout(Layout.from_layer(layer), optimizer, batch_size, reservation)
