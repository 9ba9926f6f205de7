"""Tensor-train (TT-Rec) embeddings: the table factored into three small cores."""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import ClassVar

from keras import initializers, ops

from membed.strategies.base import Cost, EmbeddingStrategy, check_positive
from membed.strategies.config import StrategyConfig, option
from membed.strategies.registry import register

NUM_CORES = 3
# Variance of a row entry of Keras's default "uniform" table, U(-0.05, 0.05).
TARGET_VARIANCE = 0.05**2 / 3
# options_for_compression gives up when the closest rank is further than this
# ratio from the requested parameter count.
COMPRESSION_TOLERANCE = 1.25


def _ceil_root(value: int, degree: int) -> int:
    """Smallest integer r with r**degree >= value, exact for large ints."""
    root = max(1, round(value ** (1.0 / degree)))
    while root**degree < value:
        root += 1
    while root > 1 and (root - 1) ** degree >= value:
        root -= 1
    return root


def vocab_factorization(vocab_size: int) -> list[int]:
    """Three near-equal factors whose product is >= `vocab_size` (ids are padded up).

    Example:
        >>> vocab_factorization(100_000_000)
        [465, 464, 464]
    """
    first = _ceil_root(vocab_size, 3)
    second = _ceil_root(math.ceil(vocab_size / first), 2)
    third = math.ceil(vocab_size / (first * second))
    return [first, second, third]


def dim_factorization(dim: int) -> list[int]:
    """Three factors multiplying to exactly `dim`, as balanced as possible.

    Factors of 1 are allowed, so a prime `dim` gives `[dim, 1, 1]`.

    Example:
        >>> dim_factorization(64), dim_factorization(12), dim_factorization(17)
        ([4, 4, 4], [3, 2, 2], [17, 1, 1])
    """
    best = None
    for first in range(1, dim + 1):
        if dim % first:
            continue
        rest = dim // first
        for second in range(1, rest + 1):
            if rest % second:
                continue
            triple = sorted((first, second, rest // second), reverse=True)
            # Most balanced = smallest largest factor, then largest smallest one.
            key = (triple[0], -triple[2])
            if best is None or key < best[0]:
                best = (key, triple)
    return best[1]


def core_params(vocab_factors: list[int], dim_factors: list[int], rank: int) -> int:
    """Total size of the cores `(r_{k-1}, v_k, d_k, r_k)` with r_0 = r_3 = 1."""
    ranks = [1] + [rank] * (NUM_CORES - 1) + [1]
    return sum(ranks[k] * v * d * ranks[k + 1] for k, (v, d) in enumerate(zip(vocab_factors, dim_factors)))


@dataclasses.dataclass(frozen=True)
class TTConfig(StrategyConfig):
    """Options of `TTEmbedding`; factors left to `None` are chosen by `factors` (not filled in)."""

    label: ClassVar[str] = "TTEmbedding"

    rank: int = option(16, "TT-rank r >= 1 of the inner bonds")
    vocab_factors: list[int] | None = option(None, "three ints with product >= V (default: balanced)")
    dim_factors: list[int] | None = option(None, "three ints with product == dim (default: balanced)")

    def derived(self, vocab_size, dim, counts, label) -> dict:
        self.factors(vocab_size, dim, label)
        return {}

    def factors(self, vocab_size: int, dim: int, label: str | None = None) -> tuple[list[int], list[int]]:
        """Validates the options and returns the (vocab, dim) factors the cores use."""
        label = label or self.label
        check_positive(label, "rank", self.rank)
        vocab_factors, dim_factors = self.vocab_factors, self.dim_factors
        if vocab_factors is not None:
            vocab_factors = _check_factors(label, "vocab_factors", vocab_factors)
            product = math.prod(vocab_factors)
            if product < vocab_size:
                raise ValueError(
                    f"{label}: invalid `vocab_factors`: {vocab_factors}. Their product ({product}) "
                    f"must be >= vocab_size ({vocab_size})."
                )
        if dim_factors is not None:
            dim_factors = _check_factors(label, "dim_factors", dim_factors)
            product = math.prod(dim_factors)
            if product != dim:
                raise ValueError(
                    f"{label}: invalid `dim_factors`: {dim_factors}. Their product ({product}) "
                    f"must equal dim ({dim})."
                )
        if vocab_factors is not None and dim_factors is not None:
            return vocab_factors, dim_factors
        vocab_options = [vocab_factors] if vocab_factors else _orderings(vocab_factorization(vocab_size))
        dim_options = [dim_factors] if dim_factors else _orderings(dim_factorization(dim))
        # Only the order is free here: put the small factors where the rank**2 core is.
        return min(
            itertools.product(vocab_options, dim_options),
            key=lambda pair: core_params(pair[0], pair[1], self.rank),
        )


def _check_factors(label: str, option: str, factors) -> list[int]:
    try:
        values = [int(f) for f in factors]
    except (TypeError, ValueError):
        values = None
    if values is None or len(values) != NUM_CORES or any(v < 1 for v in values) or values != list(factors):
        raise ValueError(f"{label}: invalid `{option}`: {factors!r}. It must be {NUM_CORES} integers >= 1.")
    return values


@register
class TTEmbedding(EmbeddingStrategy):
    """Embedding table stored as a three-core tensor train (TT-Rec).

    The `vocab_size x dim` table is viewed as a tensor of shape
    `(v1, d1, v2, d2, v3, d3)` with `v1 * v2 * v3 >= vocab_size` (ids padded
    up) and `d1 * d2 * d3 == dim`, and stored as three cores of shape
    `(r_{k-1}, v_k, d_k, r_k)` with `r_0 = r_3 = 1` and inner TT-rank `rank`.
    Id `i` has mixed-radix digits `(i1, i2, i3)`, `i = (i1 * v2 + i2) * v3 + i3`;
    its row is the product of the three core slices, so a lookup never touches
    anything vocabulary-sized and the layer scales to 1e8 ids.

    Factors chosen automatically are as balanced as possible; they are then
    ordered so that the middle core, the only one of size `rank**2`, is the
    smallest. Cores are initialised with Gaussians whose std makes the
    reconstructed rows have the variance of a default Keras table (TT-Rec's
    sampled-Gaussian initialisation).

    Args:
        rank: TT-rank `r` of the two inner bonds (>= 1).
        vocab_factors: optional three integers with product >= `vocab_size`,
            used in the given order.
        dim_factors: optional three integers with product == `dim`, used in
            the given order.

    Example:
        >>> layer = TTEmbedding(vocab_size=100_000_000, dim=64, rank=16)
        >>> layer.vocab_factors_used, layer.dim_factors_used
        ([465, 464, 464], [4, 4, 4])
        >>> TTEmbedding.cost(100_000_000, 64, rank=16).params
        534592

    References:
        Yin et al., "TT-Rec: Tensor Train Factorization for Deep Learning
        Recommendation Model Embeddings", MLSys 2021.
    """

    strategy_name = "tt"
    summary = "Tensor-train (TT-Rec): table factored into 3 cores of TT-rank r; never allocates V-sized state."
    config_class = TTConfig
    compute_bound = True

    def __init__(self, vocab_size, dim, **kwargs):
        super().__init__(vocab_size, dim, **kwargs)
        self.vocab_factors_used, self.dim_factors_used = self.config.factors(vocab_size, dim, type(self).__name__)

    @classmethod
    def cost_of(cls, config: TTConfig, vocab_size, dim) -> Cost:
        return Cost.float32(core_params(*config.factors(vocab_size, dim, cls.__name__), config.rank))

    @classmethod
    def options_for_compression(cls, vocab_size, dim, compression, counts=None) -> dict:
        if not compression > 0:
            raise ValueError(f"tt: invalid compression {compression!r}. It must be > 0.")
        target = vocab_size * dim / compression
        # Params grow monotonically with rank: walk up to the first rank at or above target.
        rank = 1
        while cls.cost(vocab_size, dim, rank=rank).params < target:
            rank += 1
        candidates = [r for r in (rank - 1, rank) if r >= 1]
        best = min(candidates, key=lambda r: abs(math.log(cls.cost(vocab_size, dim, rank=r).params / target)))
        achieved = cls.cost(vocab_size, dim, rank=best).params
        if not 1 / COMPRESSION_TOLERANCE <= achieved / target <= COMPRESSION_TOLERANCE:
            raise ValueError(
                f"tt: cannot reach {compression}x compression at vocab_size={vocab_size}, dim={dim}; "
                f"the closest rank ({best}) gives {vocab_size * dim / achieved:.3g}x."
            )
        return {"rank": best}

    def _core_stddev(self) -> float:
        # A reconstructed entry sums r1 * r2 products of three independent
        # N(0, s**2) draws, so its variance is r1 * r2 * s**6.
        return (TARGET_VARIANCE / self.rank**2) ** (1.0 / 6.0)

    @classmethod
    def table_shapes(cls, config: TTConfig, vocab_size: int, dim: int) -> list[tuple[int, ...]]:
        vocab_factors, dim_factors = config.factors(vocab_size, dim, cls.__name__)
        ranks = [1] + [config.rank] * (NUM_CORES - 1) + [1]
        return [(v, ranks[k], d * ranks[k + 1]) for k, (v, d) in enumerate(zip(vocab_factors, dim_factors))]

    def build(self, input_shape=None):
        ranks = [1] + [self.rank] * (NUM_CORES - 1) + [1]
        stddev = self._core_stddev()
        # Core k is stored as (v_k, r_{k-1}, d_k * r_k): one `take` on axis 0
        # gathers a batch of slices ready for batched matmul.
        self.cores = [
            self.add_table(
                shape=(v, ranks[k], d * ranks[k + 1]),
                initializer=initializers.RandomNormal(stddev=stddev),
                name=f"core_{k}",
            )
            for k, (v, d) in enumerate(zip(self.vocab_factors_used, self.dim_factors_used))
        ]

    def lookup(self, ids):
        v1, v2, v3 = self.vocab_factors_used
        d1, d2, d3 = self.dim_factors_used
        first = ops.floor_divide(ids, v2 * v3)
        second = ops.mod(ops.floor_divide(ids, v3), v2)
        third = ops.mod(ids, v3)
        left = ops.reshape(self.gather(self.cores[0], first), (-1, d1, self.rank))
        middle = self.gather(self.cores[1], second)  # (n, r, d2 * r)
        right = self.gather(self.cores[2], third)  # (n, r, d3)
        partial = ops.reshape(ops.matmul(left, middle), (-1, d1 * d2, self.rank))
        return ops.reshape(ops.matmul(partial, right), (-1, self.dim))


def _orderings(factors: list[int]) -> list[list[int]]:
    return [list(p) for p in dict.fromkeys(itertools.permutations(factors))]
