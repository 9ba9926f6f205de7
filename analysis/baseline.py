"""The gate's baseline file: what of a result the gate compares against, written small and stable.

The file keeps only what the gate reads:
`{"schema_version": 1, "kind": "membed-baseline", "cases": {case: {field: value}}}`,
the fields being the gated ones of `analysis.schema` (`GATED_FIELDS`), the
case's pytest node id (`fullname`) and the schema version of the result it
came from; written with sorted keys and indent 1 so that updating it gives a
small diff. The file's own format has version 1 (`BASELINE_SCHEMA_VERSION`):
it holds none of the fields schema 2 renamed, so results of either schema
version write the same kind of file.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from analysis import schema
from analysis.load import ResultError, check_schema_version, frame_of, read_json, rows_of

BASELINE_KIND = "membed-baseline"
BASELINE_SCHEMA_VERSION = 1
BASELINE_SCHEMA_VERSIONS = (1,)
DEFAULT_BASELINE = Path("reports/baseline.json")
GATED_FIELDS = schema.GATED_FIELDS
INT_FIELDS = tuple(name for name in GATED_FIELDS if schema.FIELD[name].type == "int")
BASELINE_COLUMNS = ["case", "fullname", "schema_version", *GATED_FIELDS]


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
    return ok.reindex(columns=BASELINE_COLUMNS).sort_values("case").reset_index(drop=True)


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
        for field in ("schema_version", *GATED_FIELDS):
            frame[field] = pd.to_numeric(frame[field], errors="coerce").astype("float64")
        return frame.sort_values("case").reset_index(drop=True)
    if isinstance(data.get("benchmarks"), list):
        check_schema_version((data.get("membed") or {}).get("schema_version", 1), f"{path}: membed block")
        return baseline_frame(frame_of(rows_of(data, str(path))))
    raise ResultError(f"{path}: neither a membed baseline (kind {BASELINE_KIND!r}) nor a pytest-benchmark result.")
