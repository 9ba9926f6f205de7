"""Sizes of an embedding layer: from the cost formulas before building, and from a built layer, in one place each.

Two ways to the same numbers:

* `case_sizes(strategy, vocab_size, dim, options)` asks the strategy's cost
  formula, builds nothing, and so also sizes a case too big to build;
* `layer_sizes(layer)` reads a built layer (or any Keras layer): parameters,
  trainable parameters, bytes in the weights' storage dtypes, index bytes.
  `LayerSizes` add up (a user and an item table), and `as_case(vocab_size,
  dim)` turns them into the same `CaseSizes` a result records.

The rest is the arithmetic both use: the bytes of training with Adam, the
compression against a float32 full table, and a generous estimate of the
peak of building and one training step, checked against free memory.

Example:
    >>> case_sizes("full", 1000, 64).train_state_bytes
    768000
    >>> layer_sizes(strategies.build("full", 1000, 64)).as_case(1000, 64) == case_sizes("full", 1000, 64)
    True
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np
import psutil

# Estimated peak = SAFETY_FACTOR * (training state + activations). Keras 3's
# Adam updates a gathered table densely, with table-sized temporaries: the
# measured training peak of `full` is 6x its table, 2.0x its training state
# (and building it peaks at 3x the table), so 2.5 leaves some room.
SAFETY_FACTOR = 2.5
# float32 values per output element kept for the backward pass and the loss.
ACTIVATION_VALUES_PER_OUTPUT = 16
# Bytes of Adam state per trainable parameter: two float32 slots.
ADAM_SLOT_BYTES = 8
FLOAT32_BYTES = 4


def train_state_bytes(param_bytes: int, trainable_params: int, index_bytes: int = 0) -> int:
    """Bytes to train with Adam: the parameters, two float32 slots per trainable parameter, the index.

    Example:
        >>> train_state_bytes(4 * 1000 * 64, 1000 * 64)  # a float32 1000 x 64 table
        768000
    """
    return int(param_bytes) + ADAM_SLOT_BYTES * int(trainable_params) + int(index_bytes)


def compression(vocab_size: int, dim: int, stored_bytes: int) -> float:
    """How many times fewer bytes than a float32 `vocab_size x dim` table `stored_bytes` are.

    By bytes rather than parameters: an int8 table has as many parameters as
    the float32 one (plus its scales) but takes about a quarter of the memory.
    `stored_bytes` is the parameter bytes plus the index bytes.

    Example:
        >>> compression(1000, 64, 25600)  # a float32 100 x 64 table
        10.0
    """
    return float(vocab_size) * dim * FLOAT32_BYTES / max(int(stored_bytes), 1)


@dataclasses.dataclass(frozen=True)
class CaseSizes:
    """The sizes a benchmark result records for a strategy at one vocabulary size and dimension.

    Attributes:
        params: parameter count (what `count_params()` gives).
        param_bytes: bytes of the parameters in their storage dtypes.
        index_bytes: bytes of non-parameter id-mapping state.
        train_state_bytes: parameters + two float32 Adam slots per trainable
            parameter + index.
        compression: a float32 full table's bytes / (`param_bytes` + `index_bytes`)
            at the same size: by bytes, so a quantized table counts as smaller.
    """

    params: int
    param_bytes: int
    index_bytes: int
    train_state_bytes: int
    compression: float

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class LayerSizes:
    """What a layer holds: parameters (all, and trainable), their bytes, its index bytes. Sizes add up.

    Attributes:
        params: parameter count (`count_params()`).
        trainable_params: parameters in trainable variables (those Adam keeps slots for).
        param_bytes: bytes of the weights in their storage dtypes.
        index_bytes: bytes of non-parameter id-mapping state (a strategy's `index_bytes`).

    Example:
        >>> LayerSizes.float32(100 * 64).as_case(vocab_size=1000, dim=64).compression
        10.0
    """

    params: int
    trainable_params: int
    param_bytes: int
    index_bytes: int = 0

    @classmethod
    def float32(cls, params: int) -> LayerSizes:
        """A trainable float32 table of `params` values with no index (the bare-gather table)."""
        return cls(int(params), int(params), FLOAT32_BYTES * int(params), 0)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> LayerSizes:
        """The sizes named in `record` (a result dict holding this class's fields), other keys ignored."""
        missing = [field.name for field in dataclasses.fields(cls) if field.name not in record]
        if missing:
            raise ValueError(f"LayerSizes.from_record: missing key {missing[0]!r}; it needs "
                             f"{', '.join(field.name for field in dataclasses.fields(cls))}.")
        return cls(**{field.name: int(record[field.name]) for field in dataclasses.fields(cls)})

    @property
    def stored_bytes(self) -> int:
        """Parameter bytes plus index bytes: what holding the layer takes."""
        return self.param_bytes + self.index_bytes

    @property
    def train_state_bytes(self) -> int:
        """See `train_state_bytes`."""
        return train_state_bytes(self.param_bytes, self.trainable_params, self.index_bytes)

    def as_case(self, vocab_size: int, dim: int) -> CaseSizes:
        """The sizes a result records, with compression against a float32 `vocab_size x dim` table."""
        return CaseSizes(
            params=self.params,
            param_bytes=self.param_bytes,
            index_bytes=self.index_bytes,
            train_state_bytes=self.train_state_bytes,
            compression=compression(vocab_size, dim, self.stored_bytes),
        )

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    def __add__(self, other: LayerSizes) -> LayerSizes:
        if not isinstance(other, LayerSizes):
            return NotImplemented
        return LayerSizes(*(a + b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other))))


def layer_sizes(layer) -> LayerSizes:
    """The sizes of a built Keras layer, read from its weights; the one place a built layer is sized.

    `param_bytes` counts each weight at its storage dtype (an int8 table is a
    byte per value); `index_bytes` is the layer's `index_bytes` (0 for a layer
    without one).

    Example:
        >>> layer_sizes(strategies.build("quantized", 1000, 64, storage="int8"))
        LayerSizes(params=65000, trainable_params=0, param_bytes=68000, index_bytes=0)
    """
    if not getattr(layer, "built", True):
        raise ValueError(f"layer_sizes: the layer {getattr(layer, 'name', layer)!r} is not built; build it first.")
    return LayerSizes(
        params=int(layer.count_params()),
        trainable_params=int(sum(int(np.prod(v.shape)) for v in layer.trainable_variables)),
        param_bytes=int(sum(int(np.prod(w.shape)) * np.dtype(w.dtype).itemsize for w in layer.weights)),
        index_bytes=int(getattr(layer, "index_bytes", 0)),
    )


def case_sizes(strategy: str, vocab_size: int, dim: int, options: dict | None = None,
               trainable_params: int | None = None) -> CaseSizes:
    """Sizes from the strategy's cost formula; every parameter counts as trainable unless told.

    Raises ValueError (from the strategy) when the configuration is invalid.

    Example:
        >>> case_sizes("full", 1000, 64).train_state_bytes
        768000
    """
    from membed import strategies

    cost = strategies.cost(strategy, vocab_size, dim, **(options or {}))
    trainable = cost.params if trainable_params is None else trainable_params
    return LayerSizes(int(cost.params), int(trainable), int(cost.param_bytes), int(cost.index_bytes)).as_case(
        vocab_size, dim)


def estimated_peak_bytes(train_state: int, batch_size: int, dim: int) -> int:
    """A generous estimate of the peak bytes of building, looking up and one Adam step.

    Example:
        >>> estimated_peak_bytes(768000, 4096, 64)
        43863040
    """
    activations = 4 * ACTIVATION_VALUES_PER_OUTPUT * int(batch_size) * int(dim)
    return int(SAFETY_FACTOR * (int(train_state) + activations))


def memory_shortfall(needed_bytes: int) -> str | None:
    """Why a case needing `needed_bytes` cannot run now, or None when it fits in available memory.

    Example:
        >>> memory_shortfall(10**15)  # on a machine with 22 GB free
        'needs about 1000000.0 GB (estimated), only 22.0 GB available'
    """
    available = psutil.virtual_memory().available
    if needed_bytes <= available:
        return None
    return f"needs about {needed_bytes / 1e9:.1f} GB (estimated), only {available / 1e9:.1f} GB available"


def jsonable(value: Any) -> Any:
    """Option values as JSON values: tuples to lists, NumPy scalars and arrays to Python ones.

    Example:
        >>> jsonable({"dims": (64, np.int64(32))})
        {'dims': [64, 32]}
    """
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def layer_options(layer) -> dict[str, Any]:
    """The options a strategy layer ended up with, defaults resolved (e.g. qr's `num_buckets`), as JSON values.

    Example:
        >>> layer_options(strategies.build("qr", 10_000, 64))["num_buckets"]
        100
    """
    return jsonable({name: getattr(layer, name, None) for name in type(layer).options})
