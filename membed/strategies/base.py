"""The contract every embedding strategy follows.

A strategy is a Keras 3 layer that maps integer ids in `[0, vocab_size)` to
vectors of the base dimension `dim`. Its options are the fields of one frozen
config dataclass, named by `config_class` (see `config`). Subclasses
implement `build`, `lookup` (on a flat vector of ids that is already
range-checked) and the classmethod `cost_of`, which gives parameters and
bytes from a resolved config alone, before anything is built.

Tables are made in `build` with `add_table` (their shapes declared by
`table_shapes`, part of the cost formula) and read in `lookup` with
`gather`, so that storing them as float16, bfloat16 or int8 after training
(`layer.store_as`, see `storage.py`) works for every strategy.

Some strategies need more than weights to map ids: mixed dimension keeps an
id -> block map, frequency hashing an id -> private-row map. That "index"
state is not a parameter (it is not trained and not counted by
`count_params()`), but it is saved with the weights in `.keras` files and
reported as `index_bytes`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, ClassVar

import keras
import numpy as np
from keras import ops

# Cost, Option, the parsers and the checks live with the configs; imported here for the strategy modules.
from membed.strategies.config import (  # noqa: F401
    Cost,
    Option,
    StrategyConfig,
    check_choice,
    check_positive,
    frequency_order,
    int_list,
    optional_int,
    optional_int_list,
)
# TableUniform, gather_rows and take_rows are imported here for the strategy modules.
from membed.strategies.initializers import TableUniform  # noqa: F401
from membed.strategies.storage import TableStorage, check_storage, gather_rows, take_rows  # noqa: F401

BYTES_PER_DTYPE = {
    "float32": 4,
    "float16": 2,
    "bfloat16": 2,
    "int8": 1,
    "int32": 4,
    "int64": 8,
}


class InvalidIdError(ValueError):
    """An id outside `[0, vocab_size)` reached an embedding layer."""


class EmbeddingStrategy(TableStorage, keras.layers.Layer):
    """Base class: id validation, flattening, config and index-state saving.

    The options a subclass takes are the fields of its `config_class`; the
    constructor resolves them (`StrategyConfig.resolve`) and stores each as
    a public attribute, which `get_config` saves.

    Args:
        vocab_size: number of ids; valid ids are `0 .. vocab_size - 1`.
        dim: the base embedding dimension every id is mapped to.
        check_ids: raise on out-of-range ids (on by default; it costs one max
            over the batch).
        counts: per-id counts (length `vocab_size`) for strategies that use
            them (`needs_counts`); others ignore them. Not saved in the config.
        storage: how the tables are stored, `float32` (default), `float16`,
            `bfloat16` or `int8` (see `storage.py`; convert a trained layer
            with `store_as`). Saved in the config.
        **kwargs: the strategy's options, by name, then Keras layer arguments
            (`name`, `dtype`, ...).
    """

    strategy_name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    config_class: ClassVar[type[StrategyConfig]] = StrategyConfig
    # Both derived from `config_class` for every subclass (see __init_subclass__).
    options: ClassVar[dict[str, Option]] = {}
    needs_counts: ClassVar[bool] = False
    # A strategy that cannot be trained as itself (int8 tables) names the
    # strategy to train instead and converts with `from_trained`.
    trains_as: ClassVar[str | None] = None
    preset_compressions: ClassVar[tuple[int, ...]] = (5, 20, 100)
    # Whether the parts a strategy hands to `fused` run as XLA clusters at
    # inference (see `fused`); an instance may set it to False.
    fuse_lookup: ClassVar[bool] = True
    # Whether a lookup is mostly arithmetic (an MLP, a chain of small matmuls)
    # rather than memory traffic; the lookup suite then also times it against a
    # dense MLP (`amortised_compute_ratio`), which a busy host slows alike.
    compute_bound: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "config_class" not in cls.__dict__ and {"options", "needs_counts"} & set(cls.__dict__):
            raise TypeError(
                f"{cls.__name__}: declare options as the fields of a `config_class` "
                "(a StrategyConfig dataclass, see membed/strategies/config.py), not an `options` dict."
            )
        cls.options = cls.config_class.options()
        cls.needs_counts = cls.config_class.uses_counts

    def __init__(self, vocab_size: int, dim: int, *, check_ids: bool = True, counts: np.ndarray | None = None,
                 **kwargs):
        # Options by keyword only: a positional third argument is an error, not a silent `check_ids`.
        options = {name: kwargs.pop(name) for name in list(kwargs) if name in self.options}
        storage = kwargs.pop("storage", "float32")
        super().__init__(**kwargs)
        label = type(self).__name__
        check_positive(label, "vocab_size", vocab_size)
        check_positive(label, "dim", dim)
        self.vocab_size = int(vocab_size)
        self.dim = int(dim)
        self.check_ids = bool(check_ids)
        # How the tables are stored (storage.py); a strategy may declare it as an option instead (quantized).
        self.storage = None if "storage" in self.options else check_storage(label, storage, self.storages)
        self._index_arrays: dict[str, np.ndarray] = {}
        self._index_tensors: dict[str, Any] = {}
        config = self.config_class(**options).resolve(self.vocab_size, self.dim, counts, label=label)
        for name, value in config.as_dict().items():
            setattr(self, name, value)

    @property
    def config(self) -> StrategyConfig:
        """This layer's resolved options, read from its public attributes."""
        return self.config_class(**{name: getattr(self, name) for name in self.options})

    # ----- cost -------------------------------------------------------------
    @classmethod
    def cost(cls, vocab_size: int, dim: int, *, counts: np.ndarray | None = None, **options) -> Cost:
        """Size of a `vocab_size x dim` layer with these options (others default), before building it.

        Example:
            >>> QREmbedding.cost(6040, 64, num_buckets=120).params
            10944
        """
        config = cls.config_class.from_options(options, owner=cls.__name__, parse=False)
        resolved = config.resolve(vocab_size, dim, counts, label=cls.__name__)
        cost = cls.cost_of(resolved, vocab_size, dim)
        if cost.tables:
            return cost
        return dataclasses.replace(cost, tables=tuple(map(tuple, cls.table_shapes(resolved, vocab_size, dim))))

    @classmethod
    def cost_of(cls, config: StrategyConfig, vocab_size: int, dim: int) -> Cost:
        """The cost formula: the size of a layer with this resolved config."""
        raise NotImplementedError(f"{cls.__name__} has no cost formula (`cost_of`).")

    @classmethod
    def table_shapes(cls, config: StrategyConfig, vocab_size: int, dim: int) -> list[tuple[int, ...]]:
        """Shapes of the tables `build` makes with `add_table`, in build order (none by default).

        Part of the cost formula: `cost(...).stored(storage)` converts these,
        and keeps the other parameters dense float32.
        """
        return []

    @classmethod
    def options_for_compression(cls, vocab_size: int, dim: int, compression: float,
                                counts: np.ndarray | None = None) -> dict:
        """Options that give about `compression` times fewer parameters than a full table.

        Raises ValueError when the strategy cannot reach that compression at this size.
        The accuracy suite's presets (`5x`, `20x`, `100x`) come from here. `counts`
        are the data's per-id counts, for strategies whose size depends on them.
        """
        raise ValueError(f"{cls.strategy_name}: has no compression presets.")

    @classmethod
    def accuracy_presets(cls, vocab_size: int, dim: int,
                         counts: np.ndarray | None = None) -> dict[str, dict | ValueError]:
        """Named option sets the accuracy suite trains: `5x`, `20x`, `100x` by default.

        A preset the strategy cannot reach maps to the ValueError that says why.
        `counts` are the data's per-id counts, for strategies whose size
        depends on them.
        """
        presets: dict[str, dict | ValueError] = {}
        for compression in cls.preset_compressions:
            try:
                options = cls.options_for_compression(vocab_size, dim, compression, counts=counts)
                cls.config_class.from_options(options, owner=cls.__name__, parse=False)  # names checked
                presets[f"{compression}x"] = options
            except ValueError as error:
                presets[f"{compression}x"] = error
        return presets

    @classmethod
    def from_trained(cls, layer: "EmbeddingStrategy", **options) -> "EmbeddingStrategy":
        """Converts a trained `trains_as` layer into this strategy (post-training)."""
        raise NotImplementedError(f"{cls.strategy_name} trains as itself.")

    @classmethod
    def param_count(cls, vocab_size: int, dim: int, **options) -> int:
        return cls.cost(vocab_size, dim, **options).params

    def layer_cost(self) -> Cost:
        """The cost formula applied to this layer's own configuration."""
        return self.cost(self.vocab_size, self.dim, **self.config.as_dict()).stored(self.storage)

    # ----- index state (saved with weights, not counted as parameters) -----
    def set_index(self, name: str, array: np.ndarray) -> None:
        array = np.ascontiguousarray(array)
        self._index_arrays[name] = array
        self._index_tensors[name] = ops.convert_to_tensor(array)

    def index(self, name: str):
        return self._index_tensors[name]

    @property
    def index_bytes(self) -> int:
        return int(sum(a.nbytes for a in self._index_arrays.values()))

    def save_own_variables(self, store):
        super().save_own_variables(store)
        for name, array in self._index_arrays.items():
            store[f"index_{name}"] = array

    def load_own_variables(self, store):
        weights = {k: store[k] for k in store.keys() if not k.startswith("index_")}
        super().load_own_variables(weights)
        for key in store.keys():
            if key.startswith("index_"):
                name = key[len("index_"):]
                saved = np.asarray(store[key])
                expected = self._index_arrays.get(name)
                if expected is not None and saved.shape != expected.shape:
                    raise ValueError(
                        f"{self.name}: saved index '{name}' has shape {saved.shape}, "
                        f"the layer expects {expected.shape}."
                    )
                self.set_index(name, saved.astype(expected.dtype if expected is not None else saved.dtype))

    # ----- forward ----------------------------------------------------------
    def call(self, ids, training=None):
        ids = ops.convert_to_tensor(ids)
        if not keras.backend.standardize_dtype(ids.dtype).startswith(("int", "uint")):
            raise TypeError(f"{self.name}: ids must be integers, got dtype {ids.dtype}.")
        dtype = keras.backend.standardize_dtype(ids.dtype)
        # Checked at a width that holds every id of the input's dtype: narrowing an
        # int64 id to int32 first would wrap 2**32 + 5 to 5 and pass the check.
        wide = dtype in ("int64", "uint32", "uint64")
        if self.check_ids:
            ids = self._checked(ops.cast(ids, "int64" if wide else "int32"))
        ids = ops.cast(ids, "int64" if self.vocab_size > 2**31 - 1 else "int32")
        flat = ops.reshape(ids, (-1,))
        self._fusing = self._fuses(training)
        try:
            vectors = self.lookup(flat)
        finally:
            self._fusing = False
        if len(ids.shape) == 1:
            return vectors
        dynamic = ops.shape(ids)
        shape = [d if d is not None else dynamic[i] for i, d in enumerate(ids.shape)]
        return ops.reshape(vectors, (*shape, self.dim))

    def lookup(self, ids):
        """Maps a flat vector of in-range ids to a (n, dim) tensor."""
        raise NotImplementedError

    def _fuses(self, training) -> bool:
        if not self.fuse_lookup or training or keras.backend.backend() != "tensorflow":
            return False
        import tensorflow as tf

        # Eager calls would compile once per batch shape for little gain.
        return not tf.executing_eagerly()

    def fused(self, function: Callable, *args):
        """`function(*args)`, compiled by XLA when this is an inference call inside a `tf.function`.

        XLA fuses a chain of small ops (hashing, index arithmetic, gathers
        from small tables, a dequantizing scale) into one pass over the
        batch, where TensorFlow's graph runs each op on its own. Strategies
        hand it the parts where that was measured to pay. It is skipped in
        eager calls, on other backends, when `fuse_lookup` is False and for
        `training=True` calls: gradients through a compiled gather come back
        dense, while the graph path keeps them sparse. The range check has
        already run outside, since XLA drops Assert ops.
        """
        if not getattr(self, "_fusing", False):
            return function(*args)
        # Kept out of Keras's attribute tracking: a tf.function is no layer state.
        compiled = self.__dict__.setdefault("_compiled", {})
        key = function.__name__
        if key not in compiled:
            import tensorflow as tf

            compiled[key] = tf.function(function, jit_compile=True, autograph=False)
        return compiled[key](*args)

    @staticmethod
    def small_tables(*tables) -> bool:
        """Whether `tables` are small enough for their gathers to go into a fused lookup."""
        total = sum(math.prod(table.shape) * BYTES_PER_DTYPE.get(str(table.dtype), 4) for table in tables)
        return total <= FUSED_GATHER_MAX_BYTES

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.dim)

    def _checked(self, ids):
        if keras.backend.backend() != "tensorflow":
            return ids
        import tensorflow as tf

        if tf.executing_eagerly():
            values = ids.numpy()
            bad = values[(values < 0) | (values >= self.vocab_size)]
            if bad.size:
                raise InvalidIdError(self._range_message(int(bad.flat[0])))
            return ids
        # One reduction: as unsigned, negative ids wrap above every valid id, so the
        # largest unsigned id is the first to check (and casts back to the bad id).
        unsigned = tf.uint32 if ids.dtype == tf.int32 else tf.uint64
        highest = tf.reduce_max(tf.bitcast(ids, unsigned))
        in_range = highest < self.vocab_size
        bad = tf.bitcast(highest, ids.dtype)
        # Plain string constants (no StringFormat) keep the check compilable by XLA,
        # which drops Assert ops: under jit_compile the range check is not enforced.
        assertion = tf.debugging.Assert(
            in_range,
            [f"Layer {self.name} ({self.strategy_name}): out-of-range id", bad,
             f"valid ids are 0..{self.vocab_size - 1} (vocab_size={self.vocab_size})."],
        )
        with tf.control_dependencies([assertion]):
            return tf.identity(ids)

    def _range_message(self, bad_id) -> str:
        return (
            f"Layer {self.name} ({self.strategy_name}): id {bad_id} is out of range; "
            f"valid ids are 0..{self.vocab_size - 1} (vocab_size={self.vocab_size})."
        )

    # ----- config -----------------------------------------------------------
    def get_config(self) -> dict:
        config = super().get_config()
        config.update(vocab_size=self.vocab_size, dim=self.dim, check_ids=self.check_ids, storage=self.storage)
        for option in self.options:
            value = getattr(self, option)
            config[option] = list(value) if isinstance(value, tuple) else value
        return config


def compiling_with_xla() -> bool:
    """Whether the op being traced goes into an XLA cluster (`jit_compile=True`), on TensorFlow.

    Strategies with data-dependent shapes (a dynamic partition) switch to a
    static-shape form there: XLA cannot compile them (`mixed_dim` under a
    jit-compiled train step crashed the process with LLVM out-of-memory errors).
    """
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf
    from tensorflow.python.ops import control_flow_util  # no public equivalent

    return not tf.executing_eagerly() and control_flow_util.GraphOrParentsInXlaContext(
        tf.compat.v1.get_default_graph()
    )


# Up to this many bytes of tables, a fused lookup includes the gathers: XLA's
# CPU gather was faster than TensorFlow's from a 95 KB table and slower from a
# 25 MB one (hash at V = 3,706 and 1e6, batch 4096, dim 64; bench notes in
# reports/README.md).
FUSED_GATHER_MAX_BYTES = 4 * 2**20
