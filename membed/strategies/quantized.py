"""A full table stored compactly: int8 with per-row scales, or float16 / bfloat16.

This is `full` plus the storage step (`storage.py`): the strategy exists so
that the registry, the CLI and the suites can name a stored full table.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import numpy as np
from keras import ops

from membed.strategies.base import Cost
from membed.strategies.config import StrategyConfig, option
from membed.strategies.full import FullEmbedding
from membed.strategies.registry import register

STORAGES = ("int8", "float16", "bfloat16")
# options_for_compression accepts a storage within this ratio of the target.
COMPRESSION_TOLERANCE = 1.25


@dataclasses.dataclass(frozen=True)
class QuantizedConfig(StrategyConfig):
    """Options of `QuantizedEmbedding`."""

    label: ClassVar[str] = "QuantizedEmbedding"

    storage: str = option("int8", "table storage (int8 is post-training, not trainable)", choices=STORAGES)


@register
class QuantizedEmbedding(FullEmbedding):
    """One row per id, stored in int8 (plus a float32 scale per row) or 16-bit floats.

    A `full` table in one of the storages of `storage.py`, the same step
    that `layer.store_as(storage)` applies to any strategy's tables. With
    `storage="int8"` the table is int8 values plus one float32 scale per row
    (Keras's `Embedding.quantize("int8")` scheme: symmetric, abs-max per
    row), row = values / scale. Those weights are not trainable: int8 is
    post-training quantization. Train a float table (for example the `full`
    strategy), then convert it with `from_table` / `from_trained`. A freshly
    built int8 layer holds a quantized U(-0.05, 0.05) table, like a fresh
    Keras table.

    With `storage="float16"` or `"bfloat16"` the table is a trainable
    variable of that dtype; lookups are cast to float32. Keras optimizers
    keep their slots in, and do their arithmetic in, the variable's dtype, so
    the default `Adam` cannot train such a table: in bfloat16 `beta_2=0.999`
    rounds to 1.0 and no update ever happens; in float16 the second moment
    underflows and training diverges. Use `SGD`, or `Adam(beta_2=0.99,
    epsilon=1e-3)`, both of which learn.

    Args:
        storage: `int8`, `float16` or `bfloat16`.

    Example:
        >>> trained = np.random.default_rng(0).normal(size=(943, 64)).astype("float32")
        >>> layer = QuantizedEmbedding.from_table(trained, storage="int8")
        >>> layer.count_params()  # 943 * 64 int8 values + 943 scales
        61295
        >>> QuantizedEmbedding.cost(943, 64).bytes_by_dtype
        {'int8': 60352, 'float32': 3772}

    References:
        Guan et al., "Post-Training 4-bit Quantization on Embedding Tables",
        NeurIPS 2019 workshop (row-wise scaled quantization of embeddings).
    """

    strategy_name = "quantized"
    trains_as = "full"
    summary = "Full table stored as int8 + a float32 scale per row (post-training), or trainable float16/bfloat16."
    config_class = QuantizedConfig
    storages = STORAGES

    @classmethod
    def cost_of(cls, config: QuantizedConfig, vocab_size: int, dim: int) -> Cost:
        return Cost.float32(vocab_size * dim, tables=[(vocab_size, dim)]).stored(config.storage)

    @classmethod
    def options_for_compression(cls, vocab_size, dim, compression, counts=None) -> dict:
        # Compression is counted in bytes here: every storage keeps V * dim values.
        full_bytes = 4 * vocab_size * dim
        ratios = {s: full_bytes / cls.cost(vocab_size, dim, storage=s).param_bytes for s in STORAGES[:2]}
        storage = min(ratios, key=lambda s: abs(math.log(ratios[s] / compression)))
        if not 1 / COMPRESSION_TOLERANCE <= ratios[storage] / compression <= COMPRESSION_TOLERANCE:
            raise ValueError(
                f"quantized: cannot reach {compression}x compression; it stores every row, so it reaches "
                f"at most {ratios['int8']:.2f}x in bytes (int8 at dim={dim})."
            )
        return {"storage": storage}

    @classmethod
    def accuracy_presets(cls, vocab_size, dim, counts=None) -> dict:
        # Trained as a float table, then stored in each format (post-training).
        return {storage: {"storage": storage} for storage in STORAGES}

    @classmethod
    def from_trained(cls, layer, storage="int8"):
        return cls.from_table(layer.table_values("embeddings"), storage=storage, name=layer.name)

    @classmethod
    def from_table(cls, table, storage: str = "int8", **kwargs) -> "QuantizedEmbedding":
        """Builds a layer holding a trained float table, stored as `storage`.

        This is the int8 workflow: train in float (e.g. with the `full`
        strategy), then quantize once: symmetric, one abs-max scale per row
        (Keras's `AbsMaxQuantizer`, as `Embedding.quantize("int8")` uses), so
        each entry is off by at most half a quantization step, `max|row| / 127 / 2`.

        Args:
            table: a `(vocab_size, dim)` float array or tensor.
            storage: `int8`, `float16` or `bfloat16`.
            **kwargs: other layer arguments (`name`, `check_ids`).

        Example:
            >>> full = FullEmbedding(vocab_size=943, dim=64)  # ... trained ...
            >>> full.build()
            >>> layer = QuantizedEmbedding.from_table(ops.convert_to_numpy(full.embeddings))
        """
        table = np.asarray(ops.convert_to_numpy(table), dtype="float32")
        if table.ndim != 2:
            raise ValueError(
                f"{cls.__name__}.from_table: `table` must be 2-D (vocab_size, dim); got shape {table.shape}."
            )
        layer = cls(table.shape[0], table.shape[1], storage=storage, **kwargs)
        layer.build()
        layer.set_table_values("embeddings", table)
        return layer

    def lookup(self, ids):
        # A gather, a dequantizing scale and a cast: XLA fuses them.
        return self.fused(self._dequantized, ids)

    def _dequantized(self, ids):
        return self.gather(self.embeddings, ids)

    def dequantized_table(self) -> np.ndarray:
        """The whole table as a float32 numpy array (for inspection; V x dim floats)."""
        return self.table_values("embeddings")
