"""How a strategy's tables are stored: float32, float16, bfloat16, or int8 with a float32 scale per row.

Storage is a step after training, as in Keras's `Embedding.quantize("int8")`:
train a strategy in float32, then `layer.store_as("int8")` rewrites the
layer's tables in place and leaves its dense weights (projections, MLPs) in
float32. A table is any weight a strategy creates with `add_table` and reads
with `gather`; this module holds everything that depends on the storage, so
each strategy only names its tables.

- `float16` / `bfloat16`: the table cast to that dtype; still trainable
  (mind the optimizer: see `QuantizedEmbedding`). Lookups are cast back.
- `int8`: Keras's scheme, symmetric abs-max per row: `scale = 127 /
  max|row|`, values `round(row * scale)` in [-127, 127], a lookup returns
  `values / scale`, so every entry is off by at most half a step,
  `max|row| / 254`. int8 tables are not trainable (Keras's are not either).
  A row is a table's slice along axis 0 (a TT core's slice is a matrix); a
  1-D table (ROBE's array) gets one scale per `FLAT_SCALE_BLOCK` values.

The storage is part of the layer's config, so a `.keras` file saved after
`store_as` builds the stored variables and loads them back.

Example:
    >>> layer = strategies.build("hash", 10_000, 16, num_rows=500)  # ... trained ...
    >>> layer.store_as("int8").count_params()  # 500 * 16 int8 values + 500 scales
    8500
    >>> strategies.cost("hash", 10_000, 16, num_rows=500).stored("int8").bytes_by_dtype
    {'int8': 8000, 'float32': 2000}
"""

from __future__ import annotations

import math
from typing import Any, Callable

import keras
import numpy as np
from keras import ops

STORAGES = ("float32", "float16", "bfloat16", "int8")
# The storages a trained float32 layer can be converted to (what the accuracy suite evaluates).
CONVERSIONS = ("float16", "bfloat16", "int8")
INT8_MAX = 127
# Values per scale in a 1-D table: the size of a row of a dim-64 table.
FLAT_SCALE_BLOCK = 64
_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "int8": 1}


def gather_rows(table, rows):
    """`table[rows]` for row indices already known to be in range.

    `keras.ops.take` also maps negative indices (five more ops on TensorFlow,
    each a dispatch per batch); ids reaching a strategy's lookup are checked,
    so on TensorFlow this is the bare `tf.gather`. A Keras variable is
    gathered through its TensorFlow variable (`.value`), so the gather reads
    only the rows it needs: once a row-sparse optimizer has updated a
    variable in place, reading it whole would copy the whole table every step.
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.gather(table.value if isinstance(table, keras.Variable) else table, rows)
    return ops.take(table, rows, axis=0)


def take_rows(table, rows):
    """`keras.ops.take(table, rows, axis=0)`: the Keras example's gather, which the example ports keep."""
    return ops.take(table, rows, axis=0)


def check_storage(label: str, storage: Any, allowed: tuple[str, ...] = STORAGES) -> str:
    if storage not in allowed:
        raise ValueError(f"{label}: invalid `storage`: {storage!r}. Use one of: {', '.join(allowed)}.")
    return storage


def scale_count(shape: tuple[int, ...]) -> int:
    """Scales an int8 table of `shape` keeps: one per row, or per block of a 1-D table."""
    if len(shape) == 1:
        return math.ceil(shape[0] / FLAT_SCALE_BLOCK)
    return int(shape[0])


def stored_sizes(params: int, tables: tuple[tuple[int, ...], ...], storage: str) -> tuple[int, dict[str, int]]:
    """(params, bytes_by_dtype) of weights holding `params` float32 values, `tables` stored as `storage`.

    Values outside the tables (dense weights) stay float32.

    Example:
        >>> stored_sizes(10 * 4 + 4 * 8, ((10, 4),), "int8")  # a 10 x 4 table and a 4 x 8 projection
        (82, {'int8': 40, 'float32': 168})
    """
    table_values = sum(math.prod(shape) for shape in tables)
    dense = params - table_values
    if storage == "float32":
        return params, {"float32": 4 * params}
    bytes_by_dtype = {storage: _BYTES[storage] * table_values}
    if storage == "int8":
        scales = sum(scale_count(shape) for shape in tables)
        params, dense = params + scales, dense + scales
    if dense:
        bytes_by_dtype["float32"] = 4 * dense
    return params, bytes_by_dtype


def quantize_int8(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int8 values, float32 scale per row) of a float table, by Keras's abs-max quantizer."""
    table = np.asarray(table, dtype="float32")
    rows = _as_rows(table)
    values, scale = keras.quantizers.abs_max_quantize(rows, axis=-1, to_numpy=True)
    values = ops.convert_to_numpy(values)
    if table.ndim == 1:
        values = values.reshape(-1)[: table.shape[0]]
    return values.reshape(table.shape), ops.convert_to_numpy(scale).reshape(-1).astype("float32")


def dequantize_int8(values: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The float32 table that int8 `values` and their `scale` stand for."""
    values = np.asarray(values)
    rows = _as_rows(values).astype("float32") / np.asarray(scale, dtype="float32")[:, None]
    return rows.reshape(-1)[: values.size].reshape(values.shape)


def _as_rows(table: np.ndarray) -> np.ndarray:
    if table.ndim > 1:
        return table.reshape(table.shape[0], -1)
    padded = np.zeros(scale_count(table.shape) * FLAT_SCALE_BLOCK, dtype=table.dtype)
    padded[: table.shape[0]] = table
    return padded.reshape(-1, FLAT_SCALE_BLOCK)


def _uniform_limit(initializer) -> float | None:
    """The half-width of a symmetric uniform initializer, else None."""
    initializer = keras.initializers.get(initializer)
    limit = getattr(initializer, "limit", None)
    if limit is not None:
        return float(limit)
    if isinstance(initializer, keras.initializers.RandomUniform) and initializer.minval == -initializer.maxval:
        return float(initializer.maxval)
    return None


def stored_copy(layer, storage: str):
    """A copy of a built strategy layer (weights and index state) with its tables stored as `storage`.

    The original is left as it is, so one trained layer can be evaluated in
    every storage. The copy goes through the layer's config and its saved
    variables, as a `.keras` file does.

    Example:
        >>> int8 = stored_copy(trained, "int8")
    """
    copy = type(layer).from_config(layer.get_config())
    copy.build(**(layer._build_shapes_dict or {}))
    variables: dict[str, Any] = {}
    layer.save_own_variables(variables)
    copy.load_own_variables(variables)
    return copy.store_as(storage)


class TableStorage:
    """The table half of `EmbeddingStrategy`: `add_table`, `gather`, `store_as`.

    A mixin for `keras.layers.Layer`; the layer sets `self.storage`. In
    float32 (the default) `add_table` is `add_weight` and `gather` a bare
    gather, so a float32 layer builds and runs exactly as before.
    """

    # The storages this strategy accepts (`quantized` narrows them).
    storages: tuple[str, ...] = STORAGES

    def _table_state(self) -> dict[str, tuple[Any, Any]]:
        # Name -> (values variable, scale variable or None). Kept out of
        # Keras's attribute tracking: the variables are tracked by add_weight.
        return self.__dict__.setdefault("_tables", {})

    @property
    def table_names(self) -> list[str]:
        """Names of the weights that are tables (stored in `storage`), in build order."""
        return list(self._table_state())

    def add_table(self, shape: tuple[int, ...], initializer, name: str):
        """Creates a table in the layer's storage; use it in `build()` in place of `add_weight`.

        Args:
            shape: the table's shape; axis 0 is what `gather` indexes.
            initializer: the float initializer of a fresh table. A fresh int8
                table from a symmetric uniform initializer is drawn straight
                as int8 (no float32 copy); others are drawn, then quantized.
            name: the weight's name, unique in the layer.

        Example:
            >>> self.embeddings = self.add_table(shape=(rows, dim), initializer=TableUniform(0.05), name="embeddings")
        """
        shape = tuple(int(d) for d in shape)
        converting = "_kept_weights" in self.__dict__
        if self.storage == "float32":
            table = self.add_weight(shape=shape, initializer="zeros" if converting else initializer, name=name)
            scale = None
        elif self.storage != "int8":
            table = self.add_weight(
                shape=shape, initializer="zeros" if converting else initializer, dtype=self.storage, name=name
            )
            scale = None
        else:
            # A fresh table's variables are made from its int8 values: assigning them to a
            # zero-filled variable instead held two tables at once.
            values, scales = (np.zeros(shape, np.int8), np.ones(scale_count(shape), "float32")) if converting \
                else self._fresh_int8(shape, initializer)
            table = self.add_weight(shape=shape, initializer=lambda *_, **__: values, dtype="int8",
                                    trainable=False, name=name)
            scale = self.add_weight(shape=scales.shape, initializer=lambda *_, **__: scales, trainable=False,
                                    name=f"{name}_scale")
        self._table_state()[name] = (table, scale)
        return table

    @staticmethod
    def _fresh_int8(shape: tuple[int, ...], initializer) -> tuple[np.ndarray, np.ndarray]:
        """The int8 values and scales of a fresh table: drawn straight as int8 from a symmetric uniform."""
        limit = _uniform_limit(initializer)
        if limit is None:
            return quantize_int8(ops.convert_to_numpy(keras.initializers.get(initializer)(shape)))
        # Seeded from Keras's global generator, as every other initializer is.
        seed = int(ops.convert_to_numpy(keras.random.randint((), 0, 2**31 - 1)))
        values = np.random.default_rng(seed).integers(-INT8_MAX, INT8_MAX + 1, size=shape, dtype=np.int8)
        return values, np.full(scale_count(shape), INT8_MAX / limit, "float32")

    def gather(self, table, rows, take: Callable | None = None):
        """`table[rows]` in the layer's compute dtype, whatever the table's storage.

        Args:
            table: a variable made by `add_table`.
            rows: in-range row indices, any shape.
            take: the gather to use (default `gather_rows`, a bare `tf.gather`).
        """
        values = (take or gather_rows)(table, rows)
        if self.storage == "float32":
            return values
        values = ops.cast(values, self.compute_dtype)
        scale = self._table_state()[table.name][1]
        if scale is None:
            return values
        if len(table.shape) == 1:
            return values / gather_rows(scale, ops.floor_divide(rows, FLAT_SCALE_BLOCK))
        row_scale = gather_rows(scale, rows)
        for _ in range(len(table.shape) - 1):
            row_scale = ops.expand_dims(row_scale, -1)
        return values / row_scale

    def table_values(self, name: str) -> np.ndarray:
        """The table `name` as a float32 numpy array (int8 tables dequantized)."""
        table, scale = self._table_state()[name]
        values = ops.convert_to_numpy(ops.cast(table, "float32")) if scale is None else ops.convert_to_numpy(table)
        return values if scale is None else dequantize_int8(values, ops.convert_to_numpy(scale))

    def set_table_values(self, name: str, values) -> None:
        """Stores float values into table `name`, converting them to its storage."""
        table, scale = self._table_state()[name]
        values = np.asarray(ops.convert_to_numpy(values), dtype="float32")
        if tuple(values.shape) != tuple(table.shape):
            raise ValueError(
                f"{self.name}: table '{name}' has shape {tuple(table.shape)}; got values of shape {values.shape}."
            )
        if scale is None:
            table.assign(ops.cast(values, table.dtype))
            return
        quantized, scales = quantize_int8(values)
        table.assign(quantized)
        scale.assign(scales)

    def store_as(self, storage: str):
        """Converts this built layer's tables to `storage` in place; returns the layer.

        Dense weights keep their variables (and values); the index state is
        untouched. A model that already traced this layer must be rebuilt or
        recompiled (as after Keras's `Model.quantize`). Converting int8 back to
        float32 gives the dequantized table, not the original.

        Args:
            storage: `float32`, `float16`, `bfloat16` or `int8`.

        Example:
            >>> layer = strategies.build("qr", 6040, 64)  # ... trained ...
            >>> layer.store_as("int8").storage
            'int8'
        """
        label = type(self).__name__
        check_storage(label, storage, self.storages)
        if not self.built:
            raise ValueError(f"{label} '{self.name}': build (and train) the layer before `store_as`.")
        if not self._table_state():
            kinds = ", ".join(w.name for w in self.weights) or "none"
            raise ValueError(
                f"{label}: has no tables to store as {storage!r}; its weights ({kinds}) are dense and stay float32."
            )
        if storage == self.storage:
            return self
        tables = {name: self.table_values(name) for name in self._table_state()}
        stored = {id(v) for pair in self._table_state().values() for v in pair if v is not None}
        kept = {v.name: v for v in self.weights if id(v) not in stored}
        for variable in list(self.weights):
            self._untrack_variable(variable)
        self.__dict__["_tables"] = {}
        self.__dict__.pop("_compiled", None)  # fused functions traced the old variables
        self.storage = storage
        self.__dict__["_kept_weights"] = kept
        self._tracker.unlock()
        try:
            self.build(**(self._build_shapes_dict or {}))
        finally:
            del self.__dict__["_kept_weights"]
        for name, values in tables.items():
            self.set_table_values(name, values)
        return self

    def add_weight(self, *args, **kwargs):
        # While `store_as` rebuilds, dense weights come back as the same variables.
        kept = self.__dict__.get("_kept_weights")
        if kept and kwargs.get("name") in kept:
            variable = kept.pop(kwargs["name"])
            self._track_variable(variable)
            return variable
        return super().add_weight(*args, **kwargs)

    def quantize(self, mode=None, type_check=True, config=None):
        """Keras's entry point (`model.quantize("int8")` reaches every strategy): `store_as("int8")`.

        Keras accepts only its own modes here; use `store_as` for float16 and bfloat16.
        """
        if mode != "int8":
            raise NotImplementedError(f"{type(self).__name__}: quantize supports 'int8'; got {mode!r}.")
        self.store_as("int8")
