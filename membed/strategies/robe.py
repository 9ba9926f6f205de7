"""ROBE-Z: every embedding is read from one shared, hashed 1-D parameter array."""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import numpy as np
from keras import ops

from membed.strategies._hashing import HashingStrategy, check_compression, check_seed, reaching_size, seed_option
from membed.strategies.base import Cost, TableUniform
from membed.strategies.config import StrategyConfig, check_at_most, option
from membed.strategies.registry import register

# The default array holds a hundredth of a full table's values (100x).
DEFAULT_COMPRESSION = 100
# A default array never exceeds 2**24 floats (64 MiB): at 1e8 ids and dim 64
# that is about 380x, and the memory stays put as V grows.
MAX_DEFAULT_SIZE = 2**24
DEFAULT_MAX_BLOCK = 32


@dataclasses.dataclass(frozen=True)
class ROBEConfig(StrategyConfig):
    """Options of `ROBEEmbedding`."""

    label: ClassVar[str] = "ROBEEmbedding"

    size: int | None = option(None, "length of the shared array (default V*dim/100, at most 2**24)")
    block_size: int | None = option(None, "Z, consecutive values per hash, 1..dim (default min(dim, 32))")
    seed: int = seed_option()

    def derived(self, vocab_size, dim, counts, label) -> dict:
        size, block_size = self.size, self.block_size
        if block_size is None:
            block_size = min(dim, DEFAULT_MAX_BLOCK)
        check_at_most(label, "block_size", block_size, dim, "dim")
        if size is None:
            size = max(block_size, min(MAX_DEFAULT_SIZE, math.ceil(vocab_size * dim / DEFAULT_COMPRESSION)))
        check_at_most(label, "size", size, vocab_size * dim, "vocab_size * dim")
        return {"size": int(size), "block_size": int(block_size), "seed": check_seed(label, self.seed)}


@register
class ROBEEmbedding(HashingStrategy):
    """Random Offset Block Embedding: blocks of one shared array, at hashed offsets.

    All parameters live in one learnable array of `size` values. Id `i`'s
    vector is `ceil(dim / block_size)` blocks of `block_size` consecutive
    values, block `j` starting at `h_j(i) mod size` and wrapping around the
    end of the array; the blocks are joined and cut to `dim`. Reading Z
    consecutive values per hash (rather than one, as HashedNets does) keeps
    memory access contiguous, and ids collide only block by block.

    Args:
        size: length M of the shared array, 1 <= M <= vocab_size * dim;
            default `max(block_size, ceil(vocab_size * dim / 100))` (100x), at
            most 2**24.
        block_size: Z, values read per hash, 1 <= Z <= dim; default
            `min(dim, 32)`.
        seed: hash seed, an integer >= 0.

    Example:
        >>> ROBEEmbedding.cost(vocab_size=10_000, dim=16, size=4096, block_size=8).params
        4096

    References:
        Desai, Chou and Shrivastava, "Random Offset Block Embedding (ROBE)
        for compressed embedding tables in deep learning recommendation
        systems", MLSys 2022.
    """

    strategy_name = "robe"
    summary = "ROBE-Z: each id reads hashed blocks of Z values from one shared 1-D array."
    config_class = ROBEConfig

    def __init__(self, vocab_size, dim, **kwargs):
        super().__init__(vocab_size, dim, **kwargs)
        self.num_blocks = self.hash_count()
        # Offset of each output column inside its block, for all blocks at once.
        self._column_offsets = np.tile(np.arange(self.block_size, dtype=np.int64), self.num_blocks)[:dim]

    def hash_count(self) -> int:
        return math.ceil(self.dim / self.block_size)  # one hash per block

    @classmethod
    def cost_of(cls, config: ROBEConfig, vocab_size: int, dim: int) -> Cost:
        return Cost.float32(config.size)

    @classmethod
    def options_for_compression(cls, vocab_size: int, dim: int, compression: float, counts=None) -> dict:
        check_compression("robe", compression)
        size = reaching_size(vocab_size * dim / compression, vocab_size, dim, compression, lambda size: size)
        if size is None:
            raise ValueError(
                f"robe: cannot reach {compression}x compression at vocab_size={vocab_size}, dim={dim}."
            )
        return ROBEConfig(size=int(size)).resolve(vocab_size, dim).as_dict()

    @classmethod
    def table_shapes(cls, config: ROBEConfig, vocab_size: int, dim: int) -> list[tuple[int, ...]]:
        return [(config.size,)]

    def build(self, input_shape=None):
        self.memory = self.add_table(shape=(self.size,), initializer=TableUniform(0.05), name="memory")

    def offsets(self, ids):
        """Start offset of each of an id's blocks (int64, shape (n, num_blocks))."""
        return self._hasher.buckets(ids, self.size)

    def positions(self, ids):
        """Index into the shared array of each output value (int64, shape (n, dim))."""
        starts = ops.repeat(self.offsets(ids), self.block_size, axis=1)[:, : self.dim]
        return ops.mod(starts + ops.convert_to_tensor(self._column_offsets)[None, :], self.size)

    def lookup(self, ids):
        # dim hashed positions per id and a gather of dim scattered values:
        # XLA fuses them. Unlike row gathers, XLA's gather of single values
        # beat TensorFlow's even from the largest default array (64 MiB, at
        # V = 1e7: 1.88x against 2.76x a bare gather with the positions alone fused).
        return self.fused(self._gathered, ids)

    def _gathered(self, ids):
        return self.gather(self.memory, self.positions(ids))
