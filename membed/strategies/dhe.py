"""Deep Hash Embedding: a fixed dense hash code of the id, decoded by an MLP."""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import ClassVar

import numpy as np
from keras import activations, ops

from membed.strategies._hashing import HashingStrategy, check_compression, check_seed, seed_option, within_reach
from membed.strategies.base import Cost, check_positive, int_list
from membed.strategies.config import StrategyConfig, option
from membed.strategies.registry import register

ACTIVATIONS = ("mish", "relu")
DEFAULT_NUM_HASHES = 256
DEFAULT_HIDDEN = (256, 128)
# Uniform[-1, 1] has variance 1/3; scaling by sqrt(3) gives the MLP unit-variance inputs.
_ENCODING_SCALE = math.sqrt(3.0)


@dataclasses.dataclass(frozen=True)
class DHEConfig(StrategyConfig):
    """Options of `DHEEmbedding`."""

    label: ClassVar[str] = "DHEEmbedding"

    num_hashes: int = option(DEFAULT_NUM_HASHES, "k, hash functions in the dense code (paper: 1024)")
    hidden: list[int] = option(list(DEFAULT_HIDDEN), "hidden layer widths, e.g. 256,128")
    activation: str = option("mish", "the MLP's activation", choices=ACTIVATIONS)
    seed: int = seed_option()

    def derived(self, vocab_size, dim, counts, label) -> dict:
        """`hidden` as a list of ints (it may be given as a string like '256,128')."""
        check_positive(label, "num_hashes", self.num_hashes)
        hidden = self.hidden
        if isinstance(hidden, str):
            try:
                hidden = int_list(hidden)
            except ValueError:
                raise ValueError(
                    f"{label}: invalid `hidden`: {hidden!r}. Use comma-separated integers >= 1, e.g. '256,128'."
                ) from None
        if not isinstance(hidden, (list, tuple)):
            raise ValueError(f"{label}: invalid `hidden`: {hidden!r}. It must be a list of integers >= 1.")
        for width in hidden:
            if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 1:
                raise ValueError(
                    f"{label}: invalid `hidden`: {list(hidden)!r}. Every width must be an integer >= 1."
                )
        return {"num_hashes": int(self.num_hashes), "hidden": [int(w) for w in hidden],
                "seed": check_seed(label, self.seed)}


@register
class DHEEmbedding(HashingStrategy):
    """No table: k seeded hashes of the id form a dense code that an MLP maps to `dim`.

    Each of `num_hashes` seeded hash functions (a universal hash, as in the
    paper, then a 31-bit mixer so that consecutive ids get unrelated codes;
    see `_hashing`) maps the id to a value spread uniformly over [-1, 1]
    (the paper's uniform encoding). The code is then scaled to unit
    variance: a fixed normalisation with no parameters, so `count_params()`
    is the MLP alone. The code is not learned and needs no storage;
    an MLP with `hidden` layers and a linear output layer turns it into the
    embedding. Every id gets a distinct code, so there are no collisions,
    but every lookup costs a forward pass of the MLP.

    The paper uses k = 1024 and wide layers; the defaults here (k = 256,
    hidden 256,128, about 0.1 M parameters at dim 64) keep CPU lookups
    affordable, though still far slower than a gather.

    Args:
        num_hashes: k, width of the hash code, >= 1 (default 256).
        hidden: widths of the hidden layers, e.g. [256, 128] or "256,128";
            may be empty (a linear decoder).
        activation: `mish` (the paper's) or `relu`.
        seed: hash seed, an integer >= 0.

    Example:
        >>> DHEEmbedding.cost(vocab_size=10_000, dim=16, num_hashes=64, hidden=[32]).params
        2608

    References:
        Kang et al., "Learning to Embed Categorical Features without
        Embedding Tables for Recommendation", KDD 2021.
    """

    strategy_name = "dhe"
    summary = "Deep Hash Embedding: k seeded hashes -> dense code -> MLP to dim; no table."
    config_class = DHEConfig
    compute_bound = True

    def hash_count(self) -> int:
        return self.num_hashes

    @staticmethod
    def widths(num_hashes: int, hidden: list[int], dim: int) -> list[int]:
        return [num_hashes, *hidden, dim]

    @classmethod
    def cost_of(cls, config: DHEConfig, vocab_size: int, dim: int) -> Cost:
        widths = cls.widths(config.num_hashes, config.hidden, dim)
        return Cost.float32(sum(n_in * n_out + n_out for n_in, n_out in itertools.pairwise(widths)))

    @classmethod
    def options_for_compression(cls, vocab_size: int, dim: int, compression: float, counts=None) -> dict:
        check_compression("dhe", compression)
        target = vocab_size * dim / compression

        # Hidden [2w, w], tapered like the default, after k = min(256, 2w)
        # hashes: a small budget narrows the code too rather than squeezing
        # the MLP to a width-1 bottleneck behind 256 inputs.
        def shape(width: int) -> tuple[int, list[int]]:
            return min(DEFAULT_NUM_HASHES, 2 * width), [2 * width, width]

        def params(width: int) -> int:
            num_hashes, hidden = shape(width)
            return cls.cost(vocab_size, dim, num_hashes=num_hashes, hidden=hidden).params

        # params(width) grows with width: bisect for the last width within budget.
        low, high = 1, 2
        while params(high) <= target:
            low, high = high, 2 * high
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if params(middle) <= target else (low, middle)
        width = min((low, high), key=lambda w: abs(params(w) - target))
        if not within_reach(vocab_size, dim, compression, params(width)):
            raise ValueError(
                f"dhe: cannot reach {compression}x compression at vocab_size={vocab_size}, dim={dim}: "
                f"the smallest MLP (k=2, hidden 2,1) has {params(1)} parameters, the target {target:.0f}."
            )
        num_hashes, hidden = shape(width)
        return DHEConfig(num_hashes=num_hashes, hidden=hidden).as_dict()

    def build(self, input_shape=None):
        widths = self.widths(self.num_hashes, self.hidden, self.dim)
        self.kernels = []
        self.biases = []
        for j, (n_in, n_out) in enumerate(itertools.pairwise(widths)):
            self.kernels.append(
                self.add_weight(shape=(n_in, n_out), initializer="glorot_uniform", name=f"kernel_{j}")
            )
            self.biases.append(self.add_weight(shape=(n_out,), initializer="zeros", name=f"bias_{j}"))

    def encode(self, ids):
        """The fixed dense code of each id, shape (n, num_hashes), unit variance."""
        return self._hasher.unit(ids, self.compute_dtype) * _ENCODING_SCALE

    def lookup(self, ids):
        # Hash encoding and MLP: XLA fuses the encoding and the activations.
        return self.fused(self._decoded, ids)

    def _decoded(self, ids):
        activation = activations.get(self.activation)
        x = self.encode(ids)
        last = len(self.kernels) - 1
        for j, (kernel, bias) in enumerate(zip(self.kernels, self.biases)):
            x = ops.matmul(x, kernel) + bias
            if j < last:
                x = activation(x)
        return x
