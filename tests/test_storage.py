"""Tests for table storage (membed/strategies/storage.py): float16, bfloat16 and int8 tables for any strategy."""

import json
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from membed import data, presets, strategies
from membed.model import rating_model
from membed.strategies import storage
from membed.strategies.base import BYTES_PER_DTYPE, Cost

CONVERSIONS = storage.CONVERSIONS
VOCAB_SIZE = 1000


def counts_for(vocab_size: int) -> np.ndarray:
    return np.random.default_rng(vocab_size).zipf(1.3, vocab_size).astype(np.int64)


def make(name: str, vocab_size: int = VOCAB_SIZE, dim: int = 16, layer_name: str = "emb", **kwargs):
    """A built, seeded layer; `kwargs` are options or layer arguments (`storage`)."""
    keras.utils.set_random_seed(0)
    layer = strategies.get(name)(vocab_size, dim, counts=counts_for(vocab_size), name=layer_name, **kwargs)
    layer.build((None,))
    return layer


def has_tables(name: str) -> bool:
    return bool(strategies.cost(name, VOCAB_SIZE, 16, counts=counts_for(VOCAB_SIZE)).tables)


# Strategies trained in float32 whose tables convert (quantized is already stored).
TABLE_STRATEGIES = [n for n in strategies.names() if has_tables(n) and n != "quantized"]


def stored_bytes(layer) -> dict[str, int]:
    totals: dict[str, int] = {}
    for weight in layer.weights:
        dtype = keras.backend.standardize_dtype(weight.dtype)
        totals[dtype] = totals.get(dtype, 0) + int(np.prod(weight.shape)) * BYTES_PER_DTYPE[dtype]
    return totals


def vectors(layer, ids=np.arange(VOCAB_SIZE)) -> np.ndarray:
    return ops.convert_to_numpy(layer(ids))


def test_every_table_strategy_named_by_the_issue_supports_storage():
    for name in ("full", "hash", "qr", "mixed_dim", "double_hash", "freq_hash", "example_qr", "example_md",
                 "robe", "tt"):
        assert name in TABLE_STRATEGIES
    assert not has_tables("dhe")


@pytest.mark.parametrize(
    "storage_name, params, bytes_by_dtype",
    [
        ("float32", 10 * 4 + 4 * 8, {"float32": 288}),
        ("float16", 10 * 4 + 4 * 8, {"float16": 80, "float32": 128}),
        ("bfloat16", 10 * 4 + 4 * 8, {"bfloat16": 80, "float32": 128}),
        # 1 byte per table value; the projection and one scale per table row in float32.
        ("int8", 10 * 4 + 4 * 8 + 10, {"int8": 40, "float32": 4 * (32 + 10)}),
    ],
)
def test_stored_cost_converts_tables_only(storage_name, params, bytes_by_dtype):
    cost = Cost.float32(10 * 4 + 4 * 8, index_bytes=7, tables=[(10, 4)])  # a table and a 4 x 8 projection
    stored = cost.stored(storage_name)
    assert (stored.params, stored.bytes_by_dtype, stored.index_bytes) == (params, bytes_by_dtype, 7)
    assert stored.stored(storage_name) == stored


def test_a_flat_table_has_one_scale_per_block():
    # ROBE's 1-D array: 130 values -> 3 scales of FLAT_SCALE_BLOCK = 64 values.
    cost = Cost.float32(130, tables=[(130,)]).stored("int8")
    assert cost.bytes_by_dtype == {"int8": 130, "float32": 12}


def test_stored_cost_errors_are_one_line():
    with pytest.raises(ValueError, match=r"^Cost: invalid `storage`: 'int4'. Use one of: float32, float16, bfloat16, int8.$"):
        Cost.float32(8, tables=[(2, 4)]).stored("int4")
    with pytest.raises(ValueError, match=r"^Cost: no tables to store as 'int8'; dense weights stay float32.$"):
        Cost.float32(8).stored("int8")
    with pytest.raises(ValueError, match=r"^Cost: only a float32 cost converts"):
        Cost.float32(8, tables=[(2, 4)]).stored("int8").stored("float16")


@pytest.mark.parametrize("name", TABLE_STRATEGIES)
@pytest.mark.parametrize("storage_name", CONVERSIONS)
def test_cost_formula_equals_the_converted_layer(name, storage_name):
    cls = strategies.get(name)
    for vocab_size, dim in ((37, 4), (VOCAB_SIZE, 17), (5000, 64)):
        layer = make(name, vocab_size, dim)
        layer.store_as(storage_name)
        formula = cls.cost(vocab_size, dim, counts=counts_for(vocab_size), **layer.config.as_dict()).stored(storage_name)
        assert layer.layer_cost() == formula
        assert formula.params == layer.count_params(), (vocab_size, dim)
        assert formula.bytes_by_dtype == stored_bytes(layer), (vocab_size, dim)
        # Built straight in that storage (as loading does): the same weights.
        rebuilt = type(layer).from_config(layer.get_config())
        rebuilt.build((None,))
        assert [(w.name, w.shape, w.dtype) for w in rebuilt.weights] == [(w.name, w.shape, w.dtype) for w in layer.weights]


@pytest.mark.parametrize("name", TABLE_STRATEGIES)
def test_converted_lookups_stay_close(name):
    layer = make(name)
    before = vectors(layer)
    scale = np.abs(before).max()
    for storage_name, tolerance in (("float16", 2e-3), ("bfloat16", 2e-2), ("int8", 4e-2)):
        after = vectors(make(name).store_as(storage_name))
        assert after.dtype == np.float32
        error = np.abs(after - before).max() / scale
        assert 0 < error <= tolerance, (storage_name, error)


def test_int8_rows_are_off_by_at_most_half_a_step_and_half_precision_is_a_cast():
    layer = make("hash", num_rows=50)
    table = ops.convert_to_numpy(layer.embeddings).copy()
    assert (ops.convert_to_numpy(layer.rows(np.arange(VOCAB_SIZE))) == 3).any()
    table[3] = 0.0  # an all-zero row survives
    table[4] *= 100.0  # rows of very different ranges get their own scales
    layer.embeddings.assign(table)
    ids = np.arange(VOCAB_SIZE)
    rows = ops.convert_to_numpy(layer.rows(ids))
    for storage_name in ("float16", "bfloat16"):
        out = vectors(_with(table, storage_name))
        expected = ops.convert_to_numpy(ops.cast(ops.cast(table, storage_name), "float32"))[rows]
        np.testing.assert_array_equal(out, expected)
    converted = _with(table, "int8")
    np.testing.assert_allclose(converted.table_values("embeddings")[rows], vectors(converted), rtol=1e-6)
    error = np.abs(converted.table_values("embeddings") - table).max(axis=1)
    step = np.abs(table).max(axis=1) / storage.INT8_MAX
    assert (error <= step / 2 * (1 + 1e-5) + 1e-9).all() and error.max() > 0
    assert (converted.table_values("embeddings")[3] == 0).all()


def _with(table, storage_name):
    layer = make("hash", num_rows=50)
    layer.embeddings.assign(table)
    return layer.store_as(storage_name)


def test_dense_weights_stay_the_same_float32_variables():
    layer = make("mixed_dim", dims=[16, 8, 4, 2])
    projections = [p for p in layer.projections if p is not None]
    values = [ops.convert_to_numpy(p) for p in projections]
    layer.store_as("int8")
    assert [p for p in layer.projections if p is not None] == projections
    for projection, value in zip(projections, values):
        assert keras.backend.standardize_dtype(projection.dtype) == "float32" and projection.trainable
        np.testing.assert_array_equal(ops.convert_to_numpy(projection), value)
    assert all(keras.backend.standardize_dtype(t.dtype) == "int8" and not t.trainable for t in layer.tables)
    assert set(layer.table_names) == {f"block_{b}" for b in range(4)}


@pytest.mark.parametrize("storage_name, trainable", [("float16", True), ("bfloat16", True), ("int8", False)])
def test_which_tables_stay_trainable(storage_name, trainable):
    layer = make("qr").store_as(storage_name)
    assert [w.trainable for w in layer.weights if "scale" not in w.name] == [trainable] * 2
    assert all(keras.backend.standardize_dtype(t.dtype) == storage_name for t in layer.tables)


@pytest.mark.parametrize("name", TABLE_STRATEGIES)
@pytest.mark.parametrize("storage_name", ["int8", "bfloat16"])
def test_keras_file_round_trip_after_conversion(name, storage_name, tmp_path):
    layer = make(name).store_as(storage_name)
    inputs = keras.Input(shape=(), dtype="int32")
    model = keras.Model(inputs, layer(inputs))
    ids = np.array([0, 1, 2, 500, 999, 123], dtype=np.int32)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(ops.convert_to_numpy(model(ids)), ops.convert_to_numpy(loaded(ids)))
    reloaded = loaded.get_layer("emb")
    assert reloaded.storage == storage_name
    assert stored_bytes(reloaded) == stored_bytes(layer)


def test_keras_files_saved_before_storage_existed_still_load(tmp_path):
    # A float32 layer's weights are unchanged by this step; its config had no `storage`.
    layer = make("mixed_dim")
    inputs = keras.Input(shape=(), dtype="int32")
    model = keras.Model(inputs, layer(inputs))
    path, old = tmp_path / "new.keras", tmp_path / "old.keras"
    model.save(path)
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(old, "w") as target:
        for item in source.infolist():
            content = source.read(item.filename)
            if item.filename == "config.json":
                text = content.decode()
                assert '"storage": "float32"' in text
                content = text.replace(', "storage": "float32"', "").replace('"storage": "float32", ', "").encode()
                assert b'"storage"' not in content
            target.writestr(item, content)
    loaded = keras.saving.load_model(old)
    ids = np.arange(VOCAB_SIZE, dtype=np.int32)
    np.testing.assert_array_equal(ops.convert_to_numpy(model(ids)), ops.convert_to_numpy(loaded(ids)))
    assert loaded.get_layer("emb").storage == "float32"


def test_config_carries_the_storage():
    layer = make("hash").store_as("float16")
    config = layer.get_config()
    json.dumps(config)
    assert config["storage"] == "float16"
    assert type(layer).from_config(config).get_config() == config


def test_traced_lookups_read_the_converted_tables():
    # hash fuses its lookup (XLA) inside a tf.function: the compiled function must not keep the old table.
    layer = make("hash", num_rows=50)
    ids = tf.constant(np.arange(VOCAB_SIZE), dtype=tf.int32)
    tf.function(lambda i: layer(i))(ids)
    layer.store_as("int8")
    eager = vectors(layer)
    np.testing.assert_array_equal(ops.convert_to_numpy(tf.function(lambda i: layer(i))(ids)), eager)


def test_store_as_errors_are_one_line():
    with pytest.raises(ValueError, match=r"^HashEmbedding: invalid `storage`: 'int4'. Use one of: float32, float16, bfloat16, int8.$"):
        make("hash").store_as("int4")
    with pytest.raises(ValueError, match=r"^HashEmbedding: invalid `storage`: 'fp8'. Use one of: "):
        strategies.get("hash")(100, 8, storage="fp8")
    with pytest.raises(ValueError, match=r"^DHEEmbedding: has no tables to store as 'int8'; its weights \(kernel_0, .*\) are dense"):
        make("dhe").store_as("int8")
    with pytest.raises(ValueError, match=r"^QuantizedEmbedding: invalid `storage`: 'float32'. Use one of: int8, float16, bfloat16.$"):
        make("quantized").store_as("float32")
    unbuilt = strategies.get("full")(10, 4)
    if not unbuilt.built:
        with pytest.raises(ValueError, match="build \\(and train\\) the layer before `store_as`"):
            unbuilt.store_as("int8")


def test_int8_converts_back_to_its_dequantized_float_table():
    layer = make("qr").store_as("int8")
    int8 = vectors(layer)
    layer.store_as("float32")
    assert all(keras.backend.standardize_dtype(t.dtype) == "float32" for t in layer.tables)
    np.testing.assert_allclose(vectors(layer), int8, rtol=1e-6, atol=1e-9)


def test_fresh_int8_tables_are_seeded_quantized_initial_tables():
    # Uniform tables are drawn straight as int8; tt's Gaussian cores are drawn, then quantized.
    for name in ("hash", "tt"):
        first, second = (vectors(make(name, storage="int8")) for _ in range(2))
        np.testing.assert_array_equal(first, second)
        assert np.std(first) > 0.01
    assert np.abs(vectors(make("hash", storage="int8"))).max() <= 0.05 + 1e-7


def test_model_quantize_int8_reaches_every_strategy_layer():
    # Keras's own entry point: Model.quantize("int8") calls each layer's quantize.
    keras.utils.set_random_seed(0)
    user = strategies.build("hash", 300, 8, layer_name="user_embedding")
    item = strategies.build("qr", 200, 8, layer_name="item_embedding")
    model = rating_model(user, item)
    inputs = {"user": np.arange(200, dtype=np.int32), "item": np.arange(200, dtype=np.int32)}
    before = ops.convert_to_numpy(model(inputs))
    with pytest.warns(UserWarning):  # Keras warns about the layers that cannot quantize
        model.quantize("int8")
    assert user.storage == item.storage == "int8"
    np.testing.assert_allclose(ops.convert_to_numpy(model(inputs)), before, atol=1e-3)


def test_stored_copy_leaves_the_original_as_it_is():
    layer = make("mixed_dim")
    before = vectors(layer)
    copy = storage.stored_copy(layer, "int8")
    assert layer.storage == "float32" and copy.storage == "int8"
    np.testing.assert_array_equal(vectors(layer), before)
    np.testing.assert_array_equal(copy.ranks(), layer.ranks())  # the index state travels too
    assert np.abs(vectors(copy) - before).max() < 0.01


def test_fit_pair_evaluates_the_trained_pair_in_each_storage():
    ratings = data.planted_ratings(300, 200, 6000, rank=4, noise_sigma=0.1, seed=0)
    train_idx, val_idx = data.random_split(len(ratings), 0.85, seed=0)
    model, result = presets.fit_pair(presets.EXAMPLE, ratings, train_idx, val_idx, dim=16, epochs=2, batch_size=64,
                                     storages=presets.STORAGE_STEPS)
    by_storage = result.val_mse_by_storage
    assert list(by_storage) == ["float32", "float16", "bfloat16", "int8"]
    assert abs(by_storage["float32"] - result.val_mse[-1]) < 1e-5  # the trained pair, evaluated again
    for storage_name in CONVERSIONS:
        assert by_storage[storage_name] != by_storage["float32"]  # really converted
        assert abs(by_storage[storage_name] - by_storage["float32"]) < 0.01
    sizes = result.param_bytes_by_storage
    assert sizes["float32"] == sum(stored_bytes(model.get_layer(n))["float32"] for n in ("user_embedding", "item_embedding"))
    assert sizes["int8"] < sizes["float16"] == sizes["bfloat16"] < sizes["float32"]
    assert model.get_layer("user_embedding").storage == "float32"  # the returned model is the trained one
    # Pairs whose layers cannot be stored say why instead.
    int8 = next(p for p in presets.accuracy_pairs("quantized", 300, 200) if p.preset == "int8")
    model, result = presets.fit_pair(int8, ratings, train_idx, val_idx, dim=16, epochs=1, batch_size=64)
    assert result.val_mse_by_storage == {}
    assert presets.evaluate_by_storage(model, ratings, val_idx).skipped == "user_embedding is already stored as int8."

