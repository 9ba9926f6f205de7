"""The regression gate: compare a result with a baseline, case by case, under a few rules.

A case regresses when (the limits come from the `[tool.membed.gate]` table of a
pyproject.toml, see `find_gate_config`, and a CLI flag overrides one of them; in
parentheses, the code's values for keys the table leaves out):

- its params grew by more than `params_growth` parameters (0: any growth), or its
  param_bytes or index_bytes grew by more than `bytes_growth` bytes;
- a measured peak (alloc or RSS, lookup or train) grew by more than
  `peak_mem_rel` (10%) AND by more than `peak_mem_abs_mib` (1 MiB), so that
  allocator noise on tiny tables does not fail the gate;
- its gather_ratio (the suite's median over the bare gather's) grew by more than
  `gather_ratio_rel` (30%);
- its final val MSE grew by more than `val_mse_abs` (0.01);
- it is ok in the baseline and missing, failed or skipped in the result
  (`missing_fails`), although the result's run selected its test.

A run that names the pytest node ids it selected (`membed.selected`) is a slice
when it selected fewer tests than the baseline holds: baseline cases whose node
id it did not select are "not in this run's selection", counted and not gated.

An improvement is the mirror image (shrank past the same limits); improvements
are listed but never fail the gate. Only ok cases make up a baseline, so a case
that already failed when the baseline was taken is not held against a result.

The baseline file keeps only what the gate reads:
`{"schema_version": 1, "kind": "membed-baseline", "cases": {case: {field: value}}}`,
the fields being the gated ones and `fullname`, the case's pytest node id;
written with sorted keys and indent 1 so that updating it gives a small diff.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.load import ResultError, check_schema_version, frame_of, read_json, rows_of

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: tomllib arrived in 3.11; tomli is the same parser
    try:
        import tomli as tomllib
    except ModuleNotFoundError:
        tomllib = None

BASELINE_KIND = "membed-baseline"
BASELINE_SCHEMA_VERSION = 1
DEFAULT_BASELINE = Path("reports/baseline.json")
GATE_TABLE = "[tool.membed.gate]"
MIB = 1024 * 1024
PEAK_FIELDS = ("peak_alloc_bytes_lookup", "peak_rss_bytes_lookup", "peak_alloc_bytes_train", "peak_rss_bytes_train")
# RSS moves with the environment (library versions, the Python allocator), the
# TF allocator's peak does not: each gets its own absolute limit.
RSS_FIELDS = ("peak_rss_bytes_lookup", "peak_rss_bytes_train")
# field -> rule name; the order is the order of the regression table.
GATED_FIELDS = {
    "params": "params_growth",
    "param_bytes": "bytes_growth",
    "index_bytes": "bytes_growth",
    **{field: "peak_rss" if field in RSS_FIELDS else "peak_mem" for field in PEAK_FIELDS},
    "gather_ratio": "gather_ratio_rel",
    "val_mse": "val_mse_abs",
}
INT_FIELDS = ("params", "param_bytes", "index_bytes", *PEAK_FIELDS)
FINDING_COLUMNS = ["case", "rule", "field", "baseline", "result", "delta", "delta %", "limit"]


@dataclass(frozen=True)
class GateRules:
    """The gate's limits; see the module docstring for what each one means.

    Args:
        params_growth: parameters a case may gain (absolute).
        bytes_growth: bytes param_bytes or index_bytes may gain (absolute).
        peak_mem_rel: relative growth of a peak that, together with the
            absolute one, fails.
        peak_mem_abs_mib: absolute growth of an allocator peak, in MiB.
        peak_rss_abs_mib: absolute growth of a peak RSS, in MiB.
        gather_ratio_rel: relative growth of gather_ratio that fails.
        val_mse_abs: absolute growth of the final val MSE that fails.
        missing_fails: whether a baseline case missing or failed in the result fails.

    Example:
        >>> GateRules.from_mapping({"val_mse_abs": 0.02}, "flags").val_mse_abs
        0.02
    """

    params_growth: float = 0.0
    bytes_growth: float = 0.0
    peak_mem_rel: float = 0.10
    peak_mem_abs_mib: float = 1.0
    peak_rss_abs_mib: float = 1.0
    gather_ratio_rel: float = 0.30
    val_mse_abs: float = 0.01
    missing_fails: bool = True

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], where: str, base: GateRules | None = None) -> GateRules:
        """`base` (default: the defaults) with `values` applied; one-line `ResultError` on a bad key or value."""
        base = base or cls()
        fields = {f.name: f for f in dataclasses.fields(cls)}
        updates: dict[str, Any] = {}
        for key, value in values.items():
            if key not in fields:
                raise ResultError(f"{where}: unknown gate key {key!r}. Valid keys: {', '.join(fields)}.")
            if key == "missing_fails":
                if not isinstance(value, bool):
                    raise ResultError(f"{where}: `missing_fails` must be true or false, got {value!r}.")
            elif isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ResultError(f"{where}: `{key}` must be a number >= 0, got {value!r}.")
            else:
                value = float(value)
            updates[key] = value
        return dataclasses.replace(base, **updates)


def read_gate_table(path: str | Path) -> dict[str, Any] | None:
    """The `[tool.membed.gate]` table of the TOML file `path`; None when the file or the table is absent.

    Raises:
        ResultError: the file is not valid TOML, or the entry is not a table.
    """
    path = Path(path)
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8")
    if tomllib is None:
        # Ignoring a gate table we cannot read would gate with the wrong limits; no table, no harm.
        if GATE_TABLE in text:
            raise ResultError(f"{path}: reading {GATE_TABLE} needs Python >= 3.11 or the tomli package.")
        return None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ResultError(f"{path}: not valid TOML ({err}).") from None
    table = document.get("tool", {}).get("membed", {}).get("gate")
    if table is not None and not isinstance(table, dict):
        raise ResultError(f"{path}: {GATE_TABLE} must be a table.")
    return table


def find_gate_config(starts: Iterable[str | Path]) -> Path | None:
    """The first pyproject.toml holding `[tool.membed.gate]`, from each start folder upward in turn.

    The gate starts from the baseline's folder, so that its verdict does not
    depend on the working directory: reports/baseline.json finds the repo's
    pyproject.toml from anywhere.

    Args:
        starts: folders to search from, in order of preference.

    Example:
        >>> find_gate_config(["reports"])  # doctest: +SKIP
        PosixPath('/work/main/pyproject.toml')
    """
    seen: set[Path] = set()
    for start in starts:
        start = Path(start).resolve()
        for folder in (start, *start.parents):
            if folder in seen:
                continue
            seen.add(folder)
            candidate = folder / "pyproject.toml"
            if read_gate_table(candidate) is not None:
                return candidate
    return None


def rules_from_pyproject(path: str | Path = "pyproject.toml", base: GateRules | None = None) -> GateRules:
    """Applies the `[tool.membed.gate]` table of `path` (if the file and table exist) on top of `base`.

    Example:
        >>> rules_from_pyproject("no-such-pyproject.toml") == GateRules()
        True
    """
    base = base or GateRules()
    table = read_gate_table(path)
    return base if table is None else GateRules.from_mapping(table, f"{path} {GATE_TABLE}", base)


def _round(value: float) -> float:
    # Six significant digits: far below every gate limit, and run-to-run float
    # noise in the last digits no longer shows up in the baseline's diff.
    return float(f"{value:.6g}")


def baseline_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The gate's view of a tidy frame: ok cases only (last one wins), `case`, `fullname` + gated fields.

    Args:
        frame: a tidy frame from `analysis.load`.
    """
    ok = frame[frame["status"] == "ok"].drop_duplicates("case", keep="last")
    columns = ["case", "fullname", "schema_version", *GATED_FIELDS]
    return ok.reindex(columns=columns).sort_values("case").reset_index(drop=True)


def baseline_document(frame: pd.DataFrame) -> dict[str, Any]:
    """The baseline file's content for a tidy result frame; null fields are left out."""
    cases: dict[str, dict[str, Any]] = {}
    for record in baseline_frame(frame).to_dict("records"):
        entry: dict[str, Any] = {"schema_version": int(record.get("schema_version") or BASELINE_SCHEMA_VERSION)}
        # The node id lets a later slice (`membed.selected`) say whether it ran this case's test.
        if isinstance(record.get("fullname"), str):
            entry["fullname"] = record["fullname"]
        for field in GATED_FIELDS:
            value = record.get(field)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            entry[field] = int(value) if field in INT_FIELDS else _round(float(value))
        cases[record["case"]] = entry
    return {"schema_version": BASELINE_SCHEMA_VERSION, "kind": BASELINE_KIND, "cases": cases}


def write_baseline(frame: pd.DataFrame, path: str | Path = DEFAULT_BASELINE) -> int:
    """Writes the baseline of `frame` to `path` (sorted keys, indent 1); returns the number of cases."""
    document = baseline_document(frame)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, sort_keys=True, indent=1) + "\n", encoding="utf-8")
    return len(document["cases"])


def load_baseline(path: str | Path) -> pd.DataFrame:
    """Reads a baseline file, or a full result JSON used as one, into `baseline_frame` form.

    Raises:
        ResultError: missing file, not JSON, neither a baseline nor a result, or
            written by an incompatible schema_version.
    """
    data = read_json(path)
    if data.get("kind") == BASELINE_KIND:
        check_schema_version(data.get("schema_version"), f"{path}: baseline")
        cases = data.get("cases")
        if not isinstance(cases, dict):
            raise ResultError(f"{path}: baseline has no `cases` object.")
        records = []
        for case, entry in cases.items():
            check_schema_version(entry.get("schema_version"), f"{path}: baseline case {case!r}")
            records.append({"case": case, **entry})
        frame = pd.DataFrame(records).reindex(columns=["case", "fullname", "schema_version", *GATED_FIELDS])
        for field in ("schema_version", *GATED_FIELDS):
            frame[field] = pd.to_numeric(frame[field], errors="coerce").astype("float64")
        return frame.sort_values("case").reset_index(drop=True)
    if isinstance(data.get("benchmarks"), list):
        check_schema_version((data.get("membed") or {}).get("schema_version", 1), f"{path}: membed block")
        return baseline_frame(frame_of(rows_of(data, str(path))))
    raise ResultError(f"{path}: neither a membed baseline (kind {BASELINE_KIND!r}) nor a pytest-benchmark result.")


@dataclass
class GateOutcome:
    """What the gate found: regressions fail; the rest is for the reader.

    `missing` holds the baseline cases the run selected but did not bring back
    ok (regressions too, under `missing_fails`); `not_selected` the baseline
    cases whose test the run did not select; `unplaced` the absent baseline
    cases that could not be checked against the selection because the baseline
    has no node id for them.
    """

    regressions: pd.DataFrame
    improvements: pd.DataFrame
    missing: pd.DataFrame
    new_cases: list[str]
    compared: int
    not_selected: list[str] = dataclasses.field(default_factory=list)
    unplaced: list[str] = dataclasses.field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.regressions.empty


def _limits(field: str, old: pd.Series, rules: GateRules) -> tuple[pd.Series, str]:
    """The growth allowed for `field` at each baseline value, and how to say it."""
    rule = GATED_FIELDS[field]
    if rule == "params_growth":
        return pd.Series(rules.params_growth, index=old.index), f"> +{rules.params_growth:g} params"
    if rule == "bytes_growth":
        return pd.Series(rules.bytes_growth, index=old.index), f"> +{rules.bytes_growth:g} bytes"
    if rule == "peak_mem":
        # Both limits must be passed: the larger of the two is the effective one.
        allowed = np.maximum(old.abs() * rules.peak_mem_rel, rules.peak_mem_abs_mib * MIB)
        return allowed, f"> +{rules.peak_mem_rel:.0%} and > +{rules.peak_mem_abs_mib:g} MiB"
    if rule == "peak_rss":
        allowed = np.maximum(old.abs() * rules.peak_mem_rel, rules.peak_rss_abs_mib * MIB)
        return allowed, f"> +{rules.peak_mem_rel:.0%} and > +{rules.peak_rss_abs_mib:g} MiB"
    if rule == "gather_ratio_rel":
        return old.abs() * rules.gather_ratio_rel, f"> +{rules.gather_ratio_rel:.0%}"
    return pd.Series(rules.val_mse_abs, index=old.index), f"> +{rules.val_mse_abs:g}"


def compare(result: pd.DataFrame, baseline: pd.DataFrame, rules: GateRules) -> pd.DataFrame:
    """Every finding of the metric rules, as a frame with a `kind` of `regression` or `improvement`.

    Pure: `result` is a tidy frame, `baseline` a `baseline_frame`; cases are
    matched on `case` and a field is compared only where both sides have it.
    The missing/failed rule lives in `check`.

    Args:
        result: tidy result frame (only its ok rows are compared here).
        baseline: the baseline in `baseline_frame` form.
        rules: the limits.
    """
    merged = baseline.merge(baseline_frame(result), on="case", how="inner", suffixes=(" old", " new"))
    findings = []
    for field, rule in GATED_FIELDS.items():
        old, new = merged[f"{field} old"].astype("float64"), merged[f"{field} new"].astype("float64")
        delta = new - old
        allowed, limit = _limits(field, old, rules)
        for kind, hit in (("regression", delta > allowed), ("improvement", -delta > allowed)):
            if not hit.any():
                continue
            part = pd.DataFrame(
                {
                    "case": merged.loc[hit, "case"],
                    "rule": rule,
                    "field": field,
                    "baseline": old[hit],
                    "result": new[hit],
                    "delta": delta[hit],
                    "delta %": 100.0 * delta[hit] / old[hit].abs().where(old[hit] != 0),
                    "limit": limit if kind == "regression" else limit.replace("> +", "< -"),
                    "kind": kind,
                }
            )
            findings.append(part)
    if not findings:
        return pd.DataFrame(columns=[*FINDING_COLUMNS, "kind"])
    return pd.concat(findings, ignore_index=True).sort_values(["case"], kind="stable").reset_index(drop=True)


def outside_selection(
    result: pd.DataFrame, baseline: pd.DataFrame, selected: Collection[str] | None
) -> tuple[list[str], list[str]]:
    """(not selected, unplaced): baseline cases absent from the result, split by the run's selection.

    Not selected: the baseline's node id for the case is not among `selected`.
    Unplaced: the baseline has no node id for the case, so the selection cannot
    speak for it. Both are empty when the run does not say what it selected.
    """
    if selected is None:
        return [], []
    absent = baseline[~baseline["case"].isin(result["case"])]
    has_node = absent["fullname"].map(lambda node: isinstance(node, str))
    outside = has_node & ~absent["fullname"].isin(selected)
    return sorted(absent.loc[outside, "case"]), sorted(absent.loc[~has_node, "case"])


def missing_or_failed(result: pd.DataFrame, baseline: pd.DataFrame) -> pd.DataFrame:
    """Baseline cases that are absent from the result, or present there only as failed/skipped.

    A case absent under its own id is looked up by its node id too: a skipped
    MovieLens case is named by its side (`users`) instead of its size, but its
    test, and so its skip reason, is the same.
    """
    by_case = result.drop_duplicates("case", keep="last").set_index("case")
    with_node = result[result["fullname"].map(lambda node: isinstance(node, str))]
    by_node = with_node.drop_duplicates("fullname", keep="last").set_index("fullname")
    records = []
    for case, node in zip(baseline["case"], baseline["fullname"], strict=True):
        if case in by_case.index:
            row = by_case.loc[case]
        elif isinstance(node, str) and node in by_node.index and by_node.at[node, "status"] != "ok":
            row = by_node.loc[node]
        else:
            row = None
        if row is None:
            detail = "missing from the result"
        elif row["status"] == "ok":
            continue
        else:
            reason = row["reason"]
            detail = f"{row['status']}" + (f": {reason}" if isinstance(reason, str) and reason else "")
        records.append({"case": case, "rule": "missing_fails", "field": "status", "limit": detail})
    return pd.DataFrame(records).reindex(columns=FINDING_COLUMNS)


def check(
    result: pd.DataFrame,
    baseline: pd.DataFrame,
    rules: GateRules,
    name: str = "baseline",
    selected: Collection[str] | None = None,
) -> GateOutcome:
    """Runs every rule; raises `ResultError` when result and baseline share no case.

    Args:
        result: tidy result frame.
        baseline: the baseline in `baseline_frame` form.
        rules: the limits.
        name: how to call the baseline in an error (its path).
        selected: the node ids the result's run selected (`analysis.load.load_run`);
            None when it does not say, and then every baseline case counts as selected.

    Example:
        >>> check(frame, baseline_frame(frame), GateRules()).passed
        True
    """
    common = set(result["case"]) & set(baseline["case"])
    if not common:
        raise ResultError(f"{name}: no case in common with the result; is this the right baseline?")
    findings = compare(result, baseline, rules)
    regressions = findings[findings["kind"] == "regression"].drop(columns="kind")
    improvements = findings[findings["kind"] == "improvement"].drop(columns="kind")
    not_selected, unplaced = outside_selection(result, baseline, selected)
    gone = missing_or_failed(result, baseline[~baseline["case"].isin(not_selected)])
    if rules.missing_fails and len(gone):
        regressions = pd.concat([gone, regressions], ignore_index=True) if len(regressions) else gone
    new_cases = sorted(set(result["case"]) - set(baseline["case"]))
    return GateOutcome(
        regressions.reset_index(drop=True),
        improvements.reset_index(drop=True),
        gone,
        new_cases,
        len(common),
        not_selected,
        unplaced,
    )
