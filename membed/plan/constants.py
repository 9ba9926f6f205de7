"""The estimator's constants, in one place, each with where it comes from.

Two kinds:

* exact ones, from how the optimizers are written (`OPTIMIZERS`: the state
  each keeps per table row and per dense value; see `membed.optim`);
* empirical ones (`STEP`, the two `Reservation`s), fitted to the allocator
  peaks listed in `calibration.CASES`: 112 cases (13 strategies, V = 1e3 to
  1e8, dims 32 / 64 / 128, the five optimizers), measured one at a time by
  the memory suite's harness on this machine (TensorFlow 2.21 CPU, Keras
  3.15, BFC allocator, batch 4096, one eager step of an MSE loss, Zipf ids).
  `calibration.ratios()` gives measured / estimated for each; the constants
  were chosen (coordinate search) for the most ratios inside [0.8, 1.25]:
  191 of 219 (87%) then; 190 of 219, 131 of the 144 peaks above 20 MiB and
  all 54 above 100 MiB since the adagrad rows were re-measured. The misses are peaks of 2-10 MiB, where the allocator's
  rounding of a single batch tensor (up to 2x a request, see
  `calibration`) is as large as the difference, and strategy-specific
  intermediates (TT's core products, ROBE's index arithmetic) that the
  per-table terms only average. `tests/test_plan.py` holds those numbers.

This replaces the heuristics of `membed.measure.sizes`: `SAFETY_FACTOR` 2.5 x
(Adam state + `ACTIVATION_VALUES_PER_OUTPUT` 16 float32 values per output
element) is a generous bound for sizing the allocator's region (2-10x the
measured peaks of small tables, 1.25x for `full`); the parts here replace it
where an estimate is compared with a measurement or planned onto a host.
"""

from __future__ import annotations

import dataclasses

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


# ----- what a step allocates: empirical ----------------------------------------


@dataclasses.dataclass(frozen=True)
class StepConstants:
    """Per-batch tensors and optimizer temporaries, in copies of what they are sized by.

    Attributes:
        lookup_outputs: (batch, dim) float32 tensors alive at the lookup's
            peak: the output, the measuring harness's target and the
            combining temporaries of strategies that sum several rows.
        train_outputs: (batch, dim) float32 tensors alive at the backward
            pass's peak: output, target, the loss's difference and square,
            the output's gradient.
        update_alive: the share of the backward pass's per-batch tensors
            still alive while the optimizer updates (the gradients it is
            handed, the target).
        flat_gather_bytes: bytes per value a 1-D table's lookup allocates
            (ROBE reads `dim` values per id: the float32 value and the
            int64 index arithmetic that locates it).
        gathered: copies of each gathered (batch, row) block alive at the
            lookup's peak (the gather's result, its cast), unless the gather
            is the output itself (one float32 table of `dim`-wide rows).
        train_gathered: the same at a train step's peak.
        row_update_copies: temporaries of a row-sparse update of the
            largest table, in copies of its sparse gradient (the summed
            rows, the rows of each slot read and written).
        dense_activations: float32 values per id per (fan_in + fan_out) of
            each dense kernel (an MLP's hidden layers, kept for backward).
        dense_copies: gradient and update temporaries of a dense weight, in
            copies of it, for row-sparse optimizers.
        densified_copies: temporaries of Keras's Adam per trainable value,
            in copies of the weight (its gradient densified, then the
            moments' and the update's temporaries; the slots are counted as
            state, not here).
    """

    lookup_outputs: float
    train_outputs: float
    update_alive: float
    flat_gather_bytes: float
    gathered: float
    train_gathered: float
    row_update_copies: float
    dense_activations: float
    dense_copies: float
    densified_copies: float


# Fitted to `calibration.CASES` (see the module's docstring). Anchors: `full`
# at V = 1e6 with Keras's Adam peaks at 1,466.9 MiB = table 244.1 + moments
# 488.3 + 3.0 x 244.1 of densified temporaries; with SGD at 251.2 MiB = the
# table + 7.1 MiB of batch tensors (ids, 6 output-sized tensors, the sparse
# gradient); a lookup is the table + 2 output-sized tensors (its output, the
# harness's target).
STEP = StepConstants(
    lookup_outputs=2.0,
    train_outputs=6.0,
    update_alive=0.5,
    flat_gather_bytes=32.0,
    gathered=1.0,
    train_gathered=0.5,
    row_update_copies=0.5,
    dense_activations=1.8,
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
        source: where the numbers come from.

    Example:
        >>> Reservation("x", share=0.1, fixed_bytes=100).bytes_for(1000)
        200
    """

    name: str
    share: float
    fixed_bytes: int
    source: str = ""

    def __post_init__(self) -> None:
        if self.share < 0 or self.fixed_bytes < 0:
            raise ValueError(
                f"Reservation {self.name!r}: `share` and `fixed_bytes` must be >= 0; "
                f"got {self.share!r} and {self.fixed_bytes!r}."
            )

    def bytes_for(self, modelled_bytes: int) -> int:
        """The reserved bytes on top of `modelled_bytes`."""
        return int(round(self.share * modelled_bytes)) + int(self.fixed_bytes)


MIB = 2**20

# For comparing with TensorFlow's allocator peak (`peak_alloc_bytes_*`): the
# BFC allocator's chunk rounding and the small tensors of eager ops (shapes,
# scalars, the range check); 1 MiB fitted with STEP (0 to 1 MiB tried).
ALLOCATOR = Reservation("allocator", share=0.0, fixed_bytes=1 * MIB,
                        source="fitted with STEP to calibration.CASES: about 1 MiB of small tensors and rounding")

# For planning a host: the process's runtime plus a margin. A Python process
# that imported TensorFlow 2.21 and Keras 3.15 and ran one op holds 559 MiB
# RSS; for peaks above 100 MiB the measured peak RSS of a train step is
# 0.99-1.05x the allocator peak (calibration.CASES), and 10% covers that and
# the allocator's rounding of large chunks.
HOST = Reservation("host", share=0.10, fixed_bytes=600 * MIB,
                   source="RSS of `import tensorflow, keras` + one op: 559 MiB; peak RSS / peak alloc <= 1.05")
