"""The contract every registered strategy keeps (see membed/strategies/base.py)."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from membed import strategies
from membed.strategies import InvalidIdError

VOCAB_SIZES = (2, 37, 1000, 5000)
DIMS = (4, 17, 64)


def counts_for(vocab_size: int) -> np.ndarray:
    return np.random.default_rng(vocab_size).zipf(1.3, vocab_size).astype(np.int64)


def make(name: str, vocab_size: int, dim: int, layer_name: str | None = None):
    return strategies.build(name, vocab_size, dim, counts=counts_for(vocab_size), layer_name=layer_name)


@pytest.mark.parametrize("name", strategies.names())
def test_closed_form_count_equals_built_count(name):
    cls = strategies.get(name)
    for vocab_size in VOCAB_SIZES:
        for dim in DIMS:
            layer = make(name, vocab_size, dim)
            predicted = layer.layer_cost()
            assert predicted.params == layer.count_params(), (vocab_size, dim)
            # The class formula from the resolved options alone, before building.
            from_options = cls.cost(vocab_size, dim, **{k: getattr(layer, k) for k in cls.options})
            assert from_options == predicted
            assert predicted.index_bytes == layer.index_bytes
            assert predicted.param_bytes >= predicted.params  # at least a byte per scalar


@pytest.mark.parametrize("name", strategies.names())
def test_output_shape_and_finite(name):
    layer = make(name, 1000, 17)
    ids = np.array([[0, 999], [5, 17], [400, 3]])
    out = keras.ops.convert_to_numpy(layer(ids))
    assert out.shape == (3, 2, 17)
    assert np.isfinite(out).all()
    flat = keras.ops.convert_to_numpy(layer(ids.reshape(-1)))
    np.testing.assert_allclose(flat.reshape(3, 2, 17), out, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", strategies.names())
def test_config_round_trip(name):
    layer = make(name, 1000, 17, layer_name="emb")
    config = layer.get_config()
    json.dumps(config)  # configs must be JSON-serialisable to be saved
    clone = type(layer).from_config(config)
    assert clone.get_config() == config


@pytest.mark.parametrize("name", strategies.names())
def test_keras_file_round_trip(name, tmp_path):
    layer = make(name, 1000, 17, layer_name="emb")
    inputs = keras.Input(shape=(), dtype="int32")
    model = keras.Model(inputs, layer(inputs))
    ids = np.array([0, 1, 2, 500, 999, 123], dtype=np.int32)
    before = keras.ops.convert_to_numpy(model(ids))
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    after = keras.ops.convert_to_numpy(loaded(ids))
    np.testing.assert_array_equal(before, after)
    assert loaded.count_params() == model.count_params()


@pytest.mark.parametrize("name", strategies.names())
@pytest.mark.parametrize("bad_id", [-1, 1000, 10**6])
def test_out_of_range_ids_raise_eagerly(name, bad_id):
    layer = make(name, 1000, 8, layer_name="emb")
    with pytest.raises(InvalidIdError) as error:
        layer(np.array([3, bad_id, 7]))
    message = str(error.value)
    assert "Layer emb " in message and f"id {bad_id} " in message and "vocab_size=1000" in message


@pytest.mark.parametrize("name", strategies.names())
def test_out_of_range_ids_raise_in_tf_function(name):
    layer = make(name, 1000, 8, layer_name="emb")
    lookup = tf.function(lambda ids: layer(ids))
    lookup(tf.constant([1, 2], dtype=tf.int32))  # traces with valid ids
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        lookup(tf.constant([1, 1000], dtype=tf.int32))
    message = str(error.value)
    assert "Layer emb " in message and "out-of-range id] [1000]" in message and "vocab_size=1000" in message
    assert "indices" not in message.lower().split("assertion failed")[0]  # not TF's gather message


# int64 ids that an int32 cast would wrap into [0, V): 2**32 + 5 -> 5, -2**32 -> 0.
WRAPPING_IDS = (2**32, 2**32 + 5, 2**40, -(2**32))


@pytest.mark.parametrize("name", strategies.names())
@pytest.mark.parametrize("bad_id", WRAPPING_IDS)
def test_ids_beyond_int32_raise_eagerly(name, bad_id):
    layer = make(name, 1000, 8, layer_name="emb")
    with pytest.raises(InvalidIdError, match=f"id {bad_id} is out of range"):
        layer(np.array([3, bad_id], dtype=np.int64))


@pytest.mark.parametrize("name", strategies.names())
def test_ids_beyond_int32_raise_in_tf_function(name):
    layer = make(name, 1000, 8, layer_name="emb")
    lookup = tf.function(lambda ids: layer(ids))
    lookup(tf.constant([1, 2], dtype=tf.int64))  # traces with valid ids
    for bad_id in WRAPPING_IDS:
        with pytest.raises(tf.errors.InvalidArgumentError, match=rf"out-of-range id\] \[{bad_id}\]"):
            lookup(tf.constant([1, bad_id], dtype=tf.int64))


@pytest.mark.parametrize("name", strategies.names())
def test_unknown_option_is_a_clear_error(name):
    with pytest.raises(ValueError, match="Unknown option 'no_such_option'.*Valid options"):
        strategies.build(name, 100, 8, no_such_option=1)


def test_unknown_strategy_lists_the_valid_ones():
    with pytest.raises(ValueError, match="Unknown strategy 'nope'. Use one of: .*full"):
        strategies.get("nope")


@pytest.mark.parametrize("name", strategies.names())
def test_every_strategy_is_documented(name):
    cls = strategies.get(name)
    assert cls.summary and cls.__doc__
    for option in cls.options.values():
        assert option.help


def test_parse_spec_reads_lists_and_scalars():
    name, options = strategies.parse_spec("mixed_dim:boundaries=400,1700,dims=64,32,16,alpha=0.5")
    assert name == "mixed_dim"
    assert options == {"boundaries": "400,1700", "dims": "64,32,16", "alpha": "0.5"}
    layer = strategies.build("mixed_dim", 3706, 64, **options)
    assert layer.boundaries == [400, 1700] and layer.dims == [64, 32, 16]
    with pytest.raises(ValueError, match="Malformed"):
        strategies.parse_spec("qr:50")
