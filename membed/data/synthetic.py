"""Synthetic ids and ratings: Zipf or uniform id streams of any vocabulary size, and planted low-rank ratings.

Zipf ids are drawn by inverting the CDF of the continuous power law
`p(x) ~ x**-exponent` on `[1, V + 1)` and taking `floor(x) - 1`, so id 0 is
the most popular and sampling needs memory for the samples only, never for
the vocabulary: `zipf_ids(10**9, 10**6)` is as cheap as `zipf_ids(100, 10**6)`.

Planted ratings follow the model that the Keras collaborative-filtering example
fits: `rating = 5 * sigmoid(<u, v>) + noise`, with `noise ~ N(0, sigma**2)`.
Each id's factor vector is a pure function of `(seed, id)` (a counter-based
hash turned Gaussian), so only ids that are sampled are ever materialised and
`sigma**2` is the best MSE any model can reach.

References:
    G. K. Zipf, "Human Behavior and the Principle of Least Effort", 1949.
    J. K. Salmon et al., "Parallel Random Numbers: As Easy as 1, 2, 3", SC 2011
    (counter-based generators).
"""

from __future__ import annotations

import math

import numpy as np

from membed.data.movielens import RatingsData

# Target standard deviation of <u, v>: 5 * sigmoid spreads ratings over most of
# 0..5 without saturating most of them at the ends.
DOT_STD = 1.5
# Expected counts need a V-sized array; refuse sizes where that is gigabytes.
MAX_EXPECTED_COUNTS_VOCAB = 1 << 27
_MAX_INT32 = np.iinfo(np.int32).max
# Below this distance from 1 the power-law CDF uses its log form, which is exact at 1.
_LOG_FORM_TOLERANCE = 1e-9
# Stream tags that keep the user, item and noise draws of one seed independent.
_USER_STREAM, _ITEM_STREAM, _NOISE_STREAM = 1, 2, 3
_CHUNK_RATINGS = 1 << 20


def _check_int(function: str, option: str, value, minimum: int) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{function}: invalid `{option}`: {value!r}. It must be an integer >= {minimum}.")
    return int(value)


def _check_exponent(function: str, exponent) -> float:
    if isinstance(exponent, bool) or not isinstance(exponent, (int, float, np.integer, np.floating)):
        raise ValueError(f"{function}: invalid `exponent`: {exponent!r}. It must be a finite number >= 0.")
    if not (math.isfinite(exponent) and exponent >= 0):
        raise ValueError(f"{function}: invalid `exponent`: {exponent!r}. It must be a finite number >= 0.")
    return float(exponent)


def _zipf_cdf(x: np.ndarray, vocab_size: int, exponent: float) -> np.ndarray:
    """P(X < x) for the continuous power law on [1, V + 1)."""
    top = math.log(vocab_size + 1.0)
    if abs(1.0 - exponent) < _LOG_FORM_TOLERANCE:
        return np.log(x) / top
    # expm1 keeps precision when (1 - exponent) * log(x) is small.
    shape = 1.0 - exponent
    return np.expm1(shape * np.log(x)) / math.expm1(shape * top)


def _zipf_from_rng(rng: np.random.Generator, vocab_size: int, size: int, exponent: float) -> np.ndarray:
    top = math.log(vocab_size + 1.0)
    uniform = rng.random(size)
    if abs(1.0 - exponent) < _LOG_FORM_TOLERANCE:
        log_x = uniform * top
    else:
        shape = 1.0 - exponent
        log_x = np.log1p(uniform * math.expm1(shape * top)) / shape
    ids = np.floor(np.exp(log_x)).astype(np.int64) - 1
    # Rounding at the very top of [1, V + 1) can give V; it belongs to the last id.
    return np.clip(ids, 0, vocab_size - 1, out=ids)


def zipf_ids(vocab_size: int, size: int, exponent: float = 1.05, seed: int = 0) -> np.ndarray:
    """Draws `size` ids in `[0, vocab_size)` with Zipf-like popularity, id 0 the most popular.

    Id `i` has probability `F(i + 2) - F(i + 1)` where `F` is the CDF of the
    continuous power law `x**-exponent` on `[1, V + 1)` (see
    `zipf_expected_counts`). Memory is O(size) whatever `vocab_size` is.

    Args:
        vocab_size: number of ids V, >= 1; 10**9 is fine.
        size: number of draws, >= 0.
        exponent: power-law exponent >= 0 (0 is uniform; 1 uses the log form).
        seed: non-negative integer seed.

    Example:
        >>> zipf_ids(10**9, 5, seed=1)
        array([     3028, 178182351,         6, 167732590,        88])

    References:
        G. K. Zipf, "Human Behavior and the Principle of Least Effort", 1949.
    """
    vocab_size = _check_int("zipf_ids", "vocab_size", vocab_size, 1)
    size = _check_int("zipf_ids", "size", size, 0)
    exponent = _check_exponent("zipf_ids", exponent)
    seed = _check_int("zipf_ids", "seed", seed, 0)
    return _zipf_from_rng(np.random.default_rng(seed), vocab_size, size, exponent)


def uniform_ids(vocab_size: int, size: int, seed: int = 0) -> np.ndarray:
    """Draws `size` int64 ids uniformly from `[0, vocab_size)`; memory O(size).

    Args:
        vocab_size: number of ids, >= 1.
        size: number of draws, >= 0.
        seed: non-negative integer seed.

    Example:
        >>> uniform_ids(10, 4, seed=3)
        array([8, 0, 1, 2])
    """
    vocab_size = _check_int("uniform_ids", "vocab_size", vocab_size, 1)
    size = _check_int("uniform_ids", "size", size, 0)
    seed = _check_int("uniform_ids", "seed", seed, 0)
    return np.random.default_rng(seed).integers(0, vocab_size, size=size, dtype=np.int64)


def zipf_expected_counts(vocab_size: int, total: float, exponent: float = 1.05) -> np.ndarray:
    """Expected number of draws of each id among `total` draws of `zipf_ids`; a float64 array of length V.

    Frequency-aware strategies can be given these as counts without sampling.
    Unlike the sampler, this materialises V values, so V is limited to
    `MAX_EXPECTED_COUNTS_VOCAB`.

    Args:
        vocab_size: number of ids V, 1 .. MAX_EXPECTED_COUNTS_VOCAB.
        total: number of draws, >= 0.
        exponent: power-law exponent >= 0.

    Example:
        >>> zipf_expected_counts(3, 100, exponent=1.0).round(1)
        array([50. , 29.2, 20.8])
    """
    vocab_size = _check_int("zipf_expected_counts", "vocab_size", vocab_size, 1)
    if vocab_size > MAX_EXPECTED_COUNTS_VOCAB:
        raise ValueError(
            f"zipf_expected_counts: invalid `vocab_size`: {vocab_size}. It must be <= {MAX_EXPECTED_COUNTS_VOCAB} "
            "(the result has one float per id); sample with zipf_ids instead."
        )
    if isinstance(total, bool) or not isinstance(total, (int, float, np.integer, np.floating)) or not (
        math.isfinite(total) and total >= 0
    ):
        raise ValueError(f"zipf_expected_counts: invalid `total`: {total!r}. It must be a finite number >= 0.")
    exponent = _check_exponent("zipf_expected_counts", exponent)
    edges = _zipf_cdf(np.arange(1, vocab_size + 2, dtype=np.float64), vocab_size, exponent)
    return float(total) * np.diff(edges)


def _mix64(values: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser on a uint64 array: a bijection whose output bits look independent."""
    with np.errstate(over="ignore"):
        values = values + np.uint64(0x9E3779B97F4A7C15)
        values = (values ^ (values >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        values = (values ^ (values >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return values ^ (values >> np.uint64(31))


def _gaussian_factors(ids: np.ndarray, rank: int, seed: int, stream: int) -> np.ndarray:
    """Standard normal `(len(ids), rank)` factors, each entry a function of (seed, stream, id, k) alone."""
    key = _mix64(np.array([seed], dtype=np.uint64) ^ _mix64(np.array([stream], dtype=np.uint64)))
    per_id = _mix64(key ^ ids.astype(np.uint64))[:, None]
    # Two hashed uniforms per entry feed Box-Muller.
    counters = np.arange(2 * rank, dtype=np.uint64).reshape(rank, 2)
    bits = _mix64(per_id[:, :, None] ^ _mix64(counters + np.uint64(1))[None])
    unit = (bits >> np.uint64(11)).astype(np.float64) * 2.0**-53  # 53 random bits -> [0, 1)
    radius = np.sqrt(-2.0 * np.log1p(-unit[..., 0]))  # 1 - u is in (0, 1]: log is finite
    return radius * np.cos(2.0 * np.pi * unit[..., 1])


def planted_expected_ratings(users: np.ndarray, items: np.ndarray, rank: int = 8, seed: int = 0) -> np.ndarray:
    """The noiseless planted rating `5 * sigmoid(<u, v>)` for each (user, item) pair, float64.

    `planted_ratings` adds noise to exactly these values, so the squared error
    of this prediction against its ratings is the irreducible noise.

    Args:
        users: user ids (non-negative integers).
        items: item ids, same length.
        rank: factor dimension, >= 1.
        seed: the seed given to `planted_ratings`.

    Example:
        >>> data = planted_ratings(100, 50, 1000, seed=7)
        >>> residual = data.ratings - planted_expected_ratings(data.users, data.items, seed=7)
    """
    rank = _check_int("planted_expected_ratings", "rank", rank, 1)
    seed = _check_int("planted_expected_ratings", "seed", seed, 0)
    users, items = np.asarray(users), np.asarray(items)
    if users.shape != items.shape or users.ndim != 1:
        raise ValueError(
            f"planted_expected_ratings: users and items must be 1-D of one length; got {users.shape}, {items.shape}."
        )
    for option, ids in (("users", users), ("items", items)):
        if not np.issubdtype(ids.dtype, np.integer) or (ids.size and ids.min() < 0):
            raise ValueError(f"planted_expected_ratings: invalid `{option}`: they must be integers >= 0.")
    # Entries are N(0, s^2); <u, v> over `rank` terms has variance rank * s^4.
    scale = math.sqrt(DOT_STD / math.sqrt(rank))
    unique_users, user_rows = np.unique(users, return_inverse=True)
    unique_items, item_rows = np.unique(items, return_inverse=True)
    user_factors = _gaussian_factors(unique_users, rank, seed, _USER_STREAM) * scale
    item_factors = _gaussian_factors(unique_items, rank, seed, _ITEM_STREAM) * scale
    dots = np.empty(len(users), dtype=np.float64)
    # Gathering factors per rating costs rank floats each; chunks bound that memory.
    for start in range(0, len(users), _CHUNK_RATINGS):
        stop = start + _CHUNK_RATINGS
        dots[start:stop] = np.einsum(
            "nk,nk->n", user_factors[user_rows[start:stop]], item_factors[item_rows[start:stop]]
        )
    return 5.0 / (1.0 + np.exp(-dots))


def planted_ratings(
    num_users: int,
    num_items: int,
    num_ratings: int,
    rank: int = 8,
    noise_sigma: float = 0.3,
    exponent: float | None = 1.05,
    seed: int = 0,
) -> RatingsData:
    """Ratings from a planted rank-`rank` model: `5 * sigmoid(<u, v>) + N(0, noise_sigma**2)`.

    Users and items are drawn Zipf (or uniform when `exponent` is None); each
    id's factors are N(0, s^2) with s chosen so `<u, v>` has standard deviation
    about 1.5, the same for every id whatever the sizes. Pairs may repeat.
    Indices are the ids themselves (`user_vocab = arange(num_users)`), so ids
    never drawn have count 0. Ratings are not clipped, which keeps the noise
    exactly Gaussian: `noise_sigma**2` is the MSE floor.

    Args:
        num_users: user vocabulary size, 1 .. 2**31 - 1.
        num_items: item vocabulary size, 1 .. 2**31 - 1.
        num_ratings: number of ratings, >= 0.
        rank: factor dimension, >= 1.
        noise_sigma: noise standard deviation, >= 0.
        exponent: Zipf exponent of user and item popularity; None for uniform.
        seed: non-negative integer seed; the same arguments give the same data.

    Example:
        >>> data = planted_ratings(6040, 3706, 1_000_000, noise_sigma=0.3)
        >>> data.noise_sigma ** 2  # the best achievable validation MSE
        0.09
    """
    num_users = _check_int("planted_ratings", "num_users", num_users, 1)
    num_items = _check_int("planted_ratings", "num_items", num_items, 1)
    for option, value in (("num_users", num_users), ("num_items", num_items)):
        if value > _MAX_INT32:
            raise ValueError(
                f"planted_ratings: invalid `{option}`: {value}. It must be <= {_MAX_INT32} (int32 indices)."
            )
    num_ratings = _check_int("planted_ratings", "num_ratings", num_ratings, 0)
    rank = _check_int("planted_ratings", "rank", rank, 1)
    seed = _check_int("planted_ratings", "seed", seed, 0)
    if isinstance(noise_sigma, bool) or not isinstance(noise_sigma, (int, float, np.integer, np.floating)) or not (
        math.isfinite(noise_sigma) and noise_sigma >= 0
    ):
        raise ValueError(f"planted_ratings: invalid `noise_sigma`: {noise_sigma!r}. It must be a finite number >= 0.")
    if exponent is not None:
        exponent = _check_exponent("planted_ratings", exponent)

    def draw(vocab_size: int, stream: int) -> np.ndarray:
        rng = np.random.default_rng([seed, stream])
        if exponent is None:
            return rng.integers(0, vocab_size, size=num_ratings, dtype=np.int64)
        return _zipf_from_rng(rng, vocab_size, num_ratings, exponent)

    users, items = draw(num_users, _USER_STREAM), draw(num_items, _ITEM_STREAM)
    noise = np.random.default_rng([seed, _NOISE_STREAM]).normal(0.0, float(noise_sigma), size=num_ratings)
    ratings = planted_expected_ratings(users, items, rank, seed) + noise
    return RatingsData(
        name="synthetic",
        users=users.astype(np.int32),
        items=items.astype(np.int32),
        ratings=ratings.astype(np.float32),
        user_vocab=np.arange(num_users, dtype=np.int64),
        item_vocab=np.arange(num_items, dtype=np.int64),
        user_counts=np.bincount(users, minlength=num_users).astype(np.int64),
        item_counts=np.bincount(items, minlength=num_items).astype(np.int64),
        noise_sigma=float(noise_sigma),
    )
