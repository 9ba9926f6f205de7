"""The regression gate: compare a result with a baseline, case by case, under a few rules.

A case regresses when (the limits come from the `[tool.membed.gate]` table of a
pyproject.toml, see `find_gate_config`, and a CLI flag overrides one of them; in
parentheses, the code's values for keys the table leaves out):

- its params grew by more than `params_growth` parameters (0: any growth), or its
  param_bytes or index_bytes grew by more than `bytes_growth` bytes;
- a measured peak (alloc or RSS, lookup or train) grew by more than
  `peak_mem_rel` (10%) AND by more than `peak_mem_abs_mib` (allocator peaks) or
  `peak_rss_abs_mib` (peak RSS) (1 MiB each), so that allocator noise on tiny
  tables does not fail the gate;
- its gather_ratio (the suite's median over the bare gather's) grew by more than
  max(`ratio_floor_rel`, `ratio_noise_k` x its noise) (10%, 3), its noise being
  the relative 95% half-width of its median ratio that the baseline stored
  (`analysis.baseline.with_noise`); by more than `gather_ratio_rel` (30%) where
  the baseline stored none; and a strategy's cases of one suite together
  (`analysis.rules.GroupRule`), past max(`group_floor_rel`, `group_noise_k` x
  the group's noise);
- its final val MSE grew by more than `val_mse_abs` (0.01);
- it is ok in the baseline and missing, failed or skipped in the result
  (`missing_fails`), although the result's run selected its test.

A run that names the pytest node ids it selected (`membed.selected`) is a slice
when it selected fewer tests than the baseline holds: baseline cases whose node
id it did not select are "not in this run's selection", counted and not gated.

A speed regression (a ratio's) can be timed again before it fails: `--confirm`
(`analysis.confirm`) drops those that a re-run of their cases does not repeat.

An improvement is the mirror image (shrank past the same limits); improvements
are listed but never fail the gate. Only ok cases make up a baseline, so a case
that already failed when the baseline was taken is not held against a result.

Which fields are gated, and how, is each field's gate treatment in
`analysis.schema`; `analysis.rules` turns the limits into one rule object per
gated field, and the rules read one long deltas frame (`analysis.compare.deltas`,
the frame `--compare` also uses). The baseline file is `analysis.baseline`'s.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.baseline import (
    BASELINE_KIND,
    BASELINE_SCHEMA_VERSION,
    DEFAULT_BASELINE,
    GATED_FIELDS,
    GROUP_NOISE_SUFFIX,
    INT_FIELDS,
    NOISE_SUFFIX,
    baseline_document,
    baseline_frame,
    load_baseline,
    write_baseline,
)
from analysis.compare import attach_noise, deltas
from analysis.load import ResultError
from analysis.rules import FINDING_COLUMNS, GateRules, Rule, apply_limits, apply_rules, rules_for
from analysis.schema import PEAK_FIELDS

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: tomllib arrived in 3.11; tomli is the same parser
    try:
        import tomli as tomllib
    except ModuleNotFoundError:
        tomllib = None

GATE_TABLE = "[tool.membed.gate]"
# What `analysis.gate` offers, the baseline file's and the rules' names included.
__all__ = [
    "BASELINE_KIND",
    "BASELINE_SCHEMA_VERSION",
    "DEFAULT_BASELINE",
    "FINDING_COLUMNS",
    "GATED_FIELDS",
    "GATE_TABLE",
    "INT_FIELDS",
    "PEAK_FIELDS",
    "GateOutcome",
    "GateRules",
    "Rule",
    "baseline_document",
    "baseline_frame",
    "check",
    "compare",
    "find_gate_config",
    "gate_deltas",
    "load_baseline",
    "missing_or_failed",
    "outside_selection",
    "read_gate_table",
    "rules_from_pyproject",
    "write_baseline",
]


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


@dataclass
class GateOutcome:
    """What the gate found: regressions fail; the rest is for the reader.

    `missing` holds the baseline cases the run selected but did not bring back
    ok (regressions too, under `missing_fails`); `not_selected` the baseline
    cases whose test the run did not select; `unplaced` the absent baseline
    cases that could not be checked against the selection because the baseline
    has no node id for them; `excused` the speed regressions that a re-run of
    their cases did not repeat (`analysis.confirm`), which do not fail.
    """

    regressions: pd.DataFrame
    improvements: pd.DataFrame
    missing: pd.DataFrame
    new_cases: list[str]
    compared: int
    not_selected: list[str] = dataclasses.field(default_factory=list)
    unplaced: list[str] = dataclasses.field(default_factory=list)
    excused: pd.DataFrame = dataclasses.field(default_factory=lambda: pd.DataFrame(columns=FINDING_COLUMNS))

    @property
    def passed(self) -> bool:
        return self.regressions.empty


def gate_deltas(result: pd.DataFrame, baseline: pd.DataFrame) -> pd.DataFrame:
    """The long deltas frame of the gated fields: result (its ok cases) against the baseline, by case.

    Column `noise` holds the noise the baseline stored for a case's ratio (NaN elsewhere), which
    `analysis.rules.NoiseRule` sets the case's limit from; `group_noise` its group's noise across the
    baseline's runs, for `analysis.rules.GroupRule`.
    """
    long = attach_noise(deltas(baseline, baseline_frame(result), GATED_FIELDS), baseline, NOISE_SUFFIX)
    group = attach_noise(long.drop(columns="noise"), baseline, GROUP_NOISE_SUFFIX)["noise"]
    return long.assign(group_noise=group.to_numpy())


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
    return apply_limits(gate_deltas(result, baseline), rules)


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
