"""Seeded, vectorised integer hash functions shared by the hashing strategies.

`HashFamily(seed, count)` holds `count` independent functions. Each is a
Carter-Wegman universal hash modulo the Mersenne prime p = 2**31 - 1,

    u(x) = (a_lo * lo + a_hi * hi + b) mod p,   lo = x mod p,  hi = (x // p) mod p

followed by a fixed bijective mixer on 31 bits (xor-shifts and odd
multiplications modulo 2**31, MurmurHash3's fmix32 cut to 31 bits). For ids
below p (every vocabulary under 2**31 ids) `hi` is 0 and `u` is the textbook
`(a * x + b) mod p`. The mixer matters: `u` alone is linear in x, so on a
block of consecutive ids `u(x) mod m` puts ids a fixed stride apart into the
same bucket (measured: 78% of pairs 1370 apart, against 0.1% for a random
map) and loads buckets unevenly; after the mixer both look random. Being a
bijection, the mixer keeps u's guarantee that distinct ids below p never
share a 31-bit hash.

Every product is of two numbers below 2**31, so int64 arithmetic never
overflows and TensorFlow, NumPy and any other backend agree bit for bit; no
step relies on wraparound.

Bucket indices join two functions of the family into 62 bits,
`(h1 * 2**31 + h2) mod m`, so the modulo bias stays negligible even for
tables of hundreds of millions of rows.

The constants are derived from the seed with SplitMix64 in pure Python rather
than `np.random.default_rng`: NumPy does not promise that a Generator's stream
stays the same across releases (NEP 19), and a saved model must hash ids the
same way wherever it is loaded.

`HashFamily.*_numpy` are NumPy reference versions of the same functions, for
tests and for offline id -> row maps.

The pieces the hashing strategies share live here too: `HashingStrategy`
(the base class that seeds their family), `seed_option` / `check_seed` (the
`seed` option) and the sizing helpers of `options_for_compression`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import keras
import numpy as np
from keras import ops

from membed.strategies.base import EmbeddingStrategy
from membed.strategies.config import option

MERSENNE_PRIME = 2**31 - 1
HASH_BITS = 31
_LOW31 = 2**31 - 1
_MASK64 = 2**64 - 1
_NARROW_INTS = ("int8", "int16", "int32", "uint8", "uint16")
# MurmurHash3 fmix32's multipliers with the top bit dropped (both stay odd,
# so multiplying by them modulo 2**31 is a bijection).
_MIX_1 = 0x85EBCA6B & _LOW31
_MIX_2 = 0xC2B2AE35 & _LOW31
# Salt for the second function of each bucket pair, so that a family's first
# functions do not change with how many functions it holds.
_WIDE_SALT = 0x5851F42D4C957F2D


def _splitmix64(state: int) -> tuple[int, int]:
    """One SplitMix64 step: returns (next_state, output)."""
    state = (state + 0x9E3779B97F4A7C15) & _MASK64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return state, z ^ (z >> 31)


def draw_constants(seed: int, count: int) -> np.ndarray:
    """Constants of `count` universal hash functions, shape (3, count), int64.

    Rows are `a_lo`, `a_hi` (both in [1, p)) and `b` (in [0, p)). The same
    seed always gives the same constants, on any platform or NumPy version.

    Args:
        seed: any Python integer (taken modulo 2**64).
        count: number of functions, >= 1.

    Example:
        >>> draw_constants(0, 2).shape
        (3, 2)
    """
    if count < 1:
        raise ValueError(f"draw_constants: invalid `count`: {count!r}. It must be an integer >= 1.")
    state = int(seed) & _MASK64
    constants = np.empty((3, count), dtype=np.int64)
    for j in range(count):
        for row, low in ((0, 1), (1, 1), (2, 0)):
            state, value = _splitmix64(state)
            constants[row, j] = low + value % (MERSENNE_PRIME - low)
    return constants


# `options_for_compression` answers only when its options land this close to the target.
COMPRESSION_TOLERANCE = 0.2


def check_compression(strategy: str, compression) -> None:
    """Rejects a compression target below 1 (or not a number)."""
    if (
        isinstance(compression, bool)
        or not isinstance(compression, (int, float, np.number))
        or not compression >= 1
    ):
        raise ValueError(f"{strategy}: invalid compression {compression!r}. It must be a number >= 1.")


def within_reach(vocab_size: int, dim: int, compression: float, params: int) -> bool:
    """Whether `params` parameters give `compression`x within COMPRESSION_TOLERANCE."""
    reached = vocab_size * dim / params
    return abs(reached / compression - 1) <= COMPRESSION_TOLERANCE


def nearest_size(
    ideal: float, vocab_size: int, dim: int, compression: float, params: Callable[[int], int]
) -> int:
    """floor(ideal) or ceil(ideal), at least 1: whichever gives the compression nearer the target.

    At small sizes one row more or less moves the ratio a lot, so rounding
    `ideal` itself can miss a target that the other neighbour meets.
    """
    candidates = {max(1, math.floor(ideal)), max(1, math.ceil(ideal))}
    return min(sorted(candidates), key=lambda size: abs(vocab_size * dim / params(size) / compression - 1))


def reaching_size(
    ideal: float, vocab_size: int, dim: int, compression: float, params: Callable[[int], int]
) -> int | None:
    """`nearest_size(...)` when its `params` give `compression`x within COMPRESSION_TOLERANCE, else None."""
    size = nearest_size(ideal, vocab_size, dim, compression, params)
    return size if within_reach(vocab_size, dim, compression, params(size)) else None


def rows_for_compression(strategy: str, vocab_size: int, dim: int, compression,
                         nearest: str = "the nearest table, {rows} rows") -> int:
    """Rows of `dim` values, in all, that give about `compression` times fewer parameters than a full table.

    Args:
        strategy: how errors name the strategy.
        vocab_size, dim: the full table's size.
        compression: the target ratio, a number >= 1.
        nearest: how the error describes the nearest row count, a template
            with `{rows}`.

    Raises:
        ValueError: for a target below 1, or when the nearest row count misses
            it by more than COMPRESSION_TOLERANCE.

    Example:
        >>> rows_for_compression("hash", 100_000, 64, 20)
        5000
    """
    check_compression(strategy, compression)
    rows = nearest_size(vocab_size / compression, vocab_size, dim, compression, lambda rows: rows * dim)
    if not within_reach(vocab_size, dim, compression, rows * dim):
        raise ValueError(
            f"{strategy}: cannot reach {compression}x compression at vocab_size={vocab_size}: "
            f"{nearest.format(rows=rows)}, gives {vocab_size / rows:.3g}x."
        )
    return rows


def seed_option() -> int:
    """The `seed` field of a hashing strategy's config: an integer >= 0 (`check_seed`), default 0."""
    return option(0, "hash seed (integer >= 0)")


def check_seed(layer: str, seed) -> int:
    """Validates a hash seed (an integer >= 0) and returns it as a Python int."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{layer}: invalid `seed`: {seed!r}. It must be an integer >= 0.")
    return int(seed)


class HashFamily:
    """`count` independent, seeded hash functions of non-negative integer ids.

    The Keras methods take a 1-D integer tensor of n ids and return (n, count)
    tensors; the `_numpy` methods do the same on arrays and give identical
    values. Ids must be non-negative (the strategies range-check them first).

    Args:
        seed: integer >= 0; the same seed gives the same functions everywhere.
        count: number of independent functions, >= 1.

    Example:
        >>> family = HashFamily(seed=7, count=2)
        >>> family.buckets_numpy(np.arange(5), 3).shape
        (5, 2)

    References:
        Carter and Wegman, "Universal classes of hash functions", JCSS 1979.
    """

    def __init__(self, seed: int, count: int = 1):
        self.seed = check_seed("HashFamily", seed)
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
            raise ValueError(f"HashFamily: invalid `count`: {count!r}. It must be an integer >= 1.")
        self.count = int(count)
        self.constants = draw_constants(self.seed, self.count)
        self.wide_constants = draw_constants(self.seed ^ _WIDE_SALT, self.count)

    # ----- Keras -------------------------------------------------------------
    @staticmethod
    def _hash(ids, constants: np.ndarray):
        p = MERSENNE_PRIME
        a_lo, a_hi, b = (ops.convert_to_tensor(row[None, :]) for row in constants)
        dtype = keras.backend.standardize_dtype(ids.dtype)
        x = ops.expand_dims(ops.cast(ids, "int64"), -1)
        if dtype in _NARROW_INTS:
            # Every non-negative id of these dtypes is <= p, so hi == 0 and
            # the single product stays below 2**62.
            universal = ops.mod(x * a_lo + b, p)
        else:
            lo = ops.mod(x, p)
            hi = ops.mod(ops.floor_divide(x, p), p)
            universal = ops.mod(ops.mod(lo * a_lo, p) + ops.mod(hi * a_hi, p) + b, p)
        return _mix(universal)

    def hash(self, ids):
        """(n, count) int64 hash values in [0, 2**31)."""
        return self._hash(ids, self.constants)

    def buckets(self, ids, num_buckets: int):
        """(n, count) int64 bucket indices in [0, num_buckets)."""
        _check_buckets(num_buckets)
        high = self._hash(ids, self.constants)
        low = self._hash(ids, self.wide_constants)
        return ops.mod(high * 2**HASH_BITS + low, int(num_buckets))

    def unit(self, ids, dtype: str = "float32"):
        """(n, count) values spread uniformly over [-1, 1] (DHE's uniform encoding)."""
        # float32 keeps 24 of the 31 bits: ample for an MLP input.
        values = ops.cast(self.hash(ids), "float32") * (2.0 / _LOW31) - 1.0
        return ops.cast(values, dtype)

    # ----- NumPy reference ---------------------------------------------------
    @staticmethod
    def _hash_numpy(ids: np.ndarray, constants: np.ndarray) -> np.ndarray:
        p = MERSENNE_PRIME
        x = np.asarray(ids, dtype=np.int64)[:, None]
        lo = x % p
        hi = (x // p) % p
        a_lo, a_hi, b = (row[None, :] for row in constants)
        return _mix_numpy(((lo * a_lo) % p + (hi * a_hi) % p + b) % p)

    def hash_numpy(self, ids: np.ndarray) -> np.ndarray:
        """NumPy reference of `hash`."""
        return self._hash_numpy(ids, self.constants)

    def buckets_numpy(self, ids: np.ndarray, num_buckets: int) -> np.ndarray:
        """NumPy reference of `buckets`."""
        _check_buckets(num_buckets)
        high = self._hash_numpy(ids, self.constants)
        low = self._hash_numpy(ids, self.wide_constants)
        return (high * 2**HASH_BITS + low) % int(num_buckets)

    def unit_numpy(self, ids: np.ndarray) -> np.ndarray:
        """NumPy reference of `unit` (float64)."""
        return self.hash_numpy(ids) / _LOW31 * 2.0 - 1.0


class HashingStrategy(EmbeddingStrategy):
    """Base of the strategies that hash ids: `hash_count()` functions of one `HashFamily`, seeded by `seed`.

    A subclass's config declares the option as `seed: int = seed_option()`;
    the family is made once the options are resolved, so `hash_count` may
    read them. Lookups read it as `self._hasher`.
    """

    def __init__(self, vocab_size, dim, **kwargs):
        super().__init__(vocab_size, dim, **kwargs)
        self._hasher = HashFamily(self.seed, self.hash_count())

    def hash_count(self) -> int:
        """How many independent functions the layer hashes each id with (1 unless overridden)."""
        return 1


def _mix(h):
    """Bijective 31-bit mixer (keras.ops); inputs and outputs are in [0, 2**31)."""
    h = ops.bitwise_xor(h, ops.right_shift(h, 16))
    h = ops.bitwise_and(h * _MIX_1, _LOW31)
    h = ops.bitwise_xor(h, ops.right_shift(h, 13))
    h = ops.bitwise_and(h * _MIX_2, _LOW31)
    return ops.bitwise_xor(h, ops.right_shift(h, 16))


def _mix_numpy(h: np.ndarray) -> np.ndarray:
    """NumPy reference of `_mix`."""
    h = h ^ (h >> 16)
    h = (h * _MIX_1) & _LOW31
    h = h ^ (h >> 13)
    h = (h * _MIX_2) & _LOW31
    return h ^ (h >> 16)


def _check_buckets(num_buckets) -> None:
    if isinstance(num_buckets, bool) or not isinstance(num_buckets, (int, np.integer)) or num_buckets < 1:
        raise ValueError(f"HashFamily: invalid `num_buckets`: {num_buckets!r}. It must be an integer >= 1.")
    if num_buckets > 2**62:
        raise ValueError(f"HashFamily: invalid `num_buckets`: {num_buckets}. It must be <= 2**62.")
