"""Mixed-dimension embeddings: popular ids get wide rows, rare ids narrow ones."""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import keras
import numpy as np
from keras import ops

from membed.strategies.base import (
    Cost,
    EmbeddingStrategy,
    TableUniform,
    compiling_with_xla,
    frequency_order,
    gather_rows,
)
from membed.strategies.config import StrategyConfig, check_counts, option
from membed.strategies.registry import register


def geometric_boundaries(vocab_size: int, num_blocks: int) -> list[int]:
    """Block ends at V/4**(k-1), ..., V/16, V/4: each block about 4 times the one before.

    A small head block keeps the widest rows for the few most popular ids.
    """
    ends = sorted({max(1, round(vocab_size / 4**j)) for j in range(1, num_blocks)})
    return [e for e in ends if 0 < e < vocab_size]


def block_frequencies(boundaries: list[int], vocab_size: int, sorted_counts: np.ndarray | None) -> np.ndarray:
    """Mean access frequency of each block's ids (ids in frequency order).

    Without counts, ids are assumed to follow Zipf's law with exponent 1
    (frequency proportional to 1 / (rank + 1)).
    """
    edges = [0, *boundaries, vocab_size]
    means = []
    for start, end in zip(edges[:-1], edges[1:]):
        if sorted_counts is None:
            # Mean of 1/(r+1) over [start, end) from the harmonic-number difference.
            total = _harmonic(end) - _harmonic(start)
        else:
            total = float(np.sum(sorted_counts[start:end]))
        means.append(total / (end - start))
    return np.asarray(means, dtype=np.float64)


def _harmonic(n: int) -> float:
    if n == 0:
        return 0.0
    if n < 1000:
        return float(np.sum(1.0 / np.arange(1, n + 1)))
    return math.log(n) + 0.5772156649015329 + 1 / (2 * n) - 1 / (12 * n * n)


def power_law_dims(frequencies: np.ndarray, dim: int, alpha: float, round_pow2: bool) -> list[int]:
    """Ginart et al.'s rule: d_b = d0 * (p_b / p_max) ** alpha, clamped to [1, d0]."""
    p_max = float(np.max(frequencies))
    dims = []
    for p in frequencies:
        ratio = (p / p_max) if p_max > 0 else 1.0
        d = dim * ratio**alpha
        if round_pow2:
            d = 2 ** round(math.log2(max(d, 1.0)))
        dims.append(int(min(dim, max(1, round(d)))))
    return dims


def md_params(boundaries: list[int], dims: list[int], vocab_size: int, dim: int,
              projection_bias: bool = False) -> int:
    edges = [0, *boundaries, vocab_size]
    total = 0
    for start, end, block_dim in zip(edges[:-1], edges[1:], dims):
        total += (end - start) * block_dim
        if block_dim < dim:
            total += block_dim * dim + (dim if projection_bias else 0)
    return total


@dataclasses.dataclass(frozen=True)
class MixedDimConfig(StrategyConfig):
    """Options of `MixedDimEmbedding`; `resolve` fixes the blocks and their widths."""

    label: ClassVar[str] = "MixedDimEmbedding"
    uses_counts: ClassVar[bool] = True

    boundaries: list[int] | None = option(None, "block ends in frequency rank, e.g. 400,1700")
    dims: list[int] | None = option(None, "block widths, e.g. 64,32,16")
    num_blocks: int = option(4, "number of geometric blocks when boundaries are not given")
    alpha: float = option(0.3, "power-law temperature in [0, 1]")
    round_pow2: bool = option(False, "round derived dims to powers of 2")
    budget: int | None = option(None, "parameter budget; solves alpha")
    projection_bias: bool = option(False, "give projections a bias (the Keras example's Dense does)")

    def derived(self, vocab_size, dim, counts, label) -> dict:
        """Explicit `boundaries` and `dims`: given, or derived from the counts, `alpha` or `budget`."""
        if not 0.0 <= float(self.alpha) <= 1.0:
            raise ValueError(f"{label}: invalid `alpha`: {self.alpha!r}. It must be in [0, 1].")
        boundaries = self.boundaries
        if boundaries is None:
            if not isinstance(self.num_blocks, int) or self.num_blocks < 1:
                raise ValueError(
                    f"{label}: invalid `num_blocks`: {self.num_blocks!r}. It must be an integer >= 1."
                )
            boundaries = geometric_boundaries(vocab_size, self.num_blocks)
        boundaries = [int(b) for b in boundaries]
        if any(b <= 0 or b >= vocab_size for b in boundaries) or boundaries != sorted(set(boundaries)):
            raise ValueError(
                f"{label}: invalid `boundaries`: {boundaries}. They must be strictly increasing, "
                f"each in 1..{vocab_size - 1}."
            )
        resolved = {"boundaries": boundaries, "projection_bias": bool(self.projection_bias)}
        if self.dims is not None:
            dims = [int(d) for d in self.dims]
            if len(dims) != len(boundaries) + 1:
                raise ValueError(
                    f"{label}: `dims` has {len(dims)} values; {len(boundaries) + 1} blocks need "
                    f"{len(boundaries) + 1} (one per block)."
                )
            if any(d < 1 or d > dim for d in dims):
                raise ValueError(f"{label}: invalid `dims`: {dims}. Each must be in 1..{dim}.")
            return {**resolved, "dims": dims}
        # Block frequencies from the counts in rank order (most frequent first).
        sorted_counts = None if counts is None else np.sort(check_counts(counts, vocab_size, label))[::-1]
        frequencies = block_frequencies(boundaries, vocab_size, sorted_counts)
        if self.budget is None:
            return {**resolved, "dims": power_law_dims(frequencies, dim, float(self.alpha), self.round_pow2)}
        return {**resolved, "dims": self._solve_budget(vocab_size, dim, boundaries, frequencies, label)}

    def _solve_budget(self, vocab_size, dim, boundaries, frequencies, label) -> list[int]:
        """Smallest alpha (widest rows) whose parameter count fits `budget`."""

        def params(a):
            dims = power_law_dims(frequencies, dim, a, self.round_pow2)
            return md_params(boundaries, dims, vocab_size, dim, self.projection_bias)

        if params(0.0) <= self.budget:
            return power_law_dims(frequencies, dim, 0.0, self.round_pow2)
        if params(1.0) > self.budget:
            raise ValueError(
                f"{label}: `budget` {self.budget} is below the smallest mixed-dim size for these "
                f"blocks ({params(1.0)} parameters at alpha=1); raise the budget or use more blocks."
            )
        low, high = 0.0, 1.0
        for _ in range(50):
            mid = (low + high) / 2
            low, high = (low, mid) if params(mid) <= self.budget else (mid, high)
        return power_law_dims(frequencies, dim, high, self.round_pow2)


@register
class MixedDimEmbedding(EmbeddingStrategy):
    """Mixed-dimension (MD) embedding: blocks of ids by frequency, narrower rows for rarer blocks.

    Ids are ranked by frequency (from `counts`, most frequent first; without
    counts the id order is taken as the frequency order). Rank ranges form
    blocks; block b stores `d_b`-wide rows and, when `d_b < dim`, a `d_b x dim`
    projection (no bias). Each id is looked up in its own block only: the batch
    is partitioned by block, each part gathered and projected, and the parts
    stitched back, so the work is one row per id, not one per id and block.

    Block dims come, in order of precedence, from `dims` (explicit), from a
    parameter `budget` (alpha solved by bisection, projections counted), or
    from the power-law rule `d_b = dim * (p_b / p_max) ** alpha` where `p_b` is
    the mean frequency of the block's ids.

    Args:
        boundaries: rank positions where blocks end, e.g. [400, 1700]; default
            geometric blocks ending at V/4**(k-1), ..., V/16, V/4.
        dims: width of each block (len(boundaries) + 1 values, each in [1, dim]).
        num_blocks: k, used when `boundaries` is not given.
        alpha: power-law temperature in [0, 1]; 0 gives every block `dim`.
        round_pow2: round derived dims to powers of two.
        budget: total parameter budget; solves alpha.
        counts: per-id counts (not saved in the config; the id ranking is
            saved with the weights).

    Example:
        >>> MixedDimEmbedding.cost(3706, 64, boundaries=[400, 1700], dims=[64, 32, 16]).params
        102368

    References:
        Ginart et al., "Mixed Dimension Embeddings with Application to
        Memory-Efficient Recommendation Systems", ISIT 2021 (arXiv:1909.11810).
    """

    strategy_name = "mixed_dim"
    summary = "Frequency blocks with power-law dims (Ginart et al.), each id looked up in its own block only."
    config_class = MixedDimConfig

    def __init__(self, vocab_size, dim, counts=None, **kwargs):
        super().__init__(vocab_size, dim, counts=counts, **kwargs)
        order = frequency_order(counts, vocab_size, type(self).__name__)
        edges = [0, *self.boundaries, vocab_size]
        self.block_rows = [end - start for start, end in zip(edges[:-1], edges[1:])]
        # One packed slot per id, `row_in_block * num_blocks + block`, so a lookup
        # finds both with one gather (no search over the boundaries).
        rank = np.empty(vocab_size, dtype=np.int64)
        rank[order] = np.arange(vocab_size)
        block = np.searchsorted(np.asarray(self.boundaries, dtype=np.int64), rank, side="right")
        slot = (rank - np.asarray(edges, dtype=np.int64)[block]) * len(self.block_rows) + block
        self.set_index("slot", slot.astype(np.int32 if slot.max(initial=0) < 2**31 else np.int64))

    @classmethod
    def cost_of(cls, config: MixedDimConfig, vocab_size, dim) -> Cost:
        slots = vocab_size * (len(config.boundaries) + 1)  # largest packed slot + 1, at most
        index_bytes = (4 if slots <= 2**31 else 8) * vocab_size
        params = md_params(config.boundaries, config.dims, vocab_size, dim, config.projection_bias)
        return Cost.float32(params, index_bytes=index_bytes)

    @classmethod
    def options_for_compression(cls, vocab_size, dim, compression, counts=None) -> dict:
        """A parameter budget of V*dim/compression; with `counts`, one these counts can meet."""
        budget = int(vocab_size * dim / compression)
        # More blocks make a smaller head block, which higher compression needs.
        for num_blocks in range(4, 9):
            options = {"num_blocks": num_blocks, "budget": budget}
            try:
                cls.cost(vocab_size, dim, counts=counts, **options)
            except ValueError:
                continue
            return options
        raise ValueError(f"mixed_dim: cannot reach {compression}x compression at vocab_size={vocab_size}.")

    @classmethod
    def table_shapes(cls, config: MixedDimConfig, vocab_size: int, dim: int) -> list[tuple[int, ...]]:
        edges = [0, *config.boundaries, vocab_size]
        return [(end - start, block_dim) for start, end, block_dim in zip(edges[:-1], edges[1:], config.dims)]

    def build(self, input_shape=None):
        self.tables, self.projections, self.biases = [], [], []
        for b, (rows, block_dim) in enumerate(zip(self.block_rows, self.dims)):
            self.tables.append(self.add_table(shape=(rows, block_dim), initializer=TableUniform(0.05), name=f"block_{b}"))
            projected = block_dim < self.dim
            self.projections.append(
                self.add_weight(shape=(block_dim, self.dim), initializer="glorot_uniform", name=f"projection_{b}")
                if projected else None
            )
            self.biases.append(
                self.add_weight(shape=(self.dim,), initializer="zeros", name=f"projection_{b}_bias")
                if projected and self.projection_bias else None
            )

    def ranks(self) -> np.ndarray:
        """Each id's frequency rank (0 = most frequent), read back from the packed slots."""
        slot = self._index_arrays["slot"].astype(np.int64)
        starts = np.asarray([0, *self.boundaries], dtype=np.int64)
        return starts[slot % len(self.tables)] + slot // len(self.tables)

    def _gather(self, table, rows):
        """One gather; a seam for tests that count the rows each lookup touches."""
        return self.gather(table, rows)

    def _block_vectors(self, b, local):
        vectors = self._gather(self.tables[b], local)
        if self.projections[b] is not None:
            vectors = ops.matmul(vectors, self.projections[b])
        if self.biases[b] is not None:
            vectors = vectors + self.biases[b]
        return vectors

    def lookup(self, ids):
        slot = gather_rows(self.index("slot"), ids)
        num_blocks = len(self.tables)
        if num_blocks == 1:
            return self._block_vectors(0, slot)
        block = ops.cast(ops.mod(slot, num_blocks), "int32")
        local = ops.floor_divide(slot, num_blocks)
        if keras.backend.backend() != "tensorflow" or compiling_with_xla():
            # Backends without a dynamic partition, and XLA, which needs static
            # shapes: mask per block (k times the work).
            out = 0.0
            for b, rows in enumerate(self.block_rows):
                mine = ops.equal(block, b)
                vectors = self._block_vectors(b, ops.where(mine, local, 0))
                out = out + ops.where(ops.expand_dims(mine, -1), vectors, 0.0)
            return out
        import tensorflow as tf

        parts = tf.dynamic_partition(local, block, len(self.tables))
        positions = tf.dynamic_partition(tf.range(tf.shape(ids)[0]), block, len(self.tables))
        vectors = [self._block_vectors(b, part) for b, part in enumerate(parts)]
        return tf.dynamic_stitch(positions, vectors)
