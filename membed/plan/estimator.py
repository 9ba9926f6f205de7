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

The per-batch tensors are counted term by term, as a trace of one eager
step shows them (`forward_bytes`): the gathered rows of each table, their
casts, the tensors that combine several tables into the output, narrower
tables' projections, the loss's backward tensors, the sparse gradients and
the update's `tf.unique`. Where the tables are small these terms are the
whole peak, so they are counted, not folded into a margin.

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
    CAST_TENSORS,
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
        activations: per-batch tensors at the backward pass's peak: the
            ids and the target, what the forward keeps (`Forward.kept`) and
            the loss's tensors or the widest block's gradient.
        lookup_activations: the ids, the target and the lookup's tensors
            (`Forward.lookup`).
        step: what the optimizer's update allocates besides its state: the
            ids and the target, the gradients it is handed and its
            temporaries (Keras's Adam: a few copies of the largest
            trainable table; row-sparse optimizers: `tf.unique` and a few
            copies of the rows a batch read).
        reservation: what is held back beyond these parts.

    A training step's two phases peak apart: the backward pass frees the
    forward's tensors before the optimizer creates its slots and updates,
    so the training peak is weights + index + max(activations, optimizer
    state + step), plus the reservation.

    Example:
        >>> e = estimate("full", 1000, 64, optimizer="sgd", batch_size=128)
        >>> e.train_peak_bytes() == e.reserved_bytes(e.modelled_train_bytes) + e.modelled_train_bytes
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
    def batch_tensor_bytes(self) -> int:
        """Bytes of one (batch, dim) float32 tensor, the unit of per-batch slack."""
        return self.batch_size * self.layout.dim * COMPUTE_BYTES

    def reserved_bytes(self, modelled_bytes: int) -> int:
        """The reservation on top of `modelled_bytes` (see `constants.Reservation`)."""
        return self.reservation.bytes_for(modelled_bytes, self.batch_tensor_bytes)

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
        return self.modelled_lookup_bytes + self.reserved_bytes(self.modelled_lookup_bytes)

    def train_peak_bytes(self, optimizer: str | None = None) -> int:
        """Peak bytes of one training step with `optimizer` (default: this estimate's)."""
        if optimizer is not None and optimizer != self.optimizer:
            return self.with_optimizer(optimizer).train_peak_bytes()
        return self.modelled_train_bytes + self.reserved_bytes(self.modelled_train_bytes)

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
            "reservation_bytes": self.reserved_bytes(self.modelled_train_bytes),
            "estimated_peak_bytes_lookup": self.lookup_peak_bytes,
            "estimated_peak_bytes_train": self.train_peak_bytes() if self.trains else None,
        }


# ----- the forward pass -------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Forward:
    """Bytes of a lookup's per-batch tensors (besides the ids and the target).

    Attributes:
        lookup: alive at the lookup's peak (eager: a tensor is freed once
            no later op needs it).
        kept: what the training step's tape keeps for the backward pass:
            every gathered block and every intermediate up to the output.
        widest: the largest gathered block, whose gradient the backward
            pass allocates while `kept` is alive.
    """

    lookup: int
    kept: int
    widest: int


def forward_bytes(layout: Layout, batch: int, constants: StepConstants = STEP) -> Forward:
    """The per-batch tensors of `layout`'s lookup, term by term (see `StepConstants`).

    * gathered rows: a row per id of every table (`reads="one"`: of one
      table, the tables' mean width), in the stored dtype, then its casts
      to float32 (`CAST_TENSORS`); a 1-D table (ROBE) is read `dim` values
      per id, located by int64 index arithmetic;
    * the combination: several tables' rows multiplied or summed into the
      output, one (batch, dim) tensor per combination; TT's cores chained
      by batched matrix products, one tensor per product;
    * projections up to `dim` of narrower tables (matmul, bias), and
      `reads="masked"` blocks' mask products and running sum;
    * an MLP's layers (`StepConstants.dense_activations`).

    Example:
        >>> f = forward_bytes(Layout.of("qr", 10**6, 64), batch=1024)
        >>> f.lookup == f.kept == 3 * 1024 * 64 * 4  # two gathered blocks and their product
        True
    """
    c = constants
    dim = layout.dim
    output = batch * dim * COMPUTE_BYTES
    tables = layout.tables
    projections, biases = layout.projections, layout.biases

    def gathered(w: Weight) -> int:
        values = dim if len(w.shape) == 1 else w.row_values
        return batch * values * itemsize(w.dtype) + CAST_TENSORS.get(w.dtype, 1) * output

    def projected(w: Weight) -> int:  # a narrower table's rows, projected up to dim (and biased)
        narrow = len(w.shape) == 2 and w.row_values < dim and projections
        return (1 + bool(biases)) * output if narrow else 0

    blocks = [gathered(w) for w in tables]
    widest = max(blocks + [0])
    kernels = [w.shape for w in layout.weights
               if not w.table and w.trainable and len(w.shape) == 2 and w not in projections]
    mlp = int(c.dense_activations * batch * sum(n_in + n_out for n_in, n_out in kernels) * COMPUTE_BYTES)
    if not tables:
        return Forward(mlp, mlp, 0)
    if layout.reads == "one":  # each id reads one table: mean width, projected once, stitched
        share = sum(1 for w in tables if projected(w)) / len(tables)
        rows = sum(blocks) // len(tables)
        both = int(rows + share * (1 + bool(biases)) * output + output)
        return Forward(both + mlp, both + mlp, rows)
    if layout.reads == "masked":  # every table read, masked, summed one after another
        per_table = [b + projected(w) + c.mask_tensors * output for b, w in zip(blocks, tables)]
        alive = output + max(b + projected(w) + output for b, w in zip(blocks, tables))
        return Forward(int(alive + mlp), int(sum(per_table) + mlp), widest)
    if all(len(w.shape) == 1 for w in tables):  # index arithmetic locates each value
        index = batch * dim * ID_BYTES
        kept = sum(blocks) + c.index_kept * index
        return Forward(int(max(c.index_alive * index, kept) + mlp), int(kept + mlp), widest)
    if len(tables) > 1 and all(len(w.shape) == 3 for w in tables):  # TT: a chain of batched products
        partial, combined = tables[0].row_values, 0
        for core in tables[1:]:
            partial = partial * core.shape[2] // core.shape[1]
            combined += batch * partial * COMPUTE_BYTES
    else:  # each extra table combined into the running output
        combined = (len(tables) - 1) * output
    both = sum(blocks) + combined + sum(projected(w) for w in tables) + mlp
    return Forward(int(both), int(both), widest)


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

    output = batch * dim * COMPUTE_BYTES  # one (batch, dim) float32 tensor
    # The ids and the caller's target stay alive through both phases.
    inputs = batch * ID_BYTES + c.target_tensors * output
    forward = forward_bytes(layout, batch, c)
    lookup_activations = int(inputs + forward.lookup)
    # The backward pass keeps the forward's tensors and adds the loss's, or
    # the gradient of the widest gathered block where that is larger.
    activations = int(inputs + forward.kept + max(c.loss_tensors * output, forward.widest))

    # A sparse gradient holds a float32 row and an int64 index per gathered
    # row (a 1-D table: per value read). The update is handed every gradient
    # at once (sparse ones and dense ones), then updates one variable after
    # another: its temporaries are those of its largest variable, not of all
    # of them together.
    def sparse_gradient_bytes(w: Weight) -> int:
        rows = batch * (dim if len(w.shape) == 1 else 1)
        return rows * (w.row_values * COMPUTE_BYTES + ID_BYTES)

    # Row-sparse updates first sum repeated rows (membed.optim: `tf.unique`
    # gives the distinct indices, int64, and each index's position, int32),
    # then read and write the slots' rows.
    def row_update_bytes(w: Weight) -> int:
        indices = batch * (dim if len(w.shape) == 1 else 1)
        return int(indices * (ID_BYTES + 4) + c.row_update_copies * indices * w.row_values * COMPUTE_BYTES)

    sparse_gradients = [sparse_gradient_bytes(w) for w in tables]
    gradients = sum(sparse_gradients) + sum(w.bytes for w in dense)
    largest = max([w.bytes for w in trainable] + [0])
    largest_dense = max([w.bytes for w in dense] + [0])
    if model.row_sparse:
        temporaries = max([c.dense_copies * largest_dense] + [row_update_bytes(w) for w in tables])
    else:  # Keras's Adam: the gradient densified, the moments rewritten in full
        temporaries = c.densified_copies * largest
    # Slots are created in the first step; a constant initializer's fill is a copy of the slot.
    temporaries = max(temporaries, model.slot_init_copies * max([s.total for s in states] + [0]))
    step = inputs + gradients + temporaries
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
