"""Double hashing: two independent hashes into two tables, rows combined."""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

from keras import ops

from membed.strategies._hashing import HashingStrategy, check_compression, check_seed, reaching_size, seed_option
from membed.strategies.base import Cost, TableUniform
from membed.strategies.config import StrategyConfig, check_at_most, option
from membed.strategies.hash import MAX_DEFAULT_ROWS
from membed.strategies.registry import register

COMBINERS = ("sum", "concat")


@dataclasses.dataclass(frozen=True)
class DoubleHashConfig(StrategyConfig):
    """Options of `DoubleHashEmbedding`."""

    label: ClassVar[str] = "DoubleHashEmbedding"

    num_rows: int | None = option(None, "rows per table (default: about 10x compression, at most 2**20)")
    combiner: str = option("sum", "how the two rows combine", choices=COMBINERS)
    seed: int = seed_option()

    def derived(self, vocab_size, dim, counts, label) -> dict:
        if self.combiner == "concat" and dim < 2:
            raise ValueError(
                f"{label}: `combiner='concat'` splits dim between two tables; it needs dim >= 2, got {dim}."
            )
        num_rows = self.num_rows
        if num_rows is None:
            tables_of_full_width = 2 if self.combiner == "sum" else 1
            num_rows = min(MAX_DEFAULT_ROWS, max(1, round(vocab_size / (10 * tables_of_full_width))))
        check_at_most(label, "num_rows", num_rows, vocab_size, "vocab_size")
        return {"num_rows": int(num_rows), "seed": check_seed(label, self.seed)}


@register
class DoubleHashEmbedding(HashingStrategy):
    """Two independent hashes of each id into two tables; the two rows are combined.

    Two ids collide only if both hashes collide, so with m rows per table
    most ids get a distinct pair of rows even when m is much smaller than
    the vocabulary. With `combiner='sum'` both tables are `num_rows x dim`
    and the rows are added; with `'concat'` the tables split `dim`
    (`ceil(dim/2)` and `floor(dim/2)` columns) and the rows are joined, so
    the output is `dim` wide either way.

    Args:
        num_rows: rows of each table, 1 <= num_rows <= vocab_size; default
            gives about 10x compression: `round(V / 20)` for `sum`,
            `round(V / 10)` for `concat` (at least 1, at most 2**20).
        combiner: `sum` or `concat` (`concat` needs dim >= 2).
        seed: hash seed, an integer >= 0.

    Example:
        >>> DoubleHashEmbedding.cost(vocab_size=10_000, dim=16, num_rows=500).params
        16000
        >>> DoubleHashEmbedding.cost(vocab_size=10_000, dim=16, num_rows=500, combiner="concat").params
        8000

    References:
        Zhang et al., "Model Size Reduction Using Frequency Based Double
        Hashing for Recommender Systems", RecSys 2020.
    """

    strategy_name = "double_hash"
    summary = "Two independent hashes into two m-row tables, rows combined by sum or concat."
    config_class = DoubleHashConfig

    def __init__(self, vocab_size, dim, **kwargs):
        super().__init__(vocab_size, dim, **kwargs)
        self.table_dims = self.dims(dim, self.combiner)

    def hash_count(self) -> int:
        return 2

    @staticmethod
    def dims(dim: int, combiner: str) -> list[int]:
        return [dim, dim] if combiner == "sum" else [math.ceil(dim / 2), dim // 2]

    @classmethod
    def cost_of(cls, config: DoubleHashConfig, vocab_size: int, dim: int) -> Cost:
        return Cost.float32(config.num_rows * sum(cls.dims(dim, config.combiner)))

    @classmethod
    def options_for_compression(cls, vocab_size: int, dim: int, compression: float, counts=None) -> dict:
        check_compression("double_hash", compression)
        # `sum` keeps full-width rows in both tables (2 * m * dim parameters);
        # `concat` (m * dim) is the fallback that reaches twice as far.
        for combiner, full_width_tables in (("sum", 2), ("concat", 1)):
            if combiner == "concat" and dim < 2:
                continue

            def params(rows: int, combiner: str = combiner) -> int:
                return cls.cost(vocab_size, dim, num_rows=rows, combiner=combiner).params

            ideal = vocab_size / (full_width_tables * compression)
            num_rows = reaching_size(ideal, vocab_size, dim, compression, params)
            if num_rows is not None:
                return DoubleHashConfig(num_rows=int(num_rows), combiner=combiner).as_dict()
        raise ValueError(
            f"double_hash: cannot reach {compression}x compression at vocab_size={vocab_size}, dim={dim}."
        )

    @classmethod
    def table_shapes(cls, config: DoubleHashConfig, vocab_size: int, dim: int) -> list[tuple[int, ...]]:
        return [(config.num_rows, width) for width in cls.dims(dim, config.combiner)]

    def build(self, input_shape=None):
        # Summed rows keep the variance of Keras's default uniform(-0.05, 0.05) table.
        limit = 0.05 / math.sqrt(2) if self.combiner == "sum" else 0.05
        self.tables = [
            self.add_table(shape=(self.num_rows, width), initializer=TableUniform(limit), name=f"table_{j}")
            for j, width in enumerate(self.table_dims)
        ]

    def rows(self, ids):
        """Row of each id in each table (int64, shape (n, 2))."""
        return self._hasher.buckets(ids, self.num_rows)

    def lookup(self, ids):
        # Hashing, two gathers and a sum: XLA fuses them (the gathers only
        # from small tables).
        if self.small_tables(*self.tables):
            return self.fused(self._combined, ids)
        return self._from_rows(self.fused(self.rows, ids))

    def _combined(self, ids):
        return self._from_rows(self.rows(ids))

    def _from_rows(self, rows):
        first = self.gather(self.tables[0], rows[:, 0])
        second = self.gather(self.tables[1], rows[:, 1])
        if self.combiner == "concat":
            return ops.concatenate([first, second], axis=-1)
        return first + second
