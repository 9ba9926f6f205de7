import keras
import numpy as np
import pytest

from membed import strategies
from membed.strategies.mixed_dim import MixedDimEmbedding, power_law_dims


def zipf_counts(vocab_size, seed=0):
    return np.random.default_rng(seed).zipf(1.4, vocab_size)


def test_each_id_is_in_its_frequency_block():
    counts = zipf_counts(3706)
    layer = strategies.build("mixed_dim", 3706, 64, boundaries=[400, 1700], dims=[64, 32, 16], counts=counts)
    rank = layer.ranks()
    order = np.argsort(-counts, kind="stable")
    assert (rank[order] == np.arange(3706)).all()
    top, bottom = order[0], order[-1]
    assert rank[top] == 0 and rank[bottom] == 3705
    # Every id of block b has a count >= every id of block b+1.
    blocks = np.searchsorted([400, 1700], rank, side="right")
    for b in range(2):
        assert counts[blocks == b].min() >= counts[blocks == b + 1].max()


def test_lookup_reads_the_id_row_of_its_own_block():
    counts = zipf_counts(100)
    layer = strategies.build("mixed_dim", 100, 8, boundaries=[10, 40], dims=[8, 4, 2], counts=counts)
    ids = np.arange(100)
    out = keras.ops.convert_to_numpy(layer(ids))
    rank = layer.ranks()
    tables = [keras.ops.convert_to_numpy(t) for t in layer.tables]
    projections = [None if p is None else keras.ops.convert_to_numpy(p) for p in layer.projections]
    starts = [0, 10, 40]
    for i in ids:
        b = int(np.searchsorted([10, 40], rank[i], side="right"))
        row = tables[b][rank[i] - starts[b]]
        expected = row if projections[b] is None else row @ projections[b]
        np.testing.assert_allclose(out[i], expected, rtol=1e-5, atol=1e-6)


class GatherCounter:
    def __init__(self, layer):
        self.rows = 0
        original = layer._gather

        def counting(table, rows):
            self.rows += int(keras.ops.shape(rows)[0])
            return original(table, rows)

        layer._gather = counting


@pytest.mark.parametrize("num_blocks", [3, 8])
def test_mixed_dim_gathers_one_row_per_id_the_example_k(num_blocks):
    vocab_size, batch = 5000, 512
    counts = zipf_counts(vocab_size)
    boundaries = list(np.linspace(0, vocab_size, num_blocks + 1, dtype=int)[1:-1])
    dims = [64 // 2 ** min(b, 5) for b in range(num_blocks)]
    ids = np.random.default_rng(1).integers(0, vocab_size, batch)

    ours = strategies.build("mixed_dim", vocab_size, 64, boundaries=boundaries, dims=dims, counts=counts)
    ours_counter = GatherCounter(ours)
    ours(ids)
    assert ours_counter.rows == batch

    example = strategies.build("example_md", vocab_size, 64, boundaries=boundaries, dims=dims, counts=counts)
    example_counter = GatherCounter(example)
    example(ids)
    assert example_counter.rows == num_blocks * batch


def test_power_law_rule():
    frequencies = np.array([100.0, 10.0, 1.0])
    assert power_law_dims(frequencies, 64, 0.0, False) == [64, 64, 64]
    assert power_law_dims(frequencies, 64, 0.5, False) == [64, round(64 * 0.1**0.5), round(64 * 0.01**0.5)]
    assert power_law_dims(frequencies, 64, 0.5, True) == [64, 16, 8]
    assert power_law_dims(frequencies, 64, 1.0, False) == [64, 6, 1]


def test_budget_solves_alpha_within_budget():
    counts = zipf_counts(10000)
    for budget in (40000, 100000, 300000):
        layer = strategies.build("mixed_dim", 10000, 64, counts=counts, budget=budget)
        assert layer.count_params() <= budget
        assert layer.dims[0] == 64  # the most popular block keeps the base dim
        assert layer.dims == sorted(layer.dims, reverse=True)
    with pytest.raises(ValueError, match="below the smallest mixed-dim size"):
        strategies.build("mixed_dim", 10000, 64, counts=counts, budget=1000)


def test_config_keeps_resolved_dims():
    layer = strategies.build("mixed_dim", 2000, 32, counts=zipf_counts(2000), alpha=0.5)
    clone = MixedDimEmbedding.from_config(layer.get_config())
    assert clone.dims == layer.dims and clone.boundaries == layer.boundaries


@pytest.mark.parametrize(
    "options, message",
    [
        ({"alpha": 1.5}, "invalid `alpha`: 1.5"),
        ({"boundaries": [50, 10]}, "invalid `boundaries`"),
        ({"boundaries": [10, 50], "dims": [8, 4]}, "`dims` has 2 values"),
        ({"boundaries": [10], "dims": [8, 99]}, "invalid `dims`"),
        ({"num_blocks": 0}, "invalid `num_blocks`"),
    ],
)
def test_bad_options(options, message):
    with pytest.raises(ValueError, match=message):
        strategies.build("mixed_dim", 100, 8, **options)


def test_counts_must_match_vocab():
    with pytest.raises(ValueError, match=r"one entry per id, shape \(100,\)"):
        strategies.build("mixed_dim", 100, 8, counts=np.ones(99))


def test_presets_stay_within_budget():
    counts = zipf_counts(100_000)
    for compression in (5, 20):
        options = MixedDimEmbedding.options_for_compression(100_000, 64, compression)
        params = MixedDimEmbedding.cost(100_000, 64, counts=counts, **options).params
        assert compression <= 100_000 * 64 / params < compression * 1.5
    # Every id keeps at least one float, so dim 64 caps the compression below 64x.
    with pytest.raises(ValueError, match="cannot reach 100x"):
        MixedDimEmbedding.options_for_compression(100_000, 64, 100)


def test_projection_bias_matches_the_examples_block_layout():
    # With biases and the example's blocks, mixed_dim holds the example's parameters
    # less its three unused out-of-vocabulary rows (64 + 32 + 16).
    layer = strategies.build("mixed_dim", 3706, 64, boundaries=[400, 1700], dims=[64, 32, 16],
                             projection_bias=True)
    assert layer.count_params() == 102_608 - (64 + 32 + 16)
    assert layer.layer_cost().params == layer.count_params()
    assert [b is None for b in layer.biases] == [True, False, False]
