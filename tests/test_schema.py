"""The result schema (analysis.schema) and the gate's rule objects (analysis.rules) built from it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import baseline as baseline_module
from analysis import rules, schema
from analysis.compare import deltas
from analysis.rules import DifferenceRule, GateRules, PeakRule, PercentageRule

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "bench" / "README.md"
MIB = 1024 * 1024

# Records as the quick profile's CI run wrote them (schema 1, 2026-12-01), null keys left out
# (every record starts from `grid.base_record`, which holds them) and options shortened.
CI_RECORDS = [
    {"schema_version": 1, "case": "memory/dhe/synthetic-zipf/1000/64", "suite": "memory", "status": "ok",
     "strategy": "dhe", "options": {"num_hashes": 256, "hidden": [256, 128]}, "vocab": "synthetic-zipf",
     "vocab_size": 1000, "dim": 64, "batch_size": 4096, "params": 106944, "param_bytes": 427776, "index_bytes": 0,
     "train_state_bytes": 1283328, "compression": 0.5984440454817475, "peak_alloc_bytes_lookup": 35489024,
     "peak_rss_bytes_lookup": 73494528, "peak_alloc_bytes_train": 37521408, "peak_rss_bytes_train": 86667264},
    {"schema_version": 1, "case": "gather/gather/synthetic-zipf/1000/64", "suite": "gather", "status": "ok",
     "strategy": "gather", "options": {"table_rows": 1000}, "vocab": "synthetic-zipf", "vocab_size": 1000, "dim": 64,
     "batch_size": 4096, "params": 64000, "param_bytes": 256000, "index_bytes": 0, "train_state_bytes": 768000,
     "compression": 1.0},
    {"schema_version": 1, "case": "lookup/dhe/synthetic-zipf/1000/64", "suite": "lookup", "status": "ok",
     "strategy": "dhe", "options": {"num_hashes": 256}, "vocab": "synthetic-zipf", "vocab_size": 1000, "dim": 64,
     "batch_size": 4096, "params": 106944, "param_bytes": 427776, "index_bytes": 0, "train_state_bytes": 1283328,
     "compression": 0.5984440454817475, "gather_ratio": 14.485832602223633},
    {"schema_version": 1, "case": "blocks/mixed_dim/synthetic-zipf/3706/64/3-blocks", "suite": "blocks",
     "status": "ok", "strategy": "mixed_dim", "options": {"boundaries": [400, 1700], "budget": None},
     "preset": "3-blocks", "vocab": "synthetic-zipf", "vocab_size": 3706, "dim": 64, "batch_size": 4096,
     "params": 102368, "param_bytes": 409472, "index_bytes": 14824, "train_state_bytes": 1243240,
     "compression": 2.2360239078379243, "gather_ratio": 2.0079571316910467},
    {"schema_version": 1, "case": "accuracy/example_qr+example_md/ml-100k/example", "suite": "accuracy",
     "status": "ok", "strategy": "example_qr+example_md", "options": {"user": {"num_buckets": 18}, "item": {}},
     "preset": "example", "vocab": "ml-100k", "vocab_size": 2625, "dim": 64, "batch_size": 128, "params": 52944,
     "param_bytes": 211776, "index_bytes": 6728, "train_state_bytes": 642056, "compression": 3.075458572840772,
     "val_mse": 0.9915, "val_mae": 0.8018, "val_rmse": 0.9957, "val_mse_per_epoch": [0.9915],
     "val_mae_per_epoch": [0.8018], "val_rmse_per_epoch": [0.9957], "train_mse_per_epoch": [1.6155], "epochs": 1,
     "fit_seconds": 1.2016486239999722},
    {"schema_version": 1, "case": "pipeline/qr+mixed_dim/ml-100k/1-epoch", "suite": "pipeline", "status": "ok",
     "strategy": "qr+mixed_dim", "preset": "1-epoch", "vocab": "ml-100k", "vocab_size": 2625, "dim": 64,
     "batch_size": 128, "params": 52832, "compression": 3.1798909751665656, "val_mse": 0.9909, "val_mae": 0.8022,
     "val_rmse": 0.9954, "val_mse_per_epoch": [0.9909], "val_mae_per_epoch": [0.8022], "val_rmse_per_epoch": [0.9954],
     "train_mse_per_epoch": [1.6083], "epochs": 1, "fit_seconds": 1.654, "speedup_vs_example": 1.8439,
     "val_mse_delta_vs_example": 0.0078},
    {"schema_version": 1, "case": "memory/full/synthetic-zipf/100000000/64", "suite": "memory", "status": "skipped",
     "reason": "full is not sublinear in V", "strategy": "full", "options": {}, "vocab": "synthetic-zipf",
     "vocab_size": 100000000, "dim": 64, "batch_size": 4096, "params": 6400000000, "param_bytes": 25600000000,
     "index_bytes": 0, "train_state_bytes": 76800000000, "compression": 1.0, "projected": True},
]


def readme_table() -> str:
    """The table of bench/README.md's "Result schema" section, as text."""
    text = README.read_text()
    section = text[text.index("## Result schema") :]
    section = section[: section.index("\n## ")]
    start = section.index("| key |")
    return section[start : section.index("\n\n", start)]


# ----- the declaration ------------------------------------------------------------------------
def test_the_readme_schema_table_is_the_generated_one():
    assert readme_table() == schema.markdown_table(), "regenerate it: python -m analysis.schema"


def test_python_m_analysis_schema_prints_the_table(capsys):
    assert schema.main([]) == 0
    assert capsys.readouterr().out == schema.markdown_table() + "\n"
    assert schema.main(["--bogus"]) == 2


def test_the_schema_imports_without_pandas_or_tensorflow():
    heavy = "('pandas', 'numpy', 'tensorflow')"
    code = f"import sys, analysis.schema; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_extra_info_keys_are_the_fields_in_readme_order():
    assert schema.EXTRA_INFO_KEYS == tuple(field.name for field in schema.FIELDS)
    assert len(set(schema.EXTRA_INFO_KEYS)) == len(schema.EXTRA_INFO_KEYS)
    assert schema.EXTRA_INFO_KEYS[:3] == ("schema_version", "case", "suite")
    assert "dataset" in schema.EXTRA_INFO_KEYS and "vocab" not in schema.EXTRA_INFO_KEYS
    # The drift of schema 1, resolved: written fields are declared, the never-written one is gone.
    assert {"projected", "speedup_vs_example", "val_mse_delta_vs_example"} <= set(schema.EXTRA_INFO_KEYS)
    assert "p95_seconds" not in schema.FIELD


def test_every_declaration_refers_to_declared_things():
    for field in schema.FIELD.values():
        assert field.suites is None or set(field.suites) <= set(schema.SUITES), field.name
        if field.gate is not None:
            assert field.numeric and field.origin == "record", field.name
    for name in schema.REPORT_METRICS:
        assert schema.FIELD[name].label and schema.FIELD[name].numeric, name
    assert set(schema.KEY_FIELDS) <= set(schema.EXTRA_INFO_KEYS)


def test_suites_and_their_kinds():
    assert tuple(schema.SUITE_ORDER) == ("memory", "lookup", "gather", "train_step", "blocks", "accuracy", "pipeline",
                                         "sharded")
    assert schema.PAIRED_SUITES == ("lookup", "train_step", "blocks")
    assert schema.LATENCY_SUITES == ("lookup", "gather", "train_step", "blocks")
    assert schema.STRATEGY_SUITES == ("memory", "lookup", "train_step", "accuracy")
    assert "memory" in schema.STRATEGY_SUITES and "gather" not in schema.PAIRED_SUITES
    assert {suite.kind for suite in schema.SUITES.values()} == set(schema.SUITE_KINDS)


def test_a_declared_suite_joins_every_view(monkeypatch):
    monkeypatch.setattr(schema, "SUITES", dict(schema.SUITES))
    toy = schema.declare_suite(schema.Suite("toy", "paired", True, False, "a suite of a test"))
    assert schema.SUITES["toy"] is toy and schema.SUITE_ORDER[-1] == "toy"
    assert "toy" in schema.PAIRED_SUITES and "toy" in schema.LATENCY_SUITES and "toy" not in schema.STRATEGY_SUITES
    assert schema.declare_suite(toy) is toy  # declaring it again is harmless
    with pytest.raises(ValueError, match="'toy' is already declared"):
        schema.declare_suite(schema.Suite("toy", "fit", False, False))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: schema.Field("x", "string", ""), "invalid `type` 'string'. Use one of: str, int"),
        (lambda: schema.Field("x", "int", "", gate="max"), "invalid `gate` 'max'. Use None or one of: exact"),
        (lambda: schema.Field("x", "int", "", origin="disk"), "invalid `origin` 'disk'"),
        (lambda: schema.Suite("x", "timed", True, True), "invalid `kind` 'timed'. Use one of: isolated-memory"),
    ],
)
def test_bad_declarations_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_field_accepts_values_of_its_type():
    assert schema.FIELD["params"].accepts(3) and not schema.FIELD["params"].accepts(3.5)
    assert not schema.FIELD["params"].accepts(True) and not schema.FIELD["params"].accepts(None)
    assert schema.FIELD["compression"].accepts(2) and schema.FIELD["projected"].accepts(True)
    assert schema.FIELD["val_mse_per_epoch"].accepts([1.0]) and schema.FIELD["val_mse_per_epoch"].accepts(None)


def test_the_optimizer_and_estimate_fields():
    trained = ("memory", "train_step", "accuracy")
    assert schema.FIELD["optimizer"].suites == trained and "optimizer" in schema.KEY_FIELDS
    state = schema.FIELD["optimizer_state_bytes"]
    assert (state.suites, state.gate, state.unit, state.label) == (trained, "exact", "bytes", "opt. state MiB")
    for phase in ("lookup", "train"):
        estimate = schema.FIELD[f"estimated_peak_bytes_{phase}"]
        assert estimate.suites == ("memory",) and estimate.gate is None and estimate.nullable
        ratio = schema.FIELD[f"est_ratio_{phase}"]
        assert ratio.origin == "derived" and ratio.label == f"est. ratio {phase}"
        assert ratio.name in schema.REPORT_METRICS
    assert "estimated_peak_bytes_train" not in schema.GATED_FIELDS and "optimizer_state_bytes" in schema.GATED_FIELDS


def test_the_storage_fields_follow_membeds_storages():
    storage = pytest.importorskip("membed.strategies.storage")
    assert ("float32", *schema.STORED_DTYPES) == storage.STORAGES
    for dtype in schema.STORED_DTYPES:
        field = schema.FIELD[f"val_mse_{dtype}"]
        assert field.suites == ("accuracy",) and field.label == f"val MSE {dtype}" and field.gate is None
    assert schema.FIELD["val_mse_by_storage"].type == schema.FIELD["param_bytes_by_storage"].type == "dict"
    assert schema.FIELD["val_mse_by_storage"].accepts({"float32": 0.9, "int8": 0.91})


def test_the_default_optimizer_is_membeds_first():
    optim = pytest.importorskip("membed.optim")
    assert schema.DEFAULT_OPTIMIZER == optim.NAMES[0] == "adam"


def test_the_report_reference_pairs_are_membeds():
    presets = pytest.importorskip("membed.presets")
    assert (presets.BASELINE.preset, presets.BASELINE.strategy) == (schema.BASELINE_PRESET, schema.BASELINE_STRATEGY)
    assert (presets.EXAMPLE.preset, presets.EXAMPLE.strategy) == (schema.EXAMPLE_PRESET, schema.EXAMPLE_STRATEGY)


# ----- what bench writes -------------------------------------------------------------------------
@pytest.mark.parametrize("record", CI_RECORDS, ids=[r["case"] for r in CI_RECORDS])
def test_every_key_a_ci_run_wrote_is_declared_and_typed(record):
    upgraded = schema.upgrade(record)
    schema.check_record(upgraded, record["case"])
    for key, value in upgraded.items():
        field = schema.FIELD[key]
        assert field.accepts(value), (key, value)
        # A value only where the schema says the suite writes one.
        assert field.suites is None or record["suite"] in field.suites, (key, record["suite"])


def test_every_suite_s_base_record_is_declared():
    grid = pytest.importorskip("bench.grid")
    for suite in schema.SUITES:
        record = grid.base_record(grid.Case(suite, "full", "synthetic-zipf", 1000, 64, 4096))
        upgraded = schema.upgrade(record)
        schema.check_record(upgraded, suite)
        assert set(upgraded) <= set(schema.EXTRA_INFO_KEYS)
        if record["schema_version"] == schema.SCHEMA_VERSION:  # bench writes this schema: every key, in order
            assert tuple(record) == schema.EXTRA_INFO_KEYS


# ----- schema 1 -> 2 ------------------------------------------------------------------------------
def test_v1_to_v2_renames_vocab_to_dataset_in_place():
    record = CI_RECORDS[0]
    upgraded = schema.v1_to_v2(record)
    assert upgraded["dataset"] == "synthetic-zipf" and "vocab" not in upgraded
    assert upgraded["schema_version"] == 2
    assert list(upgraded).index("dataset") == list(record).index("vocab")
    assert {k: v for k, v in upgraded.items() if k not in ("dataset", "schema_version")} == {
        k: v for k, v in record.items() if k not in ("vocab", "schema_version")
    }
    assert record["vocab"] == "synthetic-zipf"  # the input is left alone


def test_v1_to_v2_marks_a_memory_case_not_run_with_formula_sizes_as_projected():
    failed = {**CI_RECORDS[0], "status": "failed", "reason": "killed"}
    assert schema.v1_to_v2(failed)["projected"] is True
    assert "projected" not in schema.v1_to_v2(CI_RECORDS[0])  # measured
    no_sizes = {"schema_version": 1, "suite": "memory", "status": "skipped", "params": None, "vocab": "ml-1m"}
    assert "projected" not in schema.v1_to_v2(no_sizes)
    lookup = {**CI_RECORDS[2], "status": "skipped"}
    assert "projected" not in schema.v1_to_v2(lookup)


def test_upgrade_leaves_this_version_alone_and_refuses_unknown_ones():
    current = schema.upgrade(CI_RECORDS[1])
    assert schema.upgrade(current) == current
    assert schema.upgrade({"vocab": "ml-100k"}) == {"dataset": "ml-100k"}  # no version: schema 1
    with pytest.raises(ValueError, match="incompatible schema_version 7. This report reads: 1, 2"):
        schema.upgrade({"schema_version": 7})


# ----- check_record -------------------------------------------------------------------------------
def test_check_record_names_the_unknown_key_and_where_the_valid_ones_are():
    with pytest.raises(ValueError) as info:
        schema.check_record({"case": "lookup/qr/x/1/2", "p95_seconds": 0.1}, "lookup/qr/x/1/2")
    message = str(info.value)
    assert message.startswith("lookup/qr/x/1/2: unknown result field 'p95_seconds'.")
    assert "analysis/schema.py: FIELDS" in message and "gather_ratio" in message and "\n" not in message


def test_check_record_says_what_schema_1_names_became():
    with pytest.raises(ValueError, match="unknown result field 'vocab' \\(schema 2 calls it 'dataset'\\)"):
        schema.check_record(CI_RECORDS[0])


def test_check_record_takes_extra_keys_only_when_told():
    entry = {**schema.upgrade(CI_RECORDS[-1]), "fullname": "bench/test_memory.py::test_memory[x]"}
    with pytest.raises(ValueError, match="'fullname'"):
        schema.check_record(entry)
    schema.check_record(entry, also=("fullname",))


# ----- the gate's rule objects --------------------------------------------------------------------
def long_frame(field: str, baseline: list[float], result: list[float]) -> pd.DataFrame:
    cases = [f"c{i}" for i in range(len(baseline))]
    return deltas(pd.DataFrame({"case": cases, field: baseline}), pd.DataFrame({"case": cases, field: result}), [field])


def test_difference_rule_fires_past_its_threshold_both_ways():
    rule = DifferenceRule("val_mse_abs", "val_mse", threshold=0.01)
    found = rule.findings(long_frame("val_mse", [1.0, 1.0, 1.0, 1.0], [1.011, 1.009, 0.98, np.nan]))
    assert found[["case", "kind"]].values.tolist() == [["c0", "regression"], ["c2", "improvement"]]
    assert found["limit"].tolist() == ["> +0.01", "< -0.01"] and set(found["rule"]) == {"val_mse_abs"}
    assert found["delta"].tolist() == pytest.approx([0.011, -0.02])
    assert list(found.columns) == [*rules.FINDING_COLUMNS, "kind"]


def test_percentage_rule_scales_with_the_baseline():
    rule = PercentageRule("gather_ratio_rel", "gather_ratio", fraction=0.3)
    found = rule.findings(long_frame("gather_ratio", [1.0, 10.0, 10.0], [1.31, 12.9, 6.0]))
    assert found[["case", "kind"]].values.tolist() == [["c0", "regression"], ["c2", "improvement"]]
    assert rule.limit == "> +30%"


def test_peak_rule_needs_both_the_relative_and_the_absolute_growth():
    rule = PeakRule("peak_mem", "peak_alloc_bytes_lookup", fraction=0.1, floor_mib=16)
    small, big = 2 * MIB, 1000 * MIB
    grown = [small * 5, small + 17 * MIB, big * 1.09, big * 1.11]
    found = rule.findings(long_frame("peak_alloc_bytes_lookup", [small, small, big, big], grown))
    # +8 MiB on 2 MiB is +400% but under 16 MiB; +9% of 1000 MiB is under 10%.
    assert found["case"].tolist() == ["c1", "c3"] and set(found["kind"]) == {"regression"}
    assert rule.limit == "> +10% and > +16 MiB"


def test_a_rule_stays_silent_on_an_identical_run_and_on_other_fields():
    rule = DifferenceRule("params_growth", "params", threshold=0, unit="params")
    assert rule.findings(long_frame("params", [10.0, 20.0], [10.0, 20.0])).empty
    assert rule.findings(long_frame("param_bytes", [10.0], [99.0])).empty


def test_rules_come_from_the_gate_table_and_each_fields_treatment():
    limits = GateRules(params_growth=2, bytes_growth=8, peak_mem_rel=0.2, peak_mem_abs_mib=16, peak_rss_abs_mib=64)
    everything = rules.rules_for(limits)
    built = {rule.field: rule for rule in everything if not isinstance(rule, rules.GroupRule)}
    assert list(built) == list(schema.GATED_FIELDS)
    assert [(f, r.name) for f, r in built.items()] == [
        ("params", "params_growth"),
        ("param_bytes", "bytes_growth"),
        ("index_bytes", "bytes_growth"),
        ("optimizer_state_bytes", "bytes_growth"),
        ("peak_alloc_bytes_lookup", "peak_mem"),
        ("peak_rss_bytes_lookup", "peak_rss"),
        ("peak_alloc_bytes_train", "peak_mem"),
        ("peak_rss_bytes_train", "peak_rss"),
        ("gather_ratio", "gather_ratio_rel"),
        ("amortised_gather_ratio", "gather_ratio_rel"),
        ("amortised_compute_ratio", "gather_ratio_rel"),
        ("val_mse", "val_mse_abs"),
        ("val_logloss", "val_mse_abs"),
    ]
    # Then one group rule per ratio field.
    groups = everything[len(built):]
    assert [(r.field, r.name, type(r).__name__) for r in groups] == [
        ("gather_ratio", "group_floor_rel", "GroupRule"), ("amortised_gather_ratio", "group_floor_rel", "GroupRule"),
        ("amortised_compute_ratio", "group_floor_rel", "GroupRule")]
    assert built["params"].limit == "> +2 params" and built["index_bytes"].limit == "> +8 bytes"
    assert built["peak_rss_bytes_train"].limit == "> +20% and > +64 MiB"
    assert built["peak_alloc_bytes_train"].limit == "> +20% and > +16 MiB"
    assert built["gather_ratio"].limit == "> +30%" and built["val_mse"].limit == "> +0.01"


def test_an_exact_field_of_another_unit_has_no_rule():
    field = schema.Field("rows", "int", "table rows", unit="rows", gate="exact")
    with pytest.raises(ValueError, match="`exact` gates a unit of params or bytes, not 'rows'"):
        rules.rule_for(field, GateRules())


def test_apply_rules_orders_findings_by_case_then_rule():
    both = pd.concat(
        [long_frame("params", [10.0, 10.0], [11.0, 12.0]), long_frame("val_mse", [1.0, 1.0], [1.5, 1.0])],
        ignore_index=True,
    )
    found = rules.apply_rules(both, rules.rules_for(GateRules()))
    assert found[["case", "field"]].values.tolist() == [["c0", "params"], ["c0", "val_mse"], ["c1", "params"]]
    assert rules.apply_rules(both.iloc[0:0], rules.rules_for(GateRules())).empty


def test_the_baseline_file_reads_the_same_in_json_as_the_schema_declares():
    baseline = json.loads((ROOT / "reports" / "baseline.json").read_text())
    fields = {key for case in baseline["cases"].values() for key in case} - {"schema_version", "fullname"}
    # Beside the gated fields, the baseline stores each ratio's noise (analysis/baseline.py), no result field.
    assert fields <= set(schema.GATED_FIELDS) | set(baseline_module.NOISE_FIELDS)
    assert set(baseline_module.NOISE_FIELDS) <= fields
