"""The contract every embedding strategy follows.

A strategy is a Keras 3 layer that maps integer ids in `[0, vocab_size)` to
vectors of the base dimension `dim`. Subclasses implement `build`, `lookup`
(on a flat vector of ids that is already range-checked) and the classmethod
`cost`, which gives parameters and bytes from the constructor arguments alone,
before anything is built.

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


@dataclasses.dataclass(frozen=True)
class Cost:
    """Closed-form size of a strategy, computable before building it.

    Attributes:
        params: number of scalars held in weights (what `count_params()` gives).
        bytes_by_dtype: bytes of those weights, keyed by storage dtype.
        index_bytes: bytes of non-parameter id-mapping state.
    """

    params: int
    bytes_by_dtype: dict[str, int]
    index_bytes: int = 0

    @property
    def param_bytes(self) -> int:
        return sum(self.bytes_by_dtype.values())

    @classmethod
    def float32(cls, params: int, index_bytes: int = 0) -> "Cost":
        return cls(params=params, bytes_by_dtype={"float32": 4 * params}, index_bytes=index_bytes)


@dataclasses.dataclass(frozen=True)
class Option:
    """One constructor option of a strategy, as the CLI and `strategies` list it."""

    parse: Callable[[str], Any]
    default: Any
    help: str


def int_list(text: str | list | tuple) -> list[int]:
    """Parses '400,1700' (or a list) into [400, 1700]."""
    if isinstance(text, (list, tuple)):
        return [int(v) for v in text]
    return [int(v) for v in str(text).replace("/", ",").split(",") if v.strip()]


def optional_int(text) -> int | None:
    """Parses an option that may be left to a derived default ('', 'none', 'auto')."""
    if text is None or str(text).strip().lower() in ("", "none", "auto"):
        return None
    return int(text)


def optional_int_list(text) -> list[int] | None:
    """Like `int_list`, but '', 'none' or 'auto' leave the list to a derived default."""
    if text is None or (isinstance(text, str) and text.strip().lower() in ("", "none", "auto")):
        return None
    return int_list(text)


def check_choice(layer: str, option: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(
            f"{layer}: invalid `{option}`: {value!r}. Use one of: {', '.join(map(str, allowed))}."
        )


def check_positive(layer: str, option: str, value: Any, minimum: int = 1) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{layer}: invalid `{option}`: {value!r}. It must be an integer >= {minimum}.")


class EmbeddingStrategy(keras.layers.Layer):
    """Base class: id validation, flattening, config and index-state saving.

    Args:
        vocab_size: number of ids; valid ids are `0 .. vocab_size - 1`.
        dim: the base embedding dimension every id is mapped to.
        check_ids: raise on out-of-range ids (on by default; it costs one max
            over the batch).
    """

    strategy_name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    options: ClassVar[dict[str, Option]] = {}
    needs_counts: ClassVar[bool] = False
    # A strategy that cannot be trained as itself (int8 tables) names the
    # strategy to train instead and converts with `from_trained`.
    trains_as: ClassVar[str | None] = None
    preset_compressions: ClassVar[tuple[int, ...]] = (5, 20, 100)
    # Whether the parts a strategy hands to `fused` run as XLA clusters at
    # inference (see `fused`); an instance may set it to False.
    fuse_lookup: ClassVar[bool] = True

    def __init__(self, vocab_size: int, dim: int, check_ids: bool = True, **kwargs):
        super().__init__(**kwargs)
        label = type(self).__name__
        check_positive(label, "vocab_size", vocab_size)
        check_positive(label, "dim", dim)
        self.vocab_size = int(vocab_size)
        self.dim = int(dim)
        self.check_ids = bool(check_ids)
        self._index_arrays: dict[str, np.ndarray] = {}
        self._index_tensors: dict[str, Any] = {}

    # ----- cost -------------------------------------------------------------
    @classmethod
    def cost(cls, vocab_size: int, dim: int, **options) -> Cost:
        raise NotImplementedError

    @classmethod
    def options_for_compression(cls, vocab_size: int, dim: int, compression: float) -> dict:
        """Options that give about `compression` times fewer parameters than a full table.

        Raises ValueError when the strategy cannot reach that compression at this size.
        The accuracy suite's presets (`5x`, `20x`, `100x`) come from here.
        """
        raise ValueError(f"{cls.strategy_name}: has no compression presets.")

    @classmethod
    def accuracy_presets(cls, vocab_size: int, dim: int, counts=None) -> dict[str, dict | ValueError]:
        """Named option sets the accuracy suite trains: `5x`, `20x`, `100x` by default.

        A preset the strategy cannot reach maps to the ValueError that says why.
        `counts` are the data's per-id counts, for strategies whose size
        depends on them.
        """
        presets: dict[str, dict | ValueError] = {}
        for compression in cls.preset_compressions:
            try:
                presets[f"{compression}x"] = cls.options_for_compression(vocab_size, dim, compression)
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
        options = {k: getattr(self, k) for k in self.options}
        return self.cost(self.vocab_size, self.dim, **options)

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
        config.update(vocab_size=self.vocab_size, dim=self.dim, check_ids=self.check_ids)
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


def gather_rows(table, rows):
    """`table[rows]` for row indices already known to be in range.

    `keras.ops.take` also maps negative indices (five more ops on TensorFlow,
    each a dispatch per batch); ids reaching a strategy's lookup are checked,
    so on TensorFlow this is the bare `tf.gather`.
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.gather(table, rows)
    return ops.take(table, rows, axis=0)


def frequency_order(counts: np.ndarray | None, vocab_size: int, layer: str) -> np.ndarray:
    """Ids sorted by count, most frequent first (ties keep id order).

    With no counts, ids are taken to be numbered by frequency already.
    """
    if counts is None:
        return np.arange(vocab_size, dtype=np.int64)
    counts = np.asarray(counts)
    if counts.shape != (vocab_size,):
        raise ValueError(
            f"{layer}: `counts` must have one entry per id, shape ({vocab_size},); got {counts.shape}."
        )
    if (counts < 0).any():
        raise ValueError(f"{layer}: `counts` must be >= 0; got a negative count.")
    return np.argsort(-counts, kind="stable")


# Up to this many bytes of tables, a fused lookup includes the gathers: XLA's
# CPU gather was faster than TensorFlow's from a 95 KB table and slower from a
# 25 MB one (hash at V = 3,706 and 1e6, batch 4096, dim 64; bench notes in
# reports/README.md).
FUSED_GATHER_MAX_BYTES = 4 * 2**20

# Tables of at least this many values are drawn inside a tf.function (see TableUniform).
_GRAPH_INIT_VALUES = 2**20


class TableUniform(keras.initializers.Initializer):
    """Uniform(-limit, limit) initializer whose peak memory is one copy of the table.

    Keras's `RandomUniform` draws [0, 1) values, then scales and shifts them
    op by op, so a 1 GB table briefly needs about 3 GB; at 1e8 ids that alone
    breaks a 2 GB budget. On the TensorFlow backend this draws the same
    distribution inside one `tf.function`, where TensorFlow reuses the draw's
    buffer for the scale and shift, and the variable adopts the result without
    a copy. The per-call seed comes from Keras's global seed state, so
    `keras.utils.set_random_seed` makes it reproducible. Other backends use
    `keras.random.uniform`.

    Args:
        limit: half-width of the interval; 0.05 matches Keras's "uniform".

    Example:
        >>> self.add_weight(shape=(rows, dim), initializer=TableUniform(0.05), name="table")
    """

    def __init__(self, limit: float = 0.05):
        self.limit = float(limit)

    def __call__(self, shape, dtype=None):
        dtype = keras.backend.standardize_dtype(dtype or keras.backend.floatx())
        # Small tables skip the tracing cost; their temporaries do not matter.
        if keras.backend.backend() != "tensorflow" or math.prod(shape) < _GRAPH_INIT_VALUES:
            return keras.random.uniform(shape, -self.limit, self.limit, dtype=dtype)
        import tensorflow as tf

        seed = keras.random.randint((2,), 0, 2**31 - 1, dtype="int32")
        shape = tuple(int(d) for d in shape)

        @tf.function(autograph=False)
        def draw(seed):
            return tf.random.stateless_uniform(
                shape, seed=seed, minval=-self.limit, maxval=self.limit, dtype=dtype
            )

        return draw(seed)

    def get_config(self) -> dict:
        return {"limit": self.limit}
