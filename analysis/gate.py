"""The regression gate: compare a result with a baseline, case by case, under a few rules.

A case regresses when (defaults; each overridable by a CLI flag or by a
`[tool.membed.gate]` table in ./pyproject.toml):

- its params grew by more than `params_growth` parameters (0: any growth), or its
  param_bytes or index_bytes grew by more than `bytes_growth` bytes;
- a measured peak (alloc or RSS, lookup or train) grew by more than
  `peak_mem_rel` (10%) AND by more than `peak_mem_abs_mib` (1 MiB), so that
  allocator noise on tiny tables does not fail the gate;
- its gather_ratio (the suite's median over the bare gather's) grew by more than
  `gather_ratio_rel` (30%);
- its final val MSE grew by more than `val_mse_abs` (0.01);
- it is ok in the baseline and missing, failed or skipped in the result
  (`missing_fails`).

An improvement is the mirror image (shrank past the same limits); improvements
are listed but never fail the gate. Only ok cases make up a baseline, so a case
that already failed when the baseline was taken is not held against a result.

The baseline file keeps only what the gate reads:
`{"schema_version": 1, "kind": "membed-baseline", "cases": {case: {field: value}}}`,
written with sorted keys and indent 1 so that updating it gives a small diff.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
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


def rules_from_pyproject(path: str | Path = "pyproject.toml", base: GateRules | None = None) -> GateRules:
    """Applies the `[tool.membed.gate]` table of `path` (if the file and table exist) on top of `base`.

    Example:
        >>> rules_from_pyproject("no-such-pyproject.toml") == GateRules()
        True
    """
    path = Path(path)
    base = base or GateRules()
    if not path.is_file():
        return base
    text = path.read_text(encoding="utf-8")
    if tomllib is None:
        # Ignoring a gate table we cannot read would gate with the wrong limits; no table, no harm.
        if "[tool.membed.gate]" in text:
            raise ResultError(f"{path}: reading [tool.membed.gate] needs Python >= 3.11 or the tomli package.")
        return base
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ResultError(f"{path}: not valid TOML ({err}).") from None
    table = document.get("tool", {}).get("membed", {}).get("gate")
    if table is None:
        return base
    if not isinstance(table, dict):
        raise ResultError(f"{path}: [tool.membed.gate] must be a table.")
    return GateRules.from_mapping(table, f"{path} [tool.membed.gate]", base)


def _round(value: float) -> float:
    # Six significant digits: far below every gate limit, and run-to-run float
    # noise in the last digits no longer shows up in the baseline's diff.
    return float(f"{value:.6g}")


def baseline_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The gate's view of a tidy frame: ok cases only (last one wins), `case` + gated fields.

    Args:
        frame: a tidy frame from `analysis.load`.
    """
    ok = frame[frame["status"] == "ok"].drop_duplicates("case", keep="last")
    columns = ["case", "schema_version", *GATED_FIELDS]
    return ok.reindex(columns=columns).sort_values("case").reset_index(drop=True)


def baseline_document(frame: pd.DataFrame) -> dict[str, Any]:
    """The baseline file's content for a tidy result frame; null fields are left out."""
    cases: dict[str, dict[str, Any]] = {}
    for record in baseline_frame(frame).to_dict("records"):
        entry: dict[str, Any] = {"schema_version": int(record.get("schema_version") or BASELINE_SCHEMA_VERSION)}
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
        frame = pd.DataFrame(records).reindex(columns=["case", "schema_version", *GATED_FIELDS])
        for field in ("schema_version", *GATED_FIELDS):
            frame[field] = pd.to_numeric(frame[field], errors="coerce").astype("float64")
        return frame.sort_values("case").reset_index(drop=True)
    if isinstance(data.get("benchmarks"), list):
        check_schema_version((data.get("membed") or {}).get("schema_version", 1), f"{path}: membed block")
        return baseline_frame(frame_of(rows_of(data, str(path))))
    raise ResultError(f"{path}: neither a membed baseline (kind {BASELINE_KIND!r}) nor a pytest-benchmark result.")


@dataclass
class GateOutcome:
    """What the gate found: regressions fail; improvements and new cases are for the reader."""

    regressions: pd.DataFrame
    improvements: pd.DataFrame
    missing: pd.DataFrame
    new_cases: list[str]
    compared: int

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


def missing_or_failed(result: pd.DataFrame, baseline: pd.DataFrame) -> pd.DataFrame:
    """Baseline cases that are absent from the result, or present there only as failed/skipped."""
    latest = result.drop_duplicates("case", keep="last").set_index("case")
    records = []
    for case in baseline["case"]:
        if case not in latest.index:
            detail = "missing from the result"
        elif latest.at[case, "status"] != "ok":
            reason = latest.at[case, "reason"]
            detail = f"{latest.at[case, 'status']}" + (f": {reason}" if isinstance(reason, str) and reason else "")
        else:
            continue
        records.append({"case": case, "rule": "missing_fails", "field": "status", "limit": detail})
    return pd.DataFrame(records).reindex(columns=FINDING_COLUMNS)


def check(result: pd.DataFrame, baseline: pd.DataFrame, rules: GateRules, name: str = "baseline") -> GateOutcome:
    """Runs every rule; raises `ResultError` when result and baseline share no case.

    Args:
        result: tidy result frame.
        baseline: the baseline in `baseline_frame` form.
        rules: the limits.
        name: how to call the baseline in an error (its path).

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
    gone = missing_or_failed(result, baseline)
    if rules.missing_fails and len(gone):
        regressions = pd.concat([gone, regressions], ignore_index=True) if len(regressions) else gone
    new_cases = sorted(set(result["case"]) - set(baseline["case"]))
    return GateOutcome(
        regressions.reset_index(drop=True), improvements.reset_index(drop=True), gone, new_cases, len(common)
    )
