"""The result schema, declared once: every field a benchmark case records, and every suite.

bench/ writes records with these fields (`EXTRA_INFO_KEYS`, checked by
`check_record`), analysis/ reads them (the loader's columns, the report's labels
and units, the gate's treatment of each field), and bench/README.md's schema
table is `markdown_table()`. Adding a field is one `Field` in `FIELDS`; adding a
suite is one `Suite` in `SUITES` (or `declare_suite` from the suite's module).

Standard library only: bench's collection and the report both import it
without TensorFlow or pandas.

Schema versions: 1 named a case's dataset `vocab`; 2 names it `dataset`
(`v1_to_v2`). `upgrade` brings a record of any supported version to this one.

Example:
    python -m analysis.schema     # prints the README's table
"""

from __future__ import annotations

import sys
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable

SCHEMA_VERSION = 2
SUPPORTED_SCHEMA_VERSIONS = (1, 2)
WHERE = "analysis/schema.py: FIELDS"

# The type of a field's value when it applies; `nullable` fields may also be null.
TYPES = ("str", "int", "float", "bool", "dict", "list[float]", "list[int]")
# Where a field comes from: a case's record (benchmark.extra_info, a not_run entry),
# the loader (pytest-benchmark's own entry and stats), or the report's derivations.
ORIGINS = ("record", "loader", "derived")
# How the regression gate treats a field; the limits are `[tool.membed.gate]`'s.
GATE_TREATMENTS = {
    "exact": "fails when it grows by more than `params_growth` (a count of params) or `bytes_growth` (bytes)",
    "peak": "fails when it grows by more than `peak_mem_rel` and by more than `peak_mem_abs_mib`",
    "peak_rss": "fails when it grows by more than `peak_mem_rel` and by more than `peak_rss_abs_mib`",
    "ratio": ("fails when it grows by more than max(`ratio_floor_rel`, `ratio_noise_k` x the noise the baseline "
              "stored for the case); by more than `gather_ratio_rel` where it stored none"),
    "accuracy": "fails when it grows by more than `val_mse_abs`",
}
# What a suite's benchmark timing measures.
SUITE_KINDS = {
    "isolated-memory": "sizes and peak memory measured in a fresh process; its timing is bookkeeping",
    "reference": "the bare tf.gather that the paired suites are timed against",
    "paired": "timed against the bare gather in the same rounds, on the same batches (`gather_ratio`)",
    "fit": "trains a rating model; its timing is the fit",
}
MIB = 1024 * 1024


@dataclass(frozen=True)
class Field:
    """One result field: what it holds, how the report shows it, how the gate treats it.

    Args:
        name: the key in a record (`extra_info`) or the loader's column name.
        type: one of `TYPES`, the value's type when the field applies.
        description: one line, for bench/README.md's table.
        unit: what one unit of the value is (`bytes`, `s`, `params`, ...); "" for text.
        label: the report's column label; None when the report shows no column for it.
        scale: multiplies the value into the label's unit (bytes -> MiB: 1 / 2**20).
        suites: the suites that write a value; None: every suite.
        gate: one of `GATE_TREATMENTS`, or None when the gate ignores the field.
        nullable: whether null is a valid value where the field applies.
        origin: one of `ORIGINS`.
        latency: a timing of the suite's rounds, shown only for suites whose `Suite.latency` is true.

    Example:
        >>> FIELD["param_bytes"].label, FIELD["param_bytes"].gate
        ('param MiB', 'exact')
    """

    name: str
    type: str
    description: str
    unit: str = ""
    label: str | None = None
    scale: float = 1.0
    suites: tuple[str, ...] | None = None
    gate: str | None = None
    nullable: bool = False
    origin: str = "record"
    latency: bool = False

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"Field {self.name!r}: invalid `type` {self.type!r}. Use one of: {', '.join(TYPES)}.")
        if self.origin not in ORIGINS:
            raise ValueError(
                f"Field {self.name!r}: invalid `origin` {self.origin!r}. Use one of: {', '.join(ORIGINS)}."
            )
        if self.gate is not None and self.gate not in GATE_TREATMENTS:
            raise ValueError(
                f"Field {self.name!r}: invalid `gate` {self.gate!r}. Use None or one of: {', '.join(GATE_TREATMENTS)}."
            )

    @property
    def numeric(self) -> bool:
        """Whether the loader stores the field as float64 (ints too: a column may hold nulls)."""
        return self.type in ("int", "float")

    @property
    def type_text(self) -> str:
        """The README's type cell: `int`, `str or null`, ..."""
        return f"{self.type} or null" if self.nullable else self.type

    def accepts(self, value: Any) -> bool:
        """Whether `value` has this field's type (null where nullable; a bool is no number).

        Example:
            >>> FIELD["params"].accepts(3), FIELD["params"].accepts(True), FIELD["reason"].accepts(None)
            (True, False, True)
        """
        if value is None:
            return self.nullable
        python = {"str": str, "int": int, "float": (int, float), "bool": bool, "dict": dict, "list[float]": list,
                  "list[int]": list}
        if self.type != "bool" and isinstance(value, bool):
            return False
        return isinstance(value, python[self.type])


@dataclass(frozen=True)
class Suite:
    """One benchmark suite, as the report and the harness see it.

    Args:
        name: the `suite` field of its records.
        kind: one of `SUITE_KINDS`.
        latency: whether its benchmark timing is a result worth a column
            (median, p95); the memory and fit suites' timings are bookkeeping.
        covers_strategies: whether every selected strategy must have a case in it.
        description: one line, for the README.

    Example:
        >>> SUITES["lookup"].kind, SUITES["lookup"].latency
        ('paired', True)
    """

    name: str
    kind: str
    latency: bool
    covers_strategies: bool
    description: str = ""

    def __post_init__(self) -> None:
        if self.kind not in SUITE_KINDS:
            raise ValueError(
                f"Suite {self.name!r}: invalid `kind` {self.kind!r}. Use one of: {', '.join(SUITE_KINDS)}."
            )


# The suites in report order.
SUITES: dict[str, Suite] = {
    suite.name: suite
    for suite in (
        Suite("memory", "isolated-memory", False, True, "sizes and peak memory of build + lookup and of a train step"),
        Suite("lookup", "paired", True, True, "a compiled forward pass over a fresh batch per round"),
        Suite("gather", "reference", True, False, "the bare tf.gather from a full float32 table"),
        Suite("train_step", "paired", True, True, "one compiled training step on an MSE loss, per optimizer"),
        Suite("blocks", "paired", True, False, "mixed_dim against example_md as blocks are added"),
        Suite("accuracy", "fit", False, True, "the example's rating model trained with each strategy"),
        Suite("pipeline", "fit", False, False, "one epoch of the example's memory-efficient model, three ways"),
        Suite("sharded", "isolated-memory", False, False,
              "tables sharded over 2-8 devices with Keras's ModelParallel on JAX, in a process of its own"),
    )
}


def declare_suite(suite: Suite) -> Suite:
    """Adds `suite` to `SUITES` (after the declared ones) and returns it; the name views below follow.

    Raises:
        ValueError: another suite of that name is declared.
    """
    known = SUITES.get(suite.name)
    if known is not None and known != suite:
        raise ValueError(f"Suite {suite.name!r} is already declared as {known}.")
    SUITES[suite.name] = suite
    return suite


class SuiteNames(Sequence):
    """The names of the declared suites that satisfy a predicate, read from `SUITES` at each use.

    A tuple would miss a suite declared after import; this compares equal to the tuple it reads as.
    """

    def __init__(self, keep: Callable[[Suite], bool], doc: str) -> None:
        self._keep = keep
        self.__doc__ = doc

    def _names(self) -> tuple[str, ...]:
        return tuple(name for name, suite in SUITES.items() if self._keep(suite))

    def __getitem__(self, index):
        return self._names()[index]

    def __len__(self) -> int:
        return len(self._names())

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __eq__(self, other: object) -> bool:
        return tuple(self) == tuple(other) if isinstance(other, (tuple, list, SuiteNames)) else NotImplemented

    def __hash__(self) -> int:
        return hash(self._names())

    def __repr__(self) -> str:
        return repr(self._names())


SUITE_ORDER = SuiteNames(lambda suite: True, "Every declared suite, in report order.")
PAIRED_SUITES = SuiteNames(lambda suite: suite.kind == "paired", "Suites timed against the bare gather.")
LATENCY_SUITES = SuiteNames(lambda suite: suite.latency, "Suites whose benchmark timing is a result.")
STRATEGY_SUITES = SuiteNames(
    lambda suite: suite.covers_strategies, "Suites that must hold a case for every selected strategy."
)

_SIZED = ("memory", "gather", "lookup", "train_step", "blocks", "accuracy", "sharded")
_ADMITTED = ("memory", "lookup", "train_step", "blocks", "sharded")
_FITTED = ("accuracy", "pipeline")


def _seeded(name: str, description: str, unit: str, label: str | None, mean: bool = True,
            gate: str | None = None) -> tuple[Field, ...]:
    """An accuracy metric over seeds: its mean (`name`, unless declared apart: `mean=False`), the 95%
    half-width of the mean (`name_ci95`) and the per-seed values (`name_per_seed`)."""
    fields = (Field(f"{name}_ci95", "float", f"95% confidence half-width of `{name}`'s mean over seeds "
                    "(Student's t; null for one seed)", unit=unit, suites=("accuracy",), nullable=True),
              Field(f"{name}_per_seed", "list[float]", f"{description}, per seed", unit=unit, suites=("accuracy",),
                    nullable=True))
    if mean:
        fields = (Field(name, "float", f"{description}, mean over seeds", unit=unit, label=label,
                        suites=("accuracy",), gate=gate, nullable=True), *fields)
    return fields
_MEMORY = ("memory",)
_PAIRED = ("lookup", "train_step", "blocks")
# The paired suites timed against np.take and the call floor too (`bench.harness.Harness.time_paired`).
_TIMED_PAIRED = ("lookup", "train_step")
# The suites timed with the per-call floor amortised (`bench.harness.Harness.time_amortised`).
_AMORTISED = ("lookup",)
# The suites that train: each case names its optimizer (an axis of theirs).
_TRAINED = ("memory", "train_step", "accuracy")
# The storages the accuracy suite evaluates a trained pair in besides float32
# (`membed.strategies.storage.STORAGES`; tests/test_schema.py holds them equal).
STORED_DTYPES = ("float16", "bfloat16", "int8")
# The optimizer whose cases carry no case-id variant: the suites' step before the optimizer was an axis.
DEFAULT_OPTIMIZER = "adam"

# Every record field, in bench/README.md's order.
FIELDS: tuple[Field, ...] = (
    Field("schema_version", "int", f"{SCHEMA_VERSION} (1: files written before `vocab` was renamed `dataset`)"),
    Field("case", "str", "stable id: `suite/strategy/dataset/vocab_size/dim[/preset][/optimizer]` "
          "(accuracy, pipeline: `suite/<pair>/<dataset>/<preset>[/optimizer]`)"),
    Field("suite", "str", "a suite of `analysis.schema.SUITES`: `memory`, `lookup`, `gather`, `train_step`, ..."),
    Field("status", "str", "`ok` or `failed` (a failed case still has an entry; its stats are meaningless); "
          "`not_run` entries also `skipped` or `interrupted`"),
    Field("reason", "str", "why it failed or did not run", nullable=True),
    Field("strategy", "str", "registry name; accuracy: `user_strategy+item_strategy` when they differ; "
          "`gather` for the reference rows"),
    Field("options", "dict", "the resolved constructor options, as the built layer holds them; "
          'accuracy: `{"user": {...}, "item": {...}}`; gather: `{"table_rows": n}`'),
    Field("preset", "str", "accuracy: `5x`, `20x`, `100x`, `example`, `baseline`; blocks: `3-blocks`, ...",
          nullable=True),
    Field("optimizer", "str", "the optimizer of the train step (memory: of its train phase) or the fit, a name of "
          "`membed.optim.NAMES`; `adam` is the reference (train_step, memory: Keras's Adam; accuracy: the "
          "example's `FusedAdam`) and adds nothing to the case id, any other adds `/<optimizer>`",
          suites=_TRAINED),
    Field("dataset", "str", "`synthetic-zipf`, `synthetic-uniform`, `synthetic-planted`, or a MovieLens name "
          "`ml-100k` ... (`vocab` in schema 1)"),
    Field("vocab_size", "int", "number of ids (accuracy, pipeline: users + items)", unit="ids"),
    Field("dim", "int", "base dimension", unit="values"),
    Field("batch_size", "int", "ids per lookup or training step", unit="ids"),
    Field("params", "int", "parameter count (== layer.count_params())", unit="params", label="params",
          suites=(*_SIZED, "pipeline"), gate="exact"),
    Field("param_bytes", "int", "bytes of parameters by their storage dtype", unit="bytes", label="param MiB",
          scale=1 / MIB, suites=_SIZED, gate="exact"),
    Field("index_bytes", "int", "bytes of non-parameter id-mapping state", unit="bytes", label="index MiB",
          scale=1 / MIB, suites=_SIZED, gate="exact"),
    Field("train_state_bytes", "int", "parameters in their storage dtype + 2 float32 Adam slots per trainable "
          "parameter + index", unit="bytes", suites=_SIZED),
    Field("optimizer_state_bytes", "int", "bytes of the optimizer's slots, read from the built optimizer (train_step: "
          "after the timed rounds; memory: in the measuring process, after its step; accuracy: after the fit, user + "
          "item tables); from `membed.plan`'s formula where no optimizer was built (a pair trained as another "
          "strategy and converted); 0 without trainable weights", unit="bytes", label="opt. state MiB",
          scale=1 / MIB, suites=_TRAINED, gate="exact", nullable=True),
    Field("learning_rate", "float", "the optimizer's step size (accuracy: the tuned one of "
          "reports/learning_rates.json, else `membed.train.RATING_LEARNING_RATES` / `membed.ctr.CTR_LEARNING_RATES`; "
          "`learning_rate_source` says which; train_step, memory: 1e-3, which moves no number they record)",
          suites=_TRAINED, nullable=True),
    Field("compression", "float", "a float32 full table's bytes / (param_bytes + index_bytes) at the same "
          "vocab_size and dim", unit="x", label="compression (bytes)", suites=(*_SIZED, "pipeline")),
    Field("projected", "bool", "true: the case did not run at its size; its sizes come from the cost formulas",
          suites=_ADMITTED, nullable=True),
    Field("peak_alloc_bytes_lookup", "int", "TF allocator peak for build + one lookup (the built layer plus "
          "the lookup)", unit="bytes", label="peak alloc MiB lookup", scale=1 / MIB, suites=_MEMORY, gate="peak",
          nullable=True),
    Field("peak_rss_bytes_lookup", "int", "process peak RSS over the process baseline, build + one lookup",
          unit="bytes", label="peak RSS MiB lookup", scale=1 / MIB, suites=_MEMORY, gate="peak_rss", nullable=True),
    Field("peak_alloc_bytes_train", "int", "TF allocator peak for one training step with the case's optimizer",
          unit="bytes", label="peak alloc MiB train", scale=1 / MIB, suites=_MEMORY, gate="peak", nullable=True),
    Field("peak_rss_bytes_train", "int", "process peak RSS over the process baseline, up to one training step",
          unit="bytes", label="peak RSS MiB train", scale=1 / MIB, suites=_MEMORY, gate="peak_rss", nullable=True),
    Field("rss_baseline_bytes", "int", "the measuring process's RSS before the build (TensorFlow's runtime and "
          "the case's ids), which `peak_rss_bytes_*` are above: baseline + peak is the process's whole peak RSS",
          unit="bytes", suites=_MEMORY, nullable=True),
    Field("estimated_peak_bytes_lookup", "int", "what `peak_alloc_bytes_lookup` should be by `membed.plan.estimate` "
          "(the case's strategy, size, options, counts and batch; the allocator's reservation): "
          "`lookup_peak_bytes`", unit="bytes", suites=_MEMORY, nullable=True),
    Field("estimated_peak_bytes_train", "int", "what `peak_alloc_bytes_train` should be by the same estimate, for "
          "the case's optimizer: `train_peak_bytes()`; null without trainable weights", unit="bytes",
          suites=_MEMORY, nullable=True),
    Field("gather_ratio", "float", "this case's median / the bare tf.gather's median, timed round by round on "
          "the same batches", unit="x", label="gather_ratio", suites=_PAIRED, gate="ratio", nullable=True),
    Field("gather_ratio_rounds", "list[float]", "each timed round's case time / the bare tf.gather's time in the "
          "same round (`gather_ratio`'s rounds, its noise)", unit="x", suites=_TIMED_PAIRED, nullable=True),
    Field("floor_ratio", "float", "this case's median / the median of `np.take(table, ids, axis=0)` on a NumPy "
          "copy of the bare gather's table, timed in the same rounds on the same ids; null above "
          "`bench.harness.NUMPY_COPY_MAX_BYTES` of table", unit="x", label="floor_ratio", suites=_TIMED_PAIRED,
          nullable=True),
    Field("ns_per_id", "float", "this case's median / its batch size", unit="ns", label="ns/id",
          suites=_TIMED_PAIRED, nullable=True),
    Field("call_floor_ns", "float", "median of a `tf.function` that returns its input, timed in the same rounds: "
          "TensorFlow's per-call cost", unit="ns", label="call floor ns", suites=_TIMED_PAIRED, nullable=True),
    Field("amortised_gather_ratio", "float", "`gather_ratio` with `amortised_batches` batches per tf.function "
          "call, for the case and the bare gather alike, so the per-call floor is a few percent of a call: "
          "the median of the rounds' ratios, each round timing both calls back to back",
          unit="x", label="amortised gather_ratio", suites=_AMORTISED, gate="ratio", nullable=True),
    Field("amortised_gather_ratio_rounds", "list[float]", "each amortised round's case call / the bare gather's "
          "call in the same round (`amortised_gather_ratio`'s rounds, its noise)", unit="x", suites=_AMORTISED,
          nullable=True),
    Field("amortised_compute_ratio", "float", "for a compute-bound strategy (`compute_bound`: dhe, tt), its time "
          "per batch / a dense MLP's (`bench.harness.COMPUTE_WIDTHS`) on the same ids, timed in the same amortised "
          "rounds: the median of the rounds' ratios; null for other strategies", unit="x",
          label="amortised compute_ratio", suites=_AMORTISED, gate="ratio", nullable=True),
    Field("amortised_compute_ratio_rounds", "list[float]", "each amortised round's case time per batch / the "
          "MLP's (`amortised_compute_ratio`'s rounds, its noise)", unit="x", suites=_AMORTISED, nullable=True),
    Field("amortised_ns_per_id", "float", "the amortised call's median / its ids (`amortised_batches` x batch)",
          unit="ns", label="amortised ns/id", suites=_AMORTISED, nullable=True),
    Field("amortised_batches", "int", "batches per call of the amortised timing (`bench.harness.AMORTISED_BATCHES`)",
          unit="batches", suites=_AMORTISED, nullable=True),
    Field("amortised_floor_share", "float", "the per-call floor (as `call_floor_ns`, timed after the amortised "
          "rounds) / the amortised bare gather's median call: what is left of TensorFlow's per-call cost",
          unit="x", suites=_AMORTISED, nullable=True),
    Field("val_mse", "float", "validation MSE after the final epoch (accuracy: at the best epoch, mean over seeds)",
          unit="rating^2", label="val MSE", suites=_FITTED, gate="accuracy", nullable=True),
    Field("val_mae", "float", "validation MAE after the final epoch (accuracy: as val_mse)", unit="rating",
          suites=_FITTED, nullable=True),
    Field("val_rmse", "float", "validation RMSE after the final epoch (accuracy: as val_mse)", unit="rating",
          suites=_FITTED, nullable=True),
    Field("val_mse_per_epoch", "list[float]", "validation MSE per epoch (accuracy: the first seed's)", unit="rating^2", label="val MSE per epoch",
          suites=_FITTED, nullable=True),
    Field("val_mae_per_epoch", "list[float]", "validation MAE per epoch", unit="rating", suites=_FITTED,
          nullable=True),
    Field("val_rmse_per_epoch", "list[float]", "validation RMSE per epoch", unit="rating", suites=_FITTED,
          nullable=True),
    Field("train_mse_per_epoch", "list[float]", "training MSE per epoch", unit="rating^2", suites=_FITTED,
          nullable=True),
    Field("epochs", "int", "epochs trained (accuracy: the budget, see `patience`)", unit="epochs", suites=_FITTED,
          nullable=True),
    Field("noise_floor_mse", "float", "synthetic-planted only: sigma**2", unit="rating^2", suites=("accuracy",),
          nullable=True),
    *_seeded("excess_mse", "test MSE - noise_floor_mse (synthetic-planted)", "rating^2", "excess MSE"),
    Field("seeds", "list[int]", "the seeds the case trained with, one fit each (split, initialisation, shuffling)",
          suites=("accuracy",), nullable=True),
    Field("patience", "int", "early stopping: epochs without a better validation loss before a fit stops (the "
          "best epoch's weights are kept); `epochs` is then the budget", unit="epochs", suites=("accuracy",),
          nullable=True),
    Field("epochs_run", "float", "epochs a fit ran before early stopping, mean over seeds", unit="epochs",
          label="epochs run", suites=("accuracy",), nullable=True),
    Field("epochs_run_per_seed", "list[int]", "epochs each seed's fit ran", unit="epochs", suites=("accuracy",),
          nullable=True),
    Field("best_epoch_per_seed", "list[int]", "each seed's best validation epoch (1-based), whose weights are "
          "kept and tested", unit="epochs", suites=("accuracy",), nullable=True),
    Field("learning_rate_source", "str", "where `learning_rate` came from: tuned (reports/learning_rates.json, "
          "with the tune run's date and code), the tune profile's candidate, or the default", suites=("accuracy",),
          nullable=True),
    *_seeded("val_mse", "validation MSE at the best epoch", "rating^2", None, mean=False),
    *_seeded("val_mae", "validation MAE at the best epoch", "rating", None, mean=False),
    *_seeded("val_rmse", "validation RMSE at the best epoch", "rating", None, mean=False),
    *_seeded("test_mse", "test MSE of the best epoch's weights", "rating^2", "test MSE"),
    *_seeded("test_mae", "test MAE of the best epoch's weights", "rating", "test MAE"),
    *_seeded("test_rmse", "test RMSE of the best epoch's weights", "rating", "test RMSE"),
    *_seeded("val_logloss", "synthetic-ctr: validation log loss at the best epoch", "nats", None, gate="accuracy"),
    *_seeded("test_logloss", "synthetic-ctr: test log loss of the best epoch's weights", "nats", "test logloss"),
    *_seeded("test_auc", "synthetic-ctr: test AUC of the best epoch's weights", "", "test AUC"),
    *_seeded("excess_logloss", "synthetic-ctr: test log loss - the planted model's on the same rows (its "
             "Bayes-optimal log loss)", "nats", "excess logloss"),
    Field("planted_logloss", "float", "synthetic-ctr: the planted model's log loss on the test rows (the "
          "Bayes optimum), mean over seeds", unit="nats", suites=("accuracy",), nullable=True),
    Field("planted_auc", "float", "synthetic-ctr: the planted model's AUC on the test rows, mean over seeds",
          suites=("accuracy",), nullable=True),
    Field("val_logloss_per_epoch", "list[float]", "synthetic-ctr: validation log loss per epoch (the first seed's)",
          unit="nats", suites=("accuracy",), nullable=True),
    Field("val_mse_by_storage", "dict", "storage -> validation MSE of the trained pairs with both layers' tables "
          "stored so, mean over seeds (`membed.presets.evaluate_by_storage` of each seed's pair on its own "
          "validation split, the profile's `accuracy_storages`; `float32` is the trained pair itself, evaluated "
          "the same way); null where a layer has no tables (`dhe`) or is stored in another dtype already "
          "(`quantized`'s presets)", unit="rating^2", suites=("accuracy",), nullable=True),
    Field("param_bytes_by_storage", "dict", "storage -> bytes of the two layers' weights stored so (as "
          "`val_mse_by_storage`)", unit="bytes", suites=("accuracy",), nullable=True),
    *(field for dtype in STORED_DTYPES for field in _seeded(
        f"val_mse_{dtype}", f"validation MSE of the trained pair with its tables stored as {dtype} "
        f"(`val_mse_by_storage['{dtype}']`), where evaluated", "rating^2", f"val MSE {dtype}")),
    Field("fit_seconds", "float", "wall time of the fit (pipeline: the median of its fits)", unit="s",
          label="fit s", suites=_FITTED, nullable=True),
    Field("speedup_vs_example", "float", "the example pipeline's median fit time / this pipeline's", unit="x",
          label="speedup vs example", suites=("pipeline",), nullable=True),
    Field("val_mse_delta_vs_example", "float", "this pipeline's final val_mse - the example pipeline's",
          unit="rating^2", label="val MSE vs example", suites=("pipeline",), nullable=True),
    # The sharded suite (bench/test_sharded.py, membed.shard): measured from the JAX arrays and the compiled HLO.
    Field("devices", "int", "devices of the mesh the tables are split over (`keras.distribution.DeviceMesh`)",
          unit="devices", suites=("sharded",), nullable=True),
    Field("layout", "str", "how tables are split: `row` (rows over the devices) or `column` (values of each row); "
          "dense weights and TT cores replicated", suites=("sharded",), nullable=True),
    Field("per_device_param_bytes", "int", "weights one device holds (max over devices), summed over the arrays' "
          "`addressable_shards`", unit="bytes", label="param KiB / device", scale=1 / 1024, suites=("sharded",),
          nullable=True),
    Field("per_device_state_bytes", "int", "optimizer state one device holds after one sharded train step (max "
          "over devices), from the arrays' shards; null without trainable weights", unit="bytes",
          label="opt. state KiB / device", scale=1 / 1024, suites=("sharded",), nullable=True),
    Field("per_device_train_bytes", "int", "weights + optimizer state one device holds after the step (max over "
          "devices)", unit="bytes", suites=("sharded",), nullable=True),
    Field("device_peak_bytes", "int", "the largest `peak_bytes_in_use` of the devices' `memory_stats()`; null "
          "where the platform reports none (CPU)", unit="bytes", suites=("sharded",), nullable=True),
    Field("planned_per_device_param_bytes", "int", "what `membed.plan.devices.per_device` says a device holds of "
          "weights, from the cost formula", unit="bytes", suites=("sharded",), nullable=True),
    Field("planned_per_device_state_bytes", "int", "what the same plan says a device holds of optimizer state",
          unit="bytes", suites=("sharded",), nullable=True),
    Field("planned_per_device_bytes", "int", "planned weights + optimizer state per device (compare with "
          "`per_device_train_bytes`; weights alone without trainable weights)", unit="bytes",
          suites=("sharded",), nullable=True),
    Field("collective_bytes_per_lookup", "int", "bytes the compiled lookup's collectives (all-gather, all-reduce, "
          "reduce-scatter, all-to-all, collective-permute) deliver to a device, read from its HLO; the output "
          "replicated", unit="bytes", label="collective KiB / lookup", scale=1 / 1024, suites=("sharded",),
          nullable=True),
    Field("collective_bytes_per_step", "int", "the same for one compiled train step", unit="bytes",
          suites=("sharded",), nullable=True),
    Field("sharded_matches", "bool", "the sharded lookup equals the unsharded layer's on the same ids and weights "
          "(`array_equal`)", label="matches", suites=("sharded",), nullable=True),
)

# The loader's columns from pytest-benchmark's own entry and the file (analysis.load), in the frame's order.
LOADER_FIELDS: tuple[Field, ...] = (
    Field("name", "str", "pytest-benchmark's test name", origin="loader", nullable=True),
    Field("fullname", "str", "the case's pytest node id", origin="loader", nullable=True),
    Field("median_s", "float", "median round", unit="s", label="median ms", scale=1e3, origin="loader",
          nullable=True, latency=True),
    Field("mean_s", "float", "mean round", unit="s", origin="loader", nullable=True),
    Field("p95_s", "float", "95th percentile of the rounds (stats.data), else stats.max", unit="s",
          label="p95 ms", scale=1e3, origin="loader", nullable=True, latency=True),
    Field("p95_source", "str", "where p95_s came from: `data` or `max`", origin="loader", nullable=True),
    Field("rounds", "int", "timed rounds", unit="rounds", origin="loader", nullable=True),
    Field("source", "str", "the file the case was read from", origin="loader"),
    Field("profile", "str", "the run's profile (`membed.profile`)", origin="loader", nullable=True),
)

# Columns the report derives (analysis.frames.with_baseline_mse).
DERIVED_FIELDS: tuple[Field, ...] = (
    Field("full_val_mse", "float", "val_mse of the full baseline of the same suite and dataset", unit="rating^2",
          origin="derived", nullable=True),
    Field("mse_vs_full", "float", "val_mse - full_val_mse", unit="rating^2", label="MSE vs full",
          origin="derived", nullable=True),
    Field("mse_vs_full_pct", "float", "mse_vs_full / full_val_mse, in percent", unit="%", label="MSE vs full %",
          origin="derived", nullable=True),
    Field("est_ratio_lookup", "float", "peak_alloc_bytes_lookup / estimated_peak_bytes_lookup", unit="x",
          label="est. ratio lookup", origin="derived", nullable=True),
    Field("est_ratio_train", "float", "peak_alloc_bytes_train / estimated_peak_bytes_train", unit="x",
          label="est. ratio train", origin="derived", nullable=True),
    Field("outside_estimate", "bool", "an ok memory case with a ratio outside the estimate's band "
          "(`analysis.frames.ESTIMATE_BAND`)", label="outside est.", origin="derived", nullable=True),
    Field("test_loss", "float", "test_mse (rating datasets) or test_logloss (synthetic-ctr): the accuracy "
          "suite's one lower-is-better number", label="test loss", origin="derived", nullable=True),
    Field("test_loss_ci95", "float", "the 95% half-width of `test_loss`", origin="derived", nullable=True),
)

FIELD: dict[str, Field] = {field.name: field for field in (*FIELDS, *LOADER_FIELDS, *DERIVED_FIELDS)}
EXTRA_INFO_KEYS = tuple(field.name for field in FIELDS)
# The columns of a suite table, in the order the report shows them.
REPORT_METRICS: tuple[str, ...] = (
    "params",
    "compression",
    "param_bytes",
    "index_bytes",
    "optimizer_state_bytes",
    "peak_alloc_bytes_lookup",
    "peak_rss_bytes_lookup",
    "peak_alloc_bytes_train",
    "peak_rss_bytes_train",
    "est_ratio_lookup",
    "est_ratio_train",
    "median_s",
    "p95_s",
    "gather_ratio",
    "val_mse",
    "test_mse",
    *(f"val_mse_{dtype}" for dtype in STORED_DTYPES),
    "mse_vs_full",
    "mse_vs_full_pct",
    "excess_mse",
    "test_logloss",
    "test_auc",
    "excess_logloss",
    "epochs_run",
    "fit_seconds",
    "speedup_vs_example",
    "val_mse_delta_vs_example",
)
GATED_FIELDS = tuple(field.name for field in FIELDS if field.gate is not None)
PEAK_FIELDS = tuple(field.name for field in FIELDS if field.gate in ("peak", "peak_rss"))
# Fields that name a case rather than measure it: the rows of a table are grouped and sorted by these.
KEY_FIELDS = ("dataset", "vocab_size", "strategy", "preset", "optimizer", "dim")
V1_RENAMES = {"vocab": "dataset"}
# The accuracy suite's reference pairs, as records name them (`preset`, `strategy`):
# membed.presets.BASELINE and EXAMPLE, which tests/test_schema.py holds equal to these.
BASELINE_PRESET, BASELINE_STRATEGY = "baseline", "full"
EXAMPLE_PRESET, EXAMPLE_STRATEGY = "example", "example_qr+example_md"


def fields_of(types: Sequence[str], fields: Sequence[Field] = FIELDS) -> tuple[str, ...]:
    """The names of `fields` whose type is one of `types`, in order.

    Example:
        >>> fields_of(["dict"])
        ('options',)
    """
    return tuple(field.name for field in fields if field.type in types)


def check_record(record: Mapping[str, Any], where: str = "record", also: Collection[str] = ()) -> None:
    """Raises ValueError unless every key of `record` is a declared record field of this schema version.

    bench calls it on every record it writes, so that no field reaches a JSON
    file undeclared. Only the keys are checked: a suite that did not get to a
    field leaves it null (`Field.accepts` checks a value).

    Args:
        record: a case's extra_info, or a not_run entry.
        where: how to name the record in the error (its case id).
        also: keys allowed besides the fields, such as a not_run entry's `fullname`.

    Example:
        >>> check_record({"case": "memory/full/synthetic-zipf/1000/64", "vocab": "synthetic-zipf"})
        Traceback (most recent call last):
        ...
        ValueError: record: unknown result field 'vocab' (schema 2 calls it 'dataset'). Declare it in ...
    """
    for key in record:
        if key not in EXTRA_INFO_KEYS and key not in also:
            hint = f" (schema {SCHEMA_VERSION} calls it {V1_RENAMES[key]!r})" if key in V1_RENAMES else ""
            raise ValueError(
                f"{where}: unknown result field {key!r}{hint}. Declare it in {WHERE}; "
                f"the valid keys are: {', '.join(EXTRA_INFO_KEYS)}."
            )


def v1_to_v2(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A schema-1 record (or not_run entry) in schema 2; keys schema 2 does not rename stay as they are.

    Two changes: `vocab` is renamed `dataset`, and `projected`, which schema 1
    did not declare, is set where schema 1's reader inferred it: a memory case
    that failed or skipped but carries sizes holds them from the cost formulas
    (the suite fills them before it measures).

    Example:
        >>> v1_to_v2({"schema_version": 1, "vocab": "ml-100k", "params": 3})
        {'schema_version': 2, 'dataset': 'ml-100k', 'params': 3}
    """
    out: dict[str, Any] = {}
    for key, value in entry.items():
        if key in V1_RENAMES:
            # A record that also holds the new name keeps that one's value.
            out.setdefault(V1_RENAMES[key], value)
        else:
            out[key] = value
    if "schema_version" in out:
        out["schema_version"] = 2
    formula_sizes = out.get("params") is not None and out.get("status") in ("skipped", "failed")
    if out.get("suite") == "memory" and formula_sizes:
        out["projected"] = True
    return out


UPGRADES: dict[int, Callable[[Mapping[str, Any]], dict[str, Any]]] = {1: v1_to_v2}


def upgrade(entry: Mapping[str, Any], version: int | None = None) -> dict[str, Any]:
    """`entry`, written under schema `version` (default: its own `schema_version`, else 1), in this schema.

    Raises:
        ValueError: a version outside `SUPPORTED_SCHEMA_VERSIONS`.

    Example:
        >>> upgrade({"vocab": "ml-100k"}, 1)
        {'dataset': 'ml-100k'}
    """
    version = (entry.get("schema_version") or 1) if version is None else version
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        supported = ", ".join(str(v) for v in SUPPORTED_SCHEMA_VERSIONS)
        raise ValueError(f"incompatible schema_version {version!r}. This report reads: {supported}.")
    out = dict(entry)
    while version < SCHEMA_VERSION:
        out = UPGRADES[version](out)
        version += 1
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_table(fields: Sequence[Field] = FIELDS) -> str:
    """bench/README.md's table of the record fields: one row per field, generated from `FIELDS`.

    The first three columns (key, type, meaning) are what a reader needs; unit,
    report column, the suites that write a value and the gate's treatment follow.
    """
    lines = [
        "| key | type | meaning | unit | report column | written by | gate |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for field in fields:
        suites = "every suite" if field.suites is None else ", ".join(field.suites)
        cells = (
            field.name,
            field.type_text,
            field.description,
            field.unit,
            field.label or "",
            suites,
            field.gate or "",
        )
        lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m analysis.schema`: prints `markdown_table()`; returns the exit code."""
    if argv:
        print(f"usage: python -m analysis.schema (no arguments; got {' '.join(argv)})", file=sys.stderr)
        return 2
    print(markdown_table())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
