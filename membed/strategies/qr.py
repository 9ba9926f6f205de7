"""Quotient-remainder embeddings, generalised to k complementary partitions."""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

from keras import ops

from membed.strategies.base import Cost, EmbeddingStrategy, TableUniform, check_positive
from membed.strategies.config import StrategyConfig, check_at_most, option
from membed.strategies.registry import register

COMBINERS = ("mult", "add", "concat")


def _split_dim(dim: int, parts: int) -> list[int]:
    base, extra = divmod(dim, parts)
    return [base + (1 if j < extra else 0) for j in range(parts)]


@dataclasses.dataclass(frozen=True)
class QRConfig(StrategyConfig):
    """Options of `QREmbedding`."""

    label: ClassVar[str] = "QREmbedding"

    num_buckets: int | None = option(None, "rows per table (default ceil(V**(1/partitions)))")
    combiner: str = option("mult", "how the tables' rows combine", choices=COMBINERS)
    partitions: int = option(2, "number of complementary partitions k >= 2")

    def derived(self, vocab_size, dim, counts, label) -> dict:
        check_positive(label, "partitions", self.partitions, minimum=2)
        if self.combiner == "concat" and self.partitions > dim:
            raise ValueError(
                f"{label}: `combiner='concat'` needs partitions <= dim; got {self.partitions} > {dim}."
            )
        num_buckets = self.num_buckets
        if num_buckets is None:
            num_buckets = max(1, math.ceil(vocab_size ** (1.0 / self.partitions) - 1e-9))
        check_at_most(label, "num_buckets", num_buckets, vocab_size, "vocab_size")
        return {"num_buckets": int(num_buckets)}


@register
class QREmbedding(EmbeddingStrategy):
    """Compositional embedding over k complementary partitions of the ids.

    With `num_buckets = m`, id `i` has digits `(i mod m, (i // m) mod m, ...,
    i // m**(k-1))`; each digit indexes its own table and the k rows are
    combined. The digit tuples differ for every id (the partitions are
    complementary), so every id keeps a distinct vector. With k = 2 this is
    the quotient-remainder trick; the quotient table has `ceil(V / m)` rows,
    so no quotient is ever out of range.

    Args:
        num_buckets: rows of every table but the last; default
            `ceil(V ** (1 / partitions))`.
        combiner: `mult` (element-wise product), `add`, or `concat` (the
            tables split `dim` between them).
        partitions: k >= 2.

    Example:
        >>> QREmbedding.cost(6040, 64, num_buckets=120).params
        10944

    References:
        Shi et al., "Compositional Embeddings Using Complementary Partitions
        for Memory-Efficient Recommendation Systems", KDD 2020.
    """

    strategy_name = "qr"
    summary = "Quotient-remainder / k complementary partitions, tables combined by mult, add or concat."
    config_class = QRConfig

    def __init__(self, vocab_size, dim, **kwargs):
        super().__init__(vocab_size, dim, **kwargs)
        self.table_rows = self.rows(vocab_size, self.num_buckets, self.partitions)
        self.table_dims = self.dims(dim, self.combiner, self.partitions)

    @staticmethod
    def rows(vocab_size: int, num_buckets: int, partitions: int) -> list[int]:
        last = math.ceil(vocab_size / num_buckets ** (partitions - 1))
        return [num_buckets] * (partitions - 1) + [max(1, last)]

    @staticmethod
    def dims(dim: int, combiner: str, partitions: int) -> list[int]:
        return _split_dim(dim, partitions) if combiner == "concat" else [dim] * partitions

    @classmethod
    def cost_of(cls, config: QRConfig, vocab_size, dim) -> Cost:
        rows = cls.rows(vocab_size, config.num_buckets, config.partitions)
        dims = cls.dims(dim, config.combiner, config.partitions)
        return Cost.float32(sum(r * d for r, d in zip(rows, dims)))

    @classmethod
    def options_for_compression(cls, vocab_size, dim, compression, counts=None) -> dict:
        # Two partitions reach about sqrt(V)/2 x; more partitions go further.
        for partitions in (2, 3, 4):

            def ratio(buckets: int, partitions: int = partitions) -> float:
                return vocab_size * dim / cls.cost(vocab_size, dim, num_buckets=buckets, partitions=partitions).params

            buckets = max(1, math.ceil(vocab_size ** (1.0 / partitions) - 1e-9))
            if ratio(buckets) >= compression:
                # Fewest partitions that reach the target, with the largest buckets that still do:
                # past its starting point the ratio falls as buckets grow, so bisect (a step at a
                # time took minutes at V = 1e9).
                low, high = buckets, vocab_size
                if ratio(high) >= compression:
                    low = high
                while high - low > 1:
                    middle = (low + high) // 2
                    low, high = (middle, high) if ratio(middle) >= compression else (low, middle)
                buckets = low
                return QRConfig(num_buckets=buckets, partitions=partitions).as_dict()
        raise ValueError(f"qr: cannot reach {compression}x compression at vocab_size={vocab_size}.")

    @classmethod
    def table_shapes(cls, config: QRConfig, vocab_size: int, dim: int) -> list[tuple[int, ...]]:
        rows = cls.rows(vocab_size, config.num_buckets, config.partitions)
        return list(zip(rows, cls.dims(dim, config.combiner, config.partitions)))

    @staticmethod
    def init_limit(combiner: str, partitions: int) -> float:
        """Half-width of each partition's uniform init.

        0.05 (Keras's default, as the example's QR tables have) for `add`,
        `concat` and two `mult` partitions. (Matching the combined rows' variance
        to a plain table instead trained slower: ml-100k val MSE after one epoch
        1.63 against 1.16 for full tables.) A product of k >= 3 such rows is
        ~0.03**k, and each factor's gradient the product of the other k - 1: at
        k = 4 the model did not move (ml-100k val MSE 1.830 after every epoch).
        So with k `mult` partitions each factor's standard deviation is
        `(0.05 / sqrt(3)) ** (1 / (k - 1))`: every gradient has the scale it has
        with two partitions.

        Example:
            >>> QREmbedding.init_limit("mult", 2), round(QREmbedding.init_limit("mult", 4), 3)
            (0.05, 0.531)
        """
        if combiner != "mult" or partitions <= 2:
            return 0.05
        return math.sqrt(3.0) * (0.05 / math.sqrt(3.0)) ** (1.0 / (partitions - 1))

    def build(self, input_shape=None):
        limit = self.init_limit(self.combiner, self.partitions)
        self.tables = [
            self.add_table(shape=(rows, dim), initializer=TableUniform(limit), name=f"partition_{j}")
            for j, (rows, dim) in enumerate(zip(self.table_rows, self.table_dims))
        ]

    def lookup(self, ids):
        # Two integer ops, two gathers and a product: XLA fuses them when the
        # tables are small (at V = 1e8 they are 2.5 MB each).
        if self.small_tables(*self.tables):
            return self.fused(self._combined, ids)
        return self._combined(ids)

    def _combined(self, ids):
        vectors = []
        rest = ids
        for j, table in enumerate(self.tables):
            if j < self.partitions - 1:
                digit = ops.mod(rest, self.num_buckets)
                rest = ops.floor_divide(rest, self.num_buckets)
            else:
                digit = rest
            vectors.append(self.gather(table, digit))
        if self.combiner == "concat":
            return ops.concatenate(vectors, axis=-1)
        combined = vectors[0]
        for vector in vectors[1:]:
            combined = combined * vector if self.combiner == "mult" else combined + vector
        return combined
