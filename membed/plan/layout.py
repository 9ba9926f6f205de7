"""What an embedding layer holds, before building it: its tables, its dense weights, their dtypes, its index.

A `Layout` is read from the strategy's cost formula (`Layout.of`: the
`Cost`'s `tables` in its `storage`, the other parameters dense float32) or
from a built layer (`Layout.from_layer`). A table is read by gathering rows,
so its gradient is sparse; a dense weight's is dense. The estimator turns a
layout into bytes; `Layout.sharded` is one host's part of it when the tables
are split row-wise.

Example:
    >>> Layout.of("qr", 10**6, 64).tables
    (Weight(shape=(1000, 64), dtype='float32', trainable=True, table=True), Weight(shape=(1000, 64), ...))
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable, Mapping

from membed.plan.constants import ITEMSIZE, READ_MODES, TABLE_READS, TableReads


def itemsize(dtype: str) -> int:
    try:
        return ITEMSIZE[str(dtype)]
    except KeyError:
        raise ValueError(f"Unknown dtype {dtype!r}. Use one of: {', '.join(ITEMSIZE)}.") from None


# ----- bytes by dtype --------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Bytes:
    """Bytes keyed by dtype; they add up, as TorchRec's `Storage` does.

    Example:
        >>> (Bytes({"float32": 8}) + Bytes({"float32": 4, "int8": 2})).total
        14
    """

    by_dtype: Mapping[str, int] = dataclasses.field(default_factory=dict)

    @property
    def total(self) -> int:
        return int(sum(self.by_dtype.values()))

    def __add__(self, other: "Bytes") -> "Bytes":
        if not isinstance(other, Bytes):
            return NotImplemented
        keys = list(self.by_dtype) + [k for k in other.by_dtype if k not in self.by_dtype]
        return Bytes({k: int(self.by_dtype.get(k, 0)) + int(other.by_dtype.get(k, 0)) for k in keys})

    @classmethod
    def of(cls, dtype: str, count: int) -> "Bytes":
        return cls({dtype: int(count)} if count else {})

    @classmethod
    def sum(cls, parts: Iterable["Bytes"]) -> "Bytes":
        total = cls()
        for part in parts:
            total = total + part
        return total


# ----- what a layer holds ----------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Weight:
    """One weight of a layer: its shape, storage dtype, whether it trains and whether it is a table.

    A table is read by gathering rows along axis 0, so its gradient is sparse
    (`tf.IndexedSlices`): the rows a batch reads. A dense weight (a
    projection, an MLP kernel) gets a dense gradient of its own size.
    """

    shape: tuple[int, ...]
    dtype: str
    trainable: bool
    table: bool

    @property
    def values(self) -> int:
        return math.prod(self.shape)

    @property
    def rows(self) -> int:
        return int(self.shape[0]) if self.shape else 1

    @property
    def row_values(self) -> int:
        return math.prod(self.shape[1:])

    @property
    def bytes(self) -> int:
        return self.values * itemsize(self.dtype)


@dataclasses.dataclass(frozen=True)
class Layout:
    """What one embedding layer holds: its weights and its index, at one vocabulary size and dim.

    Attributes:
        vocab_size: ids the layer maps.
        dim: the output dimension.
        weights: every weight (tables, dense weights, non-trainable scales).
        index_bytes: bytes of non-parameter id-mapping state (mixed_dim's
            id -> row map); not trained.
        reads: how a lookup reads the tables (`constants.TableReads`):
            `every` table per id (the default), `one` table per id
            (mixed_dim's partition) or every table `masked` and summed
            (example_md's blocks).

    Example:
        >>> Layout.of("full", 1000, 64).weights
        (Weight(shape=(1000, 64), dtype='float32', trainable=True, table=True),)
    """

    vocab_size: int
    dim: int
    weights: tuple[Weight, ...]
    index_bytes: int = 0
    reads: TableReads = "every"

    def __post_init__(self) -> None:
        if self.reads not in READ_MODES:
            raise ValueError(f"Layout: invalid `reads`: {self.reads!r}. Use one of: {', '.join(READ_MODES)}.")

    @classmethod
    def of(cls, strategy: str, vocab_size: int, dim: int, options: Mapping[str, Any] | None = None,
           storage: str | None = None, counts=None) -> "Layout":
        """The layout the strategy's cost formula gives, building nothing.

        Dense weights come as one float32 block unless their shapes are cheap
        to know: for a strategy without an index and with float tables, the
        layer is built with `keras.StatelessScope` (no weight is allocated)
        to read them (DHE's MLP: its activations depend on its widths).

        Args:
            strategy: a registered strategy name.
            vocab_size, dim: the table's size.
            options: the strategy's options (strings are parsed).
            storage: store the tables as `float16`, `bfloat16` or `int8`
                (`Cost.stored`); None keeps the strategy's own.
            counts: per-id counts, for strategies whose sizes follow them
                (mixed_dim's block widths); pass what the layer is built with.

        Raises:
            ValueError: unknown strategy or option, or options invalid at this size.
        """
        from membed import strategies

        cost = strategies.cost(strategy, vocab_size, dim, counts=counts, **dict(options or {}))
        if storage is not None:
            cost = cost.stored(storage)
        dense_shapes = None
        if _dense_values(cost) and not cost.index_bytes and cost.storage == "float32":
            dense_shapes = _dense_shapes(strategy, vocab_size, dim, dict(options or {}), counts)
        return cls.from_cost(cost, vocab_size, dim, dense_shapes, reads=TABLE_READS.get(strategy, "every"))

    @classmethod
    def from_cost(cls, cost, vocab_size: int, dim: int,
                  dense_shapes: Iterable[tuple[int, ...]] | None = None, reads: TableReads = "every") -> "Layout":
        """The layout of a `membed.strategies.Cost`: its `tables` in its `storage`, the rest dense float32.

        int8 tables and their float32 scales are not trainable. `dense_shapes`,
        when given and adding up to the dense values, split the dense block;
        otherwise, when the dense values are exactly a `(width, dim)`
        projection (and a `(dim,)` bias) per table narrower than `dim`, as
        mixed-dimension blocks are projected up to `dim`, they are those.

        Example:
            >>> from membed.strategies import Cost
            >>> Layout.from_cost(Cost.float32(40 + 32, tables=[(10, 4)]), 10, 4).weights[1]
            Weight(shape=(32,), dtype='float32', trainable=True, table=False)
        """
        storage = getattr(cost, "storage", "float32")
        tables = tuple(tuple(int(d) for d in shape) for shape in getattr(cost, "tables", ()))
        trainable = storage != "int8"
        weights = [Weight(shape, storage, trainable, True) for shape in tables]
        scales = _scale_count(tables) if storage == "int8" else 0
        if scales:
            weights.append(Weight((scales,), "float32", False, False))
        dense = _dense_values(cost)
        shapes = [tuple(int(d) for d in s) for s in (dense_shapes or ())]
        if dense and sum(math.prod(s) for s in shapes) != dense:
            shapes = _projection_shapes(tables, int(dim), dense) or [(dense,)]
        weights += [Weight(shape, "float32", True, False) for shape in shapes if math.prod(shape)]
        layout = cls(int(vocab_size), int(dim), tuple(weights), int(cost.index_bytes), reads)
        if layout.weight_bytes.total != cost.param_bytes:
            raise ValueError(
                f"Layout.from_cost: the tables and dense weights come to {layout.weight_bytes.total} bytes, "
                f"the cost says {cost.param_bytes} ({dict(cost.bytes_by_dtype)})."
            )
        return layout

    @classmethod
    def from_layer(cls, layer) -> "Layout":
        """The layout of a built layer, read from its weights (tables by `layer.table_names`).

        A layer without `table_names` (any Keras layer) counts its trainable
        weights of rank >= 2 as tables.

        Example:
            >>> Layout.from_layer(strategies.build("qr", 10**4, 64)).weights[0].shape
            (100, 64)
        """
        if not getattr(layer, "built", True):
            raise ValueError(f"Layout.from_layer: the layer {getattr(layer, 'name', layer)!r} is not built.")
        names = getattr(layer, "table_names", None)
        weights = []
        for w in layer.weights:
            shape = tuple(int(d) for d in w.shape)
            name = str(w.name).split("/")[-1].split(":")[0]
            table = name in names if names is not None else (w.trainable and len(shape) >= 2)
            weights.append(Weight(shape, _dtype_name(w.dtype), bool(w.trainable), bool(table)))
        return cls(int(getattr(layer, "vocab_size", 0)), int(getattr(layer, "dim", 0)), tuple(weights),
                   int(getattr(layer, "index_bytes", 0)), TABLE_READS.get(getattr(layer, "strategy_name", ""), "every"))

    @property
    def tables(self) -> tuple[Weight, ...]:
        return tuple(w for w in self.weights if w.table)

    @property
    def projections(self) -> tuple[Weight, ...]:
        """Dense `(width, dim)` kernels that project a table narrower than `dim` up to it."""
        widths = {w.row_values for w in self.tables if len(w.shape) == 2 and w.row_values < self.dim}
        return tuple(w for w in self.weights if not w.table and w.trainable and len(w.shape) == 2
                     and w.shape[1] == self.dim and w.shape[0] in widths)

    @property
    def biases(self) -> tuple[Weight, ...]:
        """Dense `(dim,)` vectors added to a projection's output."""
        if not self.projections:
            return ()
        return tuple(w for w in self.weights if not w.table and w.trainable and w.shape == (self.dim,))

    @property
    def weight_bytes(self) -> Bytes:
        return Bytes.sum(Bytes.of(w.dtype, w.bytes) for w in self.weights)

    def sharded(self, hosts: int) -> "Layout":
        """One host's part when the tables are sharded row-wise over `hosts` hosts.

        As TorchRec's row-wise sharding places a table: each host holds
        `ceil(rows / hosts)` rows of every table (and of an int8 table's
        scales) and the index of its own ids; dense weights are replicated.

        Example:
            >>> Layout.of("full", 10, 4).sharded(3).weights[0].shape
            (4, 4)
        """
        if isinstance(hosts, bool) or not isinstance(hosts, int) or hosts < 1:
            raise ValueError(f"Layout.sharded: invalid `hosts`: {hosts!r}. It must be an integer >= 1.")
        scaled = []
        for w in self.weights:
            if w.table or not w.trainable:  # tables and their per-row scales
                scaled.append(dataclasses.replace(w, shape=(math.ceil(w.rows / hosts), *w.shape[1:])))
            else:
                scaled.append(w)
        return dataclasses.replace(self, weights=tuple(scaled), index_bytes=math.ceil(self.index_bytes / hosts))


def _dense_values(cost) -> int:
    """Parameters outside the tables and outside int8 scales: dense float32 weights."""
    tables = getattr(cost, "tables", ())
    table_values = sum(math.prod(shape) for shape in tables)
    scales = _scale_count(tables) if getattr(cost, "storage", "float32") == "int8" else 0
    return int(cost.params) - table_values - scales


def _projection_shapes(tables, dim: int, dense: int) -> list[tuple[int, ...]] | None:
    """A `(width, dim)` kernel (and a `(dim,)` bias, if that is what adds up) per table narrower than `dim`."""
    kernels = [(int(shape[1]), dim) for shape in tables if len(shape) == 2 and int(shape[1]) < dim]
    if not kernels:
        return None
    values = sum(w * d for w, d in kernels)
    if values == dense:
        return kernels
    if values + dim * len(kernels) == dense:
        return [shape for kernel in kernels for shape in (kernel, (dim,))]
    return None


def _scale_count(tables) -> int:
    try:
        from membed.strategies.storage import scale_count
    except ImportError:  # one scale per row, as Keras quantizes an Embedding
        return sum(int(shape[0]) for shape in tables)
    return sum(scale_count(tuple(shape)) for shape in tables)


def _dtype_name(dtype) -> str:
    name = getattr(dtype, "name", None) or str(dtype)
    return name.replace("tf.", "")


def _dense_shapes(strategy: str, vocab_size: int, dim: int, options: dict,
                  counts=None) -> list[tuple[int, ...]] | None:
    """Shapes of a layer's non-table weights, from a build that allocates no weight; None if it fails."""
    import keras
    from keras.src.backend.common import global_state  # no public way to drop unused deferred variables

    from membed import strategies

    key = "uninitialized_variables"
    pending = list(global_state.get_global_attribute(key, [], set_to_default=True))
    try:
        with keras.StatelessScope(initialize_variables=False):
            cls = strategies.get(strategy)
            extra = {"counts": counts} if counts is not None else {}
            resolved = strategies.registry.resolve_options(strategy, options)
            layer = cls(vocab_size=vocab_size, dim=dim, **extra, **resolved)
            if not layer.built:
                layer.build((None,))
        names = set(getattr(layer, "table_names", ()))
        return [tuple(int(d) for d in w.shape) for w in layer.weights if w.name not in names]
    except Exception:  # the shapes only refine activations; the cost's block stands in
        return None
    finally:
        # The deferred variables are never used: initializing them later would allocate the tables.
        global_state.set_global_attribute(key, pending)
