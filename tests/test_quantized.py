"""Tests for the quantized (int8 / float16 / bfloat16) full-table strategy."""

import keras
import numpy as np
import pytest
import strategy_checks as checks
from keras import ops

from membed.strategies import registry
from membed.strategies.quantized import QuantizedEmbedding


def planted_table(vocab_size: int = 50, dim: int = 8) -> np.ndarray:
    table = np.random.default_rng(0).normal(scale=0.2, size=(vocab_size, dim)).astype("float32")
    table[3] = 0.0  # an all-zero row must survive quantization
    table[4] *= 100.0  # rows of very different ranges get their own scales
    return table


@pytest.mark.parametrize(
    "storage, params, bytes_by_dtype",
    [
        ("int8", 10 * 4 + 10, {"int8": 40, "float32": 40}),
        ("float16", 40, {"float16": 80}),
        ("bfloat16", 40, {"bfloat16": 80}),
    ],
)
def test_cost_hand_computed(storage, params, bytes_by_dtype):
    cost = QuantizedEmbedding.cost(10, 4, storage=storage)
    assert cost.params == params
    assert cost.bytes_by_dtype == bytes_by_dtype
    assert cost.index_bytes == 0


@pytest.mark.parametrize("storage", ["int8", "float16", "bfloat16"])
def test_built_layer_matches_cost_and_stores_the_right_dtypes(storage):
    layer = QuantizedEmbedding(37, 17, storage=storage)
    layer.build()
    assert layer.count_params() == QuantizedEmbedding.cost(37, 17, storage=storage).params
    stored = {}
    for weight in layer.weights:
        dtype = keras.backend.standardize_dtype(weight.dtype)
        stored[dtype] = stored.get(dtype, 0) + int(np.prod(weight.shape)) * np.dtype(
            "float16" if dtype == "bfloat16" else dtype
        ).itemsize
    assert stored == QuantizedEmbedding.cost(37, 17, storage=storage).bytes_by_dtype
    assert all(w.trainable for w in layer.weights) == (storage != "int8")
    out = layer(np.array([0, 36]))
    assert keras.backend.standardize_dtype(out.dtype) == "float32"


def test_unknown_storage_is_one_clear_line():
    message = r"^QuantizedEmbedding: invalid `storage`: 'int4'. Use one of: int8, float16, bfloat16.$"
    with pytest.raises(ValueError, match=message):
        QuantizedEmbedding(10, 4, storage="int4")
    with pytest.raises(ValueError, match=message):
        QuantizedEmbedding.cost(10, 4, storage="int4")


def test_options_for_compression_counts_bytes():
    assert QuantizedEmbedding.options_for_compression(1000, 64, 2) == {"storage": "float16"}
    assert QuantizedEmbedding.options_for_compression(1000, 64, 3.5) == {"storage": "int8"}
    assert QuantizedEmbedding.options_for_compression(1000, 64, 4) == {"storage": "int8"}
    with pytest.raises(ValueError, match=r"^quantized: cannot reach 5x compression; .* at most 3.76x in bytes"):
        QuantizedEmbedding.options_for_compression(1000, 64, 5)


def test_int8_from_table_error_is_at_most_half_a_step_per_row():
    table = planted_table()
    layer = QuantizedEmbedding.from_table(table)
    out = ops.convert_to_numpy(layer(np.arange(len(table))))
    step = np.abs(table).max(axis=1) / 127
    error = np.abs(out - table).max(axis=1)
    assert (error <= step / 2 * (1 + 1e-5) + 1e-9).all()
    assert (out[3] == 0).all()
    # Not trivially exact: quantization really happened.
    assert error.max() > 0
    np.testing.assert_allclose(layer.dequantized_table(), out, rtol=1e-6, atol=1e-9)
    assert keras.backend.standardize_dtype(layer.embeddings.dtype) == "int8"
    assert layer.storage == "int8"


@pytest.mark.parametrize("storage", ["float16", "bfloat16"])
def test_half_precision_from_table_rounds_to_that_dtype(storage):
    table = planted_table()
    layer = QuantizedEmbedding.from_table(table, storage=storage)
    out = ops.convert_to_numpy(layer(np.arange(len(table))))
    expected = ops.convert_to_numpy(ops.cast(ops.cast(table, storage), "float32"))
    np.testing.assert_array_equal(out, expected)


def test_from_table_rejects_a_non_matrix():
    with pytest.raises(ValueError, match=r"^QuantizedEmbedding.from_table: `table` must be 2-D"):
        QuantizedEmbedding.from_table(np.zeros(5))


def test_fresh_int8_table_is_a_seeded_quantized_uniform_table():
    tables = []
    for _ in range(2):
        keras.utils.set_random_seed(7)
        layer = QuantizedEmbedding(200, 16)
        tables.append(ops.convert_to_numpy(layer(np.arange(200))))
    np.testing.assert_array_equal(tables[0], tables[1])
    assert np.abs(tables[0]).max() <= 0.05 + 1e-7
    assert np.std(tables[0]) > 0.02  # ~0.05 / sqrt(3), not a zero table


@pytest.mark.parametrize("storage", ["int8", "bfloat16"])
def test_keras_file_round_trip_keeps_the_stored_dtype(storage, tmp_path):
    layer = QuantizedEmbedding.from_table(planted_table(), storage=storage, name="emb")
    reloaded = checks.keras_file_round_trip(layer, np.array([[0, 49], [3, 4]]), tmp_path / "quantized.keras")
    dtypes = sorted(keras.backend.standardize_dtype(w.dtype) for w in reloaded.get_layer("emb").weights)
    assert dtypes == (["float32", "int8"] if storage == "int8" else ["bfloat16"])


def test_registry_builds_from_cli_string():
    layer = registry.build("quantized", 100, 8, storage="float16")
    assert layer.storage == "float16" and layer.count_params() == 800


@pytest.mark.parametrize("storage", ["float16", "bfloat16"])
def test_half_precision_table_learns_a_planted_table(storage):
    # SGD: Keras optimizers do their arithmetic in the variable's dtype, so
    # the default Adam cannot train a 16-bit table (see the class docstring).
    keras.utils.set_random_seed(0)
    layer = QuantizedEmbedding(40, 8, storage=storage)
    start, end = checks.fit_planted_table(layer, 40, 8, keras.optimizers.SGD(10.0), passes=15)
    assert end < 0.1 * start, (start, end)
    assert keras.backend.standardize_dtype(layer.embeddings.dtype) == storage
