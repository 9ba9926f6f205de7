"""The estimator's constants, in one place, each with where it comes from.

Three kinds:

* exact ones, from how the optimizers are written (`OPTIMIZERS`: the state
  each keeps per table row and per dense value; see `membed.optim`);
* counted ones, read from an op-by-op trace of one eager step (how it is
  taken: `calibration`): the tensors of the loss, of a 1-D table's index
  arithmetic, of masked blocks, of a stored table's casts, the lookups that
  read one table per id (`TABLE_READS`), and the allocator's slack;
* empirical ones (`StepConstants.dense_activations`, `row_update_copies`,
  `dense_copies`, `densified_copies`), fitted to the allocator peaks listed
  in `calibration.CASES`: 112 cases (13 strategies, V = 1e3 to 1e8, dims
  32 / 64 / 128, the five optimizers), measured one at a time by the memory
  suite's harness on this machine (TensorFlow 2.21 CPU, Keras 3.15, BFC
  allocator, batch 4096 unless stated, one eager step of an MSE loss, Zipf
  ids). `calibration.ratios()` gives measured / estimated for each;
  `tests/test_plan.py` holds how many land in [0.8, 1.25].

This replaces the heuristics of `membed.measure.sizes`: `SAFETY_FACTOR` 2.5 x
(Adam state + `ACTIVATION_VALUES_PER_OUTPUT` 16 float32 values per output
element) is a generous bound for sizing the allocator's region (2-10x the
measured peaks of small tables, 1.25x for `full`); the parts here replace it
where an estimate is compared with a measurement or planned onto a host.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

# ----- optimizer state: exact, from the update rules ------------------------------


@dataclasses.dataclass(frozen=True)
class OptimizerModel:
    """What an optimizer keeps and what one of its steps allocates, per kind of weight.

    Attributes:
        name: the optimizer's registry name (`membed.optim.NAMES`).
        value_slots: state values per trainable table value, in the table's
            dtype (Adam's two moments, AdaGrad's accumulator).
        row_slots: float32 state values per trainable table row (row-wise
            AdaGrad's accumulator).
        dense_slots: state values per dense trainable value, in its dtype.
        row_sparse: whether a sparse gradient updates only the rows it
            touches; when False (Keras's Adam) it is densified.
        slot_init_copies: copies of a variable's state that creating its
            slots allocates on top of them, in the first step (a slot
            initialised to a non-zero constant is filled, then copied).
    """

    name: str
    value_slots: int
    row_slots: int
    dense_slots: int
    row_sparse: bool
    slot_init_copies: float = 0.0


# The same names and per-row state as `membed.optim` (`state_bytes_per_row`);
# tests/test_plan.py checks the two agree. Row-wise AdaGrad's dense weights get
# a full AdaGrad slot here, as DLRM and TorchRec train dense layers; membed's
# `RowwiseAdagrad` keeps one accumulator per first-axis row of every weight,
# so for dense weights this is an upper bound (by at most their own bytes).
OPTIMIZERS: dict[str, OptimizerModel] = {
    model.name: model
    for model in (
        OptimizerModel("adam", value_slots=2, row_slots=0, dense_slots=2, row_sparse=False),
        OptimizerModel("lazy_adam", value_slots=2, row_slots=0, dense_slots=2, row_sparse=True),
        # membed's Adagrad fills its accumulators (0.1) in place (membed.optim's Fill): its
        # first step of `full` at V = 1e7 peaks at 4,886 MiB = table + accumulator + batch.
        OptimizerModel("adagrad", value_slots=1, row_slots=0, dense_slots=1, row_sparse=True),
        OptimizerModel("rowwise_adagrad", value_slots=0, row_slots=1, dense_slots=1, row_sparse=True),
        OptimizerModel("sgd", value_slots=0, row_slots=0, dense_slots=0, row_sparse=True),
    )
}
OPTIMIZER_NAMES: tuple[str, ...] = tuple(OPTIMIZERS)
DEFAULT_OPTIMIZER = "adam"

# Bytes per value of the dtypes weights, ids and state come in.
ITEMSIZE = {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2, "int64": 8, "int32": 4, "int8": 1}
# Ids reach a layer as int64; outputs, gradients and row-wise accumulators are float32.
ID_BYTES = 8
COMPUTE_BYTES = 4
# (batch, dim) float32 tensors that turn a stored table's gathered rows into
# float32 ones (membed.strategies.storage): a 16-bit row is cast; an int8
# row is cast and multiplied by its row's scale.
CAST_TENSORS = {"float32": 0, "float16": 1, "bfloat16": 1, "int8": 2}


# ----- how a lookup reads its tables ------------------------------------------------
TableReads = Literal["every", "one", "masked"]
READ_MODES: tuple[str, ...] = ("every", "one", "masked")
# A strategy's lookup reads a row of every table per id unless listed here
# (its `lookup` in membed.strategies): mixed_dim partitions the ids by block
# (`tf.dynamic_partition`), so each id reads one block; example_md, as the
# Keras example does, reads every block for every id, masks the rows of ids
# outside it and sums the blocks.
TABLE_READS: dict[str, TableReads] = {"mixed_dim": "one", "example_md": "masked"}


# ----- what a step allocates --------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StepConstants:
    """Per-batch tensors and optimizer temporaries, in copies of what they are sized by.

    The first five are counts of tensors, read from a trace of one eager
    step (every op's outputs and the allocator's bytes after it; see
    `calibration`); the last four are fitted to `calibration.CASES`.

    Attributes:
        target_tensors: (batch, dim) float32 tensors the caller holds
            beside the ids in both phases (the memory suite's target).
        loss_tensors: (batch, dim) float32 tensors the loss's backward
            pass allocates while the forward's are kept (the MSE's
            difference, its square, the mean's broadcast gradient and its
            scaled copy); the backward peaks at the forward's tensors plus
            these, or plus the gradient of the widest gathered block
            (TT's middle core), whichever is larger.
        index_alive: int64 values per output value alive at the peak of a
            1-D table's lookup (ROBE: the tiled offsets, their sum with the
            row's base, its modulo the array's size).
        index_kept: the same kept for the backward pass (the gather's
            indices, which its sparse gradient holds).
        mask_tensors: (batch, dim) float32 tensors a masked block keeps
            (`reads="masked"`: the rows times the mask, the running sum).
        dense_activations: float32 values per id per (fan_in + fan_out) of
            each dense kernel that is not a table's projection (an MLP's
            layers: matmul, bias, activation, kept for backward).
        row_update_copies: temporaries of a row-sparse update of a table
            besides `tf.unique`'s (whose int64 rows and int32 positions are
            counted as they are), in copies of its gathered rows' float32
            values (the summed rows, the rows of each slot read and
            written); the update's peak is that of its largest table.
        dense_copies: gradient and update temporaries of a dense weight, in
            copies of it, for row-sparse optimizers.
        densified_copies: temporaries of Keras's Adam per trainable value,
            in copies of the weight (its gradient densified, then the
            moments' and the update's temporaries; the slots are counted as
            state, not here).
    """

    target_tensors: float
    loss_tensors: float
    index_alive: float
    index_kept: float
    mask_tensors: float
    dense_activations: float
    row_update_copies: float
    dense_copies: float
    densified_copies: float


# Anchors (calibration.CASES, 1 MiB = one (4096, 64) float32 tensor): `full`
# at V = 1e6 with Keras's Adam peaks at 1,467.8 MiB = table 244.1 + moments
# 488.3 + 3.0 x 244.1 of densified temporaries + the batch's ids, target and
# gradient; with SGD at 251.1 MiB = the table + 6 output-sized tensors (the
# target, the gathered rows, the loss's four) + the ids (32 KiB) + 0.9 MiB
# of slack; its lookup at 247.1 MiB = the table + 2 output-sized tensors
# (the gathered rows, the target) + the ids + the same slack.
STEP = StepConstants(
    target_tensors=1.0,
    loss_tensors=4.0,
    index_alive=3.0,
    index_kept=1.0,
    mask_tensors=2.0,
    dense_activations=1.8,
    row_update_copies=0.5,
    dense_copies=3.0,
    densified_copies=3.0,
)


# ----- reservations: what the model does not count ------------------------------


@dataclasses.dataclass(frozen=True)
class Reservation:
    """Memory held back beyond the modelled parts: a share of them plus a fixed amount.

    As TorchRec's `HeuristicalStorageReservation` keeps a share of each
    device for what its estimators do not see, this is its own object, so
    the same estimate can be compared with an allocator peak (`ALLOCATOR`)
    or planned onto a host (`HOST`).

    Attributes:
        name: what it reserves for.
        share: fraction of the modelled bytes added on top.
        fixed_bytes: bytes added whatever the size.
        batch_tensors: (batch, dim) float32 tensors added on top: slack
            that follows the batch, not the tables.
        source: where the numbers come from.

    Example:
        >>> Reservation("x", share=0.1, fixed_bytes=100).bytes_for(1000)
        200
        >>> Reservation("x", share=0.0, fixed_bytes=0, batch_tensors=0.5).bytes_for(1000, batch_tensor_bytes=64)
        32
    """

    name: str
    share: float
    fixed_bytes: int
    batch_tensors: float = 0.0
    source: str = ""

    def __post_init__(self) -> None:
        if self.share < 0 or self.fixed_bytes < 0 or self.batch_tensors < 0:
            raise ValueError(
                f"Reservation {self.name!r}: `share`, `fixed_bytes` and `batch_tensors` must be >= 0; "
                f"got {self.share!r}, {self.fixed_bytes!r} and {self.batch_tensors!r}."
            )

    def bytes_for(self, modelled_bytes: int, batch_tensor_bytes: int = 0) -> int:
        """The reserved bytes on top of `modelled_bytes`, for a batch whose (batch, dim) tensor has `batch_tensor_bytes`."""
        return (int(round(self.share * modelled_bytes)) + int(self.fixed_bytes)
                + int(round(self.batch_tensors * batch_tensor_bytes)))


MIB = 2**20

# For comparing with TensorFlow's allocator peak (`peak_alloc_bytes_*`). The
# BFC allocator hands a request a whole free chunk when that chunk is less
# than twice the request, so a batch tensor that reuses a freed chunk can
# count up to twice its size: half a (batch, dim) tensor on average (full at
# V = 1e3: 1.25 MiB for a 1 MiB gather; hash: 1.86 MiB). Plus the
# small tensors of eager ops (shapes, scalars, the range check): 128 KiB.
ALLOCATOR = Reservation("allocator", share=0.0, fixed_bytes=MIB // 8, batch_tensors=0.5,
                        source="op traces of one step: chunks of up to 2x a batch tensor; 128 KiB of small tensors")

# For planning a host: the process's runtime plus a margin. A Python process
# that imported TensorFlow 2.21 and Keras 3.15 and ran one op holds 559 MiB
# RSS; for peaks above 100 MiB the measured peak RSS of a train step is
# 0.99-1.05x the allocator peak (calibration.CASES), and 10% covers that and
# the allocator's rounding of large chunks. It also covers oneDNN's allocator
# bookkeeping in an ordinary process (1/32 of regions that grow in powers of
# two, reports/README.md): `full` at 1e7 x 64 holds 1.07x its allocator peak
# above the runtime with `lazy_adam` (8,423 MiB peak RSS, 574 after import).
HOST = Reservation("host", share=0.10, fixed_bytes=600 * MIB,
                   source="RSS of `import tensorflow, keras` + one op: 559 MiB; peak RSS / peak alloc <= 1.05 "
                          "in the memory suite, 1.07 above the runtime with oneDNN's bookkeeping")
