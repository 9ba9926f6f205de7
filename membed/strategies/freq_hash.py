"""Frequency-based hybrid hashing: private rows for the most frequent ids."""

from __future__ import annotations

import numpy as np
from keras import ops

from membed.strategies._hashing import (
    HashFamily,
    check_compression,
    check_seed,
    nearest_size,
    within_reach,
)
from membed.strategies.base import (
    Cost,
    EmbeddingStrategy,
    Option,
    TableUniform,
    check_positive,
    frequency_order,
    gather_rows,
    optional_int,
)
from membed.strategies.registry import register

# Defaults give about 10x compression: half the rows private, half hashed.
DEFAULT_PRIVATE_PER_ID = 0.05
DEFAULT_SHARED_PER_ID = 0.05


def _id_dtype(vocab_size: int) -> np.dtype:
    # Matches the dtype `EmbeddingStrategy.call` gives ids, for searchsorted.
    return np.dtype(np.int64 if vocab_size > 2**31 - 1 else np.int32)


@register
class FreqHashEmbedding(EmbeddingStrategy):
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
    needs_counts = True
    options = {
        "top_k": Option(optional_int, None, "ids with a private row (default round(V/20))"),
        "num_rows": Option(optional_int, None, "rows of the shared hashed table (default round(V/20))"),
        "seed": Option(int, 0, "hash seed (integer >= 0)"),
    }

    def __init__(self, vocab_size, dim, top_k=None, num_rows=None, seed=0, counts=None, **kwargs):
        super().__init__(vocab_size, dim, **kwargs)
        self.top_k, self.num_rows = self.resolve_sizes(vocab_size, top_k, num_rows)
        self.seed = check_seed(type(self).__name__, seed)
        self._hasher = HashFamily(self.seed, 1)
        if self.top_k:
            if counts is None:
                top_ids = np.arange(self.top_k)
            else:
                top_ids = frequency_order(counts, vocab_size, type(self).__name__)[: self.top_k]
            self.set_index("top_ids", np.sort(top_ids).astype(_id_dtype(vocab_size)))

    @classmethod
    def resolve_sizes(cls, vocab_size: int, top_k: int | None, num_rows: int | None) -> tuple[int, int]:
        """(top_k, num_rows) checked, or their defaults for `vocab_size`."""
        label = cls.__name__
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
        check_positive(label, "num_rows", num_rows)
        if num_rows > tail:
            raise ValueError(
                f"{label}: invalid `num_rows`: {num_rows}. It must be <= vocab_size - top_k ({tail})."
            )
        return int(top_k), int(num_rows)

    @classmethod
    def cost(
        cls, vocab_size: int, dim: int, top_k: int | None = None, num_rows: int | None = None, seed: int = 0
    ) -> Cost:
        check_seed(cls.__name__, seed)
        top_k, num_rows = cls.resolve_sizes(vocab_size, top_k, num_rows)
        return Cost.float32((top_k + num_rows) * dim, index_bytes=top_k * _id_dtype(vocab_size).itemsize)

    @classmethod
    def options_for_compression(cls, vocab_size: int, dim: int, compression: float) -> dict:
        check_compression("freq_hash", compression)
        # (top_k + num_rows) rows in all; split them evenly, as the default does.
        total_rows = nearest_size(
            vocab_size / compression, vocab_size, dim, compression, lambda rows: rows * dim
        )
        if not within_reach(vocab_size, dim, compression, total_rows * dim):
            raise ValueError(
                f"freq_hash: cannot reach {compression}x compression at vocab_size={vocab_size}: "
                f"the nearest size, {total_rows} rows in all, gives {vocab_size / total_rows:.3g}x."
            )
        top_k = min(total_rows // 2, vocab_size - 1)
        num_rows = min(total_rows - top_k, vocab_size - top_k)
        return {"top_k": int(top_k), "num_rows": int(num_rows), "seed": 0}

    def build(self, input_shape=None):
        self.shared = self.add_weight(
            shape=(self.num_rows, self.dim), initializer=TableUniform(0.05), name="shared"
        )
        if self.top_k:
            self.private = self.add_weight(
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
        vectors = gather_rows(self.shared, self._hasher.buckets(ids, self.num_rows)[:, 0])
        if not self.top_k:
            return vectors
        positions, is_top = self._private_positions(ids)
        private = gather_rows(self.private, positions)
        return ops.where(ops.expand_dims(is_top, -1), private, vectors)
