"""The command line (analysis.report.main): formats, --out, --compare, --check, --update-baseline, exit codes."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pandas as pd
import pytest

from analysis.report import main

FIXTURE = Path(__file__).parent / "fixtures" / "result_small.json"
REPO_PYPROJECT = Path(__file__).parents[1] / "pyproject.toml"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ACCURACY = "accuracy/qr/ml-100k/5x"
MEMORY = "memory/qr/synthetic-zipf/100000/32"


@pytest.fixture(scope="module")
def raw() -> dict:
    return json.loads(FIXTURE.read_text())


def write_result(path: Path, raw: dict, changes: dict[str, dict] | None = None, drop: tuple[str, ...] = ()) -> Path:
    """Writes a copy of `raw` with extra_info `changes` per case and the `drop` cases removed."""
    data = json.loads(json.dumps(raw))
    data["benchmarks"] = [b for b in data["benchmarks"] if b["extra_info"]["case"] not in drop]
    for bench in data["benchmarks"]:
        bench["extra_info"].update((changes or {}).get(bench["extra_info"]["case"], {}))
    path.write_text(json.dumps(data))
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def strategies_of(raw: dict) -> set[str]:
    return {b["extra_info"]["strategy"] for b in raw["benchmarks"]} | {n["strategy"] for n in raw["membed"]["not_run"]}


def test_rich_output_has_a_table_per_suite_and_keeps_failures(capsys):
    code, out, err = run(capsys, FIXTURE)
    assert code == 0 and err == ""
    for title in (
        "suite: memory",
        "suite: lookup",
        "suite: gather",
        "suite: train_step",
        "suite: accuracy",
        "The example on MovieLens",
        "Pareto front",
    ):
        assert title in out
    assert "ResourceExhaustedError" in out  # the failed lookup case
    assert "skipped" in out and "dataset ml-1m" in out  # the not_run case, reason wrapped by rich


def test_markdown_contains_every_strategy_of_the_input(capsys, raw):
    code, out, _ = run(capsys, FIXTURE, "--format", "markdown")
    assert code == 0
    assert out.startswith("# membed benchmark report")
    for strategy in strategies_of(raw):
        assert f"|{strategy}|" in out, strategy
    assert "|:--|" in out  # a real pipe table, not a dump


def test_csv_is_one_row_per_case(capsys, raw):
    code, out, _ = run(capsys, FIXTURE, "--format", "csv")
    assert code == 0
    frame = pd.read_csv(io.StringIO(out))
    assert len(frame) == len(raw["benchmarks"]) + len(raw["membed"]["not_run"])
    assert frame.loc[frame["case"] == ACCURACY, "mse_vs_full"].iloc[0] == pytest.approx(0.02)
    assert json.loads(frame.loc[frame["case"] == ACCURACY, "val_mse_per_epoch"].iloc[0]) == [1.12, 0.97, 0.92]


def test_json_has_the_tables_and_the_cases(capsys):
    code, out, _ = run(capsys, FIXTURE, "--format", "json")
    assert code == 0
    document = json.loads(out)
    titles = [t["title"] for t in document["tables"]]
    assert "Pareto front: memory vs test loss" in titles
    pareto = next(t for t in document["tables"] if t["title"].startswith("Pareto"))
    assert {"ml-100k", "synthetic-planted"} == {r["dataset"] for r in pareto["rows"]}
    assert any(c["case"] == ACCURACY for c in document["cases"])


def test_out_writes_report_md_and_png_plots(tmp_path, capsys):
    out_dir = tmp_path / "report"
    code, out, _ = run(capsys, FIXTURE, "--format", "markdown", "--summary-only", "--out", out_dir)
    assert code == 0
    # The first screen says where the whole report went; the report does not point at itself.
    assert f"The whole report, with its plots: {out_dir / 'report.md'}" in out
    report = (out_dir / "report.md").read_text()
    assert "The whole report, with its plots" not in report
    assert "## suite: memory" in report
    for name in ("memory_vs_vocab.png", "mse_vs_memory.png", "lookup_latency.png"):
        data = (out_dir / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 1000, name
        assert f"]({name})" in report


def test_a_run_with_two_optimizers_reports_each_and_plots_a_panel_per_optimizer(tmp_path, capsys, raw, monkeypatch):
    from analysis import plots

    data = json.loads(json.dumps(raw))
    variants = []
    for bench in data["benchmarks"]:
        info = bench["extra_info"]
        if info["suite"] in ("memory", "train_step", "accuracy"):
            info["optimizer"] = "adam"
            other = json.loads(json.dumps(bench))
            other["extra_info"].update(optimizer="rowwise_adagrad", case=info["case"] + "/rowwise_adagrad")
            other["fullname"] = bench["fullname"][:-1] + "-rowwise_adagrad]"
            variants.append(other)
    data["benchmarks"] += variants
    result = tmp_path / "two.json"
    result.write_text(json.dumps(data))
    panels = []
    real_grid = plots._grid
    monkeypatch.setattr(plots, "_grid", lambda count, **kw: panels.append(count) or real_grid(count, **kw))
    code, out, _ = run(capsys, result, "--format", "markdown", "--out", tmp_path / "report")
    assert code == 0 and "rowwise_adagrad" in out and "|optimizer|" in out
    # lookup, train_step with adam, train_step with rowwise_adagrad; the accuracy panels: a dataset per optimizer.
    from analysis.load import load_results

    fitted = load_results([FIXTURE]).query("suite == 'accuracy' and status == 'ok'").dropna(subset=["param_bytes"])
    memory, mse, latency = panels
    assert latency == 3 and mse == 2 * len(fitted.groupby(["dataset", "vocab_size"]))


def test_compare_shows_old_new_and_deltas(tmp_path, capsys, raw):
    new = write_result(tmp_path / "new.json", raw, {MEMORY: {"params": 20356}, ACCURACY: {"val_mse": 0.82}})
    code, out, _ = run(capsys, "--compare", FIXTURE, new, "--format", "json")
    assert code == 0
    tables = {t["title"]: t["rows"] for t in json.loads(out)["tables"]}
    params = next(
        r
        for r in tables["compare: memory"]
        if r["metric"] == "params" and r["vocab_size"] == 100000 and r["strategy"] == "qr"
    )
    assert (params["old"], params["new"], params["delta"]) == (20256, 20356, 100)
    assert params["delta %"] == pytest.approx(100 * 100 / 20256)
    mse = next(
        r
        for r in tables["compare: accuracy"]
        if r["metric"] == "val MSE" and r["preset"] == "5x" and r["strategy"] == "qr"
    )
    assert mse["delta"] == pytest.approx(-0.1)

    code, out, _ = run(capsys, "--compare", FIXTURE, new, "--format", "markdown")
    assert code == 0 and "## compare: accuracy" in out
    header = next(line for line in out.splitlines() if line.startswith("|dataset"))
    assert [c.strip() for c in header.strip("|").split("|")][-4:] == ["old", "new", "delta", "delta %"]
    assert "|+100|" in out


def test_check_passes_on_an_identical_result(capsys):
    code, out, _ = run(capsys, FIXTURE, "--check", FIXTURE)
    assert code == 0
    assert "gate passed: 0 regressions, 0 improvements" in out


def test_check_fails_with_a_table_of_regressions_and_lists_improvements(tmp_path, capsys, raw):
    doctored = write_result(
        tmp_path / "doctored.json",
        raw,
        {MEMORY: {"params": 20257}, ACCURACY: {"val_mse": 0.99}, "accuracy/hash/ml-100k/20x": {"val_mse": 0.9}},
        drop=("train_step/qr/synthetic-zipf/100000/32",),
    )
    code, out, _ = run(capsys, doctored, "--check", FIXTURE, "--format", "markdown")
    assert code == 1
    regressions, improvements = out.split("## Improvements")
    assert "## Regressions (2)" in regressions
    assert "## Missing or failed in the result (1), each fails the gate" in regressions
    for case in (MEMORY, ACCURACY, "train_step/qr/synthetic-zipf/100000/32"):
        assert case in regressions
    assert "accuracy/hash/ml-100k/20x" in improvements and "accuracy/hash/ml-100k/20x" not in regressions
    assert "gate FAILED: 3 regressions, 1 improvements" in out


def make_unusable(tmp_path: Path, raw: dict, kind: str) -> tuple[list[str], str]:
    """Arguments for one kind of unusable input, and the message expected on stderr."""
    if kind == "missing file":
        return [str(tmp_path / "nope.json")], "no such file"
    if kind == "not json":
        (tmp_path / "bad.json").write_text("{oops")
        return [str(tmp_path / "bad.json")], "not valid JSON"
    if kind == "not a result":
        (tmp_path / "other.json").write_text('{"hello": "world"}')
        return [str(tmp_path / "other.json")], "not a pytest-benchmark result (no `benchmarks` list)"
    if kind == "no case in common":
        renamed = json.loads(json.dumps(raw))
        for bench in renamed["benchmarks"]:
            bench["extra_info"]["case"] = "renamed/" + bench["extra_info"]["case"]
        (tmp_path / "renamed.json").write_text(json.dumps(renamed))
        return [str(tmp_path / "renamed.json"), "--check", str(FIXTURE)], "no case in common"
    if kind == "incompatible baseline":
        (tmp_path / "baseline.json").write_text(
            json.dumps({"schema_version": 2, "kind": "membed-baseline", "cases": {}})
        )
        return [str(FIXTURE), "--check", str(tmp_path / "baseline.json")], "incompatible schema_version 2"
    if kind == "no saved run":
        return ["--storage", str(tmp_path / "empty")], "no saved run found"
    raise KeyError(kind)


@pytest.mark.parametrize(
    "kind",
    ["missing file", "not json", "not a result", "no case in common", "incompatible baseline", "no saved run"],
)
def test_unusable_input_exits_2_with_one_line(tmp_path, capsys, raw, kind):
    argv, message = make_unusable(tmp_path, raw, kind)
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert out == ""


def test_update_baseline_round_trip(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, FIXTURE, "--update-baseline")
    assert code == 0 and "reports/baseline.json" in out
    written = tmp_path / "reports" / "baseline.json"
    assert json.loads(written.read_text())["kind"] == "membed-baseline"
    # Nothing above tmp_path holds a gate table: name the repo's.
    code, out, _ = run(capsys, FIXTURE, "--check", written, "--gate-config", REPO_PYPROJECT)
    assert code == 0 and "0 regressions, 0 improvements" in out

    explicit = tmp_path / "elsewhere.json"
    assert run(capsys, FIXTURE, "--update-baseline", explicit)[0] == 0
    assert explicit.read_text() == written.read_text()


def test_pyproject_gate_table_is_honoured_and_flags_win(tmp_path, capsys, raw):
    worse = write_result(tmp_path / "worse.json", raw, {ACCURACY: {"val_mse": 0.97}})  # +0.05
    baseline = tmp_path / "reports" / "baseline.json"
    baseline.parent.mkdir()
    baseline.write_text(FIXTURE.read_text())
    # The table is found from the baseline's folder upward, whatever the working directory.
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n\n[tool.membed.gate]\nval_mse_abs = 0.1\n')
    code, out, _ = run(capsys, worse, "--check", baseline)
    assert code == 0 and "val_mse_abs" not in out
    assert f"limits: [tool.membed.gate] of {tmp_path.resolve() / 'pyproject.toml'}" in out
    code, out, _ = run(capsys, worse, "--check", baseline, "--val-mse-abs", "0.01")
    assert code == 1 and "overridden by --val-mse-abs" in out
    (tmp_path / "pyproject.toml").write_text("[tool.membed.gate]\nval_mse = 0.1\n")
    code, _, err = run(capsys, worse, "--check", baseline)
    assert code == 2 and "unknown gate key 'val_mse'" in err


def test_no_argument_reads_the_newest_saved_run(tmp_path, capsys, monkeypatch, raw):
    older = write_result(tmp_path / "old.json", raw)
    storage = tmp_path / ".benchmarks" / "Linux-CPython-3.11-64bit"
    storage.mkdir(parents=True)
    older = older.rename(storage / "0001_old.json")
    newer = write_result(storage / "0002_new.json", raw, drop=(MEMORY,))
    os.utime(older, (2_000_000_000, 2_000_000_000))
    os.utime(newer, (2_000_000_100, 2_000_000_100))
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "--format", "csv")
    assert code == 0
    frame = pd.read_csv(io.StringIO(out))
    assert set(frame["source"]) == {str(Path(".benchmarks") / "Linux-CPython-3.11-64bit" / "0002_new.json")}
    assert MEMORY not in set(frame["case"])


def test_update_baseline_never_overwrites_a_result_file(tmp_path, capsys, raw, monkeypatch):
    result = write_result(tmp_path / "out.json", raw)
    before = result.read_text()
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "--update-baseline", result)  # RESULT.json parsed as the baseline PATH
    assert code == 2 and "is a benchmark result, not a baseline" in err
    assert result.read_text() == before


# --- the first screen: summary, then plots, then compact tables ----------------------------------------


def table_lines(markdown: str) -> list[str]:
    return [line for line in markdown.splitlines() if line.startswith("|")]


def test_report_md_opens_with_the_best_strategy_per_level_before_the_plots(tmp_path, capsys):
    code, _, _ = run(capsys, FIXTURE, "--out", tmp_path)
    assert code == 0
    report = (tmp_path / "report.md").read_text()
    sections = [line for line in report.splitlines() if line.startswith("## ")]
    assert sections[:2] == ["## Summary: best strategy per compression level", "## Plots"]
    summary = report[report.index("## Summary") : report.index("## Plots")]
    # ml-100k: qr is the only (and so best) 5x and 100x; at 20x qr's 0.95 beats mixed_dim's 0.96 and hash's 1.03.
    for level, strategy in (("5x", "qr"), ("20x", "qr"), ("100x", "qr")):
        assert f"|ml-100k|2,625|{level}|{strategy}|" in summary, level
    assert "|synthetic-planted|" in summary and "|5x|qr|" in summary
    assert "1 seed per case" in summary


def test_summary_only_prints_the_first_screen(capsys):
    code, out, _ = run(capsys, FIXTURE, "--format", "markdown", "--summary-only")
    assert code == 0
    assert "## Summary: best strategy per compression level" in out
    assert "## suite:" not in out and "Not run or failed" not in out


def test_markdown_tables_are_not_padded(capsys):
    code, out, _ = run(capsys, FIXTURE, "--format", "markdown")
    assert code == 0
    lines = table_lines(out)
    assert len(lines) > 20
    padded = [line for line in lines if "| " in line or " |" in line or "  " in line]
    assert padded == []


def test_skipped_and_failed_cases_are_one_line_per_reason_not_suite_rows(tmp_path, capsys, raw):
    data = json.loads(json.dumps(raw))
    template = data["membed"]["not_run"][0]
    data["membed"]["not_run"] = [
        {**template, "case": f"memory/tt/synthetic-zipf/{10 ** k}/32", "reason": "too big", "status": "skipped"}
        for k in range(3, 9)
    ]
    result = tmp_path / "skips.json"
    result.write_text(json.dumps(data))
    code, out, _ = run(capsys, result, "--format", "markdown")
    assert code == 0
    reasons = [line for line in table_lines(out) if "too big" in line]
    assert reasons == ["|6|skipped|too big|memory/tt/synthetic-zipf/1000/32 and 5 more|"]
    code, csv, _ = run(capsys, result, "--format", "csv")
    assert sum("too big" in line for line in csv.splitlines()) == 6  # every case stays in the CSV


def synthetic_result(path: Path, raw: dict, cases: int) -> Path:
    """`raw` grown to `cases` cases: its benchmarks copied at new vocab sizes, a third of them skipped."""
    data = json.loads(json.dumps(raw))
    benchmarks, not_run = [], []
    templates = [b for b in raw["benchmarks"] if b["extra_info"]["vocab_size"]]
    for i in range(cases):
        bench = json.loads(json.dumps(templates[i % len(templates)]))
        info = bench["extra_info"]
        if info["suite"] != "accuracy":  # accuracy copies read as seeds of the same case; a plot panel per size
            info["vocab_size"] += i
        info["case"] = f"{info['case']}/{i}"
        if i % 3 == 2:
            reason = ("dataset ml-1m not available", "too big for this machine", "invalid combination")[i % 9 // 3]
            not_run.append({**info, "status": "skipped", "reason": reason, "fullname": bench["fullname"]})
        else:
            benchmarks.append(bench)
    data["benchmarks"], data["membed"]["not_run"] = benchmarks, not_run
    path.write_text(json.dumps(data))
    return path


def test_a_1000_case_report_md_stays_under_100_kb(tmp_path, capsys, raw):
    result = synthetic_result(tmp_path / "big.json", raw, 1000)
    code, _, _ = run(capsys, result, "--out", tmp_path / "report")
    assert code == 0
    size = (tmp_path / "report" / "report.md").stat().st_size
    assert size < 100 * 1024, size
    code, out, _ = run(capsys, result, "--format", "csv")
    assert len(pd.read_csv(io.StringIO(out))) == 1000


def test_plot_styles_tell_14_strategies_apart_and_the_take_floor_is_optional(tmp_path):
    from analysis import plots
    from analysis.load import load_results

    styles = plots.strategy_styles([f"strategy{i}" for i in range(14)])
    assert len(set(styles.values())) == 14 and len({color for color, _ in styles.values()}) == 14
    frame = load_results([FIXTURE])
    assert plots.take_floor(frame.drop(columns="floor_ratio", errors="ignore")) is None
    lookups = frame["suite"] == "lookup"
    with_floor = frame.assign(floor_ratio=frame["gather_ratio"].where(~lookups) * 8.0)
    with_floor.loc[lookups, "floor_ratio"] = frame.loc[lookups, "gather_ratio"] * 8.0
    assert plots.take_floor(with_floor[lookups]) == pytest.approx(1 / 8)
    drawn = []
    real = plots.Figure.subplots

    def spying(self, *args, **kwargs):
        axes = real(self, *args, **kwargs)
        for axis in axes.ravel():
            original = axis.axhline
            axis.axhline = lambda y, *a, _o=original, **k: drawn.append((y, k.get("label"))) or _o(y, *a, **k)
        return axes

    plots.Figure.subplots = spying
    try:
        assert plots.plot_lookup_latency(with_floor, tmp_path / "latency.png") is not None
    finally:
        plots.Figure.subplots = real
    assert any(label and label.startswith("np.take floor") and y == pytest.approx(1 / 8) for y, label in drawn)
