"""A port of the Keras example's QREmbedding, kept as a benchmark peer."""

from __future__ import annotations

import math

from keras import ops

from membed.strategies.base import Cost, EmbeddingStrategy, Option, optional_int
from membed.strategies.registry import register


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
    options = {"num_buckets": Option(optional_int, None, "remainder rows (default V // 50, the example's rule)")}

    def __init__(self, vocab_size, dim, num_buckets=None, **kwargs):
        super().__init__(vocab_size, dim, **kwargs)
        self.num_buckets = self.resolve_buckets(vocab_size, num_buckets)

    @classmethod
    def resolve_buckets(cls, vocab_size, num_buckets):
        if num_buckets is None:
            return max(1, vocab_size // 50)
        if not isinstance(num_buckets, int) or num_buckets < 1:
            raise ValueError(f"{cls.__name__}: invalid `num_buckets`: {num_buckets!r}. It must be an integer >= 1.")
        return num_buckets

    @staticmethod
    def quotient_rows(vocab_size, num_buckets):
        return max(num_buckets, math.ceil(vocab_size / num_buckets))

    @classmethod
    def cost(cls, vocab_size, dim, num_buckets=None) -> Cost:
        buckets = cls.resolve_buckets(vocab_size, num_buckets)
        return Cost.float32((cls.quotient_rows(vocab_size, buckets) + buckets) * dim)

    @classmethod
    def options_for_compression(cls, vocab_size, dim, compression) -> dict:
        return {"num_buckets": max(1, vocab_size // 50)}

    def build(self, input_shape=None):
        rows = self.quotient_rows(self.vocab_size, self.num_buckets)
        self.q_embeddings = self.add_weight(shape=(rows, self.dim), initializer="uniform", name="q_embeddings")
        self.r_embeddings = self.add_weight(
            shape=(self.num_buckets, self.dim), initializer="uniform", name="r_embeddings"
        )

    def lookup(self, ids):
        quotient = ops.floor_divide(ids, self.num_buckets)
        remainder = ops.mod(ids, self.num_buckets)
        return ops.take(self.q_embeddings, quotient, axis=0) * ops.take(self.r_embeddings, remainder, axis=0)
