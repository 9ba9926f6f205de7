"""membed.measure.sizes: closed-form sizes, the one reading of a built layer's sizes, and the arithmetic they share."""

import keras
import numpy as np
import pytest

from membed import strategies
from membed.measure import sizes
from membed.measure.sizes import CaseSizes, LayerSizes, case_sizes, layer_sizes


@pytest.mark.parametrize(
    "strategy, vocab_size, options",
    [("full", 1000, {}), ("qr", 10_000, {"num_buckets": 100}), ("hash", 5000, {}),
     ("quantized", 1000, {"storage": "int8"})],
)
def test_a_built_layer_has_the_sizes_of_its_cost_formula(strategy, vocab_size, options):
    layer = strategies.build(strategy, vocab_size, 32, **options)
    if not layer.built:
        layer.build((None,))
    built = layer_sizes(layer)
    assert built.params == layer.count_params()
    assert built.index_bytes == layer.index_bytes
    formula = case_sizes(strategy, vocab_size, 32, options, trainable_params=built.trainable_params)
    assert built.as_case(vocab_size, 32) == formula


def test_param_bytes_count_each_weight_at_its_storage_dtype():
    built = layer_sizes(strategies.build("quantized", 1000, 64, storage="int8"))
    # int8 values plus a float32 scale per row; nothing is trainable.
    assert built == LayerSizes(params=1000 * 64 + 1000, trainable_params=0, param_bytes=1000 * 64 + 4 * 1000)
    assert built.train_state_bytes == built.param_bytes


def test_any_keras_layer_can_be_sized():
    dense = keras.layers.Dense(3)
    dense.build((None, 4))
    assert layer_sizes(dense) == LayerSizes(params=15, trainable_params=15, param_bytes=60, index_bytes=0)
    with pytest.raises(ValueError, match="not built"):
        layer_sizes(keras.layers.Dense(3))


def test_sizes_add_up_and_compress_against_the_summed_vocabulary():
    users, items = LayerSizes.float32(943 * 8), LayerSizes(100, 50, 400, 20)
    both = users + items
    assert both == LayerSizes(943 * 8 + 100, 943 * 8 + 50, 4 * 943 * 8 + 400, 20)
    case = both.as_case(vocab_size=943 + 1682, dim=8)
    assert case.compression == pytest.approx(4 * (943 + 1682) * 8 / (4 * 943 * 8 + 400 + 20))
    assert case.train_state_bytes == both.param_bytes + 8 * both.trainable_params + 20


def test_a_bare_table_compresses_by_its_share_of_the_vocabulary():
    case = LayerSizes.float32(100 * 64).as_case(vocab_size=1000, dim=64)
    assert case == CaseSizes(params=6400, param_bytes=25_600, index_bytes=0, train_state_bytes=76_800,
                             compression=10.0)


def test_from_record_reads_a_result_and_names_a_missing_field():
    record = {"params": 10, "trainable_params": 4, "param_bytes": 40, "index_bytes": 2, "peak": 9}
    assert LayerSizes.from_record(record) == LayerSizes(10, 4, 40, 2)
    with pytest.raises(ValueError, match="missing key 'trainable_params'"):
        LayerSizes.from_record({"params": 10, "param_bytes": 40, "index_bytes": 0})


def test_case_sizes_counts_untrainable_parameters_only_when_told():
    every = case_sizes("full", 1000, 64)
    none = case_sizes("full", 1000, 64, trainable_params=0)
    assert every.train_state_bytes == 3 * 256_000
    assert none.train_state_bytes == 256_000
    assert every.as_dict() == {"params": 64_000, "param_bytes": 256_000, "index_bytes": 0,
                               "train_state_bytes": 768_000, "compression": 1.0}


def test_peak_estimate_grows_with_the_state_and_the_batch():
    base = sizes.estimated_peak_bytes(768_000, 4096, 64)
    assert base == int(sizes.SAFETY_FACTOR * (768_000 + 4 * sizes.ACTIVATION_VALUES_PER_OUTPUT * 4096 * 64))
    assert sizes.estimated_peak_bytes(2 * 768_000, 4096, 64) > base
    assert sizes.estimated_peak_bytes(768_000, 8192, 64) > base


def test_jsonable_and_layer_options():
    assert sizes.jsonable({"dims": (64, np.int64(32)), 3: np.float32(0.5)}) == {"dims": [64, 32], "3": 0.5}
    options = sizes.layer_options(strategies.build("qr", 10_000, 64))
    assert options["num_buckets"] == 100 and isinstance(options["num_buckets"], int)
