"""Frequency-based hybrid hashing: private rows for the most frequent ids."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
from keras import ops

from membed.strategies._hashing import HashingStrategy, check_seed, rows_for_compression, seed_option
from membed.strategies.base import Cost, TableUniform, check_positive, frequency_order, gather_rows
from membed.strategies.config import StrategyConfig, check_at_most, option
from membed.strategies.registry import register

# Defaults give about 10x compression: half the rows private, half hashed.
DEFAULT_PRIVATE_PER_ID = 0.05
DEFAULT_SHARED_PER_ID = 0.05


def _id_dtype(vocab_size: int) -> np.dtype:
    # Matches the dtype `EmbeddingStrategy.call` gives ids, for searchsorted.
    return np.dtype(np.int64 if vocab_size > 2**31 - 1 else np.int32)


@dataclasses.dataclass(frozen=True)
class FreqHashConfig(StrategyConfig):
    """Options of `FreqHashEmbedding`; the counts pick the top ids, not the sizes."""

    label: ClassVar[str] = "FreqHashEmbedding"
    uses_counts: ClassVar[bool] = True

    top_k: int | None = option(None, "ids with a private row (default round(V/20))")
    num_rows: int | None = option(None, "rows of the shared hashed table (default round(V/20))")
    seed: int = seed_option()

    def derived(self, vocab_size, dim, counts, label) -> dict:
        top_k, num_rows = self.top_k, self.num_rows
        if top_k is None:
            top_k = min(round(vocab_size * DEFAULT_PRIVATE_PER_ID), vocab_size - 1)
        check_positive(label, "top_k", top_k, minimum=0)
        if top_k >= vocab_size:
            raise ValueError(
                f"{label}: invalid `top_k`: {top_k}. It must be < vocab_size ({vocab_size}), "
                "leaving at least one id to hash."
            )
        tail = vocab_size - top_k
        if num_rows is None:
            num_rows = min(max(1, round(vocab_size * DEFAULT_SHARED_PER_ID)), tail)
        check_at_most(label, "num_rows", num_rows, tail, "vocab_size - top_k")
        return {"top_k": int(top_k), "num_rows": int(num_rows), "seed": check_seed(label, self.seed)}


@register
class FreqHashEmbedding(HashingStrategy):
    """Hybrid table: the `top_k` most frequent ids own a row; the rest share hashed rows.

    Frequent ids carry most of the training signal and are kept collision
    free; the long tail is hashed into `num_rows` shared rows. The index is
    the sorted list of the `top_k` private ids (k-sized, not V-sized): an
    id's private row is its position in that list, found by binary search.
    The paper hashes the tail twice (double hashing); this layer keeps one
    hash, so its cost is plainly `(top_k + num_rows) * dim`.

    Args:
        top_k: number of ids with a private row, 0 <= top_k < vocab_size;
            default `round(V / 20)`.
        num_rows: rows of the shared hashed table, 1 <= num_rows <=
            vocab_size - top_k; default `round(V / 20)` (at least 1).
        seed: hash seed, an integer >= 0.
        counts: per-id counts (length vocab_size) that pick the top ids;
            None means ids are already numbered by frequency, so the top
            ids are `0 .. top_k - 1`.

    Example:
        >>> FreqHashEmbedding.cost(vocab_size=10_000, dim=16, top_k=200, num_rows=300)
        Cost(params=8000, bytes_by_dtype={'float32': 32000}, index_bytes=800)

    References:
        Zhang et al., "Model Size Reduction Using Frequency Based Double
        Hashing for Recommender Systems", RecSys 2020.
    """

    strategy_name = "freq_hash"
    summary = "Top-k most frequent ids get private rows; the rest share an m-row hashed table."
    config_class = FreqHashConfig

    def __init__(self, vocab_size, dim, counts=None, **kwargs):
        super().__init__(vocab_size, dim, counts=counts, **kwargs)
        if self.top_k:
            if counts is None:
                top_ids = np.arange(self.top_k)
            else:
                top_ids = frequency_order(counts, vocab_size, type(self).__name__)[: self.top_k]
            self.set_index("top_ids", np.sort(top_ids).astype(_id_dtype(vocab_size)))

    @classmethod
    def cost_of(cls, config: FreqHashConfig, vocab_size: int, dim: int) -> Cost:
        index_bytes = config.top_k * _id_dtype(vocab_size).itemsize
        return Cost.float32((config.top_k + config.num_rows) * dim, index_bytes=index_bytes)

    @classmethod
    def options_for_compression(cls, vocab_size: int, dim: int, compression: float, counts=None) -> dict:
        # (top_k + num_rows) rows in all; split them evenly, as the default does.
        total_rows = rows_for_compression(
            "freq_hash", vocab_size, dim, compression, "the nearest size, {rows} rows in all"
        )
        top_k = min(total_rows // 2, vocab_size - 1)
        num_rows = min(total_rows - top_k, vocab_size - top_k)
        return FreqHashConfig(top_k=int(top_k), num_rows=int(num_rows)).as_dict()

    @classmethod
    def table_shapes(cls, config: FreqHashConfig, vocab_size: int, dim: int) -> list[tuple[int, ...]]:
        return [(config.num_rows, dim)] + ([(config.top_k, dim)] if config.top_k else [])

    def build(self, input_shape=None):
        self.shared = self.add_table(
            shape=(self.num_rows, self.dim), initializer=TableUniform(0.05), name="shared"
        )
        if self.top_k:
            self.private = self.add_table(
                shape=(self.top_k, self.dim), initializer=TableUniform(0.05), name="private"
            )

    def _private_positions(self, ids):
        """(position in the sorted top-id list, whether the id is a top id)."""
        top_ids = self.index("top_ids")
        ids = ops.cast(ids, top_ids.dtype)
        positions = ops.minimum(ops.searchsorted(top_ids, ids), self.top_k - 1)
        return positions, ops.equal(gather_rows(top_ids, positions), ids)

    def rows(self, ids):
        """Each id's slot: its private row in [0, top_k), or top_k + its shared row."""
        hashed = self.top_k + self._hasher.buckets(ids, self.num_rows)[:, 0]
        if not self.top_k:
            return hashed
        positions, is_top = self._private_positions(ids)
        return ops.where(is_top, ops.cast(positions, "int64"), hashed)

    def lookup(self, ids):
        vectors = self.gather(self.shared, self._hasher.buckets(ids, self.num_rows)[:, 0])
        if not self.top_k:
            return vectors
        positions, is_top = self._private_positions(ids)
        private = self.gather(self.private, positions)
        return ops.where(ops.expand_dims(is_top, -1), private, vectors)
