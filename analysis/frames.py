"""Pure DataFrame helpers: derived columns, per-suite tables, the Pareto front, the example's table.

Derived columns: each accuracy row's MSE against the `full` baseline of its
dataset and optimizer (`with_baseline_mse`), and each memory row's measured /
estimated allocator peaks with a flag outside `ESTIMATE_BAND`
(`with_estimate_ratios`); `derived` adds both.

Everything here takes and returns DataFrames (or `Table`s, a title plus a frame)
and renders nothing, so it is tested without any output format. Display frames
keep numbers as numbers in display units (MiB, ms); the renderers format them.
Which columns a suite table shows, their labels and scales, the suite order and
which suites have a latency all come from `analysis.schema`; run-to-run deltas
are in `analysis.compare`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis import schema

MIB = schema.MIB
SUITE_ORDER = schema.SUITE_ORDER
LATENCY_SUITES = schema.LATENCY_SUITES
KEY_COLUMNS = schema.KEY_FIELDS
# A table's rows are grouped by dataset; a renderer may draw a section per group.
GROUP_COLUMNS = ("dataset", "vocab_size")
BASELINE_STRATEGY, BASELINE_PRESET = schema.BASELINE_STRATEGY, schema.BASELINE_PRESET
EXAMPLE_STRATEGY, EXAMPLE_PRESET = schema.EXAMPLE_STRATEGY, schema.EXAMPLE_PRESET
MOVIELENS_PREFIX = "ml-"

# (label, source column, scale): the measured columns of a suite table, in order.
# The suites record compression by bytes (full float32 table bytes / (param_bytes
# + index_bytes)), so an int8 table shows ~3.8x though its params do not shrink;
# its label says so, and `params` stands beside it for the count view.
METRICS: tuple[tuple[str, str, float], ...] = tuple(
    (schema.FIELD[name].label, name, schema.FIELD[name].scale) for name in schema.REPORT_METRICS
)
LATENCY_LABELS = tuple(schema.FIELD[name].label for name in schema.REPORT_METRICS if schema.FIELD[name].latency)
TAIL_OF_SOURCE = {"data": "p95", "max": "max"}
# measured / estimated peak: the derived ratio, and its (measured, estimated) fields.
ESTIMATE_RATIOS = {
    "est_ratio_lookup": ("peak_alloc_bytes_lookup", "estimated_peak_bytes_lookup"),
    "est_ratio_train": ("peak_alloc_bytes_train", "estimated_peak_bytes_train"),
}
# Where a measured peak should fall relative to membed.plan's estimate (issue 11's target:
# the estimate within [0.8, 1.25] of the measured peak for at least 95% of memory cases).
ESTIMATE_BAND = (0.8, 1.25)


def label_of(name: str) -> str:
    """The report's column label of field `name` (`analysis.schema`)."""
    return schema.FIELD[name].label


def metric_columns(rows: pd.DataFrame, names: Sequence[str]) -> dict[str, np.ndarray]:
    """{label: values in the label's unit} of the fields `names` of `rows`.

    Example:
        >>> metric_columns(pd.DataFrame({"param_bytes": [2 * MIB]}), ["param_bytes"])
        {'param MiB': array([2.])}
    """
    return {label_of(name): rows[name].to_numpy(dtype="float64") * schema.FIELD[name].scale for name in names}


@dataclass
class Table:
    """A titled display frame; `group_by` names the columns a renderer may split sections on.

    `lead` tables open a report: report.md puts them before the plots, the other tables after.
    """

    title: str
    frame: pd.DataFrame
    note: str = ""
    group_by: tuple[str, ...] = ()
    lead: bool = False


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
    no preset) of the same suite, dataset, vocab_size and optimizer; rows without
    one get NaN.

    Args:
        frame: the tidy frame of `analysis.load.load_results`.

    Example:
        >>> out = with_baseline_mse(frame)
        >>> out.loc[out.strategy == "full", "mse_vs_full"].tolist()
        [0.0]
    """
    keys = ["suite", *GROUP_COLUMNS, *(["optimizer"] if "optimizer" in frame else [])]
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


def with_estimate_ratios(frame: pd.DataFrame) -> pd.DataFrame:
    """Adds `est_ratio_lookup` / `est_ratio_train` (measured / estimated allocator peak) and `outside_estimate`.

    `outside_estimate` is true for an ok case with a ratio outside `ESTIMATE_BAND`,
    false for one with its ratios inside, and null for a case without a ratio
    (not a memory case, not ok, or written before the estimates were recorded).

    Example:
        >>> out = with_estimate_ratios(pd.DataFrame({"status": ["ok"], "peak_alloc_bytes_lookup": [130.0],
        ...     "estimated_peak_bytes_lookup": [100.0]}))
        >>> out["est_ratio_lookup"].tolist(), out["outside_estimate"].tolist()
        ([1.3], [True])
    """
    out = frame.drop(columns=[*ESTIMATE_RATIOS, "outside_estimate"], errors="ignore").copy()
    for ratio, (measured, estimated) in ESTIMATE_RATIOS.items():
        if measured in out and estimated in out:
            values = out[measured].astype("float64") / out[estimated].astype("float64")
            out[ratio] = values.where(out[estimated].astype("float64") > 0)
        else:
            out[ratio] = np.nan
    ratios = out[list(ESTIMATE_RATIOS)]
    low, high = ESTIMATE_BAND
    judged = ratios.notna().any(axis=1) & (out["status"] == "ok")
    outside = ((ratios < low) | (ratios > high)).any(axis=1)
    out["outside_estimate"] = pd.Series(np.where(judged, outside, None), index=out.index, dtype="object")
    return out


def estimate_line(frame: pd.DataFrame) -> str:
    """'N of M memory cases outside [0.8, 1.25] of the estimate' for a frame of `with_estimate_ratios`; '' if none.

    M counts the ok cases with a measured and an estimated peak; a case is
    outside when its lookup or its train ratio is.
    """
    judged = frame["outside_estimate"].dropna() if "outside_estimate" in frame else pd.Series(dtype=object)
    if not len(judged):
        return ""
    low, high = ESTIMATE_BAND
    return (f"{int(judged.astype(bool).sum())} of {len(judged)} memory cases outside [{low:g}, {high:g}] "
            "of the estimate (peak alloc / membed.plan's estimate).")


def with_test_loss(frame: pd.DataFrame) -> pd.DataFrame:
    """Adds `test_loss` and `test_loss_ci95`: test MSE on rating datasets, test log loss on synthetic-ctr.

    Example:
        >>> with_test_loss(pd.DataFrame({"test_mse": [0.8, None], "test_logloss": [None, 0.4]}))["test_loss"].tolist()
        [0.8, 0.4]
    """
    out = frame.copy()
    for column in ("test_loss", "test_loss_ci95"):
        rating, ctr = column.replace("loss", "mse"), column.replace("loss", "logloss")
        values = [out[name].astype("float64") if name in out else pd.Series(np.nan, index=out.index)
                  for name in (rating, ctr)]
        out[column] = values[0].fillna(values[1])
    return out


def derived(frame: pd.DataFrame) -> pd.DataFrame:
    """The loaded frame with every derived column: the baseline's MSE, the test loss, the estimate ratios."""
    return with_estimate_ratios(with_test_loss(with_baseline_mse(frame)))


def latency_note(frame: pd.DataFrame) -> str:
    """Says where the `p95 ms` column of these rows came from."""
    sources = set(ok_rows(frame)["p95_source"].dropna())
    if not sources:
        return ""
    if sources == {"max"}:
        return "p95 ms is stats.max: the run kept no per-round data."
    if "max" in sources:
        return "p95 ms: rows with tail=max show stats.max (no per-round data)."
    return "p95 ms from stats.data (--benchmark-save-data)."


def suite_frame(frame: pd.DataFrame, suite: str) -> pd.DataFrame:
    """All display columns of one suite, before empty ones are dropped; keeps `case`.

    Args:
        frame: a frame with the derived columns of `with_baseline_mse`.
        suite: the suite to show.
    """
    rows = frame[frame["suite"] == suite]
    # The full baseline leads each dataset group; a strategy's presets run from most to fewest params.
    rows = rows.assign(_not_base=~is_baseline(rows), _neg_params=-rows["params"]).sort_values(
        [*GROUP_COLUMNS, "_not_base", "strategy", "_neg_params", "preset", "dim"],
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
        if f"{column}_ci95" in rows and rows[f"{column}_ci95"].notna().any():
            columns[label] = with_ci(columns[label], rows[f"{column}_ci95"].to_numpy(dtype="float64") * scale)
    if "outside_estimate" in rows:
        columns[label_of("outside_estimate")] = rows["outside_estimate"].eq(True).to_numpy()
    if suite in LATENCY_SUITES:
        columns["tail"] = rows["p95_source"].map(TAIL_OF_SOURCE).to_numpy()
    columns["status"] = rows["status"].to_numpy()
    columns["reason"] = rows["reason"].to_numpy()
    return pd.DataFrame(columns, index=pd.RangeIndex(len(rows)))


def with_ci(means: np.ndarray, halves: np.ndarray) -> np.ndarray:
    """'0.8621 ± 0.0123' per mean and 95% half-width (the mean alone where the half-width is unknown).

    Example:
        >>> with_ci(np.array([0.86213, np.nan, 0.9]), np.array([0.01234, np.nan, np.nan])).tolist()
        ['0.8621 ± 0.0123', None, '0.9']
    """
    return np.array([None if np.isnan(mean) else f"{mean:.4g}" if np.isnan(half) else f"{mean:.4g} ± {half:.3g}"
                     for mean, half in zip(means, halves)], dtype=object)


def drop_empty(display: pd.DataFrame) -> pd.DataFrame:
    """Drops the columns a reader does not need: all-empty metrics, constant optional keys.

    `dim` stays only when it varies (otherwise the title names it); `preset`,
    `projected`, `outside est.`, `status`, `reason`, `tail` and `index MiB`
    only when some row says something in them.
    """
    keep = []
    for column in display.columns:
        values = display[column]
        if column == "case":
            continue
        if column == "dim":
            if values.dropna().nunique() > 1:
                keep.append(column)
        elif column in ("projected", label_of("outside_estimate")):
            if values.any():
                keep.append(column)
        elif column == "status":
            if (values != "ok").any():
                keep.append(column)
        elif column == "tail":
            if (values == "max").any() and (values == "p95").any():
                keep.append(column)
        elif column == label_of("index_bytes"):
            if values.fillna(0).ne(0).any():
                keep.append(column)
        elif values.notna().any():
            keep.append(column)
    return display[keep]


def suite_table(frame: pd.DataFrame, suite: str) -> Table:
    """The table of one suite: rows = its ok and projected cases, grouped by dataset.

    Failed and skipped cases are not rows here: `not_run_table` groups them by reason (a
    full run skips hundreds for a handful of reasons); every case stays in the CSV and JSON.
    """
    rows = frame[frame["suite"] == suite]
    shown = (rows["status"] == "ok") | rows["projected"].eq(True)
    # A projected row's reason (why it was not measured) is in the grouped table too.
    display = suite_frame(frame[frame.index.isin(rows.index[shown])], suite).drop(columns="reason")
    dims = display["dim"].dropna().unique()
    title = f"suite: {suite}" + (f" (dim {int(dims[0])})" if len(dims) == 1 else "")
    notes = [latency_note(frame[frame["suite"] == suite])] if suite in LATENCY_SUITES else []
    if display["projected"].any():
        notes.append("projected rows come from cost formulas, not measurements.")
    stopped = int((~shown).sum())
    if stopped:
        notes.append(f"{stopped} cases failed or skipped: see 'Not run or failed'.")
    if "outside_estimate" in rows and rows["outside_estimate"].notna().any():
        notes.append(f"est. ratio: measured allocator peak / membed.plan's estimate; {estimate_line(rows)}")
    return Table(title, drop_empty(display), " ".join(n for n in notes if n), GROUP_COLUMNS)


def pareto_front(
    frame: pd.DataFrame,
    cost: str = "param_bytes",
    value: str = "val_mse",
    by: Sequence[str] = GROUP_COLUMNS,
) -> pd.DataFrame:
    """The rows no other row of their group beats on both `cost` and `value` (lower is better).

    Row j dominates row i when it is no worse on both and strictly better on
    one; rows lacking either number are left out, and identical points all stay.

    Args:
        frame: any frame with the `cost`, `value` and `by` columns.
        cost: the memory column.
        value: the error column.
        by: the grouping (one front per dataset and size).

    Example:
        >>> pareto_front(pd.DataFrame({"dataset": ["d"] * 3, "vocab_size": [9] * 3,
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


def accuracy_loss(rows: pd.DataFrame) -> pd.DataFrame:
    """`rows` plus `loss` and `loss_ci95`: `test_loss` (and its half-width) where recorded, else `val_mse`.

    Example:
        >>> accuracy_loss(pd.DataFrame({"val_mse": [0.9, 0.8], "test_loss": [0.85, None],
        ...                             "test_loss_ci95": [0.01, None]}))["loss"].tolist()
        [0.85, 0.8]
    """
    test = rows["test_loss"].astype("float64") if "test_loss" in rows else pd.Series(np.nan, index=rows.index)
    half = rows["test_loss_ci95"].astype("float64") if "test_loss_ci95" in rows else pd.Series(np.nan, index=rows.index)
    return rows.assign(loss=test.fillna(rows["val_mse"].astype("float64")), loss_ci95=half.where(test.notna()))


def pareto_table(frame: pd.DataFrame) -> Table:
    """Per dataset and optimizer, the ok accuracy rows on the (param_bytes, test loss) Pareto front."""
    rows = accuracy_loss(ok_rows(frame[frame["suite"] == "accuracy"]))
    front = pareto_front(rows, value="loss", by=(*GROUP_COLUMNS, "optimizer"))
    out = pd.DataFrame(
        {
            "dataset": front["dataset"].to_numpy(),
            "vocab_size": front["vocab_size"].to_numpy(),
            "optimizer": front["optimizer"].to_numpy(),
            "strategy": front["strategy"].to_numpy(),
            "preset": front["preset"].to_numpy(),
            **metric_columns(front, ("params", "param_bytes")),
            "test loss": with_ci(front["loss"].to_numpy(dtype="float64"), front["loss_ci95"].to_numpy(dtype="float64")),
            **metric_columns(front, ("mse_vs_full_pct",)),
        }
    )
    note = ("Lower is better on both memory (param_bytes) and test loss (test MSE; synthetic-ctr: log loss; val MSE "
            "for records without a test split); no other strategy beats these on both (on the means).")
    return Table("Pareto front: memory vs test loss", drop_empty(out), note, (*GROUP_COLUMNS, "optimizer"))


def epochs_text(values: object) -> str:
    """'1.1, 0.95, 0.9' for a per-epoch list; '' for anything else."""
    if not isinstance(values, (list, tuple, np.ndarray)) or len(values) == 0:
        return ""
    return ", ".join(f"{float(v):.4g}" for v in values)


def example_table(frame: pd.DataFrame, best: int = 3) -> Table:
    """On each MovieLens dataset: the full baseline, the example's pair, and the best cheaper strategies, with Adam.

    "Best" means: among ok accuracy rows of that dataset other than the baseline
    and the example pair, with fewer params than the example pair, the lowest
    val MSE of each strategy (ties to fewer params), then the `best` lowest of
    those. A dataset without the example pair compares against the baseline's
    params instead, and says so in the role.

    Args:
        frame: a frame with the derived columns of `with_baseline_mse`.
        best: how many cheaper strategies to list per dataset.
    """
    movielens = frame["dataset"].str.startswith(MOVIELENS_PREFIX, na=False)
    # The example's recipe trains with Adam: the other optimizers' rows are theirs to compare.
    adam = frame["optimizer"].isna() | (frame["optimizer"] == schema.DEFAULT_OPTIMIZER)
    rows = ok_rows(frame[(frame["suite"] == "accuracy") & movielens & adam])
    records = []
    for (dataset, vocab_size), group in rows.groupby(list(GROUP_COLUMNS), sort=True):
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
                    "dataset": dataset,
                    "vocab_size": vocab_size,
                    "role": role,
                    "strategy": r["strategy"],
                    "preset": r["preset"],
                    label_of("params"): float(r["params"]),
                    "params / baseline": float(r["params"]) / base_params,
                    label_of("val_mse"): float(r["val_mse"]),
                    label_of("mse_vs_full_pct"): float(r["mse_vs_full_pct"]),
                    label_of("val_mse_per_epoch"): epochs_text(r["val_mse_per_epoch"]),
                }
            )
    columns = [
        *GROUP_COLUMNS,
        "role",
        "strategy",
        "preset",
        label_of("params"),
        "params / baseline",
        label_of("val_mse"),
        label_of("mse_vs_full_pct"),
        label_of("val_mse_per_epoch"),
    ]
    note = (
        f"Baseline: strategy {BASELINE_STRATEGY} (preset {BASELINE_PRESET}); example pair: {EXAMPLE_STRATEGY}. "
        f"Best: the lowest val MSE per strategy among those with fewer params than the example pair, top {best}."
    )
    return Table("The example on MovieLens", pd.DataFrame(records, columns=columns), note, GROUP_COLUMNS)


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
    note = "Each distinct reason once, with the number of cases it stopped and one of them; the CSV lists each."
    groups = case_groups(stopped, ["status", "reason"], shown=1).rename(columns={"examples": "example"})
    return Table(f"Not run or failed ({len(stopped)} cases)", groups, note)


def report_tables(frame: pd.DataFrame) -> list[Table]:
    """Every table of the report: the summary (`analysis.summary`, a lead table), one per suite, the example's,
    the Pareto front, then why cases did not run."""
    from analysis.summary import summary_table  # summary builds on this module's helpers

    full = derived(frame)
    tables = []
    if (full["suite"] == "accuracy").any():
        lead = summary_table(full)
        if len(lead.frame):
            tables.append(lead)
    tables += [suite_table(full, suite) for suite in ordered_suites(full)]
    if (full["suite"] == "accuracy").any():
        example = example_table(full)
        if len(example.frame):
            tables.append(example)
        pareto = pareto_table(full)
        if len(pareto.frame):
            tables.append(pareto)
    if (full["status"] != "ok").any():
        tables.append(not_run_table(full))
    return tables
