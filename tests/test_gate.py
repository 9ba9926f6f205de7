"""The regression gate (analysis.gate): every rule fires on a doctored copy and stays silent on an identical one."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import baseline as baseline_file
from analysis import gate, rules
from analysis.gate import GateRules
from analysis.rules import NoiseRule
from analysis.load import ResultError, load_results

FIXTURE = Path(__file__).parent / "fixtures" / "result_small.json"
MIB = 1024 * 1024
SMALL = "memory/qr/synthetic-zipf/1000/32"  # peaks of a few MiB
BIG = "memory/full/synthetic-zipf/1000000/32"  # peaks of hundreds of MiB
LOOKUP = "lookup/qr/synthetic-zipf/100000/32"
ACCURACY = "accuracy/qr/ml-100k/5x"
INDEXED = "memory/mixed_dim/synthetic-zipf/100000/32"  # the only strategy with index bytes


@pytest.fixture(scope="module")
def result() -> pd.DataFrame:
    return load_results([FIXTURE])


@pytest.fixture(scope="module")
def baseline(result) -> pd.DataFrame:
    return gate.baseline_frame(result)


def doctored(result: pd.DataFrame, case: str, field: str, change) -> pd.DataFrame:
    """A copy of `result` with `field` of `case` replaced by change(old value)."""
    copy = result.copy()
    mask = copy["case"] == case
    assert mask.sum() == 1, case
    copy.loc[mask, field] = change(copy.loc[mask, field].iloc[0])
    return copy


def findings(outcome: gate.GateOutcome, kind: str) -> list[tuple[str, str]]:
    frame = outcome.regressions if kind == "regression" else outcome.improvements
    return list(zip(frame["case"], frame["field"], strict=True))


def test_identical_result_passes_silently(result, baseline):
    outcome = gate.check(result, baseline, GateRules())
    assert outcome.passed
    assert outcome.regressions.empty and outcome.improvements.empty and outcome.missing.empty
    assert outcome.compared == len(baseline) == (result["status"] == "ok").sum()
    assert outcome.new_cases == sorted(result.loc[result["status"] != "ok", "case"])


@pytest.mark.parametrize(
    "case, field, change, rule",
    [
        (SMALL, "params", lambda v: v + 1, "params_growth"),
        (SMALL, "param_bytes", lambda v: v + 4, "bytes_growth"),
        (INDEXED, "index_bytes", lambda v: v + 1, "bytes_growth"),
        # Relative rules get room to spare, so that the mirrored drop also passes its limit.
        (BIG, "peak_alloc_bytes_lookup", lambda v: v * 1.2, "peak_mem"),
        (BIG, "peak_rss_bytes_lookup", lambda v: v * 1.2, "peak_rss"),
        (BIG, "peak_alloc_bytes_train", lambda v: v * 1.2, "peak_mem"),
        (SMALL, "peak_rss_bytes_train", lambda v: v + 3 * MIB, "peak_rss"),
        (LOOKUP, "gather_ratio", lambda v: v * 1.5, "gather_ratio_rel"),
        (ACCURACY, "val_mse", lambda v: v + 0.011, "val_mse_abs"),
    ],
)
def test_each_rule_fires_on_growth_and_lists_the_mirror_as_improvement(result, baseline, case, field, change, rule):
    # One rule at a time: the group rule (a strategy's cases together) has tests of its own.
    alone = GateRules(group_floor_rel=10.0)
    outcome = gate.check(doctored(result, case, field, change), baseline, alone)
    assert findings(outcome, "regression") == [(case, field)]
    assert outcome.regressions["rule"].tolist() == [rule]
    row = outcome.regressions.iloc[0]
    assert row["delta"] == pytest.approx(row["result"] - row["baseline"]) and row["delta"] > 0
    assert outcome.improvements.empty

    # The same change the other way round is an improvement, and does not fail.
    base_doctored = gate.baseline_frame(doctored(result, case, field, change))
    mirrored = gate.check(result, base_doctored, alone)
    assert mirrored.passed
    assert findings(mirrored, "improvement") == [(case, field)]


@pytest.mark.parametrize(
    "case, field, change",
    [
        (BIG, "peak_rss_bytes_train", lambda v: v * 1.11),
        (SMALL, "peak_alloc_bytes_lookup", lambda v: v + 1.1 * MIB),  # +1.1 MiB is > 10% of ~2 MiB
        (LOOKUP, "gather_ratio", lambda v: v * 1.31),
    ],
)
def test_growth_just_past_a_limit_fails(result, baseline, case, field, change):
    outcome = gate.check(doctored(result, case, field, change), baseline, GateRules())
    assert findings(outcome, "regression") == [(case, field)]


@pytest.mark.parametrize(
    "case, field, change",
    [
        (SMALL, "peak_alloc_bytes_lookup", lambda v: v * 1.2),  # +20% of ~2 MiB: under 1 MiB
        (BIG, "peak_alloc_bytes_train", lambda v: v * 1.05),  # many MiB but only +5%
        (LOOKUP, "gather_ratio", lambda v: v * 1.29),
        (ACCURACY, "val_mse", lambda v: v + 0.009),
        (SMALL, "params", lambda v: v - 0),
    ],
)
def test_changes_within_the_limits_pass(result, baseline, case, field, change):
    outcome = gate.check(doctored(result, case, field, change), baseline, GateRules())
    assert outcome.passed and outcome.improvements.empty


def test_limits_are_configurable(result, baseline):
    grown = doctored(result, SMALL, "params", lambda v: v + 5)
    assert not gate.check(grown, baseline, GateRules()).passed
    assert gate.check(grown, baseline, GateRules(params_growth=5)).passed
    worse = doctored(result, ACCURACY, "val_mse", lambda v: v + 0.05)
    assert gate.check(worse, baseline, GateRules(val_mse_abs=0.1)).passed


def test_a_missing_case_fails(result, baseline):
    outcome = gate.check(result[result["case"] != LOOKUP], baseline, GateRules())
    assert findings(outcome, "regression") == [(LOOKUP, "status")]
    assert "missing" in outcome.regressions["limit"].iloc[0]


def test_a_failed_case_fails_with_its_reason(result, baseline):
    failed = doctored(result, LOOKUP, "status", lambda v: "failed")
    failed = doctored(failed, LOOKUP, "reason", lambda v: "ResourceExhaustedError")
    outcome = gate.check(failed, baseline, GateRules())
    assert findings(outcome, "regression") == [(LOOKUP, "status")]
    assert outcome.regressions["limit"].iloc[0] == "failed: ResourceExhaustedError"


def test_missing_fails_false_reports_but_passes(result, baseline):
    outcome = gate.check(result[result["case"] != LOOKUP], baseline, GateRules(missing_fails=False))
    assert outcome.passed
    assert outcome.missing["case"].tolist() == [LOOKUP]


def test_no_case_in_common_is_unusable(result, baseline):
    renamed = result.assign(case="other/" + result["case"])
    with pytest.raises(ResultError, match="no case in common"):
        gate.check(renamed, baseline, GateRules())


def test_baseline_file_round_trip_is_clean_small_and_stable(tmp_path, result):
    path = tmp_path / "reports" / "baseline.json"
    count = gate.write_baseline(result, path)
    text = path.read_text()
    document = json.loads(text)
    assert document["kind"] == "membed-baseline" and document["schema_version"] == 1
    assert count == len(document["cases"]) == (result["status"] == "ok").sum()
    assert list(document["cases"]) == sorted(document["cases"])
    assert text == json.dumps(document, sort_keys=True, indent=1) + "\n"
    memory = document["cases"][SMALL]
    sizes = {"schema_version", "fullname", "params", "param_bytes", "index_bytes"}
    assert set(memory) == {*sizes, *gate.PEAK_FIELDS}
    assert isinstance(memory["params"], int)
    assert memory["fullname"] == result.loc[result["case"] == SMALL, "fullname"].iloc[0]
    assert set(document["cases"][ACCURACY]) == {*sizes, "val_mse"}
    gate.write_baseline(result, path)
    assert path.read_text() == text  # rewriting the same result changes nothing

    outcome = gate.check(result, gate.load_baseline(path), GateRules())
    assert outcome.passed and outcome.improvements.empty


def test_a_result_file_can_serve_as_the_baseline(result):
    loaded = gate.load_baseline(FIXTURE)
    assert loaded["case"].tolist() == gate.baseline_frame(result)["case"].tolist()
    assert gate.check(result, loaded, GateRules()).passed


@pytest.mark.parametrize(
    "document, message",
    [
        ({"kind": "membed-baseline", "schema_version": 2, "cases": {}}, "incompatible schema_version 2"),
        ({"kind": "membed-baseline", "schema_version": 1, "cases": {"a": {"schema_version": 3}}}, "case 'a'"),
        ({"kind": "membed-baseline", "schema_version": 1}, "no `cases`"),
        ({"something": "else"}, "neither a membed baseline"),
    ],
)
def test_unusable_baselines(tmp_path, document, message):
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(document))
    with pytest.raises(ResultError, match=message):
        gate.load_baseline(path)


def test_pyproject_table_overrides_defaults(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\n\n[tool.membed.gate]\nval_mse_abs = 0.05\nmissing_fails = false\n')
    rules = gate.rules_from_pyproject(pyproject)
    assert rules.val_mse_abs == 0.05 and rules.missing_fails is False
    assert rules.peak_mem_rel == GateRules().peak_mem_rel
    pyproject.write_text('[project]\nname = "x"\n')
    assert gate.rules_from_pyproject(pyproject) == GateRules()


@pytest.mark.parametrize(
    "table, message",
    [
        ("val_mse = 0.1", "unknown gate key 'val_mse'"),
        ("val_mse_abs = -1", "must be a number >= 0"),
        ('peak_mem_rel = "10%"', "must be a number >= 0"),
        ("missing_fails = 1", "must be true or false"),
    ],
)
def test_bad_pyproject_gate_tables_are_rejected(tmp_path, table, message):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(f"[tool.membed.gate]\n{table}\n")
    with pytest.raises(ResultError, match=message):
        gate.rules_from_pyproject(pyproject)


def test_a_suite_table_sets_that_suites_ratio_limits_only(tmp_path, result, baseline):
    pyproject = tmp_path / "pyproject.toml"
    # The fixture's baseline stores no noise, so gather_ratio_rel is each ratio's limit.
    pyproject.write_text("[tool.membed.gate]\ngather_ratio_rel = 0.5\ngroup_floor_rel = 10.0\n\n"
                         "[tool.membed.gate.lookup]\ngather_ratio_rel = 0.2\nratio_noise_k = 1.0\n")
    limits = gate.rules_from_pyproject(pyproject)
    lookup = limits.for_suite("lookup")
    assert (lookup.gather_ratio_rel, lookup.ratio_noise_k, lookup.group_floor_rel) == (0.2, 1.0, 10.0)
    assert limits.for_suite("train_step") is limits and limits.gather_ratio_rel == 0.5
    # +30%: past the lookup suite's 20%, within the 50% every other suite keeps.
    slower = doctored(result, LOOKUP, "gather_ratio", lambda v: v * 1.3)
    assert findings(gate.check(slower, baseline, limits), "regression") == [(LOOKUP, "gather_ratio")]
    assert gate.check(slower, baseline, dataclasses.replace(limits, suites={})).passed


@pytest.mark.parametrize(
    "table, message",
    [
        ("[tool.membed.gate.lookups]\nratio_floor_rel = 0.2", "a table's name must be a suite's"),
        ("[tool.membed.gate.lookup]\nval_mse_abs = 0.2", "unknown key 'val_mse_abs'; a suite's table holds"),
        ("[tool.membed.gate.lookup]\nratio_floor_rel = -1", r"\[lookup\]: `ratio_floor_rel` must be a number >= 0"),
        ("[tool.membed.gate.lookup]\nquietest_ratio = 1", r"\[lookup\]: `quietest_ratio` must be true or false"),
    ],
)
def test_bad_suite_tables_are_rejected(tmp_path, table, message):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(f"[tool.membed.gate]\nval_mse_abs = 0.01\n\n{table}\n")
    with pytest.raises(ResultError, match=message):
        gate.rules_from_pyproject(pyproject)


def test_find_gate_config_walks_up_from_each_start_in_order(tmp_path):
    project, other = tmp_path / "project", tmp_path / "other"
    (project / "reports" / "deep").mkdir(parents=True)
    other.mkdir()
    (project / "pyproject.toml").write_text("[tool.membed.gate]\nval_mse_abs = 0.02\n")
    (project / "reports" / "pyproject.toml").write_text('[project]\nname = "no gate table here"\n')
    (other / "pyproject.toml").write_text("[tool.membed.gate]\nval_mse_abs = 0.5\n")
    assert gate.find_gate_config([project / "reports" / "deep", other]) == (project / "pyproject.toml").resolve()
    assert gate.find_gate_config([tmp_path, other]) == (other / "pyproject.toml").resolve()
    assert gate.find_gate_config([tmp_path]) is None


def node_of(result: pd.DataFrame, case: str) -> str:
    return result.loc[result["case"] == case, "fullname"].iloc[0]


def test_a_case_outside_the_runs_selection_is_not_missing(result, baseline):
    sliced = result[result["case"] != LOOKUP]
    selected = set(sliced["fullname"].dropna())
    outcome = gate.check(sliced, baseline, GateRules(), selected=selected)
    assert outcome.passed and outcome.missing.empty
    assert outcome.not_selected == [LOOKUP] and outcome.unplaced == []

    # Selected and absent is missing, as before.
    outcome = gate.check(sliced, baseline, GateRules(), selected=selected | {node_of(result, LOOKUP)})
    assert findings(outcome, "regression") == [(LOOKUP, "status")] and outcome.not_selected == []


def test_a_baseline_case_without_node_id_cannot_be_excused_by_the_selection(result, baseline):
    sliced = result[result["case"] != LOOKUP]
    outcome = gate.check(sliced, baseline.assign(fullname=None), GateRules(), selected=set(sliced["fullname"].dropna()))
    assert findings(outcome, "regression") == [(LOOKUP, "status")]
    assert outcome.unplaced == [LOOKUP] and outcome.not_selected == []


def test_a_skipped_case_under_another_id_is_found_by_its_node_id(result, baseline):
    # A MovieLens case skipped before its data loaded is named by its side, not its size.
    renamed = doctored(result, LOOKUP, "status", lambda v: "skipped")
    renamed = doctored(renamed, LOOKUP, "reason", lambda v: "ml-1m not available")
    renamed.loc[renamed["case"] == LOOKUP, "case"] = "lookup/qr/synthetic-zipf/users/32"
    outcome = gate.check(renamed, baseline, GateRules(), selected=set(renamed["fullname"].dropna()))
    assert findings(outcome, "regression") == [(LOOKUP, "status")]
    assert outcome.regressions["limit"].iloc[0] == "skipped: ml-1m not available"


# --- per-case noise: stored with the baseline, setting each ratio's limit ------------

NOISY = GateRules(gather_ratio_rel=1.0, ratio_floor_rel=0.10, ratio_noise_k=3.0, group_floor_rel=10.0)


@pytest.fixture(scope="module")
def noisy_baseline(result) -> pd.DataFrame:
    """The fixture's baseline with its noise: every ratio case has IQR / median = 0.1 over 20 rounds."""
    return gate.baseline_frame(baseline_file.with_noise(result))


def test_median_interval_takes_the_order_statistics_that_cover_95_percent():
    assert baseline_file.median_interval(list(range(20, 0, -1))) == (6, 15)
    assert baseline_file.median_interval(list(range(1, 11))) == (2, 9)
    # Five rounds cannot give 95%: the whole range is the best there is.
    assert baseline_file.median_interval([5, 1, 3, 2, 4]) == (1, 5)
    with pytest.raises(ValueError, match="no values"):
        baseline_file.median_interval([])


def test_noise_from_rounds_and_from_stats():
    assert baseline_file.rounds_noise([1.0] * 20) == 0.0
    assert baseline_file.rounds_noise([1.0, 1.1, 0.9, 1.0, 1.0, 1.05, 0.95] * 3) == pytest.approx(0.05)
    assert np.isnan(baseline_file.rounds_noise([1.0, 1.1]))  # too few rounds to say
    assert baseline_file.stats_noise(0.1, 1.0, 20) == pytest.approx(1.96 * 1.2533 / 1.349 * 0.1 / 20**0.5, rel=1e-3)
    assert np.isnan(baseline_file.stats_noise(None, 1.0, 20)) and np.isnan(baseline_file.stats_noise(0.1, 0.0, 20))


def test_with_noise_prefers_the_per_round_ratios(result):
    framed = result.copy()
    framed["gather_ratio_rounds"] = None
    mask = framed["case"] == LOOKUP
    framed.loc[mask, "gather_ratio_rounds"] = pd.Series([[2.0] * 10 + [2.2] * 10], index=framed.index[mask])
    noisy = baseline_file.with_noise(framed)
    assert noisy.loc[mask, "gather_ratio_noise"].iloc[0] == pytest.approx(0.2 / 2 / 2.1)
    # Others fall back to the stats (IQR / median = 0.1, 20 rounds); cases without a ratio get none.
    other = noisy["case"] == "lookup/full/synthetic-zipf/1000/32"
    assert noisy.loc[other, "gather_ratio_noise"].iloc[0] == pytest.approx(baseline_file.stats_noise(0.1, 1.0, 20))
    assert noisy.loc[noisy["case"] == SMALL, "gather_ratio_noise"].isna().all()


def test_quietest_ratio_gates_a_case_by_its_quietest_amortised_ratio(tmp_path, result):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text("[tool.membed.gate]\nratio_floor_rel = 0.1\nratio_noise_k = 2.0\ngroup_floor_rel = 0.1\n\n"
                         "[tool.membed.gate.lookup]\nquietest_ratio = true\n")
    limits = gate.rules_from_pyproject(pyproject)
    assert limits.for_suite("lookup").quietest_ratio and not limits.quietest_ratio
    # The qr lookup cases also carry an amortised ratio (noise 2%; their per-call one 10%).
    qr = result["case"].str.startswith("lookup/qr/")
    both = result.assign(amortised_gather_ratio=np.where(qr, 10.0, np.nan))
    baseline = gate.baseline_frame(both).assign(gather_ratio_noise=0.10, amortised_gather_ratio_noise=0.02)
    assert gate.check(both, baseline, limits).passed
    # +30% per call on one case: past 2 x 10%, but the case is gated by its amortised ratio, and the
    # group of three (their amortised ratios unchanged) does not move.
    per_call = doctored(both, LOOKUP, "gather_ratio", lambda v: v * 1.3)
    assert gate.check(per_call, baseline, limits).passed
    assert findings(gate.check(per_call, baseline, dataclasses.replace(limits, suites={})), "regression") == [
        (LOOKUP, "gather_ratio")]
    # +12% on the quietest: past max(10%, 2 x 2%), flagged.
    amortised = doctored(both, LOOKUP, "amortised_gather_ratio", lambda v: v * 1.12)
    assert findings(gate.check(amortised, baseline, limits), "regression") == [(LOOKUP, "amortised_gather_ratio")]
    # A per-call ratio storing less noise still gives way to the amortised one, which a slower lookup moves
    # in full; a case without an amortised ratio keeps its per-call one.
    swapped = baseline.assign(gather_ratio_noise=0.02, amortised_gather_ratio_noise=0.10)
    assert gate.check(per_call, swapped, limits).passed and gate.check(amortised, swapped, limits).passed
    slower = doctored(both, LOOKUP, "amortised_gather_ratio", lambda v: v * 1.25)
    assert findings(gate.check(slower, swapped, limits), "regression") == [(LOOKUP, "amortised_gather_ratio")]
    plain = "lookup/full/synthetic-zipf/1000/32"
    assert findings(gate.check(doctored(both, plain, "gather_ratio", lambda v: v * 1.3), swapped, limits),
                    "regression") == [(plain, "gather_ratio")]


def test_the_baseline_file_stores_the_noise_and_reads_it_back(tmp_path, result):
    path = tmp_path / "baseline.json"
    gate.write_baseline(result, path)
    entry = json.loads(path.read_text())["cases"][LOOKUP]
    assert entry["gather_ratio_noise"] == pytest.approx(baseline_file.stats_noise(0.1, 1.0, 20), rel=1e-5)
    loaded = gate.load_baseline(path)
    stored = loaded.loc[loaded["case"] == LOOKUP, "gather_ratio_noise"].iloc[0]
    assert stored == pytest.approx(entry["gather_ratio_noise"])
    # A result file serving as the baseline has the same noise.
    as_result = gate.load_baseline(FIXTURE)
    assert as_result.loc[as_result["case"] == LOOKUP, "gather_ratio_noise"].iloc[0] == pytest.approx(
        entry["gather_ratio_noise"], rel=1e-5
    )


def test_a_ratio_past_k_times_its_noise_fails_and_names_the_case(result, noisy_baseline):
    noise = baseline_file.stats_noise(0.1, 1.0, 20)  # 4.1%: 3 x noise = 12.2%, above the 10% floor
    outcome = gate.check(doctored(result, LOOKUP, "gather_ratio", lambda v: v * (1 + 3 * noise + 0.01)),
                         noisy_baseline, NOISY)
    assert findings(outcome, "regression") == [(LOOKUP, "gather_ratio")]
    assert outcome.regressions["rule"].tolist() == ["ratio_noise_k"]
    assert outcome.regressions["limit"].iloc[0] == "> +12.2% (max of 10% and 3 x noise 4.1%)"
    # Under the limit: silent, although far past nothing; the mirrored drop is an improvement.
    assert gate.check(doctored(result, LOOKUP, "gather_ratio", lambda v: v * (1 + 3 * noise - 0.01)),
                      noisy_baseline, NOISY).regressions.empty
    faster = gate.check(doctored(result, LOOKUP, "gather_ratio", lambda v: v * 0.8), noisy_baseline, NOISY)
    assert faster.passed and findings(faster, "improvement") == [(LOOKUP, "gather_ratio")]


def test_the_floor_holds_for_a_quiet_case_and_k_scales_the_limit(result, noisy_baseline):
    quiet = noisy_baseline.assign(gather_ratio_noise=noisy_baseline["gather_ratio_noise"] * 0.01)
    grown = doctored(result, LOOKUP, "gather_ratio", lambda v: v * 1.09)
    assert gate.check(grown, quiet, NOISY).passed  # 9% < the 10% floor
    assert not gate.check(doctored(result, LOOKUP, "gather_ratio", lambda v: v * 1.11), quiet, NOISY).passed
    wide = dataclasses.replace(NOISY, ratio_noise_k=6.0)  # 6 x 4.1% = 24%
    slower = doctored(result, LOOKUP, "gather_ratio", lambda v: v * 1.2)
    assert not gate.check(slower, noisy_baseline, NOISY).passed and gate.check(slower, noisy_baseline, wide).passed


def test_an_old_baseline_without_noise_falls_back_to_the_constant(result, baseline):
    assert "gather_ratio_noise" not in baseline or baseline["gather_ratio_noise"].isna().all()
    slower = doctored(result, LOOKUP, "gather_ratio", lambda v: v * 1.5)
    assert gate.check(slower, baseline, NOISY).passed  # 50% < gather_ratio_rel = 100%
    outcome = gate.check(doctored(result, LOOKUP, "gather_ratio", lambda v: v * 2.1), baseline, NOISY)
    assert outcome.regressions[["case", "rule", "limit"]].values.tolist() == [[LOOKUP, "gather_ratio_rel", "> +100%"]]


def test_noise_rule_limits_per_row():
    rule = NoiseRule("gather_ratio_rel", "gather_ratio", fraction=1.0, floor=0.1, k=3.0)
    rows = pd.DataFrame({"baseline": [2.0, 2.0, 4.0], "noise": [0.01, 0.05, np.nan]})
    allowed, limits, names = rule.row_limits(rows)
    assert allowed.tolist() == pytest.approx([0.2, 0.3, 4.0])
    assert names.tolist() == ["ratio_noise_k", "ratio_noise_k", "gather_ratio_rel"]
    assert limits.tolist()[2] == "> +100%"


def test_the_gate_table_takes_the_noise_keys(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text("[tool.membed.gate]\nratio_floor_rel = 0.15\nratio_noise_k = 4\n")
    rules = gate.rules_from_pyproject(pyproject)
    assert (rules.ratio_floor_rel, rules.ratio_noise_k) == (0.15, 4.0)
    pyproject.write_text("[tool.membed.gate]\nratio_noise_k = -1\n")
    with pytest.raises(ResultError, match="`ratio_noise_k` must be a number >= 0, got -1"):
        gate.rules_from_pyproject(pyproject)


def test_several_runs_raise_each_cases_noise_to_their_spread(result):
    again = result.copy()
    mask = again["case"] == LOOKUP
    again.loc[mask, "gather_ratio"] *= 1.5  # the same code, a run 50% apart on this case
    both = baseline_file.with_noise(pd.concat([result, again], ignore_index=True))
    last = gate.baseline_frame(both).set_index("case")
    ratios = [result.loc[mask, "gather_ratio"].iloc[0], again.loc[mask, "gather_ratio"].iloc[0]]
    assert last.at[LOOKUP, "gather_ratio_noise"] == pytest.approx((ratios[1] - ratios[0]) / 2 / np.median(ratios))
    # A case that did not move keeps its in-run noise.
    assert last.at["lookup/full/synthetic-zipf/1000/32", "gather_ratio_noise"] == pytest.approx(
        baseline_file.stats_noise(0.1, 1.0, 20)
    )


def test_a_strategy_slower_in_every_case_fails_as_a_group_though_no_case_passes_its_own_limit(result, baseline):
    # qr's three lookup cases each 12% slower: under the per-case 30% floor, past the group's 10%.
    limits = GateRules(gather_ratio_rel=0.30, ratio_floor_rel=0.30, group_floor_rel=0.10)
    slower = result
    qr = [case for case in baseline["case"] if case.startswith("lookup/qr/")]
    assert len(qr) == 3
    for case in qr:
        slower = doctored(slower, case, "gather_ratio", lambda v: v * 1.12)
    outcome = gate.check(slower, baseline, limits)
    assert outcome.regressions[["case", "rule", "field"]].values.tolist() == [["lookup/qr/*", "group_floor_rel",
                                                                               "gather_ratio"]]
    row = outcome.regressions.iloc[0]
    assert row["delta %"] == pytest.approx(12.0) and "geometric mean of 3 cases" in row["limit"]
    # One case alone 12% slower moves the group 3.9%: silent. The other way round it is an improvement.
    assert gate.check(doctored(result, qr[0], "gather_ratio", lambda v: v * 1.12), baseline, limits).passed
    faster = gate.check(result, gate.baseline_frame(slower), limits)
    assert faster.passed and faster.improvements["case"].tolist() == ["lookup/qr/*"]


def test_group_limit_follows_the_noise_across_the_baselines_runs():
    rule = rules.GroupRule("group_floor_rel", "gather_ratio", floor=0.10, k=3.0)
    cases = ["lookup/qr/a/1/8", "lookup/qr/b/1/8", "train_step/qr/a/1/8/sgd", "train_step/qr/b/1/8/sgd"]
    long = pd.DataFrame({"case": cases, "field": "gather_ratio", "baseline": 1.0, "result": 1.15,
                         "noise": [0.02, 0.02, 0.02, 0.02], "group_noise": [np.nan, np.nan, 0.06, 0.06]})
    long["delta"] = long["result"] - long["baseline"]
    found = rule.findings(long)
    # lookup/qr: max(10%, 3 x 2% / sqrt(2)) = 10% < 15%: flagged; train_step's runs drifted 6%: 18% > 15%.
    assert found["case"].tolist() == ["lookup/qr/*"]
    assert "max of 10% and 3 x group noise 1.4%" in found["limit"].iloc[0]
