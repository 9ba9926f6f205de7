"""membed.measure: sizes, id sources, and peak memory measured in a fresh process per case."""

import json
import signal

import numpy as np
import pytest

from membed import measure, strategies


def test_case_sizes_of_a_full_table():
    sizes = measure.case_sizes("full", 1000, 64)
    assert sizes.params == 64_000
    assert sizes.param_bytes == 256_000
    assert sizes.index_bytes == 0
    # float32 parameters + two float32 Adam slots per parameter
    assert sizes.train_state_bytes == 3 * 256_000
    assert sizes.compression == 1.0


def test_case_sizes_follow_the_cost_formula_and_options():
    sizes = measure.case_sizes("qr", 10_000, 64, {"num_buckets": 100})
    assert sizes.params == strategies.cost("qr", 10_000, 64, num_buckets=100).params == 2 * 100 * 64
    assert sizes.compression == pytest.approx(10_000 * 64 / sizes.params)
    with pytest.raises(ValueError, match="num_buckets"):
        measure.case_sizes("qr", 10_000, 64, {"num_buckets": 0})


def test_compression_is_by_bytes():
    # int8 keeps a parameter per value (plus a float32 scale per row) at a quarter of the bytes.
    sizes = measure.case_sizes("quantized", 10_000, 64, {"storage": "int8"})
    assert sizes.params >= 10_000 * 64
    assert sizes.compression == pytest.approx(4 * 10_000 * 64 / (sizes.param_bytes + sizes.index_bytes))
    assert sizes.compression > 3.5


def test_train_state_counts_adam_slots_only_for_trainable_parameters():
    assert measure.train_state_bytes(param_bytes=68_000, trainable_params=0, index_bytes=10) == 68_010
    assert measure.train_state_bytes(param_bytes=400, trainable_params=100) == 400 + 8 * 100


def test_memory_shortfall_names_the_bytes():
    assert measure.memory_shortfall(1024) is None
    reason = measure.memory_shortfall(10**18)
    assert "GB" in reason and "available" in reason
    assert measure.estimated_peak_bytes(1000, 10, 4) > 1000


@pytest.mark.parametrize("vocab", ["synthetic-zipf", "synthetic-uniform"])
def test_synthetic_sources_are_seeded_and_in_range(vocab):
    source = measure.IdSource(vocab, 10**8)
    first, again, other = source.sample(4096, seed=3), source.sample(4096, seed=3), source.sample(4096, seed=4)
    assert first.min() >= 0 and first.max() < 10**8
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    small = measure.IdSource(vocab, 1000)
    assert small.counts().shape == (1000,)


def test_zipf_counts_put_low_ids_first():
    counts = measure.IdSource("synthetic-zipf", 1000).counts()
    assert counts[0] > counts[10] > counts[999]


def test_movielens_source_uses_users_or_items(movielens_dir, monkeypatch):
    monkeypatch.setenv("MEMBED_DATA_DIR", str(movielens_dir))
    users = measure.IdSource.movielens("ml-100k", "users")
    items = measure.IdSource.movielens("ml-100k", "items")
    assert (users.vocab_size, items.vocab_size) == (943, 1682)
    assert items.sample(1000, seed=0).max() < 1682
    assert users.counts().sum() == 100_000
    assert measure.IdSource.from_dict(json.loads(json.dumps(users.as_dict()))) == users


def test_id_source_rejects_a_bad_side():
    with pytest.raises(ValueError, match="side"):
        measure.IdSource("ml-100k", 943, side="movies")
    with pytest.raises(ValueError, match="synthetic"):
        measure.IdSource("synthetic-zipf", 943, side="users")


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"strategy": "full", "vocab_size": 10}, "missing key 'dim'"),
        ({"strategy": "nope", "vocab_size": 10, "dim": 4}, "Unknown strategy 'nope'"),
        ({"strategy": "full", "vocab_size": 0, "dim": 4}, "vocab_size"),
        ({"strategy": "full", "vocab_size": 10, "dim": 4, "colour": 1}, "unknown key 'colour'"),
    ],
)
def test_check_spec_names_what_is_wrong(spec, message):
    with pytest.raises(ValueError, match=message):
        measure.check_spec(spec)


def test_cli_rejects_a_malformed_spec(capsys):
    assert measure.main(["{not json"]) == 2
    assert "membed.measure" in capsys.readouterr().err


def test_death_reason_names_the_signal():
    assert "SIGKILL" in measure._death_reason(-signal.SIGKILL)
    assert "out-of-memory" in measure._death_reason(-signal.SIGKILL)
    assert "code 3" in measure._death_reason(3)


def _spec(strategy, vocab_size, **more):
    return {"strategy": strategy, "vocab_size": vocab_size, "dim": 64, "batch_size": 1024, **more}


def test_a_larger_table_measures_its_extra_bytes():
    small = measure.measure_isolated(_spec("full", 10_000), timeout_s=300)
    large = measure.measure_isolated(_spec("full", 1_000_000), timeout_s=300)
    assert small["status"] == large["status"] == "ok", (small["reason"], large["reason"])
    assert large["allocator"] is None, large["allocator"]
    analytic = 4 * (1_000_000 - 10_000) * 64
    difference = large["peak_alloc_bytes_lookup"] - small["peak_alloc_bytes_lookup"]
    assert abs(difference - analytic) <= 0.05 * analytic, (difference, analytic)
    assert large["params"] == 64_000_000 and large["param_bytes"] == 256_000_000
    # The training step adds two Adam slots and a gradient on top of the table.
    assert large["peak_alloc_bytes_train"] >= 3 * large["param_bytes"]
    assert large["peak_rss_bytes_lookup"] > analytic
    assert large["peak_rss_bytes_train"] >= large["peak_rss_bytes_lookup"]


def test_a_case_that_raises_is_recorded_as_failed_and_the_next_one_runs():
    broken = measure.measure_isolated(_spec("qr", 10_000, options={"num_buckets": 0}), timeout_s=300)
    assert broken["status"] == "failed"
    assert "num_buckets" in broken["reason"]
    assert broken["peak_alloc_bytes_lookup"] is None
    after = measure.measure_isolated(_spec("qr", 10_000), timeout_s=300)
    assert after["status"] == "ok", after["reason"]
    assert after["params"] == strategies.cost("qr", 10_000, 64).params
    assert after["peak_alloc_bytes_lookup"] > 4 * after["params"]


def test_a_case_that_hangs_is_killed_and_recorded():
    result = measure.measure_isolated(_spec("full", 1_000_000), timeout_s=0.05)
    assert result["status"] == "failed"
    assert result["reason"] == "timed out after 0.05 s"


def test_untrainable_layers_have_no_training_peak():
    result = measure.measure_isolated(_spec("quantized", 1000), timeout_s=300)
    assert result["status"] == "ok", result["reason"]
    assert result["trainable_params"] == 0
    assert result["peak_alloc_bytes_train"] is None and result["peak_rss_bytes_train"] is None
    assert result["peak_alloc_bytes_lookup"] > 0
