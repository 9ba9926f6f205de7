"""A port of the Keras example's QREmbedding, kept as a benchmark peer."""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

from keras import ops

from membed.strategies.base import Cost, EmbeddingStrategy, take_rows
from membed.strategies.config import StrategyConfig, option
from membed.strategies.registry import register


@dataclasses.dataclass(frozen=True)
class ExampleQRConfig(StrategyConfig):
    """Options of `ExampleQREmbedding`."""

    label: ClassVar[str] = "ExampleQREmbedding"

    num_buckets: int | None = option(None, "remainder rows (default V // 50, the example's rule)")

    def derived(self, vocab_size, dim, counts, label) -> dict:
        if self.num_buckets is None:
            return {"num_buckets": max(1, vocab_size // 50)}
        if not isinstance(self.num_buckets, int) or self.num_buckets < 1:
            raise ValueError(f"{label}: invalid `num_buckets`: {self.num_buckets!r}. It must be an integer >= 1.")
        return {}


@register
class ExampleQREmbedding(EmbeddingStrategy):
    """The Keras example's quotient-remainder layer, with integer ids in.

    Same arithmetic as the example: quotient `id // num_buckets` and remainder
    `id % num_buckets` index two tables (Keras's default uniform initializer)
    whose rows are multiplied. One fix only, so that it does not crash: the
    quotient table has `max(num_buckets, ceil(V / num_buckets))` rows (the
    example uses `num_buckets` rows, which is out of range whenever
    `num_buckets**2 < V`; on MovieLens 1M both give 120). Use `qr` for real
    work; this layer exists to compare against.

    Args:
        num_buckets: default `max(1, V // 50)`, the example's rule.

    Example:
        >>> ExampleQREmbedding.cost(6040, 64).params
        15360

    References:
        Keras example "Memory-efficient embeddings for recommendation systems"
        (Khalid Salama, 2021); Shi et al., KDD 2020.
    """

    strategy_name = "example_qr"
    summary = "Reference port of the Keras example's QREmbedding (benchmark peer)."
    config_class = ExampleQRConfig

    @staticmethod
    def quotient_rows(vocab_size, num_buckets):
        return max(num_buckets, math.ceil(vocab_size / num_buckets))

    @classmethod
    def cost_of(cls, config: ExampleQRConfig, vocab_size, dim) -> Cost:
        return Cost.float32((cls.quotient_rows(vocab_size, config.num_buckets) + config.num_buckets) * dim)

    @classmethod
    def options_for_compression(cls, vocab_size, dim, compression, counts=None) -> dict:
        # The example's rule whatever the compression: the example's own model, as a peer.
        return ExampleQRConfig().resolve(vocab_size, dim).as_dict()

    @classmethod
    def table_shapes(cls, config: ExampleQRConfig, vocab_size: int, dim: int) -> list[tuple[int, ...]]:
        return [(cls.quotient_rows(vocab_size, config.num_buckets), dim), (config.num_buckets, dim)]

    def build(self, input_shape=None):
        rows = self.quotient_rows(self.vocab_size, self.num_buckets)
        self.q_embeddings = self.add_table(shape=(rows, self.dim), initializer="uniform", name="q_embeddings")
        self.r_embeddings = self.add_table(
            shape=(self.num_buckets, self.dim), initializer="uniform", name="r_embeddings"
        )

    def lookup(self, ids):
        quotient = ops.floor_divide(ids, self.num_buckets)
        remainder = ops.mod(ids, self.num_buckets)
        quotient_rows = self.gather(self.q_embeddings, quotient, take=take_rows)
        return quotient_rows * self.gather(self.r_embeddings, remainder, take=take_rows)
