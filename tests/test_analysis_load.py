"""Loader (analysis.load), the pure table helpers (analysis.frames) and deltas (analysis.compare) on the fixture.

The fixture is a hand-made schema-1 file (its cases name their dataset `vocab`);
the loader reads it, and its schema-2 twin, as `dataset`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import compare, frames, schema
from analysis.load import EXTRA_COLUMNS, ResultError, latest_run, load_results, load_run, read_result

FIXTURE = Path(__file__).parent / "fixtures" / "result_small.json"


@pytest.fixture(scope="module")
def raw() -> dict:
    return json.loads(FIXTURE.read_text())


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return load_results([FIXTURE])


def entry(raw: dict, case: str) -> dict:
    return next(b for b in raw["benchmarks"] if b["extra_info"]["case"] == case)


def row(frame: pd.DataFrame, case: str) -> pd.Series:
    matches = frame[frame["case"] == case]
    assert len(matches) == 1, case
    return matches.iloc[0]


# --- loader ---------------------------------------------------------------


def test_one_row_per_case_including_not_run(raw, frame):
    assert len(frame) == len(raw["benchmarks"]) + len(raw["membed"]["not_run"])
    assert frame["case"].is_unique
    assert set(frame["suite"]) == {"memory", "lookup", "gather", "train_step", "accuracy"}
    for column in (*EXTRA_COLUMNS, "median_s", "mean_s", "p95_s", "p95_source", "rounds", "name", "source"):
        assert column in frame.columns, column
    assert set(frame["source"]) == {str(FIXTURE)}
    assert set(frame["profile"]) == {"quick"}


def test_extra_info_is_flattened_with_numbers_as_floats(raw, frame):
    case = "memory/qr/synthetic-zipf/100000/32"
    got, want = row(frame, case), entry(raw, case)
    assert got["params"] == want["extra_info"]["params"]
    assert got["peak_rss_bytes_train"] == want["extra_info"]["peak_rss_bytes_train"]
    assert got["median_s"] == want["stats"]["median"] and got["mean_s"] == want["stats"]["mean"]
    assert got["rounds"] == want["stats"]["rounds"]
    assert frame["params"].dtype == np.float64 and frame["gather_ratio"].dtype == np.float64
    accuracy = row(frame, "accuracy/qr/ml-100k/5x")
    assert accuracy["val_mse_per_epoch"] == [1.12, 0.97, 0.92]
    assert accuracy["options"] == {"num_buckets": 120}


def test_p95_prefers_data_then_max(raw, frame):
    with_data = entry(raw, "lookup/hash/synthetic-zipf/1000/32")
    got = row(frame, "lookup/hash/synthetic-zipf/1000/32")
    assert got["p95_source"] == "data"
    assert got["p95_s"] == pytest.approx(np.percentile(with_data["stats"]["data"], 95))
    fallback = row(frame, "lookup/full/synthetic-zipf/1000/32")
    assert fallback["p95_source"] == "max"
    assert fallback["p95_s"] == entry(raw, "lookup/full/synthetic-zipf/1000/32")["stats"]["max"]
    # `p95_seconds` was read but never written by bench: the schema dropped it, and a file holding it
    # keeps it as an undeclared column that no table reads.
    undeclared = entry(raw, "lookup/qr/synthetic-zipf/1000/32")
    got = row(frame, "lookup/qr/synthetic-zipf/1000/32")
    assert got["p95_source"] == "max" and got["p95_s"] == undeclared["stats"]["max"]
    assert got["p95_seconds"] == undeclared["extra_info"]["p95_seconds"] and "p95_seconds" not in schema.FIELD


def v2_copy(raw: dict) -> dict:
    """`raw` as bench writes it in schema 2: every record and not_run entry names its `dataset`."""
    data = json.loads(json.dumps(raw))
    data["membed"]["schema_version"] = 2
    for record in [b["extra_info"] for b in data["benchmarks"]] + data["membed"]["not_run"]:
        record.update(schema_version=2, dataset=record.pop("vocab"))
    return data


def test_schema_1_and_schema_2_files_load_the_same_frame(tmp_path, raw, frame):
    assert {b["extra_info"]["schema_version"] for b in raw["benchmarks"]} == {1}
    assert "vocab" in raw["benchmarks"][0]["extra_info"] and "vocab" not in frame.columns
    assert row(frame, "accuracy/mixed_dim/ml-1m/5x")["dataset"] == "ml-1m"  # a not_run entry
    path = tmp_path / "v2.json"
    path.write_text(json.dumps(v2_copy(raw)))
    v2 = load_results([path])
    pd.testing.assert_frame_equal(v2.drop(columns="source"), frame.drop(columns="source"))
    # One file of each version: rows of both, one `dataset` column.
    both = load_results([FIXTURE, path])
    assert both["dataset"].notna().all() and len(both) == 2 * len(frame)


def test_a_schema_1_memory_case_not_run_with_sizes_reads_as_projected(tmp_path, raw):
    data = json.loads(json.dumps(raw))
    measured = next(b for b in data["benchmarks"] if b["extra_info"]["case"] == "memory/qr/synthetic-zipf/1000/32")
    data["membed"]["not_run"].append({**measured["extra_info"], "status": "failed", "reason": "killed"})
    path = tmp_path / "v1.json"
    path.write_text(json.dumps(data))
    failed = load_results([path]).query("status == 'failed' and suite == 'memory'")
    assert failed["projected"].tolist() == [True]


def test_failed_and_skipped_cases_keep_their_reason_and_no_stats(frame):
    failed = row(frame, "lookup/mixed_dim/synthetic-zipf/1000000/32")
    assert failed["status"] == "failed" and "OOM" in failed["reason"]
    assert np.isnan(failed["median_s"]) and np.isnan(failed["p95_s"])
    skipped = row(frame, "accuracy/mixed_dim/ml-1m/5x")
    assert skipped["status"] == "skipped" and "ml-1m" in skipped["reason"]
    assert skipped["suite"] == "accuracy" and skipped["preset"] == "5x"


def test_projected_flag_defaults_to_false(frame):
    assert frame["projected"].dtype == bool
    assert sorted(frame.loc[frame["projected"], "case"]) == [
        "memory/full/synthetic-zipf/10000000/32",
        "memory/qr/synthetic-zipf/10000000/32",
    ]


def test_several_files_are_concatenated(tmp_path, raw):
    copy = tmp_path / "copy.json"
    copy.write_text(json.dumps(raw))
    both = load_results([FIXTURE, copy])
    assert len(both) == 2 * (len(raw["benchmarks"]) + len(raw["membed"]["not_run"]))
    assert set(both["source"]) == {str(FIXTURE), str(copy)}


def test_latest_run_is_the_newest_file_anywhere_under_storage(tmp_path):
    older = tmp_path / ".benchmarks" / "Linux-CPython-3.11-64bit" / "0001_old.json"
    newer = tmp_path / ".benchmarks" / "other-machine" / "0001_new.json"
    for path, mtime in ((older, 2_000_000_000), (newer, 2_000_000_100)):
        path.parent.mkdir(parents=True)
        path.write_text("{}")
        os.utime(path, (mtime, mtime))
    assert latest_run(tmp_path / ".benchmarks") == newer
    with pytest.raises(ResultError, match="no saved run"):
        latest_run(tmp_path / "empty")


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such file"),
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"machine_info": {}}', "no `benchmarks` list"),
        ('{"benchmarks": [], "membed": {"schema_version": 3}}', "incompatible schema_version 3. This report reads: 1, 2"),
    ],
)
def test_unusable_files_raise_one_line_errors(tmp_path, content, message):
    path = tmp_path / "result.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ResultError, match=message) as info:
        read_result(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_an_entry_with_an_unknown_schema_version_is_rejected(tmp_path, raw):
    doctored = json.loads(json.dumps(raw))
    doctored["benchmarks"][0]["extra_info"]["schema_version"] = 7
    path = tmp_path / "result.json"
    path.write_text(json.dumps(doctored))
    with pytest.raises(ResultError, match="incompatible schema_version 7"):
        load_results([path])


# --- frames: pure helpers ------------------------------------------------------


def test_mse_vs_full_uses_the_full_baseline_of_the_same_dataset(frame):
    derived = frames.with_baseline_mse(frame)
    qr = row(derived, "accuracy/qr/ml-100k/5x")
    assert qr["full_val_mse"] == pytest.approx(0.90)
    assert qr["mse_vs_full"] == pytest.approx(0.02)
    assert qr["mse_vs_full_pct"] == pytest.approx(100 * 0.02 / 0.90)
    planted = row(derived, "accuracy/qr/synthetic-planted/5x")
    assert planted["full_val_mse"] == pytest.approx(0.27)
    assert np.isnan(row(derived, "accuracy/mixed_dim/ml-1m/5x")["mse_vs_full"])  # no baseline on ml-1m
    assert np.isnan(row(derived, "memory/qr/synthetic-zipf/1000/32")["mse_vs_full"])


def memory_rows(measured_and_estimated: dict[str, tuple]) -> pd.DataFrame:
    """Memory rows: case -> (optimizer, status, peak lookup, estimate lookup, peak train, estimate train)."""
    rows = []
    for case, (optimizer, status, lookup, lookup_estimate, train, train_estimate) in measured_and_estimated.items():
        rows.append(dict.fromkeys(EXTRA_COLUMNS) | {
            "case": case, "suite": "memory", "strategy": "full", "dim": 64, "dataset": "synthetic-zipf",
            "vocab_size": 1000, "optimizer": optimizer, "status": status, "peak_alloc_bytes_lookup": lookup,
            "estimated_peak_bytes_lookup": lookup_estimate, "peak_alloc_bytes_train": train,
            "estimated_peak_bytes_train": train_estimate})
    return frame_of_rows(rows)


def frame_of_rows(rows: list[dict]) -> pd.DataFrame:
    from analysis.load import frame_of

    return frame_of(rows)


def test_estimate_ratios_flag_ok_cases_outside_the_band():
    rows = memory_rows({
        "inside": ("adam", "ok", 100.0, 100.0, 300.0, 250.0),          # 1.0 and 1.2
        "low_train": ("rowwise_adagrad", "ok", 100.0, 110.0, 70.0, 100.0),  # 0.91 and 0.7
        "high_lookup": ("adam", "ok", 130.0, 100.0, None, None),       # 1.3; int8: no train phase
        "failed": ("adam", "failed", None, 100.0, None, 100.0),
        "old_file": ("adam", "ok", 100.0, None, 100.0, None),         # written before the estimates
    })
    out = frames.with_estimate_ratios(rows).set_index("case")
    assert out.loc["inside", "est_ratio_train"] == pytest.approx(1.2)
    assert out.loc["low_train", "est_ratio_lookup"] == pytest.approx(100 / 110)
    assert np.isnan(out.loc["high_lookup", "est_ratio_train"]) and np.isnan(out.loc["old_file", "est_ratio_lookup"])
    assert out["outside_estimate"].to_dict() == {"inside": False, "low_train": True, "high_lookup": True,
                                                 "failed": None, "old_file": None}
    assert frames.estimate_line(out) == ("2 of 3 memory cases outside [0.8, 1.25] of the estimate "
                                         "(peak alloc / membed.plan's estimate).")
    assert frames.estimate_line(frames.with_estimate_ratios(rows[rows["case"] == "old_file"])) == ""


def test_the_memory_table_shows_the_ratios_the_flag_and_the_count():
    rows = memory_rows({"a": ("adam", "ok", 100.0, 100.0, 300.0, 250.0),
                        "b": ("rowwise_adagrad", "ok", 100.0, 100.0, 70.0, 100.0)})
    (table,) = frames.report_tables(rows)
    assert table.frame["optimizer"].tolist() == ["adam", "rowwise_adagrad"]  # run order: adam first
    assert table.frame["est. ratio train"].tolist() == pytest.approx([1.2, 0.7])
    assert table.frame["outside est."].tolist() == [False, True]
    assert "1 of 2 memory cases outside [0.8, 1.25] of the estimate" in table.note
    inside = frames.report_tables(memory_rows({"a": ("adam", "ok", 100.0, 100.0, 300.0, 250.0)}))[0]
    assert "outside est." not in inside.frame and "0 of 1 memory cases outside" in inside.note


def test_each_optimizer_is_compared_with_the_full_baseline_of_its_own_optimizer(frame):
    accuracy = frame[frame["suite"] == "accuracy"]
    other = accuracy.assign(optimizer="rowwise_adagrad", case=accuracy["case"] + "/rowwise_adagrad",
                            val_mse=accuracy["val_mse"] + 0.5)
    both = pd.concat([accuracy.assign(optimizer="adam"), other], ignore_index=True)
    derived = frames.with_baseline_mse(both)
    assert row(derived, "accuracy/qr/ml-100k/5x/rowwise_adagrad")["full_val_mse"] == pytest.approx(1.40)
    assert row(derived, "accuracy/qr/ml-100k/5x")["mse_vs_full"] == pytest.approx(0.02)
    # The example's table is Adam's (the example's recipe); the front is drawn per optimizer.
    example = frames.example_table(derived, best=2).frame
    assert set(example["val MSE"]) <= set(accuracy["val_mse"])
    front = frames.pareto_table(derived).frame
    assert set(front["optimizer"]) == {"adam", "rowwise_adagrad"}


def test_pareto_front_keeps_only_undominated_rows_per_group():
    data = pd.DataFrame(
        {
            "dataset": ["a"] * 6 + ["b"] * 2,
            "vocab_size": [10] * 6 + [20] * 2,
            "name": ["cheap", "mid", "dominated", "same-cost-worse", "twin", "no-mse", "b1", "b2"],
            "param_bytes": [1, 2, 3, 2, 1, 0.5, 5, 4],
            "val_mse": [3.0, 1.0, 2.0, 1.5, 3.0, np.nan, 1.0, 2.0],
        }
    )
    front = frames.pareto_front(data)
    assert front["name"].tolist() == ["cheap", "twin", "mid", "b2", "b1"]


def test_pareto_table_on_the_fixture(frame):
    table = frames.pareto_table(frames.with_baseline_mse(frame)).frame
    ml = table[table["dataset"] == "ml-100k"]
    assert list(zip(ml["strategy"], ml["preset"], strict=True)) == [
        ("qr", "100x"),
        ("qr", "20x"),
        ("qr", "5x"),
        ("full", "baseline"),
    ]
    assert (ml["test loss"].astype(float).diff().dropna() < 0).all()  # a front gets better as it gets bigger


def test_example_table_picks_the_best_cheaper_strategies(frame):
    table = frames.example_table(frames.with_baseline_mse(frame), best=2).frame
    assert table["role"].tolist()[:2] == ["baseline", "example"]
    best = table.iloc[2:]
    # qr 20x and mixed_dim 20x have fewer params than the example pair (9000) and the lowest MSE;
    # qr 5x is better but bigger than the example, so it is not eligible.
    assert best["strategy"].tolist() == ["qr", "mixed_dim"]
    assert (best["params"] < 9000).all()
    example = table[table["role"] == "example"].iloc[0]
    assert example["params / baseline"] == pytest.approx(9000 / 84000)
    assert example["val MSE per epoch"] == "1.2, 1.02, 0.97"


def test_suite_tables_show_ok_rows_and_group_the_rest_by_reason(frame):
    tables = {t.title.split()[1]: t for t in frames.report_tables(frame)}
    for suite in ("lookup", "accuracy"):
        shown = tables[suite].frame
        assert "reason" not in shown and ("status" not in shown or shown["status"].eq("ok").all())
    not_run = tables["run"].frame  # "Not run or failed (N cases)": one row per reason
    assert not_run.loc[not_run["reason"].str.contains("OOM"), "status"].tolist() == ["failed"]
    assert (not_run["status"].eq("skipped") & not_run["example"].str.startswith("accuracy/")).any()
    memory = tables["memory"].frame
    assert "projected" in memory and "status" not in memory  # nothing failed there
    assert memory.groupby("vocab_size")["strategy"].first().eq("full").all()  # baseline leads each group


def test_deltas_are_long_with_percent_of_the_baseline():
    old = pd.DataFrame({"case": ["a", "b", "gone"], "x": [2.0, 0.0, 1.0], "y": [np.nan, 1.0, 1.0]})
    new = pd.DataFrame({"case": ["a", "b", "added"], "x": [3.0, 1.0, 5.0], "y": [np.nan, 0.5, 1.0]})
    long = compare.deltas(old, new, ["x", "y"])
    assert list(long.columns) == ["case", *compare.DELTA_COLUMNS]
    long = long.set_index(["case", "field"])
    assert long.loc[("a", "x"), ["baseline", "result", "delta", "delta %"]].tolist() == [2.0, 3.0, 1.0, 50.0]
    assert np.isnan(long.loc[("b", "x"), "delta %"])  # relative to 0 is undefined
    assert long.loc[("b", "y"), "delta %"] == -50.0
    assert ("a", "y") not in long.index  # neither side has it
    assert np.isnan(long.loc[("gone", "x"), "result"]) and np.isnan(long.loc[("added", "x"), "baseline"])


def test_compare_frame_shows_metric_changes_and_status_changes(frame):
    new = frame.copy()
    new.loc[new["case"] == "memory/qr/synthetic-zipf/1000/32", "params"] += 10
    new = new[new["case"] != "train_step/qr/synthetic-zipf/100000/32"]
    long = compare.compare_frame(frame, new)
    params = long[(long["case"] == "memory/qr/synthetic-zipf/1000/32") & (long["metric"] == "params")].iloc[0]
    assert params["delta"] == 10 and params["status"] == "ok"
    gone = long[long["case"] == "train_step/qr/synthetic-zipf/100000/32"]
    assert set(gone["status"]) == {"ok -> missing"}
    skipped = long[long["case"] == "accuracy/mixed_dim/ml-1m/5x"]
    assert skipped["metric"].tolist() == ["status"] and skipped["status"].iloc[0] == "skipped"


def test_not_run_rows_keep_their_node_id_and_the_selection_is_read(tmp_path, raw):
    data = json.loads(json.dumps(raw))
    skipped = data["membed"]["not_run"][0]
    skipped["fullname"] = "bench/test_accuracy.py::test_accuracy[mixed_dim-ml-1m-5x]"
    data["membed"]["selected"] = [skipped["fullname"], data["benchmarks"][0]["fullname"]]
    with_selection, without = tmp_path / "with.json", tmp_path / "without.json"
    with_selection.write_text(json.dumps(data))
    without.write_text(json.dumps(raw))

    frame, selected = load_run([with_selection])
    assert row(frame, skipped["case"])["fullname"] == skipped["fullname"]
    assert selected == frozenset(data["membed"]["selected"])
    assert load_run([without])[1] is None
    # A file that does not say what it selected makes the union unknown.
    assert load_run([with_selection, without])[1] is None

    data["membed"]["selected"] = "bench"
    with_selection.write_text(json.dumps(data))
    with pytest.raises(ResultError, match="must be a list of pytest node ids"):
        load_run([with_selection])


def test_an_empty_benchmarks_list_loads_its_not_run_cases(tmp_path, raw):
    data = json.loads(json.dumps(raw))
    data["benchmarks"] = []
    path = tmp_path / "empty.json"
    path.write_text(json.dumps(data))
    frame = load_results([path])
    assert frame["case"].tolist() == [n["case"] for n in raw["membed"]["not_run"]]
    groups = frames.not_run_table(frame).frame
    assert groups[["cases", "status", "reason"]].values.tolist() == [
        [1, "skipped", "dataset ml-1m is not available offline"]
    ]


def test_case_groups_count_each_reason_once_most_cases_first():
    stopped = pd.DataFrame(
        {"case": list("abcde"), "status": ["skipped"] * 4 + ["failed"], "reason": ["r1", "r2", "r2", "r2", "r1"]}
    )
    groups = frames.case_groups(stopped, ["status", "reason"], shown=2)
    assert groups.values.tolist() == [
        [3, "skipped", "r2", "b, c and 1 more"],
        [1, "skipped", "r1", "a"],
        [1, "failed", "r1", "e"],
    ]


def test_changed_rows_ignore_float_noise_and_keep_status_changes(frame):
    new = frame.copy()
    new["param_bytes"] = new["param_bytes"] * (1 + 1e-12)  # noise
    new.loc[new["case"] == "memory/qr/synthetic-zipf/1000/32", "params"] += 10
    new = new[new["case"] != "train_step/qr/synthetic-zipf/100000/32"]
    long = compare.compare_frame(frame, new)
    changed = compare.changed_rows(long)
    assert set(zip(changed["case"], changed["metric"])) >= {("memory/qr/synthetic-zipf/1000/32", "params")}
    assert "param MiB" not in set(changed.loc[changed["status"] == "ok", "metric"])
    assert set(changed["case"]) == {"memory/qr/synthetic-zipf/1000/32", "train_step/qr/synthetic-zipf/100000/32"}
    assert compare.compare_counts(long) == {
        "compared": frame["case"].nunique() - 1,
        "changed": 1,
        "only_old": 1,
        "only_new": 0,
    }
    assert compare.changed_rows(compare.compare_frame(frame, frame)).empty
