"""The gate's baseline file: what of a result the gate compares against, written small and stable.

The file keeps only what the gate reads:
`{"schema_version": 1, "kind": "membed-baseline", "cases": {case: {field: value}}}`,
the fields being the gated ones of `analysis.schema` (`GATED_FIELDS`), the
case's pytest node id (`fullname`) and the schema version of the result it
came from; written with sorted keys and indent 1 so that updating it gives a
small diff. The file's own format has version 1 (`BASELINE_SCHEMA_VERSION`):
it holds none of the fields schema 2 renamed, so results of either schema
version write the same kind of file.

Each ratio field (gate treatment `ratio`, such as `gather_ratio`) is stored
with its noise, `<field>_noise`: the relative half-width of a 95% interval of
the case's median ratio, which the gate scales into the case's own limit
(`analysis.rules.NoiseRule`). From the per-round ratios `<field>_rounds` where
the case recorded them: the distribution-free interval between two order
statistics of the rounds (`median_interval`). Otherwise from the case's timing
stats, as a proxy: `IQR_TO_HALF_WIDTH` x IQR / median / sqrt(rounds), the
normal approximation of the same interval, which leaves out the bare gather's
own noise. A baseline written from several runs of the same code (several
RESULT.json) raises each case's noise to half the range of its ratio across
them: the noise between runs, which no one run shows. Such a baseline also
stores `<field>_group_noise` on each case: half the relative range, across
the runs, of the geometric mean of its group's ratios (`analysis.rules.group_of`:
a strategy's cases of one suite), which `analysis.rules.GroupRule` limits the
group by; a whole run's drift moves a group's cases together, so it does not
average away over them. A baseline without
noise (written before it was stored) still loads; its cases are gated by the
constant `gather_ratio_rel`.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis import schema
from analysis.load import ResultError, check_schema_version, frame_of, read_json, read_result, rows_of
from analysis.rules import RATIO_FIELDS, group_of

BASELINE_KIND = "membed-baseline"
BASELINE_SCHEMA_VERSION = 1
BASELINE_SCHEMA_VERSIONS = (1,)
DEFAULT_BASELINE = Path("reports/baseline.json")
GATED_FIELDS = schema.GATED_FIELDS
INT_FIELDS = tuple(name for name in GATED_FIELDS if schema.FIELD[name].type == "int")
NOISE_SUFFIX = "_noise"
ROUNDS_SUFFIX = "_rounds"
GROUP_NOISE_SUFFIX = "_group_noise"
NOISE_FIELDS = tuple(f"{name}{suffix}" for suffix in (NOISE_SUFFIX, GROUP_NOISE_SUFFIX) for name in RATIO_FIELDS)
BASELINE_COLUMNS = ["case", "fullname", "schema_version", *GATED_FIELDS, *NOISE_FIELDS]
CONFIDENCE = 0.95
# The standard error of a median is sqrt(pi / 2) sigma / sqrt(n), sigma = IQR / 1.349 for a
# normal sample; 1.96 of them make the half-width of a 95% interval.
IQR_TO_HALF_WIDTH = 1.96 * math.sqrt(math.pi / 2) / 1.349
# Fewer rounds than this say nothing about a median's spread.
MIN_ROUNDS = 5


def median_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """A distribution-free interval for the median of `values`: two order statistics.

    The j-th smallest and j-th largest values cover the median with probability
    1 - 2 P(Binomial(n, 1/2) < j); j is the largest that keeps this >= `confidence`
    (the minimum and maximum when no j does, as for n < 6 at 95%).

    Example:
        >>> median_interval(list(range(1, 21)))
        (6, 15)
    """
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        raise ValueError("median_interval: no values; pass at least one round.")
    j, tail = 1, (1 + n) / 2**n  # tail: P(Binomial(n, 1/2) <= j), what j + 1 would miss on each side
    while j < (n + 1) // 2 and 1 - 2 * tail >= confidence:
        j += 1
        tail += math.comb(n, j) / 2**n
    return ordered[j - 1], ordered[n - j]


def rounds_noise(ratios: Sequence[float]) -> float:
    """The relative half-width of `median_interval(ratios)`; NaN for fewer than `MIN_ROUNDS` rounds.

    Example:
        >>> round(rounds_noise([1.0] * 10 + [1.1] * 10), 3)
        0.048
    """
    values = [float(v) for v in ratios if v is not None and math.isfinite(float(v))]
    if len(values) < MIN_ROUNDS:
        return math.nan
    low, high = median_interval(values)
    middle = statistics.median(values)
    return (high - low) / 2 / abs(middle) if middle else math.nan


def stats_noise(iqr: float, median: float, rounds: float) -> float:
    """The proxy noise of a median from pytest-benchmark stats; NaN where they cannot give one.

    Example:
        >>> round(stats_noise(0.1, 1.0, 25), 4)
        0.0364
    """
    values = (iqr, median, rounds)
    if any(v is None or not math.isfinite(float(v)) for v in values) or median <= 0 or rounds < MIN_ROUNDS:
        return math.nan
    return IQR_TO_HALF_WIDTH * float(iqr) / float(median) / math.sqrt(float(rounds))


def _stats_by_case(frame: pd.DataFrame) -> dict[tuple[str, str], dict[str, Any]]:
    """pytest-benchmark's `stats` of each (source, case), read again from the frame's source files.

    The tidy frame keeps no IQR; a source that is gone, or not a result, gives nothing.
    """
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for source in frame["source"].dropna().unique() if "source" in frame else []:
        if not Path(source).is_file():
            continue
        try:
            data = read_result(source)
        except ResultError:
            continue
        for entry in data["benchmarks"]:
            case = (entry.get("extra_info") or {}).get("case") or entry.get("name")
            found[(source, case)] = entry.get("stats") or {}
    return found


def with_noise(frame: pd.DataFrame, stats: Mapping[tuple[str, str], Mapping[str, Any]] | None = None) -> pd.DataFrame:
    """`frame` (tidy) plus a `<field>_noise` column per ratio field, for its ok rows that hold the field.

    From `<field>_rounds` where the row has per-round ratios, else from the
    case's stats (`stats`, keyed by (source, case); default: read from the
    frame's source files). A row with neither gets NaN.

    Args:
        frame: a tidy frame from `analysis.load`.
        stats: pytest-benchmark stats by (source, case), when the caller has them.
    """
    out = frame.copy()
    wanted = [f for f in RATIO_FIELDS if f"{f}{NOISE_SUFFIX}" not in out or out[f"{f}{NOISE_SUFFIX}"].isna().all()]
    if not wanted:
        return out
    stats = _stats_by_case(out) if stats is None else stats
    for field in wanted:
        rounds_column = f"{field}{ROUNDS_SUFFIX}"
        noise = []
        for _, row in out.iterrows():
            value = row.get(field)
            if row.get("status") != "ok" or value is None or not math.isfinite(float(value)):
                noise.append(math.nan)
                continue
            rounds = row.get(rounds_column)
            if isinstance(rounds, (list, tuple)) and rounds:
                noise.append(rounds_noise(rounds))
                continue
            case_stats = stats.get((row.get("source"), row.get("case"))) or {}
            noise.append(stats_noise(case_stats.get("iqr"), case_stats.get("median"), case_stats.get("rounds")))
        out[f"{field}{NOISE_SUFFIX}"] = pd.Series(noise, index=out.index, dtype="float64")
        out[f"{field}{NOISE_SUFFIX}"] = _across_runs(out, field)
        out[f"{field}{GROUP_NOISE_SUFFIX}"] = _group_across_runs(out, field)
    return out


def _group_across_runs(frame: pd.DataFrame, field: str) -> pd.Series:
    """Per case, half the relative range of its group's geometric mean `field` over the runs in `frame`.

    Each run's mean is over the group's cases that every run holds, so the runs
    compare like with like. NaN where the frame holds one run, or the group one case.
    """
    noise = pd.Series(np.nan, index=frame.index, dtype="float64")
    ok = frame[(frame["status"] == "ok") & pd.to_numeric(frame[field], errors="coerce").gt(0)]
    if ok["source"].nunique() < 2:
        return noise
    runs = ok.pivot_table(index="case", columns="source", values=field, aggfunc="last").dropna()
    for _, members in runs.groupby(runs.index.map(group_of)):
        if len(members) < 2:
            continue
        means = np.exp(np.log(members.astype(float)).mean(axis=0))
        spread = (means.max() - means.min()) / 2 / means.median()
        noise[frame["case"].isin(members.index) & frame.index.isin(ok.index)] = spread
    return noise


def _across_runs(frame: pd.DataFrame, field: str) -> pd.Series:
    """Each case's noise, raised to half the relative range of its ratio over the runs in `frame`.

    A frame loaded from several result files of the same code holds a case once
    per run; how far its ratio moved between them is noise no single run shows.
    """
    noise = frame[f"{field}{NOISE_SUFFIX}"].copy()
    ok = frame[(frame["status"] == "ok") & frame[field].notna()]
    for _, runs in ok.groupby("case")[field]:
        if len(runs) < 2:
            continue
        spread = (runs.max() - runs.min()) / 2 / abs(runs.median()) if runs.median() else math.nan
        noise[runs.index] = np.fmax(noise[runs.index], spread)
    return noise


def _round(value: float) -> float:
    # Six significant digits: far below every gate limit, and run-to-run float
    # noise in the last digits no longer shows up in the baseline's diff.
    return float(f"{value:.6g}")


def baseline_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The gate's view of a tidy frame: ok cases only (last one wins), `case`, `fullname` + gated fields
    (+ the ratios' noise where the frame has it: `with_noise`).

    A frame of several runs keeps each ratio's median over them: the runs' middle, not the last
    run's minute of the machine.

    Args:
        frame: a tidy frame from `analysis.load`.
    """
    ok = frame[frame["status"] == "ok"]
    kept = ok.drop_duplicates("case", keep="last").set_index("case")
    for field in RATIO_FIELDS:
        if field in ok and kept[field].notna().any():
            kept[field] = pd.to_numeric(ok[field], errors="coerce").groupby(ok["case"]).median()
    return kept.reset_index().reindex(columns=BASELINE_COLUMNS).sort_values("case").reset_index(drop=True)


def baseline_document(frame: pd.DataFrame) -> dict[str, Any]:
    """The baseline file's content for a tidy result frame, each ratio with its noise; null fields are left out."""
    cases: dict[str, dict[str, Any]] = {}
    for record in baseline_frame(with_noise(frame)).to_dict("records"):
        entry: dict[str, Any] = {"schema_version": int(record.get("schema_version") or BASELINE_SCHEMA_VERSION)}
        # The node id lets a later slice (`membed.selected`) say whether it ran this case's test.
        if isinstance(record.get("fullname"), str):
            entry["fullname"] = record["fullname"]
        for field in (*GATED_FIELDS, *NOISE_FIELDS):
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

    Example:
        >>> load_baseline("reports/baseline.json")["case"].is_unique  # doctest: +SKIP
        True
    """
    data = read_json(path)
    if data.get("kind") == BASELINE_KIND:
        check_schema_version(data.get("schema_version"), f"{path}: baseline", BASELINE_SCHEMA_VERSIONS)
        cases = data.get("cases")
        if not isinstance(cases, dict):
            raise ResultError(f"{path}: baseline has no `cases` object.")
        records = []
        for case, entry in cases.items():
            check_schema_version(entry.get("schema_version"), f"{path}: baseline case {case!r}")
            records.append({"case": case, **entry})
        frame = pd.DataFrame(records).reindex(columns=BASELINE_COLUMNS)
        for field in ("schema_version", *GATED_FIELDS, *NOISE_FIELDS):
            frame[field] = pd.to_numeric(frame[field], errors="coerce").astype("float64")
        return frame.sort_values("case").reset_index(drop=True)
    if isinstance(data.get("benchmarks"), list):
        check_schema_version((data.get("membed") or {}).get("schema_version", 1), f"{path}: membed block")
        stats = {(str(path), (e.get("extra_info") or {}).get("case") or e.get("name")): e.get("stats") or {}
                 for e in data["benchmarks"]}
        return baseline_frame(with_noise(frame_of(rows_of(data, str(path))), stats))
    raise ResultError(f"{path}: neither a membed baseline (kind {BASELINE_KIND!r}) nor a pytest-benchmark result.")
