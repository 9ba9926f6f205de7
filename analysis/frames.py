"""Pure DataFrame helpers: derived columns, per-suite tables, Pareto front, deltas.

Everything here takes and returns DataFrames (or `Table`s, a title plus a frame)
and renders nothing, so it is tested without any output format. Display frames
keep numbers as numbers in display units (MiB, ms); the renderers format them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

MIB = 1024 * 1024
SUITE_ORDER = ("memory", "lookup", "gather", "train_step", "blocks", "accuracy", "pipeline")
# Suites whose stats time something worth reading; the memory suite's and the
# accuracy suite's stats time setup and fit, which have their own columns.
LATENCY_SUITES = ("lookup", "gather", "train_step", "blocks")
KEY_COLUMNS = ("vocab", "vocab_size", "strategy", "preset", "dim")
BASELINE_STRATEGY = "full"
BASELINE_PRESET = "baseline"
EXAMPLE_STRATEGY = "example_qr+example_md"
EXAMPLE_PRESET = "example"
MOVIELENS_PREFIX = "ml-"
# The suites record compression by bytes (full float32 table bytes / (param_bytes
# + index_bytes)), so an int8 table shows ~3.8x though its params do not shrink;
# the label says so, and METRICS puts `params` beside it for the count view.
COMPRESSION_LABEL = "compression (bytes)"
# Relative difference below which two runs' numbers count as the same (JSON
# round trips and re-summing leave noise in the last digits, never more).
NOISE_RTOL = 1e-9

# (label, source column, scale): the measured columns of a suite table, in order.
METRICS: tuple[tuple[str, str, float], ...] = (
    ("params", "params", 1.0),
    (COMPRESSION_LABEL, "compression", 1.0),
    ("param MiB", "param_bytes", 1 / MIB),
    ("index MiB", "index_bytes", 1 / MIB),
    ("peak alloc MiB lookup", "peak_alloc_bytes_lookup", 1 / MIB),
    ("peak RSS MiB lookup", "peak_rss_bytes_lookup", 1 / MIB),
    ("peak alloc MiB train", "peak_alloc_bytes_train", 1 / MIB),
    ("peak RSS MiB train", "peak_rss_bytes_train", 1 / MIB),
    ("median ms", "median_s", 1e3),
    ("p95 ms", "p95_s", 1e3),
    ("gather_ratio", "gather_ratio", 1.0),
    ("val MSE", "val_mse", 1.0),
    ("MSE vs full", "mse_vs_full", 1.0),
    ("MSE vs full %", "mse_vs_full_pct", 1.0),
    ("excess MSE", "excess_mse", 1.0),
    ("fit s", "fit_seconds", 1.0),
    ("speedup vs example", "speedup_vs_example", 1.0),
    ("val MSE vs example", "val_mse_delta_vs_example", 1.0),
)
LATENCY_LABELS = ("median ms", "p95 ms")


@dataclass
class Table:
    """A titled display frame; `group_by` names the columns a renderer may split sections on."""

    title: str
    frame: pd.DataFrame
    note: str = ""
    group_by: tuple[str, ...] = ()


def ok_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows whose status is `ok`."""
    return frame[frame["status"] == "ok"]


def ordered_suites(frame: pd.DataFrame) -> list[str]:
    """The suites present in `frame`: the known ones in pipeline order, then the rest by name."""
    present = [s for s in frame["suite"].dropna().unique()]
    return [s for s in SUITE_ORDER if s in present] + sorted(s for s in present if s not in SUITE_ORDER)


def is_baseline(frame: pd.DataFrame) -> pd.Series:
    """Marks the full-table baseline rows: strategy `full`, preset `baseline` or no preset."""
    preset = frame["preset"]
    return (frame["strategy"] == BASELINE_STRATEGY) & (preset.isna() | (preset == BASELINE_PRESET))


def is_example(frame: pd.DataFrame) -> pd.Series:
    """Marks the example's memory-efficient pair (by strategy name, or by its preset)."""
    return (frame["strategy"] == EXAMPLE_STRATEGY) | (frame["preset"] == EXAMPLE_PRESET)


def with_baseline_mse(frame: pd.DataFrame) -> pd.DataFrame:
    """Adds `full_val_mse`, `mse_vs_full` and `mse_vs_full_pct` to every row with a val MSE.

    The baseline of a row is the ok `full` row (preset `baseline` preferred over
    no preset) of the same suite, vocab and vocab_size; rows without one get NaN.

    Args:
        frame: the tidy frame of `analysis.load.load_results`.

    Example:
        >>> out = with_baseline_mse(frame)
        >>> out.loc[out.strategy == "full", "mse_vs_full"].tolist()
        [0.0]
    """
    keys = ["suite", "vocab", "vocab_size"]
    base = ok_rows(frame)
    base = base[is_baseline(base) & base["val_mse"].notna()]
    # A preset of `baseline` outranks a full row without a preset.
    base = base.assign(_rank=(base["preset"] != BASELINE_PRESET).astype(int)).sort_values("_rank", kind="stable")
    base = base.drop_duplicates(keys)[[*keys, "val_mse"]].rename(columns={"val_mse": "full_val_mse"})
    out = frame.drop(columns=["full_val_mse", "mse_vs_full", "mse_vs_full_pct"], errors="ignore")
    out = out.merge(base, on=keys, how="left")
    out["full_val_mse"] = out["full_val_mse"].astype("float64")
    out["mse_vs_full"] = out["val_mse"] - out["full_val_mse"]
    out["mse_vs_full_pct"] = 100.0 * out["mse_vs_full"] / out["full_val_mse"]
    return out


def latency_note(frame: pd.DataFrame) -> str:
    """Says where the `p95 ms` column of these rows came from."""
    sources = set(ok_rows(frame)["p95_source"].dropna())
    if not sources:
        return ""
    if sources == {"max"}:
        return "p95 ms is stats.max: the run kept no per-round data and no extra_info.p95_seconds."
    if "max" in sources:
        return "p95 ms: rows with tail=max show stats.max (no per-round data, no extra_info.p95_seconds)."
    return "p95 ms from stats.data (--benchmark-save-data) or extra_info.p95_seconds."


def suite_frame(frame: pd.DataFrame, suite: str) -> pd.DataFrame:
    """All display columns of one suite, before empty ones are dropped; keeps `case`.

    Args:
        frame: a frame with the derived columns of `with_baseline_mse`.
        suite: the suite to show.
    """
    rows = frame[frame["suite"] == suite]
    # The full baseline leads each vocab group; a strategy's presets run from most to fewest params.
    rows = rows.assign(_not_base=~is_baseline(rows), _neg_params=-rows["params"]).sort_values(
        ["vocab", "vocab_size", "_not_base", "strategy", "_neg_params", "preset", "dim"],
        kind="stable",
        na_position="last",
    )
    columns: dict[str, object] = {"case": rows["case"].to_numpy()}
    columns.update({column: rows[column].to_numpy() for column in KEY_COLUMNS})
    columns["projected"] = rows["projected"].to_numpy().astype(bool)
    for label, column, scale in METRICS:
        if label in LATENCY_LABELS and suite not in LATENCY_SUITES:
            continue
        columns[label] = rows[column].to_numpy(dtype="float64") * scale if column in rows else np.nan
    if suite in LATENCY_SUITES:
        columns["tail"] = rows["p95_source"].map({"data": "p95", "extra_info": "p95", "max": "max"}).to_numpy()
    columns["status"] = rows["status"].to_numpy()
    columns["reason"] = rows["reason"].to_numpy()
    return pd.DataFrame(columns, index=pd.RangeIndex(len(rows)))


def drop_empty(display: pd.DataFrame) -> pd.DataFrame:
    """Drops the columns a reader does not need: all-empty metrics, constant optional keys.

    `dim` stays only when it varies (otherwise the title names it); `preset`,
    `projected`, `status`, `reason`, `tail` and `index MiB` only when some row
    says something in them.
    """
    keep = []
    for column in display.columns:
        values = display[column]
        if column == "case":
            continue
        if column == "dim":
            if values.dropna().nunique() > 1:
                keep.append(column)
        elif column == "projected":
            if values.any():
                keep.append(column)
        elif column == "status":
            if (values != "ok").any():
                keep.append(column)
        elif column == "tail":
            if (values == "max").any() and (values == "p95").any():
                keep.append(column)
        elif column == "index MiB":
            if values.fillna(0).ne(0).any():
                keep.append(column)
        elif values.notna().any():
            keep.append(column)
    return display[keep]


def suite_table(frame: pd.DataFrame, suite: str) -> Table:
    """The table of one suite: rows = strategies grouped by vocabulary, failed and skipped included."""
    display = suite_frame(frame, suite)
    dims = display["dim"].dropna().unique()
    title = f"suite: {suite}" + (f" (dim {int(dims[0])})" if len(dims) == 1 else "")
    notes = [latency_note(frame[frame["suite"] == suite])] if suite in LATENCY_SUITES else []
    if display["projected"].any():
        notes.append("projected rows come from cost formulas, not measurements.")
    return Table(title, drop_empty(display), " ".join(n for n in notes if n), ("vocab", "vocab_size"))


def pareto_front(
    frame: pd.DataFrame,
    cost: str = "param_bytes",
    value: str = "val_mse",
    by: Sequence[str] = ("vocab", "vocab_size"),
) -> pd.DataFrame:
    """The rows no other row of their group beats on both `cost` and `value` (lower is better).

    Row j dominates row i when it is no worse on both and strictly better on
    one; rows lacking either number are left out, and identical points all stay.

    Args:
        frame: any frame with the `cost`, `value` and `by` columns.
        cost: the memory column.
        value: the error column.
        by: the grouping (one front per vocabulary).

    Example:
        >>> pareto_front(pd.DataFrame({"vocab": ["v"] * 3, "vocab_size": [9] * 3,
        ...     "param_bytes": [1, 2, 3], "val_mse": [3, 1, 2]}))["param_bytes"].tolist()
        [1, 2]
    """
    candidates = frame.dropna(subset=[cost, value])
    keep = []
    for _, group in candidates.groupby(list(by), sort=True, dropna=False):
        costs = group[cost].to_numpy(dtype=float)
        values = group[value].to_numpy(dtype=float)
        no_worse = (costs[None, :] <= costs[:, None]) & (values[None, :] <= values[:, None])
        better = (costs[None, :] < costs[:, None]) | (values[None, :] < values[:, None])
        dominated = (no_worse & better).any(axis=1)
        keep.append(group[~dominated].sort_values([cost, value], kind="stable"))
    return pd.concat(keep) if keep else candidates.iloc[0:0]


def pareto_table(frame: pd.DataFrame) -> Table:
    """Per vocabulary, the ok accuracy rows on the (param_bytes, val MSE) Pareto front."""
    rows = ok_rows(frame[frame["suite"] == "accuracy"])
    front = pareto_front(rows)
    out = pd.DataFrame(
        {
            "vocab": front["vocab"].to_numpy(),
            "vocab_size": front["vocab_size"].to_numpy(),
            "strategy": front["strategy"].to_numpy(),
            "preset": front["preset"].to_numpy(),
            "params": front["params"].to_numpy(dtype="float64"),
            "param MiB": front["param_bytes"].to_numpy(dtype="float64") / MIB,
            "val MSE": front["val_mse"].to_numpy(dtype="float64"),
            "MSE vs full %": front["mse_vs_full_pct"].to_numpy(dtype="float64"),
        }
    )
    note = "Lower is better on both memory (param_bytes) and val MSE; no other strategy beats these on both."
    return Table("Pareto front: memory vs val MSE", drop_empty(out), note, ("vocab", "vocab_size"))


def epochs_text(values: object) -> str:
    """'1.1, 0.95, 0.9' for a per-epoch list; '' for anything else."""
    if not isinstance(values, (list, tuple, np.ndarray)) or len(values) == 0:
        return ""
    return ", ".join(f"{float(v):.4g}" for v in values)


def example_table(frame: pd.DataFrame, best: int = 3) -> Table:
    """On each MovieLens vocab: the full baseline, the example's pair, and the best cheaper strategies.

    "Best" means: among ok accuracy rows of that vocab other than the baseline
    and the example pair, with fewer params than the example pair, the lowest
    val MSE of each strategy (ties to fewer params), then the `best` lowest of
    those. A vocab without the example pair compares against the baseline's
    params instead, and says so in the role.

    Args:
        frame: a frame with the derived columns of `with_baseline_mse`.
        best: how many cheaper strategies to list per vocab.
    """
    rows = ok_rows(frame[(frame["suite"] == "accuracy") & frame["vocab"].str.startswith(MOVIELENS_PREFIX, na=False)])
    records = []
    for (vocab, vocab_size), group in rows.groupby(["vocab", "vocab_size"], sort=True):
        baseline = group[is_baseline(group)].head(1)
        example = group[is_example(group)].head(1)
        base_params = float(baseline["params"].iloc[0]) if len(baseline) else np.nan
        budget_row = example if len(example) else baseline
        if not len(budget_row):
            continue
        budget = float(budget_row["params"].iloc[0])
        others = group[~is_baseline(group) & ~is_example(group) & (group["params"] < budget)]
        others = others.dropna(subset=["val_mse"]).sort_values(["val_mse", "params"], kind="stable")
        others = others.drop_duplicates("strategy").head(best)
        label = "best < example params" if len(example) else "best < baseline params (no example pair)"
        picked = [("baseline", baseline), ("example", example)]
        picked += [(f"{label} #{i + 1}", others.iloc[[i]]) for i in range(len(others))]
        for role, row in picked:
            if not len(row):
                continue
            r = row.iloc[0]
            records.append(
                {
                    "vocab": vocab,
                    "vocab_size": vocab_size,
                    "role": role,
                    "strategy": r["strategy"],
                    "preset": r["preset"],
                    "params": float(r["params"]),
                    "params / baseline": float(r["params"]) / base_params,
                    "val MSE": float(r["val_mse"]),
                    "MSE vs full %": float(r["mse_vs_full_pct"]),
                    "val MSE per epoch": epochs_text(r["val_mse_per_epoch"]),
                }
            )
    columns = [
        "vocab",
        "vocab_size",
        "role",
        "strategy",
        "preset",
        "params",
        "params / baseline",
        "val MSE",
        "MSE vs full %",
        "val MSE per epoch",
    ]
    note = (
        f"Baseline: strategy {BASELINE_STRATEGY} (preset {BASELINE_PRESET}); example pair: {EXAMPLE_STRATEGY}. "
        f"Best: the lowest val MSE per strategy among those with fewer params than the example pair, top {best}."
    )
    return Table("The example on MovieLens", pd.DataFrame(records, columns=columns), note, ("vocab", "vocab_size"))


def case_groups(frame: pd.DataFrame, by: Sequence[str], shown: int = 3) -> pd.DataFrame:
    """One row per distinct value of the `by` columns: how many cases share it and the first `shown`.

    Hundreds of cases that stopped for one reason read as one line this way.
    Groups with the most cases come first.

    Example:
        >>> case_groups(pd.DataFrame({"case": ["a", "b", "c"], "reason": ["x", "y", "x"]}), ["reason"]).values.tolist()
        [[2, 'x', 'a, c'], [1, 'y', 'b']]
    """
    by = list(by)
    records = []
    for key, group in frame.groupby(by, sort=False, dropna=False):
        cases = group["case"].tolist()
        more = f" and {len(cases) - shown} more" if len(cases) > shown else ""
        values = key if isinstance(key, tuple) else (key,)
        records.append({"cases": len(cases), **dict(zip(by, values)), "examples": ", ".join(cases[:shown]) + more})
    out = pd.DataFrame(records, columns=["cases", *by, "examples"])
    return out.sort_values("cases", ascending=False, kind="stable").reset_index(drop=True)


def not_run_table(frame: pd.DataFrame) -> Table:
    """Every case that is not ok, grouped by status and reason: why parts of the grid are empty."""
    stopped = frame[frame["status"] != "ok"]
    note = "Each distinct reason once, with the number of cases it stopped."
    return Table(f"Not run or failed ({len(stopped)} cases)", case_groups(stopped, ["status", "reason"]), note)


def report_tables(frame: pd.DataFrame) -> list[Table]:
    """Every table of the report: one per suite, the example's, the Pareto front, then why cases did not run."""
    derived = with_baseline_mse(frame)
    tables = [suite_table(derived, suite) for suite in ordered_suites(derived)]
    if (derived["suite"] == "accuracy").any():
        example = example_table(derived)
        if len(example.frame):
            tables.append(example)
        pareto = pareto_table(derived)
        if len(pareto.frame):
            tables.append(pareto)
    if (derived["status"] != "ok").any():
        tables.append(not_run_table(derived))
    return tables


def deltas(old: pd.DataFrame, new: pd.DataFrame, keys: Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    """Long frame of old, new, delta and delta % per key and metric (outer join on `keys`).

    Rows where neither side has the metric are dropped; `delta %` is relative to
    |old| and NaN when old is 0 or missing.

    Args:
        old: frame with `keys` and `metrics` columns.
        new: the same for the newer run.
        keys: columns identifying a row (unique per side).
        metrics: numeric columns to compare.

    Example:
        >>> deltas(pd.DataFrame({"case": ["a"], "x": [2.0]}), pd.DataFrame({"case": ["a"], "x": [3.0]}),
        ...        ["case"], ["x"])[["old", "new", "delta", "delta %"]].values.tolist()
        [[2.0, 3.0, 1.0, 50.0]]
    """
    keys, metrics = list(keys), list(metrics)

    def melted(side: pd.DataFrame, name: str) -> pd.DataFrame:
        wide = side.reindex(columns=keys + metrics)
        wide[metrics] = wide[metrics].astype("float64")
        return wide.melt(id_vars=keys, value_vars=metrics, var_name="metric", value_name=name)

    long = melted(old, "old").merge(melted(new, "new"), on=[*keys, "metric"], how="outer", sort=False)
    long = long[long["old"].notna() | long["new"].notna()].copy()
    long["delta"] = long["new"] - long["old"]
    denominator = long["old"].abs().where(long["old"] != 0)
    long["delta %"] = 100.0 * long["delta"] / denominator
    return long.reset_index(drop=True)


def compare_frame(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """Deltas of every suite-table metric between two runs, one row per (case, metric), with `suite`.

    Cases are matched on `case`. A case with no metric on either side (skipped,
    failed) still gets one row, metric `status`, so a change of status shows.
    """
    old_derived, new_derived = with_baseline_mse(old), with_baseline_mse(new)
    suites = ordered_suites(pd.concat([old_derived[["suite"]], new_derived[["suite"]]]))
    parts = []
    for suite in suites:
        old_display = suite_frame(old_derived, suite).drop_duplicates("case", keep="last")
        new_display = suite_frame(new_derived, suite).drop_duplicates("case", keep="last")
        metrics = [label for label, _, _ in METRICS if label in old_display or label in new_display]
        long = deltas(old_display, new_display, ["case"], metrics)
        info = pd.concat([old_display, new_display]).drop_duplicates("case", keep="last")
        statuses = old_display.set_index("case")["status"].to_dict(), new_display.set_index("case")["status"].to_dict()
        silent = [c for c in info["case"] if c not in set(long["case"])]
        filler = pd.DataFrame({"case": silent, "metric": "status", "old": np.nan, "new": np.nan})
        long = pd.concat([long, filler], ignore_index=True) if silent else long
        long = long.merge(info[["case", *KEY_COLUMNS, "reason"]], on="case", how="left")
        long["status"] = [_status_change(statuses[0].get(c), statuses[1].get(c)) for c in long["case"]]
        long.insert(0, "suite", suite)
        parts.append(long)
    if not parts:
        return pd.DataFrame()
    out = pd.concat(parts, ignore_index=True)
    metric_order = {label: i for i, (label, _, _) in enumerate(METRICS)}
    out["_order"] = out["metric"].map(metric_order).fillna(len(metric_order))
    out["_suite"] = out["suite"].map({s: i for i, s in enumerate(suites)})
    out = out.sort_values(
        ["_suite", "vocab", "vocab_size", "strategy", "preset", "dim", "_order"], kind="stable", na_position="first"
    )
    return out.drop(columns=["_order", "_suite"]).reset_index(drop=True)


def changed_rows(long: pd.DataFrame) -> pd.DataFrame:
    """The rows of `compare_frame` worth reading: a metric that moved beyond float noise or appeared
    or vanished, every row of a case whose status changed, and one `status` row for a case on one side only.

    A case on one side has nothing to compare; its metrics would bury the changes.
    """
    if not len(long):
        return long
    old, new = long["old"].to_numpy(dtype="float64"), long["new"].to_numpy(dtype="float64")
    moved = ~np.isclose(old, new, rtol=NOISE_RTOL, atol=0.0, equal_nan=True)
    status = long["status"]
    one_sided = (status.str.startswith("missing -> ") | status.str.endswith(" -> missing")).to_numpy()
    changed = long[(moved | status.str.contains(" -> ", regex=False).to_numpy()) & ~one_sided]
    sides = long[one_sided].drop_duplicates("case").assign(metric="status")
    sides[["old", "new", "delta", "delta %"]] = np.nan
    return pd.concat([changed, sides]).sort_index()


def compare_counts(long: pd.DataFrame) -> dict[str, int]:
    """Cases in both runs (`compared`), how many of those changed, and how many are on one side only."""
    if not len(long):
        return {"compared": 0, "changed": 0, "only_old": 0, "only_new": 0}
    status = long.drop_duplicates("case").set_index("case")["status"]
    only_old = status.str.endswith(" -> missing")
    only_new = status.str.startswith("missing -> ")
    both = status.index[~(only_old | only_new)]
    changed = changed_rows(long)["case"]
    return {
        "compared": len(both),
        "changed": changed[changed.isin(both)].nunique(),
        "only_old": int(only_old.sum()),
        "only_new": int(only_new.sum()),
    }


def _status_change(old: str | None, new: str | None) -> str:
    old, new = old or "missing", new or "missing"
    return old if old == new else f"{old} -> {new}"


def compare_tables(long: pd.DataFrame) -> list[Table]:
    """Splits `compare_frame`'s output into one delta table per suite.

    Rows are strategy x metric; columns old, new, delta and delta %, plus status
    and reason where some case changed status or has a reason.
    """
    tables = []
    for suite in long["suite"].unique() if len(long) else []:
        part = long[long["suite"] == suite].drop(columns=["suite", "case"])
        columns = [*KEY_COLUMNS, "metric", "old", "new", "delta", "delta %", "status", "reason"]
        display = part[columns]
        keep = [c for c in columns if c in ("metric", "old", "new", "delta", "delta %") or display[c].notna().any()]
        if "dim" in keep and display["dim"].nunique() <= 1:
            keep.remove("dim")
        if "status" in keep and (display["status"] == "ok").all():
            keep.remove("status")
        tables.append(Table(f"compare: {suite}", display[keep].reset_index(drop=True), "", ("vocab", "vocab_size")))
    return tables
