"""Synthetic ids and planted ratings: range, distribution, memory, determinism, noise floor."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from membed.data import planted_expected_ratings, planted_ratings, uniform_ids, zipf_expected_counts, zipf_ids
from membed.data.synthetic import MAX_EXPECTED_COUNTS_VOCAB


def test_zipf_ids_huge_vocab_uses_memory_for_samples_only():
    size = 200_000
    tracemalloc.start()
    try:
        ids = zipf_ids(10**9, size, seed=3)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert ids.dtype == np.int64 and ids.shape == (size,)
    assert ids.min() >= 0 and ids.max() < 10**9
    # A V-sized array would be gigabytes; a few arrays of `size` are a few MB.
    assert peak < 16 * size * 8
    # The tail is reached as the power law says: P(id >= 1e6) = 1 - F(1e6 + 1), F the CDF on [1, V + 1).
    shape = 1.0 - 1.05
    tail = 1.0 - ((10**6 + 1) ** shape - 1.0) / ((10**9 + 1) ** shape - 1.0)
    assert (ids >= 10**6).mean() == pytest.approx(tail, abs=0.005)
    assert (ids == 0).mean() == pytest.approx((2**shape - 1.0) / ((10**9 + 1) ** shape - 1.0), abs=0.003)


@pytest.mark.parametrize("exponent", [1.05, 1.0, 0.7, 1.0 + 1e-12, 2.0])
def test_zipf_frequencies_match_expected_counts_and_decrease(exponent):
    vocab, draws = 20, 400_000
    counts = np.bincount(zipf_ids(vocab, draws, exponent=exponent, seed=11), minlength=vocab)
    expected = zipf_expected_counts(vocab, draws, exponent=exponent)
    assert expected.shape == (vocab,) and expected.sum() == pytest.approx(draws)
    assert np.all(np.diff(expected) < 0)
    # Each count is within 5 binomial standard deviations of its expectation.
    assert np.all(np.abs(counts - expected) <= 5 * np.sqrt(expected) + 1)
    assert np.all(np.diff(counts[:5]) < 0)


def test_exponent_one_is_the_log_law():
    expected = zipf_expected_counts(3, 100, exponent=1.0)
    np.testing.assert_allclose(expected, 100 * np.diff(np.log([1, 2, 3, 4])) / np.log(4))
    np.testing.assert_allclose(zipf_expected_counts(3, 100, exponent=1.0 + 1e-12), expected, rtol=1e-6)


def test_exponent_zero_is_uniform():
    np.testing.assert_allclose(zipf_expected_counts(4, 100, exponent=0.0), [25, 25, 25, 25])


def test_zipf_and_uniform_are_seeded():
    np.testing.assert_array_equal(zipf_ids(1000, 50, seed=5), zipf_ids(1000, 50, seed=5))
    assert not np.array_equal(zipf_ids(1000, 50, seed=5), zipf_ids(1000, 50, seed=6))
    np.testing.assert_array_equal(uniform_ids(10**9, 50, seed=5), uniform_ids(10**9, 50, seed=5))
    assert not np.array_equal(uniform_ids(10**9, 50, seed=5), uniform_ids(10**9, 50, seed=6))


def test_uniform_ids_cover_the_range_evenly():
    ids = uniform_ids(10, 100_000, seed=1)
    assert ids.dtype == np.int64 and ids.min() == 0 and ids.max() == 9
    assert np.all(np.abs(np.bincount(ids) - 10_000) < 500)
    assert zipf_ids(1, 5).tolist() == [0] * 5 and len(uniform_ids(7, 0)) == 0


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: zipf_ids(0, 5), r"zipf_ids: invalid `vocab_size`: 0\. It must be an integer >= 1\."),
        (lambda: zipf_ids(10, -1), r"zipf_ids: invalid `size`: -1"),
        (lambda: zipf_ids(10, 5, exponent=-1.0),
         r"zipf_ids: invalid `exponent`: -1\.0\. It must be a finite number >= 0\."),
        (lambda: planted_expected_ratings(np.array([-1]), np.array([0])),
         r"invalid `users`: they must be integers >= 0"),
        (lambda: zipf_ids(10, 5, exponent=float("nan")), r"invalid `exponent`: nan"),
        (lambda: zipf_ids(10, 5, seed=-3), r"zipf_ids: invalid `seed`: -3"),
        (lambda: zipf_ids(10.5, 5), r"invalid `vocab_size`: 10\.5"),
        (lambda: uniform_ids(10, True), r"uniform_ids: invalid `size`: True"),
        (lambda: zipf_expected_counts(MAX_EXPECTED_COUNTS_VOCAB + 1, 10), r"sample with zipf_ids instead"),
        (lambda: zipf_expected_counts(10, -1), r"invalid `total`: -1"),
        (lambda: planted_ratings(10, 10, 10, noise_sigma=-0.1), r"planted_ratings: invalid `noise_sigma`: -0\.1"),
        (lambda: planted_ratings(2**31, 10, 10), r"invalid `num_users`: 2147483648\. It must be <= 2147483647"),
        (lambda: planted_ratings(10, 10, 10, rank=0), r"planted_ratings: invalid `rank`: 0"),
    ],
)
def test_invalid_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_planted_ratings_are_deterministic_per_seed():
    first = planted_ratings(500, 300, 5_000, seed=4)
    second = planted_ratings(500, 300, 5_000, seed=4)
    other = planted_ratings(500, 300, 5_000, seed=5)
    for key in ("users", "items", "ratings"):
        np.testing.assert_array_equal(getattr(first, key), getattr(second, key))
        assert not np.array_equal(getattr(first, key), getattr(other, key))


def test_planted_ratings_layout():
    data = planted_ratings(500, 300, 20_000, seed=2)
    assert data.name == "synthetic" and len(data) == 20_000 and data.noise_sigma == 0.3
    assert (data.num_users, data.num_items) == (500, 300)
    assert data.users.dtype == np.int32 and data.items.dtype == np.int32 and data.ratings.dtype == np.float32
    np.testing.assert_array_equal(data.user_vocab, np.arange(500))
    np.testing.assert_array_equal(data.item_counts, np.bincount(data.items, minlength=300))
    assert data.user_counts.dtype == np.int64 and data.user_counts.sum() == 20_000
    assert data.users.max() < 500 and data.items.max() < 300
    # Zipf popularity by default; uniform when exponent is None.
    assert data.user_counts[0] > 5 * np.median(data.user_counts)
    uniform = planted_ratings(500, 300, 20_000, exponent=None, seed=2)
    assert uniform.user_counts.max() < 3 * 20_000 / 500


@pytest.mark.parametrize("sigma", [0.0, 0.3, 1.0])
def test_noise_variance_is_sigma_squared(sigma):
    data = planted_ratings(2_000, 1_000, 200_000, noise_sigma=sigma, seed=9)
    residual = data.ratings.astype(np.float64) - planted_expected_ratings(data.users, data.items, seed=9)
    assert residual.mean() == pytest.approx(0.0, abs=0.01)
    # float32 storage adds about 1e-7 of rounding; the sampling error of the variance is sigma^2 * sqrt(2 / n).
    assert residual.var() == pytest.approx(sigma**2, rel=0.02, abs=1e-6)


def test_factors_depend_on_id_not_on_vocab_or_batch():
    users, items = np.array([5, 123_456_789, 5]), np.array([7, 7, 900_000_000])
    together = planted_expected_ratings(users, items, seed=1)
    alone = [planted_expected_ratings(users[k : k + 1], items[k : k + 1], seed=1)[0] for k in range(3)]
    np.testing.assert_array_equal(together, alone)
    assert together[0] != together[1] != together[2]
    assert not np.array_equal(together, planted_expected_ratings(users, items, seed=2))


def test_dot_products_have_std_about_one_and_a_half():
    users, items = uniform_ids(10**6, 30_000, seed=1), uniform_ids(10**6, 30_000, seed=2)
    for rank in (4, 8, 32):
        expected = planted_expected_ratings(users, items, rank=rank, seed=3)
        dots = np.log(expected / (5.0 - expected))
        assert dots.mean() == pytest.approx(0.0, abs=0.05)
        assert dots.std() == pytest.approx(1.5, rel=0.05)
        assert 0.0 < expected.min() and expected.max() < 5.0
