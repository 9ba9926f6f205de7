"""A full table stored compactly: int8 with per-row scales, or float16 / bfloat16."""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from membed.strategies.base import BYTES_PER_DTYPE, Cost, EmbeddingStrategy, Option, check_choice
from membed.strategies.registry import register

STORAGES = ("int8", "float16", "bfloat16")
# Keras's default "uniform" table is U(-0.05, 0.05); a fresh int8 table is
# that table already quantized.
INIT_LIMIT = 0.05
INT8_MAX = 127
# options_for_compression accepts a storage within this ratio of the target.
COMPRESSION_TOLERANCE = 1.25


@register
class QuantizedEmbedding(EmbeddingStrategy):
    """One row per id, stored in int8 (plus a float32 scale per row) or 16-bit floats.

    The table is a Keras `Embedding` sublayer. With `storage="int8"` it is
    built under Keras's `int8_from_float32` dtype policy, so Keras's own
    int8 machinery holds it: an int8 `(vocab_size, dim)` table and one
    float32 scale per row, row = int8 values / scale. Those weights are not
    trainable: int8 is post-training quantization. Train a float table (for
    example the `full` strategy), then convert it with `from_table`, which
    uses `keras.layers.Embedding.quantize("int8")`. A freshly built int8
    layer holds a quantized U(-0.05, 0.05) table, like a fresh Keras table.

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
    options = {
        "storage": Option(str, "int8", "int8 (post-training, not trainable) | float16 | bfloat16"),
    }

    def __init__(self, vocab_size, dim, storage="int8", **kwargs):
        super().__init__(vocab_size, dim, **kwargs)
        check_choice(type(self).__name__, "storage", storage, STORAGES)
        self.storage = storage
        # The sublayer's dtype policy is what Keras saves and reloads by:
        # under "int8_from_float32" its build creates the int8 variables.
        policy = "int8_from_float32" if storage == "int8" else storage
        self.table = keras.layers.Embedding(self.vocab_size, self.dim, dtype=policy, name="table")

    @classmethod
    def cost(cls, vocab_size, dim, storage="int8") -> Cost:
        check_choice(cls.__name__, "storage", storage, STORAGES)
        values = vocab_size * dim
        if storage == "int8":
            return Cost(params=values + vocab_size, bytes_by_dtype={"int8": values, "float32": 4 * vocab_size})
        return Cost(params=values, bytes_by_dtype={storage: BYTES_PER_DTYPE[storage] * values})

    @classmethod
    def options_for_compression(cls, vocab_size, dim, compression) -> dict:
        # Compression is counted in bytes here: every storage keeps V * dim values.
        full_bytes = 4 * vocab_size * dim
        ratios = {s: full_bytes / cls.cost(vocab_size, dim, s).param_bytes for s in STORAGES[:2]}
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
        return cls.from_table(layer.embeddings, storage=storage, name=layer.name)

    @classmethod
    def from_table(cls, table, storage: str = "int8", **kwargs) -> "QuantizedEmbedding":
        """Builds a layer holding a trained float table, quantized to `storage`.

        This is the int8 workflow: train in float (e.g. with the `full`
        strategy), then quantize once. int8 uses Keras's own
        `Embedding.quantize("int8")` (symmetric, one abs-max scale per row),
        so each entry is off by at most half a quantization step,
        `max|row| / 127 / 2`.

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
        if storage == "int8":
            source = keras.layers.Embedding(table.shape[0], table.shape[1], weights=[table])
            source.quantize("int8")
            layer.table._embeddings.assign(source._embeddings)
            layer.table.embeddings_scale.assign(source.embeddings_scale)
        else:
            layer.table.embeddings.assign(ops.cast(table, storage))
        return layer

    def build(self, input_shape=None):
        self.table.build()
        if self.storage == "int8":
            # Drawn straight as int8 so building never holds a float32 copy
            # of the table; seeded from Keras's global generator.
            seed = int(ops.convert_to_numpy(keras.random.randint((), 0, 2**31 - 1)))
            values = np.random.default_rng(seed).integers(
                -INT8_MAX, INT8_MAX + 1, size=(self.vocab_size, self.dim), dtype=np.int8
            )
            self.table._embeddings.assign(values)
            self.table.embeddings_scale.assign(np.full((self.vocab_size,), INT8_MAX / INIT_LIMIT, "float32"))

    def lookup(self, ids):
        # A gather, a dequantizing scale and a cast: XLA fuses them.
        return self.fused(self._dequantized, ids)

    def _dequantized(self, ids):
        return ops.cast(self.table(ids), "float32")

    def dequantized_table(self) -> np.ndarray:
        """The whole table as a float32 numpy array (for inspection; V x dim floats)."""
        if self.storage == "int8":
            values = ops.convert_to_numpy(self.table._embeddings).astype("float32")
            return values / ops.convert_to_numpy(self.table.embeddings_scale)[:, None]
        return ops.convert_to_numpy(ops.cast(self.table.embeddings, "float32"))
