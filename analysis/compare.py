"""Run-to-run deltas: one long frame of (case, field, baseline, result, delta, delta %).

`deltas` is the one place a change between two runs is computed: the gate
(`analysis.gate`) applies its rules to it over the raw gated fields, and
`--compare` (`compare_frame`) over every suite table's display columns, where
it names the columns as a reader of two runs does: metric, old, new.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis.frames import GROUP_COLUMNS, KEY_COLUMNS, METRICS, Table, ordered_suites, suite_frame, with_baseline_mse

DELTA_COLUMNS = ("field", "baseline", "result", "delta", "delta %")
# `--compare`'s names for them.
COMPARE_NAMES = {"field": "metric", "baseline": "old", "result": "new"}
# Relative difference below which two runs' numbers count as the same (JSON
# round trips and re-summing leave noise in the last digits, never more).
NOISE_RTOL = 1e-9


def deltas(
    baseline: pd.DataFrame, result: pd.DataFrame, fields: Sequence[str], keys: Sequence[str] = ("case",)
) -> pd.DataFrame:
    """Long frame of baseline, result, delta and delta % per key and field (outer join on `keys`).

    Rows where neither side has the field are dropped; `delta %` is relative to
    |baseline| and NaN when the baseline is 0 or missing.

    Args:
        baseline: frame with `keys` and `fields` columns (the older run).
        result: the same for the newer run.
        fields: numeric columns to compare.
        keys: columns identifying a row (unique per side).

    Example:
        >>> deltas(pd.DataFrame({"case": ["a"], "x": [2.0]}), pd.DataFrame({"case": ["a"], "x": [3.0]}),
        ...        ["x"])[["baseline", "result", "delta", "delta %"]].values.tolist()
        [[2.0, 3.0, 1.0, 50.0]]
    """
    keys, fields = list(keys), list(fields)

    def melted(side: pd.DataFrame, name: str) -> pd.DataFrame:
        wide = side.reindex(columns=keys + fields)
        wide[fields] = wide[fields].astype("float64")
        return wide.melt(id_vars=keys, value_vars=fields, var_name="field", value_name=name)

    long = melted(baseline, "baseline").merge(melted(result, "result"), on=[*keys, "field"], how="outer", sort=False)
    long = long[long["baseline"].notna() | long["result"].notna()].copy()
    long["delta"] = long["result"] - long["baseline"]
    denominator = long["baseline"].abs().where(long["baseline"] != 0)
    long["delta %"] = 100.0 * long["delta"] / denominator
    return long.reset_index(drop=True)


def attach_noise(
    long: pd.DataFrame, baseline: pd.DataFrame, suffix: str, keys: Sequence[str] = ("case",)
) -> pd.DataFrame:
    """`deltas`' long frame plus a `noise` column: the baseline's `<field><suffix>` value per key, NaN where none.

    Args:
        long: a frame from `deltas`.
        baseline: the frame `long` took its baseline side from.
        suffix: names the noise column of a field in `baseline` (`_noise`: `gather_ratio_noise`).
        keys: the columns `long` was matched on.

    Example:
        >>> long = deltas(pd.DataFrame({"case": ["a"], "x": [2.0]}), pd.DataFrame({"case": ["a"], "x": [3.0]}), ["x"])
        >>> attach_noise(long, pd.DataFrame({"case": ["a"], "x": [2.0], "x_noise": [0.1]}), "_noise")["noise"].tolist()
        [0.1]
    """
    keys = list(keys)
    noise_columns = {f"{field}{suffix}": field for field in long["field"].unique() if f"{field}{suffix}" in baseline}
    if not noise_columns:
        return long.assign(noise=np.nan)
    noise = baseline[keys + list(noise_columns)].rename(columns=noise_columns)
    noise = noise.melt(id_vars=keys, var_name="field", value_name="noise")
    noise["noise"] = pd.to_numeric(noise["noise"], errors="coerce").astype("float64")
    return long.merge(noise.drop_duplicates([*keys, "field"]), on=[*keys, "field"], how="left", sort=False)


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
        long = deltas(old_display, new_display, metrics).rename(columns=COMPARE_NAMES)
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
    out = out.sort_values(["_suite", *KEY_COLUMNS, "_order"], kind="stable", na_position="first")
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
        tables.append(Table(f"compare: {suite}", display[keep].reset_index(drop=True), "", GROUP_COLUMNS))
    return tables
