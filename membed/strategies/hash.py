"""The hashing trick: every id reads one row of a smaller, shared table."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from membed.strategies._hashing import HashingStrategy, check_seed, rows_for_compression, seed_option
from membed.strategies.base import Cost, TableUniform
from membed.strategies.config import StrategyConfig, check_at_most, option
from membed.strategies.registry import register

# The default table has about a tenth of the ids' rows (10x compression), but
# no more than 2**20 rows: at 1e8 ids a V/10 table would be 2.5 GB at dim 64.
DEFAULT_ROWS_PER_ID = 0.1
MAX_DEFAULT_ROWS = 2**20


@dataclasses.dataclass(frozen=True)
class HashConfig(StrategyConfig):
    """Options of `HashEmbedding`."""

    label: ClassVar[str] = "HashEmbedding"

    num_rows: int | None = option(None, "rows of the shared table (default round(V/10), at most 2**20)")
    seed: int = seed_option()

    def derived(self, vocab_size, dim, counts, label) -> dict:
        num_rows = self.num_rows
        if num_rows is None:
            num_rows = min(MAX_DEFAULT_ROWS, max(1, round(vocab_size * DEFAULT_ROWS_PER_ID)))
        check_at_most(label, "num_rows", num_rows, vocab_size, "vocab_size")
        return {"num_rows": int(num_rows), "seed": check_seed(label, self.seed)}


@register
class HashEmbedding(HashingStrategy):
    """Hashing trick: id `i` reads row `h(i) mod num_rows` of one shared table.

    Ids that hash to the same row share its vector, so the table can be any
    size up to `vocab_size`. `h` is a seeded universal hash (see `_hashing`),
    so the id -> row map is the same in every process and after reloading.

    Args:
        num_rows: rows of the shared table, 1 <= num_rows <= vocab_size;
            default `round(vocab_size / 10)`, at least 1, at most 2**20.
        seed: hash seed, an integer >= 0.

    Example:
        >>> HashEmbedding.cost(vocab_size=10_000, dim=16, num_rows=500).params
        8000
        >>> layer = HashEmbedding(vocab_size=10_000, dim=16, num_rows=500)
        >>> layer(np.array([3, 9_999])).shape
        TensorShape([2, 16])

    References:
        Weinberger et al., "Feature Hashing for Large Scale Multitask
        Learning", ICML 2009.
    """

    strategy_name = "hash"
    summary = "Hashing trick: each id reads row h(id) mod num_rows of one shared table."
    config_class = HashConfig

    @classmethod
    def cost_of(cls, config: HashConfig, vocab_size: int, dim: int) -> Cost:
        return Cost.float32(config.num_rows * dim)

    @classmethod
    def options_for_compression(cls, vocab_size: int, dim: int, compression: float, counts=None) -> dict:
        # Parameters are num_rows * dim, so the ratio is vocab_size / num_rows.
        num_rows = rows_for_compression("hash", vocab_size, dim, compression, "the nearest table, {rows} rows")
        return HashConfig(num_rows=int(num_rows)).as_dict()

    @classmethod
    def table_shapes(cls, config: HashConfig, vocab_size: int, dim: int) -> list[tuple[int, ...]]:
        return [(config.num_rows, dim)]

    def build(self, input_shape=None):
        self.embeddings = self.add_table(
            shape=(self.num_rows, self.dim), initializer=TableUniform(0.05), name="embeddings"
        )

    def rows(self, ids):
        """The table row of each id in a flat vector of ids (int64, shape (n,))."""
        return self._hasher.buckets(ids, self.num_rows)[:, 0]

    def lookup(self, ids):
        # The hashing is a chain of integer ops (fused); the gather joins it
        # only from a small table.
        if self.small_tables(self.embeddings):
            return self.fused(self._gathered, ids)
        return self.gather(self.embeddings, self.fused(self.rows, ids))

    def _gathered(self, ids):
        return self.gather(self.embeddings, self.rows(ids))
