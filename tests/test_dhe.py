"""Tests for Deep Hash Embedding (membed/strategies/dhe.py)."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import strategy_checks as checks
from helpers import fit_to_targets
from keras import ops

from membed.strategies import registry
from membed.strategies._hashing import HashFamily
from membed.strategies.dhe import DHEEmbedding


@pytest.mark.parametrize(
    "vocab_size, dim, options, params",
    [
        (1000, 3, {"num_hashes": 4, "hidden": [8]}, 4 * 8 + 8 + 8 * 3 + 3),
        (1000, 5, {"num_hashes": 10, "hidden": []}, 10 * 5 + 5),  # a linear decoder
        (5000, 64, {}, 256 * 256 + 256 + 256 * 128 + 128 + 128 * 64 + 64),  # defaults
        (2, 1, {}, 256 * 256 + 256 + 256 * 128 + 128 + 128 + 1),
    ],
)
def test_cost_matches_hand_count_and_built_layer(vocab_size, dim, options, params):
    checks.cost("dhe", vocab_size, dim, options, params)


def test_no_table_size_does_not_depend_on_vocabulary():
    small = DHEEmbedding.cost(100, 16, num_hashes=8, hidden=[8]).params
    assert DHEEmbedding.cost(10**12, 16, num_hashes=8, hidden=[8]).params == small
    layer = registry.build("dhe", 10**8, 16, num_hashes=8, hidden=[8])
    assert layer.count_params() == small
    assert ops.convert_to_numpy(layer(np.array([0, 10**8 - 1], dtype="int32"))).shape == (2, 16)


def test_hidden_parses_from_a_spec():
    name, options = registry.parse_spec("dhe:hidden=64,32,num_hashes=16,activation=relu")
    layer = registry.build(name, 500, 8, **options)
    assert layer.hidden == [64, 32] and layer.num_hashes == 16 and layer.activation == "relu"
    assert layer.get_config()["hidden"] == [64, 32]
    assert DHEEmbedding(500, 8, hidden="12,6").hidden == [12, 6]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"num_hashes": 0}, r"DHEEmbedding: invalid `num_hashes`: 0\. It must be an integer >= 1\."),
        ({"hidden": [16, 0]}, r"invalid `hidden`: \[16, 0\]\. Every width must be an integer >= 1\."),
        ({"hidden": "16,x"}, r"invalid `hidden`: '16,x'\. Use comma-separated integers"),
        ({"hidden": 16}, r"invalid `hidden`: 16\. It must be a list of integers >= 1\."),
        ({"activation": "tanh"}, r"invalid `activation`: 'tanh'\. Use one of: mish, relu\."),
        ({"seed": -1}, r"invalid `seed`: -1"),
    ],
)
def test_bad_options(options, message):
    checks.bad_options(DHEEmbedding, options, message)


def test_encoding_is_pinned_and_matches_numpy_reference():
    layer = DHEEmbedding(1000, 8, num_hashes=4, hidden=[8], seed=0)
    ids = np.array([0, 1], dtype="int32")
    # 31-bit hashes of ids 0 and 1 recorded in another process, as DHE codes.
    hashes = np.array(
        [[1317135178, 52625417, 735665818, 210204007], [1879579149, 140128994, 1904329074, 10480082]]
    )
    expected = (hashes / (2**31 - 1) * 2 - 1) * math.sqrt(3)
    np.testing.assert_allclose(ops.convert_to_numpy(layer.encode(ids)), expected, atol=1e-5)
    all_ids = np.arange(1000, dtype="int32")
    reference = HashFamily(0, 4).unit_numpy(all_ids) * math.sqrt(3)
    np.testing.assert_allclose(ops.convert_to_numpy(layer.encode(all_ids)), reference, atol=1e-5)


def test_codes_are_distinct_and_unit_variance():
    codes = ops.convert_to_numpy(
        DHEEmbedding(5000, 8, num_hashes=16, hidden=[8]).encode(np.arange(5000, dtype="int32"))
    )
    assert len(np.unique(codes, axis=0)) == 5000
    assert abs(codes.mean()) < 0.02 and abs(codes.var() - 1) < 0.02


def test_lookup_is_the_mlp_of_the_code():
    layer = registry.build("dhe", 300, 3, num_hashes=6, hidden=[5], activation="relu", seed=2)
    kernel_0, bias_0, kernel_1, bias_1 = (w for w in layer.get_weights())
    ids = np.array([0, 7, 299], dtype="int32")
    code = ops.convert_to_numpy(layer.encode(ids))
    expected = np.maximum(code @ kernel_0 + bias_0, 0) @ kernel_1 + bias_1
    np.testing.assert_allclose(ops.convert_to_numpy(layer(ids)), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("activation", ["mish", "relu"])
def test_learns_random_targets(activation):
    # No structure to exploit: the MLP must tell 200 ids apart from their codes.
    keras.utils.set_random_seed(0)
    ids = np.arange(200, dtype="int32")
    targets = np.random.default_rng(0).normal(size=(200, 8)).astype("float32")
    layer = registry.build("dhe", 200, 8, num_hashes=64, hidden=[128], activation=activation, seed=1)
    before, after = fit_to_targets(layer, ids, targets)
    assert after < 0.05 * before


@pytest.mark.parametrize("compression", [5, 20, 100])
def test_options_for_compression(compression):
    checks.reaches_compression(DHEEmbedding, compression)


def test_options_for_compression_narrows_the_code_for_small_budgets():
    options = DHEEmbedding.options_for_compression(943, 64, 100)
    assert options["num_hashes"] < 256 and options["hidden"][1] > 1


def test_options_for_compression_out_of_reach():
    with pytest.raises(ValueError, match="cannot reach 5x compression at vocab_size=2, dim=64"):
        DHEEmbedding.options_for_compression(2, 64, 5)
