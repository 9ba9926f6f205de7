"""The benchmark harness: the grid's rules, its coverage of the registry, and the JSON a tiny run writes."""

import json
import os
import re
import subprocess
import sys

import pytest

from analysis import schema
from bench import grid, options, rules
from bench_runs import ROOT, run_bench
from membed import strategies


def selection(**changes) -> grid.Selection:
    base = options.selection_from_options("quick", None, None, None)
    return grid.Selection(**{**base.__dict__, **changes})


# ----- the grid -------------------------------------------------------------------------
@pytest.mark.parametrize("profile", list(grid.PROFILES))
@pytest.mark.parametrize("suite", tuple(schema.STRATEGY_SUITES))
def test_every_registered_strategy_has_cases_in_every_suite(profile, suite):
    chosen = options.selection_from_options(profile, None, None, None)
    if chosen.profile.suites is not None and suite not in chosen.profile.suites:
        pytest.skip(f"the {profile} profile does not run the {suite} suite")
    cases = grid.cases(suite, chosen)
    assert grid.uncovered(suite, cases, chosen) == []
    assert set(strategies.names()) <= {name for case in cases for name in case.covers}


def test_a_strategy_left_out_of_a_suite_is_reported():
    chosen = selection()
    cases = [case for case in grid.cases("lookup", chosen) if case.strategy != "qr"]
    assert grid.uncovered("lookup", cases, chosen) == ["qr"]


def test_a_new_strategy_appears_in_every_suite_without_editing_bench():
    from membed.strategies.full import FullEmbedding

    @strategies.register
    class Doubled(FullEmbedding):
        strategy_name = "doubled_for_test"

    try:
        chosen = selection(strategies=tuple(strategies.names()))
        for suite in schema.STRATEGY_SUITES:
            assert "doubled_for_test" in {n for case in grid.cases(suite, chosen) for n in case.covers}, suite
    finally:
        del strategies.STRATEGIES["doubled_for_test"]


def test_quick_grid_is_the_documented_one():
    chosen = selection(strategies=("qr",))
    lookups = grid.cases("lookup", chosen)
    assert {(c.dataset, c.vocab_size, c.side) for c in lookups} == {
        (dataset, size, None) for dataset in ("synthetic-zipf", "synthetic-uniform") for size in (10**3, 10**5)
    } | {("ml-100k", None, side) for side in ("users", "items")}
    accuracy = grid.cases("accuracy", chosen)
    # The baseline and the example's pair always run; qr trains its 20x preset; the rating model with Adam,
    # the CTR model with lazy Adam.
    pairs = {"accuracy/full/ml-100k/baseline", "accuracy/example_qr+example_md/ml-100k/example",
             "accuracy/qr/ml-100k/20x"}
    assert {c.case_id() for c in accuracy if c.dataset == "ml-100k"} == pairs
    assert {c.optimizer for c in accuracy if c.dataset == "synthetic-ctr"} == {"lazy_adam"}
    # The train_step and memory suites run each case with the profile's optimizers, one after the other.
    for suite in ("memory", "train_step"):
        assert [c.optimizer for c in grid.cases(suite, chosen)][:2] == ["adam", "rowwise_adagrad"], suite
    assert {c.optimizer for c in lookups} == {None}
    assert chosen.profile.accuracy_storages == ("float32", "int8")
    full = options.selection_from_options("full", "qr", None, None)
    assert full.optimizers == ("adam", "rowwise_adagrad", "lazy_adam") and full.profile.accuracy_storages == (
        "float32", "float16", "bfloat16", "int8")
    assert set(full.optimizers) < set(membed_optim_names())  # sgd and adagrad: --optimizers
    # The claims profile: the accuracy suite alone, every preset (full trains baseline, example and 20x).
    claims = options.selection_from_options("claims", "qr", None, "ml-100k")
    assert claims.profile.suites == ("accuracy",)
    assert {c.preset for c in grid.cases("accuracy", claims)} > {c.preset for c in grid.cases("accuracy", full)
                                                                   if c.dataset == "ml-100k"}


def membed_optim_names() -> tuple[str, ...]:
    from membed import optim

    return optim.NAMES


def test_optimizers_narrow_the_suites_that_train():
    chosen = options.selection_from_options("quick", "qr", "1000", "synthetic-zipf", optimizer_list="sgd, adam,sgd")
    assert chosen.optimizers == ("sgd", "adam")
    assert [c.case_id() for c in grid.cases("train_step", chosen)] == [
        "train_step/qr/synthetic-zipf/1000/64/sgd", "train_step/qr/synthetic-zipf/1000/64"]
    assert grid.OPTIMIZERS == membed_optim_names()
    for bad, listed in (("adamw", "unknown optimizer 'adamw' in --optimizers. Use one of: adam, lazy_adam"),
                        (",", "--optimizers is empty. Use one or more of: adam")):
        with pytest.raises(options.GridError, match=re.escape(listed)):
            options.selection_from_options("quick", None, None, None, optimizer_list=bad)


def test_case_ids_follow_the_schema():
    case = grid.Case("memory", "qr", "synthetic-zipf", 1000, 64, 4096)
    assert case.case_id() == "memory/qr/synthetic-zipf/1000/64"
    # The default optimizer keeps the ids of the cases from before the axis; another one is a variant.
    adam = grid.Case("memory", "qr", "synthetic-zipf", 1000, 64, 4096, optimizer="adam")
    assert (adam.case_id(), adam.test_id) == ("memory/qr/synthetic-zipf/1000/64", "qr-synthetic-zipf-1000-64")
    sgd = grid.Case("blocks", "qr", "ml-100k", None, 64, 4096, side="items", preset="3-blocks", optimizer="sgd")
    assert sgd.case_id(1682) == "blocks/qr/ml-100k/1682/64/3-blocks/sgd"
    assert sgd.test_id == "qr-ml-100k-items-64-3-blocks-sgd"
    fit = grid.Case("accuracy", "full", "ml-100k", None, 64, 128, preset="baseline", optimizer="lazy_adam")
    assert fit.case_id() == "accuracy/full/ml-100k/baseline/lazy_adam"
    assert fit.test_id == "full-ml-100k-baseline-lazy_adam"
    assert grid.base_record(fit)["optimizer"] == "lazy_adam"
    movielens = grid.Case("lookup", "qr", "ml-100k", None, 64, 4096, side="users")
    assert movielens.case_id() == "lookup/qr/ml-100k/users/64"
    assert movielens.case_id(943) == "lookup/qr/ml-100k/943/64"
    record = grid.base_record(case)
    assert tuple(record) == schema.EXTRA_INFO_KEYS and record["schema_version"] == schema.SCHEMA_VERSION == 2
    assert record["dataset"] == "synthetic-zipf" and "vocab" not in record


def test_sublinear_is_read_from_the_cost_formula():
    # qr grows like sqrt(V): 10**0.5 over a decade.
    assert rules.growth_ratio("qr", 64) == pytest.approx(10**0.5, rel=1e-3)
    assert rules.is_sublinear("qr", 64) and rules.is_sublinear("tt", 64) and rules.is_sublinear("dhe", 64)
    assert rules.growth_ratio("full", 64) == pytest.approx(10.0)
    assert not rules.is_sublinear("full", 64)
    assert rules.size_skip_reason("full", 10**7, 64) is None
    assert "not sublinear" in rules.size_skip_reason("full", 10**8, 64)
    assert rules.size_skip_reason("qr", 10**8, 64) is None


def test_a_strategy_whose_memory_stops_growing_counts_as_sublinear(monkeypatch):
    from membed.strategies.base import Cost

    def capped_cost(cls, vocab_size, dim, **options):
        return Cost.float32(min(vocab_size, 2**20) * dim)

    monkeypatch.setattr(strategies.get("full"), "cost", classmethod(capped_cost))
    assert rules.is_sublinear("full", 64)


def test_vocab_sizes_parse_or_say_how():
    assert options.parse_vocab_sizes("1000, 1e5,1_000_000") == (1000, 100_000, 1_000_000)
    for bad in ("10,abc", "0", "1.5", ","):
        with pytest.raises(options.GridError, match="--vocab-sizes"):
            options.parse_vocab_sizes(bad)


@pytest.mark.parametrize(
    "arguments, listed",
    [
        (("nope", None, None, None), "quick, full"),
        (("quick", "full,nope", None, None), "full"),
        (("quick", None, None, "ml-2m"), "ml-100k"),
        (("quick", None, None, None, False, 600.0, "adam,nope"), "rowwise_adagrad"),
    ],
)
def test_bad_options_list_the_valid_values(arguments, listed):
    with pytest.raises(options.GridError, match=re.escape(listed)):
        options.selection_from_options(*arguments)


# ----- a tiny run, end to end -------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("bench")
    out = tmp_path / "out.json"
    completed = run_bench(
        tmp_path, "--benchmark-only", "--strategies", "broken,full,qr", "--vocab-sizes", "1000",
        "--datasets", "synthetic-zipf,ml-1m", "-k", "memory or lookup", "--benchmark-json", str(out),
    )
    assert out.exists(), completed.stdout[-3000:] + completed.stderr[-3000:]
    return completed, json.loads(out.read_text())


def test_tiny_run_writes_every_schema_field(tiny_run):
    _, result = tiny_run
    entries = [entry["extra_info"] for entry in result["benchmarks"]]
    assert {e["suite"] for e in entries} == {"memory", "gather", "lookup"}
    for info in entries:
        assert tuple(info) == schema.EXTRA_INFO_KEYS, info.get("case")
    for info in result["membed"]["not_run"]:  # plus the test's node id, as a benchmark entry has
        assert tuple(info) == (*schema.EXTRA_INFO_KEYS, "fullname"), info.get("case")
    for info in entries:
        if info["status"] == "ok":
            applies = {key for key, field in schema.FIELD.items()
                       if field.origin == "record" and (field.suites is None or info["suite"] in field.suites)}
            # A field that applies holds a value of its type (null only where nullable); one that does not is null.
            wrong = {k: v for k, v in info.items()
                     if (k in applies and not schema.FIELD[k].accepts(v)) or (k not in applies and v is not None)}
            assert not wrong, (info["case"], wrong)


def test_tiny_run_fills_each_suite(tiny_run):
    _, result = tiny_run
    by_case = {entry["extra_info"]["case"]: entry["extra_info"] for entry in result["benchmarks"]}
    memory = by_case["memory/full/synthetic-zipf/1000/64"]
    assert memory["status"] == "ok" and memory["params"] == 64_000 and memory["compression"] == 1.0
    assert memory["train_state_bytes"] == 3 * 4 * 64_000
    assert memory["peak_alloc_bytes_lookup"] >= memory["param_bytes"]
    assert memory["peak_alloc_bytes_train"] >= 3 * memory["param_bytes"]
    assert memory["peak_rss_bytes_lookup"] > 0 and memory["peak_rss_bytes_train"] > 0
    assert memory["val_mse"] is None and memory["gather_ratio"] is None
    # The optimizer of the train phase, its slots as built in the measuring process, and the estimates beside.
    from membed import plan

    rowwise = by_case["memory/full/synthetic-zipf/1000/64/rowwise_adagrad"]
    assert (memory["optimizer"], rowwise["optimizer"]) == ("adam", "rowwise_adagrad")
    assert (memory["optimizer_state_bytes"], rowwise["optimizer_state_bytes"]) == (2 * 4 * 64_000, 4 * 1000)
    for info in (memory, rowwise):
        estimate = plan.estimate("full", 1000, 64, optimizer=info["optimizer"], batch_size=4096)
        assert info["estimated_peak_bytes_lookup"] == estimate.lookup_peak_bytes
        assert info["estimated_peak_bytes_train"] == estimate.train_peak_bytes()
    assert rowwise["peak_alloc_bytes_lookup"] > 0 and rowwise["peak_alloc_bytes_train"] > 0
    qr = by_case["lookup/qr/synthetic-zipf/1000/64"]
    assert qr["options"]["num_buckets"] == 32 and qr["params"] == strategies.cost("qr", 1000, 64).params
    assert qr["gather_ratio"] > 0 and qr["peak_alloc_bytes_lookup"] is None
    gather = by_case["gather/gather/synthetic-zipf/1000/64"]
    assert gather["options"] == {"table_rows": 1000} and gather["gather_ratio"] is None
    assert result["membed"]["schema_version"] == 2 and result["membed"]["profile"] == "quick"


def test_tiny_run_records_failures_and_goes_on(tiny_run):
    completed, result = tiny_run
    by_case = {entry["extra_info"]["case"]: entry["extra_info"] for entry in result["benchmarks"]}
    # Raised inside the measuring process: an entry marked failed, and the next cases still ran.
    memory = by_case["memory/broken/synthetic-zipf/1000/64"]
    assert memory["status"] == "failed" and "broken on purpose" in memory["reason"]
    assert memory["peak_alloc_bytes_lookup"] is None and memory["params"] == 64_000
    assert by_case["memory/qr/synthetic-zipf/1000/64"]["status"] == "ok"
    # Raised in the timed suite before an entry existed: a failed not_run entry.
    not_run = {entry["case"]: entry for entry in result["membed"]["not_run"]}
    lookup = not_run["lookup/broken/synthetic-zipf/1000/64"]
    assert lookup["status"] == "failed" and lookup["reason"].startswith("RuntimeError: broken on purpose")
    assert "lookup/full/synthetic-zipf/1000/64" in by_case
    assert completed.returncode == 1  # the lookup failure is a test failure; the run finished
    # An unavailable dataset skips with how to provide it, never downloads.
    skipped = not_run["memory/qr/ml-1m/users/64"]
    assert skipped["status"] == "skipped" and "MEMBED_DATA_DIR=" in skipped["reason"]
    assert skipped["vocab_size"] is None
    assert skipped["fullname"] in result["membed"]["selected"]
    # Every case the run selected, for the gate to tell "not selected" from "lost".
    assert {entry["fullname"] for entry in result["benchmarks"]} <= set(result["membed"]["selected"])


def test_a_run_where_every_case_skips_still_writes_its_json(tmp_path):
    out = tmp_path / "not" / "yet" / "there.json"  # pytest-benchmark creates no folders
    completed = run_bench(tmp_path, "--benchmark-only", "--strategies", "full", "--datasets", "ml-1m",
                          "-k", "memory", "--benchmark-json", str(out), timeout=120)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["benchmarks"] == []
    reasons = {entry["reason"] for entry in result["membed"]["not_run"]}
    assert reasons and all(reason.startswith("ml-1m not available") for reason in reasons)
    # Said once, in the benchmark's terms: no Python arguments (`data_dir`, download=True) in the advice.
    assert all("data_dir" not in reason and "download=True" not in reason for reason in reasons)
    assert all(reason.count("MEMBED_DATA_DIR") >= 1 and "--allow-download" in reason for reason in reasons)
    # The reason is in the terminal summary too, not a bare `s`.
    assert "SKIPPED" in completed.stdout and "ml-1m not available" in completed.stdout


class _Options:
    """A stand-in for pytest's config: the options bench/conftest.py reads."""

    def __init__(self, **values):
        self.values = {"profile": "quick", "strategies": None, "vocab_sizes": None, "datasets": None,
                       "optimizers": None, "allow_download": False, "measure_timeout": 600.0, "isolate_above": 0.25,
                       "tf_threads": 0, **values}
        self.stash = pytest.Stash()
        self.pluginmanager = pytest.PytestPluginManager()

    def getoption(self, name, default=None):
        return self.values.get(name, default)

    def addinivalue_line(self, *args):
        pass


@pytest.mark.parametrize(
    "values, listed",
    [
        ({"strategies": "full,nope"}, "unknown strategy 'nope' in --strategies. Use one of: "),
        ({"datasets": "ml-2m"}, "unknown dataset 'ml-2m' in --datasets. Use one of: synthetic-zipf"),
        ({"vocab_sizes": "1e3,x"}, "malformed --vocab-sizes '1e3,x'"),
        ({"optimizers": "adam,adamw"}, "unknown optimizer 'adamw' in --optimizers. Use one of: adam, lazy_adam"),
        ({"tf_threads": -1}, "--tf-threads must be >= 0 (0: one per core), got -1."),
    ],
)
def test_a_bad_option_is_a_usage_error_at_configure_time(values, listed):
    from bench import conftest

    with pytest.raises(pytest.UsageError, match=re.escape(listed)):
        conftest.pytest_configure(_Options(**values))
    config = _Options()
    conftest.pytest_configure(config)
    assert config.stash[conftest.SELECTION].profile.name == "quick"


def test_tf_threads_reach_tensorflow_and_the_processes_it_starts():
    """`use_tf_threads` before TensorFlow's first op sets its thread pools, and the variables children read."""
    code = ("import os, tensorflow as tf; from bench.harness import use_tf_threads; use_tf_threads(1); "
            "tf.constant(1.0) + 1.0; print(tf.config.threading.get_intra_op_parallelism_threads(), "
            "tf.config.threading.get_inter_op_parallelism_threads(), os.environ['TF_NUM_INTRAOP_THREADS'])")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split() == ["1", "1", "1"]


@pytest.mark.parametrize("there", [True, False])
def test_a_missing_dataset_names_the_copy_beside_the_checkout_only_where_there_is_one(tmp_path, monkeypatch, there):
    import types

    from bench import harness
    from membed.data import DatasetUnavailable

    if there:
        (tmp_path / "ml-100k").mkdir()
    monkeypatch.setattr(harness, "SHARED_MOVIELENS", tmp_path)
    helper = harness.Harness(types.SimpleNamespace(profile="quick", allow_download=False))
    with pytest.raises(pytest.skip.Exception) as skipped:
        helper._unavailable("ml-100k", DatasetUnavailable("ml-100k: no folder", finding="ml-100k: no folder"))
    reason = str(skipped.value)
    assert reason.startswith("ml-100k not available: ml-100k: no folder. Provide it with MEMBED_DATA_DIR=")
    assert (f"one is beside this checkout: MEMBED_DATA_DIR={tmp_path}" in reason) is there
    assert reason.endswith(" or run with --allow-download.")
