"""The example's layers: its parameter counts, and its behaviour kept on purpose."""

import keras
import numpy as np
import pytest

from membed import strategies
from membed.strategies.example_md import example_boundaries

# (users, items, baseline params, memory-efficient params) from the issue / the example.
EXPECTED = [
    ("ml-1m", 6040, 3706, 623_744, 117_968),
    ("ml-100k", 943, 1682, 168_000, 52_944),
    ("ml-latest-small", 610, 9724, 661_376, 267_904),
]


@pytest.mark.parametrize("dataset, users, items, baseline, efficient", EXPECTED)
def test_example_parameter_counts(dataset, users, items, baseline, efficient):
    built = [strategies.build(n, v, 64) for n, v in (("full", users), ("full", items))]
    assert sum(layer.count_params() for layer in built) == baseline
    user = strategies.build("example_qr", users, 64)
    item = strategies.build("example_md", items, 64)
    assert user.count_params() + item.count_params() == efficient


def test_ml1m_layers_match_the_example_exactly():
    user = strategies.build("example_qr", 6040, 64)
    assert user.num_buckets == 120
    assert [tuple(w.shape) for w in user.weights] == [(120, 64), (120, 64)]
    item = strategies.build("example_md", 3706, 64)
    assert item.boundaries == [400, 1700] and item.dims == [64, 32, 16]
    assert [tuple(t.shape) for t in item.tables] == [(401, 64), (1301, 32), (2007, 16)]
    assert item.count_params() == 102_608


def test_scaled_boundaries():
    assert example_boundaries(1682) == [182, 772]
    assert example_boundaries(9724) == [1050, 4461]


def test_example_qr_quotient_table_is_widened_to_avoid_the_crash():
    layer = strategies.build("example_qr", 943, 8)
    assert layer.num_buckets == 18
    assert layer.q_embeddings.shape[0] == 53
    assert np.isfinite(keras.ops.convert_to_numpy(layer(np.arange(943)))).all()


def test_example_md_equals_a_masked_sum_over_blocks():
    counts = np.random.default_rng(0).zipf(1.5, 50)
    layer = strategies.build("example_md", 50, 8, boundaries=[5, 20], dims=[8, 4, 2], counts=counts)
    rank = keras.ops.convert_to_numpy(layer.index("rank"))
    out = keras.ops.convert_to_numpy(layer(np.arange(50)))
    for i in range(50):
        b = int(np.searchsorted([5, 20], rank[i], side="right"))
        start = [0, 5, 20][b]
        row = keras.ops.convert_to_numpy(layer.tables[b])[rank[i] - start + 1]  # row 0 is the OOV row
        if layer.kernels[b] is not None:
            row = row @ keras.ops.convert_to_numpy(layer.kernels[b]) + keras.ops.convert_to_numpy(layer.biases[b])
        np.testing.assert_allclose(out[i], row, rtol=1e-5, atol=1e-6)
