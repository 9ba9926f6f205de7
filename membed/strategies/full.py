"""The plain embedding table: the baseline every strategy is compared with."""

from __future__ import annotations

from membed.strategies.base import Cost, EmbeddingStrategy, TableUniform
from membed.strategies.registry import register


@register
class FullEmbedding(EmbeddingStrategy):
    """One learned row per id: a `vocab_size x dim` table.

    Example:
        >>> layer = FullEmbedding(vocab_size=943, dim=64)
        >>> layer(np.array([0, 5])).shape
        (2, 64)
    """

    strategy_name = "full"
    summary = "Plain table, one row of `dim` floats per id (the baseline)."

    @classmethod
    def cost_of(cls, config, vocab_size: int, dim: int) -> Cost:
        return Cost.float32(vocab_size * dim)

    @classmethod
    def table_shapes(cls, config, vocab_size: int, dim: int) -> list[tuple[int, ...]]:
        return [(vocab_size, dim)]

    def build(self, input_shape=None):
        self.embeddings = self.add_table(
            shape=(self.vocab_size, self.dim), initializer=TableUniform(0.05), name="embeddings"
        )

    def lookup(self, ids):
        return self.gather(self.embeddings, ids)
