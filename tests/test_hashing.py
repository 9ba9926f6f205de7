"""Tests for the shared hash functions (membed/strategies/_hashing.py)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from keras import ops

from membed.strategies._hashing import (
    MERSENNE_PRIME,
    HashFamily,
    draw_constants,
)
from membed.strategies.base import TableUniform

REPO = Path(__file__).resolve().parents[1]

# Ids spanning both code paths: below p (int32-safe) and above it (int64 only).
WIDE_IDS = np.array([0, 1, 2, 12345, 2**31 - 2, 2**31 - 1, 2**31, 2**40 + 3, 2**62 + 17], dtype=np.int64)


def _chi_square(buckets: np.ndarray, num_buckets: int) -> float:
    counts = np.bincount(buckets, minlength=num_buckets)
    expected = len(buckets) / num_buckets
    return float(((counts - expected) ** 2 / expected).sum())


def test_constants_are_pinned_for_seed_zero():
    # Golden values: the seed -> constants map must never change, or saved
    # models would hash ids to other rows after an upgrade.
    assert draw_constants(0, 2).tolist() == [
        [60845732, 1417372829],
        [1536941989, 1049532998],
        [227671936, 471195908],
    ]


def test_outputs_are_pinned_for_seed_zero():
    family = HashFamily(seed=0, count=2)
    ids = np.array([0, 1, 2, 12345, 2**31 - 2, 2**40 + 3])
    assert family.hash_numpy(ids).tolist() == [
        [1317135178, 52625417],
        [1879579149, 140128994],
        [1210654498, 1348838253],
        [1697638137, 1046064502],
        [402735694, 203541318],
        [113174531, 454656498],
    ]
    assert family.buckets_numpy(ids, 1000).tolist() == [
        [935, 951],
        [395, 537],
        [739, 319],
        [977, 330],
        [15, 423],
        [790, 605],
    ]


@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_keras_matches_numpy_reference(dtype):
    family = HashFamily(seed=11, count=3)
    ids = np.arange(0, 5000, 7).astype(dtype) if dtype == "int32" else WIDE_IDS
    tensor = ops.convert_to_tensor(ids)
    np.testing.assert_array_equal(ops.convert_to_numpy(family.hash(tensor)), family.hash_numpy(ids))
    for num_buckets in (1, 97, 10**6, 2**40):
        np.testing.assert_array_equal(
            ops.convert_to_numpy(family.buckets(tensor, num_buckets)), family.buckets_numpy(ids, num_buckets)
        )
    np.testing.assert_allclose(ops.convert_to_numpy(family.unit(tensor)), family.unit_numpy(ids), atol=1e-6)


def test_outputs_are_in_range():
    family = HashFamily(seed=5, count=4)
    ids = np.concatenate([np.arange(20000), WIDE_IDS])
    hashes = family.hash_numpy(ids)
    assert hashes.min() >= 0 and hashes.max() < 2**31
    for num_buckets in (1, 3, 1000, 2**35):
        buckets = family.buckets_numpy(ids, num_buckets)
        assert buckets.min() >= 0 and buckets.max() < num_buckets
    unit = ops.convert_to_numpy(family.unit(ops.convert_to_tensor(ids)))
    assert unit.min() >= -1.0 and unit.max() <= 1.0
    assert unit.dtype == np.float32


def test_distinct_ids_below_p_never_share_a_hash():
    ids = np.concatenate([np.arange(200000), MERSENNE_PRIME - 1 - np.arange(1000)])
    hashes = HashFamily(seed=2, count=1).hash_numpy(ids)[:, 0]
    assert len(np.unique(hashes)) == len(ids)


@pytest.mark.parametrize("seed", [0, 1, 123])
def test_buckets_are_roughly_uniform(seed):
    # 1e5 ids into 100 buckets: a random map gives chi-square ~ 99 +- 14;
    # 160 is beyond the 99.99th percentile. Consecutive ids and ids that are
    # all multiples of 100 (which `id mod 100` would put in one bucket).
    family = HashFamily(seed=seed, count=2)
    for ids in (np.arange(100000), 100 * np.arange(100000)):
        buckets = family.buckets_numpy(ids, 100)
        for j in range(2):
            assert _chi_square(buckets[:, j], 100) < 160


def test_no_stride_collides_systematically():
    # A linear hash (a*x + b) mod p mod m sends ids a fixed stride apart to the
    # same bucket; the mixer must remove that. For a random map each stride's
    # collision rate is 1/m +- about 7%.
    num_buckets = 100
    buckets = HashFamily(seed=0, count=1).buckets_numpy(np.arange(20000), num_buckets)[:, 0]
    rates = [np.mean(buckets[:-d] == buckets[d:]) for d in range(1, 500)]
    assert max(rates) < 1.5 / num_buckets


def test_unit_encoding_is_uniform_on_minus_one_one():
    values = HashFamily(seed=9, count=8).unit_numpy(np.arange(50000))
    assert abs(values.mean()) < 0.01
    assert abs(values.var() - 1 / 3) < 0.01
    # Consecutive ids get unrelated codes.
    assert abs(np.corrcoef(values[:-1, 0], values[1:, 0])[0, 1]) < 0.02


def test_seeds_and_functions_are_independent():
    ids = np.arange(10000)
    first = HashFamily(seed=0, count=2).buckets_numpy(ids, 1000)
    other_seed = HashFamily(seed=1, count=2).buckets_numpy(ids, 1000)
    # Independent maps agree on about 1/1000 of ids.
    assert np.mean(first == other_seed) < 0.005
    assert np.mean(first[:, 0] == first[:, 1]) < 0.005
    # Pairs of buckets behave like 1e6 cells: about 1 - 1/e of 1e4 ids in distinct pairs.
    pairs = first[:, 0] * 1000 + first[:, 1]
    assert len(np.unique(pairs)) > 9900


def test_first_functions_do_not_depend_on_count():
    ids = np.arange(1000)
    np.testing.assert_array_equal(
        HashFamily(seed=4, count=1).buckets_numpy(ids, 77)[:, 0],
        HashFamily(seed=4, count=5).buckets_numpy(ids, 77)[:, 0],
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"seed": -1}, "invalid `seed`: -1"),
        ({"seed": "0"}, "invalid `seed`: '0'"),
        ({"seed": True}, "invalid `seed`: True"),
        ({"seed": 0, "count": 0}, "invalid `count`: 0"),
    ],
)
def test_bad_family_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        HashFamily(**kwargs)


def test_bad_bucket_count():
    with pytest.raises(ValueError, match="invalid `num_buckets`: 0"):
        HashFamily(seed=0).buckets_numpy(np.arange(3), 0)


def _digest(ids: np.ndarray) -> str:
    """SHA-256 of a family's Keras and NumPy outputs on `ids`."""
    family = HashFamily(seed=2024, count=3)
    tensor = ops.convert_to_tensor(ids)
    parts = [
        ops.convert_to_numpy(family.buckets(tensor, 10007)),
        family.buckets_numpy(ids, 10007),
        ops.convert_to_numpy(family.unit(tensor)),
    ]
    return hashlib.sha256(b"".join(np.ascontiguousarray(p).tobytes() for p in parts)).hexdigest()


def test_identical_across_processes():
    # One fresh interpreter, with a PYTHONHASHSEED of its own (nothing may
    # depend on Python's salted hash()), against this process. The golden
    # tests above pin the values across versions too.
    ids = np.concatenate([np.arange(0, 3000, 3), WIDE_IDS])
    env = dict(os.environ, PYTHONHASHSEED="12345", TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO))
    code = (
        f"import sys; sys.path.insert(0, {str(REPO / 'tests')!r}); import numpy as np; import test_hashing; "
        f"print(test_hashing._digest(np.array({ids.tolist()})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == _digest(ids)


@pytest.mark.parametrize("rows", [10, 2**18 + 3])  # below and above the tf.function threshold
def test_table_uniform_initializer(rows):
    keras.utils.set_random_seed(0)
    first = ops.convert_to_numpy(TableUniform(0.05)((rows, 4), dtype="float32"))
    keras.utils.set_random_seed(0)
    again = ops.convert_to_numpy(TableUniform(0.05)((rows, 4), dtype="float32"))
    np.testing.assert_array_equal(first, again)
    assert first.shape == (rows, 4) and first.dtype == np.float32
    assert first.min() >= -0.05 and first.max() <= 0.05
    if rows > 1000:
        assert abs(first.mean()) < 1e-3
        assert abs(first.std() - 0.05 / np.sqrt(3)) < 1e-3
