"""A port of the Keras example's MixedDimensionEmbedding, kept as a benchmark peer."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
from keras import ops

from membed.strategies.base import Cost, EmbeddingStrategy, frequency_order, take_rows
from membed.strategies.config import StrategyConfig, option
from membed.strategies.registry import register

# The example's blocks on MovieLens 1M's 3,706 movies; other sizes scale them.
EXAMPLE_ITEMS = 3706
EXAMPLE_BOUNDARIES = (400, 1700)


def example_boundaries(vocab_size: int) -> list[int]:
    """The example's block ends scaled to `vocab_size`: round(n*400/3706), round(n*1700/3706)."""
    return [round(vocab_size * b / EXAMPLE_ITEMS) for b in EXAMPLE_BOUNDARIES]


def example_dims(dim: int) -> list[int]:
    return [dim, max(1, dim // 2), max(1, dim // 4)]


@dataclasses.dataclass(frozen=True)
class ExampleMDConfig(StrategyConfig):
    """Options of `ExampleMDEmbedding`; the counts rank the ids, they do not size the blocks."""

    label: ClassVar[str] = "ExampleMDEmbedding"
    uses_counts: ClassVar[bool] = True

    boundaries: list[int] | None = option(None, "block ends (default the example's 400,1700 scaled to V)")
    dims: list[int] | None = option(None, "block widths (default dim, dim/2, dim/4)")

    def derived(self, vocab_size, dim, counts, label) -> dict:
        boundaries = example_boundaries(vocab_size) if self.boundaries is None else [int(b) for b in self.boundaries]
        dims = example_dims(dim) if self.dims is None else [int(d) for d in self.dims]
        if any(b < 0 or b > vocab_size for b in boundaries) or boundaries != sorted(boundaries):
            raise ValueError(
                f"{label}: invalid `boundaries`: {boundaries}. They must be non-decreasing, each in 0..{vocab_size}."
            )
        if len(dims) != len(boundaries) + 1 or any(d < 1 or d > dim for d in dims):
            raise ValueError(
                f"{label}: invalid `dims`: {dims}. Give {len(boundaries) + 1} widths, each in 1..{dim}."
            )
        return {"boundaries": boundaries, "dims": dims}


@register
class ExampleMDEmbedding(EmbeddingStrategy):
    """The Keras example's mixed-dimension layer, with integer ids in.

    Faithful to the example, defects included: every block has one extra
    out-of-vocabulary row 0; every id is looked up in every block (ids outside
    the block read row 0) and the results are masked and summed, so a lookup
    does k gathers of the whole batch; blocks narrower than `dim` are projected
    by a Dense layer with bias, computed for every id. Use `mixed_dim` for real
    work; this layer exists to compare against.

    Args:
        boundaries: block ends in frequency rank; default the example's
            [400, 1700] scaled to V.
        dims: block widths; default [dim, dim/2, dim/4] (64, 32, 16).
        counts: per-id counts that rank the ids (the example sorts movies by
            rating count).

    Example:
        >>> ExampleMDEmbedding.cost(3706, 64).params
        102608

    References:
        Keras example "Memory-efficient embeddings for recommendation systems"
        (Khalid Salama, 2021); Ginart et al., arXiv:1909.11810.
    """

    strategy_name = "example_md"
    summary = "Reference port of the Keras example's MixedDimensionEmbedding, masked k-block lookup (benchmark peer)."
    config_class = ExampleMDConfig

    def __init__(self, vocab_size, dim, counts=None, **kwargs):
        super().__init__(vocab_size, dim, counts=counts, **kwargs)
        order = frequency_order(counts, vocab_size, type(self).__name__)
        rank = np.empty(vocab_size, dtype=np.int32)
        rank[order] = np.arange(vocab_size, dtype=np.int32)
        self.set_index("rank", rank)

    @staticmethod
    def block_sizes(boundaries, vocab_size):
        edges = [0, *boundaries, vocab_size]
        return [end - start for start, end in zip(edges[:-1], edges[1:])]

    @classmethod
    def cost_of(cls, config: ExampleMDConfig, vocab_size, dim) -> Cost:
        params = 0
        for size, block_dim in zip(cls.block_sizes(config.boundaries, vocab_size), config.dims):
            params += (size + 1) * block_dim
            if block_dim != dim:
                params += block_dim * dim + dim
        return Cost.float32(params, index_bytes=4 * vocab_size)

    @classmethod
    def options_for_compression(cls, vocab_size, dim, compression, counts=None) -> dict:
        return {}

    @classmethod
    def table_shapes(cls, config: ExampleMDConfig, vocab_size: int, dim: int) -> list[tuple[int, ...]]:
        sizes = cls.block_sizes(config.boundaries, vocab_size)
        return [(size + 1, block_dim) for size, block_dim in zip(sizes, config.dims)]

    def build(self, input_shape=None):
        self.tables, self.kernels, self.biases = [], [], []
        for b, (size, block_dim) in enumerate(zip(self.block_sizes(self.boundaries, self.vocab_size), self.dims)):
            self.tables.append(self.add_table(shape=(size + 1, block_dim), initializer="uniform", name=f"block_{b}"))
            if block_dim != self.dim:
                self.kernels.append(self.add_weight(shape=(block_dim, self.dim), initializer="glorot_uniform",
                                                    name=f"projection_{b}_kernel"))
                self.biases.append(self.add_weight(shape=(self.dim,), initializer="zeros",
                                                   name=f"projection_{b}_bias"))
            else:
                self.kernels.append(None)
                self.biases.append(None)

    def _gather(self, table, rows):
        """One gather; a seam for tests that count the rows each lookup touches."""
        return self.gather(table, rows, take=take_rows)

    def lookup(self, ids):
        rank = ops.take(self.index("rank"), ids, axis=0)
        edges = [0, *self.boundaries, self.vocab_size]
        embeddings = 0.0
        for b, (start, end) in enumerate(zip(edges[:-1], edges[1:])):
            # The example's StringLookup: position in the block + 1, or 0 (OOV) outside it.
            inside = ops.logical_and(rank >= start, rank < end)
            token = ops.where(inside, rank - start + 1, 0)
            block = self._gather(self.tables[b], token)
            if self.kernels[b] is not None:
                block = ops.matmul(block, self.kernels[b]) + self.biases[b]
            mask = ops.expand_dims(ops.cast(token != 0, "float32"), -1)
            embeddings = embeddings + block * mask
        return embeddings
