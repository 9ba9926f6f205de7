"""Suites declare themselves: the declarations agree with analysis/schema.py, and a grid is the product of its axes."""

import importlib.util
import re
import sys
from pathlib import Path

import pytest

from analysis import schema
from bench import axes, grid, options, results, rules

ROOT = Path(__file__).resolve().parents[1]


def fresh_schema():
    """analysis/schema.py as written, without the suites this process declared into it since."""
    spec = importlib.util.spec_from_file_location("schema_as_written", ROOT / "analysis" / "schema.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it runs
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


@pytest.fixture
def scratch(monkeypatch):
    """Suites declared in a test are forgotten after it, here and in the schema."""
    monkeypatch.setattr(schema, "SUITES", dict(schema.SUITES))
    monkeypatch.setattr(grid, "_DECLARED", dict(grid._DECLARED))


def quick(**changes) -> grid.Selection:
    base = options.selection_from_options("quick", "full,qr", "1000,100000", "synthetic-zipf,ml-100k")
    return grid.Selection(**{**base.__dict__, **changes})


# ----- the declarations and the schema --------------------------------------------------------
def test_every_suite_of_bench_is_in_the_schema_as_written_with_the_same_kind():
    declared = grid.declared()
    written = fresh_schema().SUITES
    assert set(declared) == set(written)
    assert {name: suite.kind for name, suite in declared.items()} == {name: s.kind for name, s in written.items()}


def test_each_suite_is_declared_by_its_test_file():
    declared = grid.declared()
    assert declared["gather"] is grid.declaration("gather")
    from bench import test_lookup

    assert test_lookup.test_lookup.membed_suite is declared["lookup"] is test_lookup.LOOKUP
    assert declared["lookup"].rules == rules.SIZE_RULES and declared["accuracy"].rules == ()
    with pytest.raises(ValueError, match="Unknown suite 'nope'. Use one of: .*lookup"):
        grid.declaration("nope")


def test_a_suite_that_names_its_kind_differently_from_the_schema_is_refused():
    with pytest.raises(ValueError, match="`kind` 'fit' differs from analysis/schema.py's 'paired'"):
        grid.Suite("lookup", "fit", axes=(axes.registered,))
    with pytest.raises(ValueError, match="`latency` False differs"):
        grid.Suite("lookup", "paired", axes=(axes.registered,), latency=False)
    with pytest.raises(ValueError, match="invalid `kind` 'timed'. Use one of: isolated-memory, reference"):
        grid.Suite("toy", "timed", axes=(axes.registered,))
    with pytest.raises(ValueError, match="no `axes`"):
        grid.Suite("toy", "fit", axes=())


def test_a_new_suite_declares_its_schema_entry_with_its_test(scratch):
    toy = grid.Suite("toy", "paired", axes=(axes.registered, axes.fixed(dataset="synthetic-zipf", vocab_size=10,
                                                                        dim=4)))
    with pytest.raises(ValueError, match="'toy' is not declared"):
        grid.cases(toy, quick())
    assert "toy" not in schema.SUITES

    @toy.test
    def test_toy(case):
        pass

    assert test_toy.membed_suite is toy and grid.declaration("toy") is toy
    assert schema.SUITES["toy"] == schema.Suite("toy", "paired", True, False, "")
    assert "toy" in schema.PAIRED_SUITES and "toy" in schema.LATENCY_SUITES
    assert [case.case_id() for case in grid.cases("toy", quick())] == ["toy/full/synthetic-zipf/10/4",
                                                                       "toy/qr/synthetic-zipf/10/4"]
    with pytest.raises(ValueError, match=re.escape(f"declared twice: in {__name__} and in elsewhere")):
        grid.declare(toy, "elsewhere")


# ----- the product of the axes ----------------------------------------------------------------
def test_the_cases_are_the_product_of_the_axes_first_axis_outermost(scratch):
    def letters(selection, case):
        return [{"preset": "a"}, {"preset": "b"}]

    toy = grid.Suite("toy", "isolated-memory",
                     axes=(letters, axes.registered, axes.fixed(dataset="synthetic-zipf", vocab_size=7, dim=2)))
    grid.declare(toy, __name__)
    ids = [case.test_id for case in grid.cases(toy, quick())]
    assert ids == ["full-synthetic-zipf-7-2-a", "qr-synthetic-zipf-7-2-a", "full-synthetic-zipf-7-2-b",
                   "qr-synthetic-zipf-7-2-b"]
    assert {case.batch_size for case in grid.cases(toy, quick())} == {4096}  # the profile's unless an axis says


def test_an_axis_reads_the_fields_chosen_before_it_and_a_case_appears_once(scratch):
    def shared_pair(selection, case):
        # Both strategies give the same pair: one case.
        return [{"strategy": "full+qr", "user_strategy": "full", "item_strategy": "qr", "preset": case["dataset"]}]

    toy = grid.Suite("toy", "fit", axes=(axes.rating_datasets, axes.registered, shared_pair, axes.fixed(dim=8)))
    grid.declare(toy, __name__)
    cases = grid.cases(toy, quick(datasets=("synthetic-planted", "synthetic-zipf", "ml-100k")))
    assert [case.case_id() for case in cases] == ["toy/full+qr/synthetic-planted/synthetic-planted",
                                                  "toy/full+qr/ml-100k/ml-100k"]
    assert cases[0].covers == ("full", "qr")


def test_axes_that_leave_out_a_field_say_so(scratch):
    toy = grid.Suite("toy", "fit", axes=(axes.registered,))
    grid.declare(toy, __name__)
    with pytest.raises(ValueError, match="its axes give no case .*needs strategy, dataset and dim"):
        grid.cases(toy, quick())


def test_the_common_axes():
    selection = quick()
    assert axes.id_datasets(selection, {"suite": "lookup"}) == [
        {"dataset": "synthetic-zipf", "vocab_size": 1000, "side": None},
        {"dataset": "synthetic-zipf", "vocab_size": 100000, "side": None},
        {"dataset": "ml-100k", "vocab_size": None, "side": "users"},
        {"dataset": "ml-100k", "vocab_size": None, "side": "items"},
    ]
    narrowed = quick(suite_datasets={"lookup": ("synthetic-zipf",), "train_step": ("ml-100k", "synthetic-zipf")})
    both = axes.id_datasets_of("lookup", "train_step")(narrowed, {})
    assert [(value["dataset"], value["vocab_size"] or value["side"]) for value in both] == [
        ("synthetic-zipf", 1000), ("synthetic-zipf", 100000), ("ml-100k", "users"), ("ml-100k", "items")]
    assert axes.rating_datasets(quick(datasets=("synthetic-zipf", "synthetic-planted")), {"suite": "accuracy"}) == [
        {"dataset": "synthetic-planted"}]
    assert axes.dims(selection, {}) == [{"dim": 64}] and axes.registered(selection, {}) == [
        {"strategy": "full"}, {"strategy": "qr"}]


def test_a_case_of_a_suite_the_schema_does_not_hold_says_so():
    case = grid.Case("nope", "full", "synthetic-zipf", 10, 4, 8)
    with pytest.raises(ValueError, match="suite 'nope': the suite is not in analysis.schema.SUITES"):
        case.case_id()


# ----- the rules ----------------------------------------------------------------------------------
def test_admit_costs_the_case_and_applies_the_rules_in_order(monkeypatch):
    case = grid.Case("lookup", "full", "synthetic-zipf", 10**8, 64, 4096)
    linear = rules.admit(case, 10**8)
    assert linear.reason.startswith("full is not sublinear in V") and linear.projected
    assert linear.sizes.params == 64 * 10**8 and linear.options == {}
    invalid = rules.admit(grid.Case("lookup", "qr", "synthetic-zipf", 1000, 64, 4096), 1000, {"num_buckets": 0})
    assert invalid.reason.startswith("invalid combination: ") and invalid.sizes is None and not invalid.projected
    assert rules.admit(case.with_size(1000), 1000).reason is None
    monkeypatch.setattr(rules.measure, "memory_shortfall", lambda needed: "needs 9 GB, 1 GB available")
    too_big = rules.admit(case.with_size(1000), 1000)
    assert too_big.reason == "too big for this machine: needs 9 GB, 1 GB available" and too_big.projected
    assert rules.admit(case.with_size(1000), 1000, rules=()).reason is None  # a suite without rules


def test_another_optimizer_needs_trainable_weights_and_its_skip_is_no_projection():
    int8 = grid.Case("memory", "quantized", "synthetic-zipf", 1000, 64, 4096, optimizer="rowwise_adagrad")
    skipped = rules.admit(int8, 1000, rules=rules.TRAIN_RULES)
    assert skipped.reason == ("invalid combination: quantized has no trainable weights (int8 tables): "
                              "no train step for rowwise_adagrad to take")
    assert skipped.sizes.params > 0 and not skipped.projected
    # Its adam case measures the lookup (and no train phase); a trainable layer runs with any optimizer.
    assert rules.admit(grid.Case("memory", "quantized", "synthetic-zipf", 1000, 64, 4096, optimizer="adam"), 1000,
                       rules=rules.TRAIN_RULES).reason is None
    assert rules.admit(grid.Case("memory", "qr", "synthetic-zipf", 1000, 64, 4096, optimizer="sgd"), 1000,
                       rules=rules.TRAIN_RULES).reason is None
    # The size rules come first, and theirs is a projection.
    assert rules.admit(int8.with_size(10**8), 10**8, rules=rules.TRAIN_RULES).projected
    assert grid.declaration("memory").rules == grid.declaration("train_step").rules == rules.TRAIN_RULES


def test_the_optimizer_axis_is_the_last_of_the_suites_that_train():
    from bench import axes as common

    for name in ("memory", "train_step"):
        assert grid.declaration(name).axes[-1] is common.optimizers, name
    # The accuracy suite's is the profile's accuracy optimizers of these, before the tune profile's step sizes.
    from bench.test_accuracy import fit_optimizers, tune_rates

    assert grid.declaration("accuracy").axes[-2:] == (fit_optimizers, tune_rates)
    assert all(common.optimizers not in grid.declaration(name).axes for name in ("lookup", "gather", "blocks"))
    assert common.optimizers(quick(optimizers=("sgd", "adam")), {}) == [{"optimizer": "sgd"}, {"optimizer": "adam"}]


def test_the_full_profile_times_lazy_adam_steps_up_to_its_limit_and_measures_its_peaks_at_every_size():
    full = options.selection_from_options("full", "full", "1000000,10000000", "synthetic-zipf")
    assert full.profile.train_step_max_vocab == {"lazy_adam": 10**6}
    by_suite = {name: [(case.vocab_size, case.optimizer) for case in grid.cases(grid.declaration(name), full)]
                for name in ("train_step", "memory")}
    assert (10**6, "lazy_adam") in by_suite["train_step"] and (10**7, "lazy_adam") not in by_suite["train_step"]
    assert {(10**7, "adam"), (10**7, "rowwise_adagrad")} <= set(by_suite["train_step"])
    assert (10**7, "lazy_adam") in by_suite["memory"]


def test_the_full_profile_times_uniform_ids_at_its_own_sizes_unless_vocab_sizes_names_them():
    full = options.selection_from_options("full", "qr", None, "synthetic-zipf,synthetic-uniform")
    sizes = {dataset: [case.vocab_size for case in grid.cases(grid.declaration("lookup"), full)
                       if case.dataset == dataset] for dataset in ("synthetic-zipf", "synthetic-uniform")}
    assert sizes["synthetic-zipf"] == [10**3, 10**4, 10**5, 10**6, 10**7, 10**8]
    assert sizes["synthetic-uniform"] == [10**3, 10**4, 10**5, 10**7]
    # Sizes asked for by name run on every synthetic dataset.
    named = options.selection_from_options("full", "qr", "1000000", "synthetic-uniform")
    assert [case.vocab_size for case in grid.cases(grid.declaration("lookup"), named)] == [10**6]


def test_the_paired_suites_run_every_strategy_at_one_size_before_the_next_size():
    # One bare-gather table per dataset and size (Harness._reference_for keeps the last one).
    for name in ("lookup", "train_step"):
        keys = [(case.dataset, case.side, case.vocab_size) for case in grid.cases(grid.declaration(name), quick())]
        runs = [key for index, key in enumerate(keys) if index == 0 or keys[index - 1] != key]
        assert len(runs) == len(set(keys)), name


# ----- records ------------------------------------------------------------------------------------
def test_a_record_holds_every_schema_field_and_refuses_any_other():
    case = grid.Case("lookup", "qr", "ml-100k", None, 64, 4096, side="users")
    record = results.Record(case)
    assert tuple(record) == schema.EXTRA_INFO_KEYS and record["dataset"] == "ml-100k"
    record.update(vocab_size=943, case=case.case_id(943), gather_ratio=1.5)
    record["projected"] = True
    for write in (lambda: record.__setitem__("p95_seconds", 0.1), lambda: record.update(vocab="ml-100k"),
                  lambda: record.setdefault("speedup", 2.0)):
        with pytest.raises(ValueError, match="lookup/qr/ml-100k/943/64: unknown result field"):
            write()
    assert tuple(record) == schema.EXTRA_INFO_KEYS
    entry = results.not_run_entry(case, record, "skipped", "why", "bench/test_lookup.py::test_lookup[x]")
    assert tuple(entry) == (*schema.EXTRA_INFO_KEYS, "fullname") and entry["gather_ratio"] == 1.5
    with pytest.raises(ValueError, match="unknown result field 'vocab'"):
        results.not_run_entry(case, {"vocab": "ml-100k"}, "skipped", "why", "x")


def test_the_run_order_follows_the_selection():
    entries = [{"fullname": name} for name in ("c", "x", "a", "b")]
    assert [entry["fullname"] for entry in results.in_run_order(entries, ["a", "b", "c"])] == ["a", "b", "c", "x"]
