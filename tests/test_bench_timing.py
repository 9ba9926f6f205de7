"""The paired timing's extra numbers: np.take floor, per-id cost, call floor, per-round ratios, the amortised loop."""

import json

import numpy as np
import pytest

from analysis import schema
from bench import harness, steps
from bench_runs import run_bench
from membed import strategies

TIMED_FIELDS = ("gather_ratio_rounds", "floor_ratio", "ns_per_id", "call_floor_ns")
AMORTISED_FIELDS = ("amortised_gather_ratio", "amortised_ns_per_id", "amortised_batches", "amortised_floor_share")


def test_the_amortised_loop_runs_the_step_once_per_batch():
    layer = strategies.build("full", 100, 8)
    seen = []

    def step(ids):
        seen.append(ids.shape)  # traced once, for the loop's body
        return layer(ids) + 1.0

    loop = steps.amortised(step, batches=3)
    stacked = np.array([[0, 1], [2, 3], [4, 5]], dtype="int64")
    # The sum of each batch's first output value: every batch went through the step.
    expected = sum(float(layer(ids).numpy()[0, 0]) + 1.0 for ids in stacked)
    assert float(loop(stacked)) == pytest.approx(expected, rel=1e-6)
    # The warm-up count runs the same graph over the first batch only: no second trace.
    assert float(loop(stacked, 1)) == pytest.approx(float(layer(stacked[0]).numpy()[0, 0]) + 1.0, rel=1e-6)
    assert seen == [(2,)]


@pytest.mark.parametrize("bad", [0, -2, 1.5, True])
def test_the_amortised_loop_refuses_a_bad_batch_count(bad):
    with pytest.raises(ValueError, match=r"Invalid `batches`: .*Use an int >= 1"):
        steps.amortised(lambda ids: ids, batches=bad)


def test_a_pairing_writes_declared_fields():
    pairing = harness.Pairing(gather_ratio=1.2, floor_ratio=8.0, ns_per_id=100.0, call_floor_ns=2e5,
                              gather_ratio_rounds=[1.1, 1.2, 1.3])
    record = pairing.as_record()
    assert set(record) == {"gather_ratio", *TIMED_FIELDS}
    schema.check_record(record)
    assert all(schema.FIELD[name].accepts(value) for name, value in record.items())


@pytest.fixture(scope="module")
def timed_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("timing")
    out = tmp_path / "out.json"
    completed = run_bench(
        tmp_path, "--benchmark-only", "--strategies", "full,qr,tt", "--vocab-sizes", "1000",
        "--datasets", "synthetic-zipf", "--optimizers", "adam", "-k", "lookup or train_step",
        "--benchmark-json", str(out),
    )
    assert out.exists(), completed.stdout[-3000:] + completed.stderr[-3000:]
    return {entry["extra_info"]["case"]: entry for entry in json.loads(out.read_text())["benchmarks"]}


@pytest.mark.parametrize("suite", ["lookup", "train_step"])
def test_paired_cases_record_the_floor_and_the_rounds(timed_run, suite):
    for strategy in ("full", "qr"):
        entry = timed_run[f"{suite}/{strategy}/synthetic-zipf/1000/64"]
        info, stats = entry["extra_info"], entry["stats"]
        assert info["status"] == "ok"
        assert info["floor_ratio"] > 0 and info["call_floor_ns"] > 0
        # One ratio per timed round; every round's case >= min ratio x its gather, so the medians' ratio is too.
        rounds = info["gather_ratio_rounds"]
        assert len(rounds) == stats["rounds"] and all(ratio > 0 for ratio in rounds)
        assert min(rounds) <= info["gather_ratio"] * 1.0001 and info["gather_ratio"] <= max(rounds) * 1.0001
        # ns_per_id is the benchmark's own median over its 4096 ids.
        assert info["ns_per_id"] == pytest.approx(stats["median"] * 1e9 / 4096, rel=1e-9)


def test_lookup_cases_record_an_amortised_timing(timed_run):
    for strategy in ("full", "qr"):
        info = timed_run[f"lookup/{strategy}/synthetic-zipf/1000/64"]["extra_info"]
        assert info["amortised_batches"] == harness.AMORTISED_BATCHES
        assert info["amortised_gather_ratio"] > 0 and info["amortised_ns_per_id"] > 0
        assert info["amortised_floor_share"] > 0
        # Only a compute-bound strategy is timed against the MLP too.
        assert info["amortised_compute_ratio"] is None and info["amortised_compute_ratio_rounds"] is None
    tt = timed_run["lookup/tt/synthetic-zipf/1000/64"]["extra_info"]
    rounds = tt["amortised_compute_ratio_rounds"]
    assert len(rounds) == harness.AMORTISED_ROUNDS and tt["amortised_compute_ratio"] == pytest.approx(np.median(rounds))
    assert len(tt["amortised_gather_ratio_rounds"]) == harness.AMORTISED_ROUNDS
    train = timed_run["train_step/full/synthetic-zipf/1000/64"]["extra_info"]
    assert all(train[name] is None for name in AMORTISED_FIELDS)
    gather = timed_run["gather/gather/synthetic-zipf/1000/64"]["extra_info"]
    assert all(gather[name] is None for name in (*TIMED_FIELDS, *AMORTISED_FIELDS))
