import math

import keras
import numpy as np
import pytest

from membed import strategies
from membed.strategies.qr import QREmbedding


@pytest.mark.parametrize("combiner", ["mult", "add", "concat"])
@pytest.mark.parametrize("partitions", [2, 3])
def test_every_id_gets_a_distinct_vector(combiner, partitions):
    vocab_size = 943
    layer = strategies.build("qr", vocab_size, 16, combiner=combiner, partitions=partitions)
    vectors = keras.ops.convert_to_numpy(layer(np.arange(vocab_size)))
    assert len(np.unique(vectors.round(7), axis=0)) == vocab_size


def test_quotient_table_covers_every_id_where_the_example_crashes():
    # ml-100k users: 943 ids, 18 buckets -> quotient up to 52, beyond an 18-row table.
    layer = strategies.build("qr", 943, 8, num_buckets=18)
    assert layer.table_rows == [18, math.ceil(943 / 18)] == [18, 53]
    out = keras.ops.convert_to_numpy(layer(np.array([942])))
    assert np.abs(out).sum() > 0


def test_default_buckets_is_ceil_sqrt():
    assert strategies.build("qr", 1000, 8).num_buckets == 32
    assert strategies.build("qr", 1024, 8).num_buckets == 32
    assert strategies.build("qr", 1000, 8, partitions=3).num_buckets == 10


def test_cost_by_hand():
    assert QREmbedding.cost(6040, 64, num_buckets=120).params == (120 + 51) * 64
    # concat splits the dim: 17 -> 9 + 8
    assert QREmbedding.cost(100, 17, num_buckets=10, combiner="concat").params == 10 * 9 + 10 * 8
    assert QREmbedding.cost(1000, 4, num_buckets=10, partitions=3).params == (10 + 10 + 10) * 4


@pytest.mark.parametrize(
    "options, message",
    [
        ({"combiner": "max"}, "Invalid `combiner`|invalid `combiner`: 'max'. Use one of: mult, add, concat"),
        ({"partitions": 1}, "invalid `partitions`: 1"),
        ({"num_buckets": 0}, "invalid `num_buckets`: 0"),
        ({"num_buckets": 101}, "must be <= vocab_size"),
    ],
)
def test_bad_options(options, message):
    with pytest.raises(ValueError, match=message):
        strategies.build("qr", 100, 8, **options)


def test_tables_start_like_a_default_keras_table():
    layer = strategies.build("qr", 10000, 64)
    for table in layer.tables:
        values = keras.ops.convert_to_numpy(table)
        assert np.abs(values).max() <= 0.05 and values.std() > 0.02


def test_presets_reach_their_compression():
    for compression in (5, 20, 100):
        options = QREmbedding.options_for_compression(100_000, 64, compression)
        ratio = 100_000 * 64 / QREmbedding.cost(100_000, 64, **options).params
        assert compression <= ratio < compression * 1.2
    with pytest.raises(ValueError, match="cannot reach 100x"):
        QREmbedding.options_for_compression(943, 64, 100)
