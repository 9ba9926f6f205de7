"""Tests for the tensor-train (TT-Rec) strategy."""

import json
import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import strategy_checks as checks
from keras import ops

from membed.strategies import registry
from membed.strategies.tt import TTEmbedding, core_params, dim_factorization, vocab_factorization

TARGET_VARIANCE = 0.05**2 / 3


def dense_table(layer: TTEmbedding) -> np.ndarray:
    """Reconstructs the whole padded table from the cores with numpy."""
    (v1, v2, v3), (d1, d2, d3) = layer.vocab_factors_used, layer.dim_factors_used
    r = layer.rank
    first, middle, last = (ops.convert_to_numpy(core) for core in layer.cores)
    table = np.einsum(
        "iar,jrbs,ksc->ijkabc",
        first.reshape(v1, d1, r),
        middle.reshape(v2, r, d2, r),
        last.reshape(v3, r, d3),
    )
    return table.reshape(v1 * v2 * v3, d1 * d2 * d3)


@pytest.mark.parametrize(
    "vocab_size, expected",
    [(2, [2, 1, 1]), (37, [4, 4, 3]), (1000, [10, 10, 10]), (1001, [11, 10, 10]), (10**8, [465, 464, 464])],
)
def test_vocab_factorization_is_balanced_and_covers_vocab(vocab_size, expected):
    factors = vocab_factorization(vocab_size)
    assert factors == expected
    assert math.prod(factors) >= vocab_size


def test_vocab_factorization_pads_little():
    for vocab_size in range(2, 3000, 7):
        factors = vocab_factorization(vocab_size)
        assert math.prod(factors) >= vocab_size
        assert max(factors) - min(factors) <= 2, (vocab_size, factors)


@pytest.mark.parametrize(
    "dim, expected",
    [(1, [1, 1, 1]), (4, [2, 2, 1]), (12, [3, 2, 2]), (17, [17, 1, 1]), (30, [5, 3, 2]), (64, [4, 4, 4])],
)
def test_dim_factorization_is_exact_and_balanced(dim, expected):
    assert dim_factorization(dim) == expected


def test_dim_factorization_multiplies_out_for_every_dim():
    assert all(math.prod(dim_factorization(dim)) == dim for dim in range(1, 300))


def test_cost_hand_computed_balanced():
    # v = d = (10, 10, 10), (4, 4, 4): 16*10*4 + 16*16*10*4 + 16*10*4.
    cost = TTEmbedding.cost(1000, 64, rank=16)
    assert cost.params == 640 + 10240 + 640
    assert cost.bytes_by_dtype == {"float32": 4 * 11520}
    assert cost.index_bytes == 0


def test_cost_hand_computed_explicit_factors_and_built_layer_agree():
    options = dict(rank=2, vocab_factors=[5, 5, 4], dim_factors=[1, 2, 3])
    # 1*5*1*2 + 2*5*2*2 + 2*4*3*1
    assert TTEmbedding.cost(100, 6, **options).params == 10 + 40 + 24
    layer = TTEmbedding(100, 6, **options)
    layer.build()
    assert layer.count_params() == 74
    assert [tuple(core.shape) for core in layer.cores] == [(5, 1, 2), (5, 2, 4), (4, 2, 3)]


def test_auto_order_puts_smallest_factors_in_the_rank_squared_core():
    layer = TTEmbedding(1001, 64, rank=8)
    layer.build()
    assert layer.vocab_factors_used[1] == min(layer.vocab_factors_used)
    assert layer.count_params() == core_params(layer.vocab_factors_used, layer.dim_factors_used, 8)


@pytest.mark.parametrize(
    "vocab_size, dim, options",
    [(37, 12, {"rank": 3}), (100, 6, {"rank": 2, "vocab_factors": [4, 5, 5], "dim_factors": [3, 1, 2]})],
)
def test_lookup_matches_the_dense_tensor_train(vocab_size, dim, options):
    layer = TTEmbedding(vocab_size, dim, **options)
    ids = np.arange(vocab_size)
    out = ops.convert_to_numpy(layer(ids))
    np.testing.assert_allclose(out, dense_table(layer)[:vocab_size], atol=1e-6)
    assert out.dtype == np.float32
    # Distinct ids get distinct rows.
    assert len(np.unique(out.round(7), axis=0)) == vocab_size


@pytest.mark.parametrize(
    "options, message",
    [
        ({"rank": 0}, "TTEmbedding: invalid `rank`: 0. It must be an integer >= 1."),
        ({"rank": 2.5}, "TTEmbedding: invalid `rank`: 2.5. It must be an integer >= 1."),
        (
            {"vocab_factors": [4, 4, 4]},
            r"TTEmbedding: invalid `vocab_factors`: \[4, 4, 4\]. Their product \(64\) must be >= vocab_size \(100\).",
        ),
        (
            {"dim_factors": [2, 2, 3]},
            r"TTEmbedding: invalid `dim_factors`: \[2, 2, 3\]. Their product \(12\) must equal dim \(8\).",
        ),
        ({"dim_factors": [8, 1]}, r"TTEmbedding: invalid `dim_factors`: \[8, 1\]. It must be 3 integers >= 1."),
        (
            {"vocab_factors": [200, 0, 1]},
            r"TTEmbedding: invalid `vocab_factors`: \[200, 0, 1\]. It must be 3 integers >= 1.",
        ),
    ],
)
def test_bad_options_raise_one_clear_line(options, message):
    checks.bad_options(TTEmbedding, options, f"^{message}$", vocab_size=100)


def test_options_parse_from_cli_strings():
    layer = registry.build("tt", 100, 6, rank="3", vocab_factors="5,5,4", dim_factors="auto")
    assert (layer.rank, layer.vocab_factors, layer.dim_factors) == (3, [5, 5, 4], None)
    assert layer.vocab_factors_used == [5, 5, 4]


@pytest.mark.parametrize("vocab_size, dim, rank", [(5000, 64, 16), (20000, 32, 32)])
def test_initial_rows_have_the_variance_of_a_default_keras_table(vocab_size, dim, rank):
    for seed in range(3):
        keras.utils.set_random_seed(seed)
        layer = TTEmbedding(vocab_size, dim, rank=rank)
        variance = float(np.var(ops.convert_to_numpy(layer(np.arange(5000)))))
        assert TARGET_VARIANCE / 1.5 < variance < TARGET_VARIANCE * 1.5, (seed, variance / TARGET_VARIANCE)


def test_learns_a_planted_table():
    keras.utils.set_random_seed(0)
    layer = TTEmbedding(60, 8, rank=8)
    start, end = checks.fit_planted_table(layer, 60, 8, keras.optimizers.Adam(0.02), passes=30)
    assert end < 0.3 * start, (start, end)


@pytest.mark.parametrize("compression", [5, 20, 100])
def test_options_for_compression_within_25_percent(compression):
    options = TTEmbedding.options_for_compression(100_000, 64, compression)
    params = TTEmbedding.cost(100_000, 64, **options).params
    target = 100_000 * 64 / compression
    assert 0.8 < params / target < 1.25, (options, params, target)


def test_options_for_compression_refuses_what_rank_1_cannot_reach():
    with pytest.raises(ValueError, match=r"^tt: cannot reach 1000x compression at vocab_size=100, dim=8"):
        TTEmbedding.options_for_compression(100, 8, 1000)


def test_int64_ids_beyond_2_to_the_31():
    vocab_size = 3 * 2**31
    layer = TTEmbedding(vocab_size, 8, rank=2)
    ids = np.array([0, 2**31 + 5, vocab_size - 1], dtype="int64")
    out = ops.convert_to_numpy(layer(ids))
    assert out.shape == (3, 8) and np.isfinite(out).all()
    assert layer.count_params() == TTEmbedding.cost(vocab_size, 8, rank=2).params < 50_000


def test_config_and_keras_file_round_trip(tmp_path):
    layer = TTEmbedding(37, 17, rank=3, vocab_factors=[3, 4, 4])
    clone = TTEmbedding.from_config(layer.get_config())
    assert (clone.vocab_factors_used, clone.dim_factors_used) == (layer.vocab_factors_used, layer.dim_factors_used)
    checks.keras_file_round_trip(layer, np.array([[0, 36], [5, 7]]), tmp_path / "tt.keras")


_HUGE_SCRIPT = """
import json, resource, numpy as np
from keras import ops
from membed.strategies.tt import TTEmbedding
small = TTEmbedding(1000, 64, rank=16)
small(np.array([0, 999]))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
layer = TTEmbedding(100_000_000, 64, rank=16)
ids = np.array([0, 12_345_678, 99_999_999], dtype="int32")
out = ops.convert_to_numpy(layer(ids))
(v1, v2, v3), r = layer.vocab_factors_used, layer.rank
i1, i2, i3 = 99_999_999 // (v2 * v3), 99_999_999 // v3 % v2, 99_999_999 % v3
first, middle, last = (ops.convert_to_numpy(c) for c in layer.cores)
row = np.einsum("ar,rbs,sc->abc", first[i1].reshape(4, r), middle[i2].reshape(r, 4, r), last[i3]).reshape(64)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"params": layer.count_params(), "shape": list(out.shape),
                  "row_error": float(np.abs(out[2] - row).max()), "peak_rss": after, "growth": after - before}))
"""


def test_builds_and_looks_up_at_100_million_ids_without_vocab_sized_memory():
    result = subprocess.run(
        [sys.executable, "-c", _HUGE_SCRIPT], capture_output=True, text=True, timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["params"] == 534_592
    assert report["shape"] == [3, 64]
    assert report["row_error"] < 1e-6
    assert report["peak_rss"] < 2 * 2**30
    # One V-sized int8 array would already add 100 MB.
    assert report["growth"] < 50 * 2**20, report
