"""Load pytest-benchmark result files into one tidy DataFrame, one row per case.

The input contract is the schema of `analysis.schema` (bench/README.md's table):
pytest-benchmark's own JSON, each `benchmarks` entry carrying the case
description in `extra_info`, plus a top-level `membed` block whose `not_run`
list names every case that was skipped or errored before producing an entry.
Both kinds of case become rows, so nothing a run attempted vanishes from the
report. Each row keeps its pytest node id in `fullname`; `membed.selected`,
where present, lists the node ids the run selected (after -k / path
filtering), so that the gate can tell a case outside a slice from one that
went missing. Records of an older schema version are upgraded on the way in
(`schema.upgrade`: schema 1's `vocab` is read as `dataset`).

Latency tail: pytest-benchmark's stats have no p95. `p95_s` is the 95th
percentile of `stats.data` (present with `--benchmark-save-data`, and in every
bench run's JSON), else `stats.max`. Column `p95_source` says which (`data`,
`max`), so a table can label a max as a max.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis import journal, schema

SUPPORTED_SCHEMA_VERSIONS = schema.SUPPORTED_SCHEMA_VERSIONS
# Every record field of the schema, in the order tables show them; then the loader's own columns.
EXTRA_COLUMNS = schema.EXTRA_INFO_KEYS
STAT_COLUMNS = tuple(field.name for field in schema.LOADER_FIELDS)
NUMERIC_COLUMNS = tuple(f.name for f in (*schema.FIELDS, *schema.LOADER_FIELDS) if f.numeric)
STATUSES = ("ok", "failed", "skipped", "interrupted")


class ResultError(ValueError):
    """An input file cannot be used; the message is one line naming the file and the problem."""


def read_json(path: str | Path) -> dict[str, Any]:
    """Reads a JSON object from `path`, turning every failure into a one-line `ResultError`.

    Args:
        path: file to read.

    Example:
        >>> read_json("missing.json")
        Traceback (most recent call last):
        ...
        analysis.load.ResultError: missing.json: no such file.
    """
    path = Path(path)
    if not path.is_file():
        raise ResultError(f"{path}: no such file.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ResultError(f"{path}: not valid JSON ({err}).") from None
    if not isinstance(data, dict):
        raise ResultError(f"{path}: expected a JSON object at the top level, got {type(data).__name__}.")
    return data


def read_result(path: str | Path) -> dict[str, Any]:
    """Reads a pytest-benchmark result file and checks that it is one.

    Args:
        path: a file written by `pytest --benchmark-json` or `--benchmark-autosave`.

    A run's journal (`out/quick.jsonl`, see `analysis.journal`) reads as the
    result of the cases it finished, so a run that never finished can be reported.

    Raises:
        ResultError: missing file, not JSON, no `benchmarks` list, or a schema
            version this module does not know.
    """
    if Path(path).suffix == journal.SUFFIX:
        if not Path(path).is_file():
            raise ResultError(f"{path}: no such file.")
        try:
            return journal.read(path).as_result()
        except (ValueError, UnicodeDecodeError) as err:
            raise ResultError(str(err)) from None
    data = read_json(path)
    if not isinstance(data.get("benchmarks"), list):
        raise ResultError(f"{path}: not a pytest-benchmark result (no `benchmarks` list).")
    membed = data.get("membed") or {}
    check_schema_version(membed.get("schema_version", 1), f"{path}: membed block")
    return data


def check_schema_version(version: Any, where: str, supported: Sequence[int] = SUPPORTED_SCHEMA_VERSIONS) -> None:
    """Raises `ResultError` unless `version` is one of `supported` (by default, the result schema's)."""
    if version not in supported:
        readable = ", ".join(str(v) for v in supported)
        raise ResultError(f"{where}: incompatible schema_version {version!r}. This report reads: {readable}.")


def latest_run(storage: str | Path = ".benchmarks") -> Path:
    """Returns the newest result file (by mtime) anywhere under pytest-benchmark's storage.

    Args:
        storage: the storage folder; pytest-benchmark nests runs as
            `<storage>/<machine-id>/NNNN_*.json`.

    Example:
        >>> latest_run(".benchmarks")  # doctest: +SKIP
        PosixPath('.benchmarks/Linux-CPython-3.11-64bit/0003_abc_20250101_000000.json')
    """
    storage = Path(storage)
    runs = [p for p in storage.rglob("*.json") if p.is_file()] if storage.is_dir() else []
    if not runs:
        raise ResultError(
            f"{storage}: no saved run found. Run `pytest bench --benchmark-autosave` or pass RESULT.json paths."
        )
    # Ties on mtime (same-second saves) fall back to the name, which pytest-benchmark numbers.
    return max(runs, key=lambda p: (p.stat().st_mtime, p.name))


def p95_of(stats: dict[str, Any]) -> tuple[float, str]:
    """Returns (seconds, source) for the latency tail; see the module docstring for the order."""
    data = stats.get("data")
    if isinstance(data, list) and data:
        return float(np.percentile(np.asarray(data, dtype=float), 95)), "data"
    if stats.get("max") is not None:
        return float(stats["max"]), "max"
    return math.nan, "none"


def _record(entry: dict[str, Any], where: str) -> dict[str, Any]:
    """`entry` in this schema version; one-line `ResultError` for a version this package cannot read."""
    version = entry.get("schema_version") or 1
    check_schema_version(version, where)
    return schema.upgrade(entry, version)


def _benchmark_row(entry: dict[str, Any], source: str, profile: str | None) -> dict[str, Any]:
    extra_info = entry.get("extra_info") or {}
    stats = entry.get("stats") or {}
    row: dict[str, Any] = dict.fromkeys(EXTRA_COLUMNS)
    row.update(_record(extra_info, f"{source}: case {extra_info.get('case') or entry.get('name')!r}"))
    row["status"] = row["status"] or "ok"
    row["case"] = row["case"] or entry.get("name")
    row["name"] = entry.get("name")
    row["fullname"] = entry.get("fullname")
    row["source"] = source
    row["profile"] = profile
    row["rounds"] = stats.get("rounds")
    if row["status"] == "ok":
        row["median_s"] = stats.get("median")
        row["mean_s"] = stats.get("mean")
        row["p95_s"], row["p95_source"] = p95_of(stats)
    else:
        # The schema says a failed case's stats are meaningless; keep them out of every table.
        row["median_s"] = row["mean_s"] = row["p95_s"] = None
        row["p95_source"] = None
    return row


def _not_run_row(entry: dict[str, Any], source: str, profile: str | None) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(EXTRA_COLUMNS)
    row.update(_record(entry, f"{source}: case {entry.get('case')!r}"))
    row["status"] = row["status"] or "skipped"
    row["name"] = row["case"]
    row.update(fullname=entry.get("fullname"), source=source, profile=profile, rounds=None)
    row.update(median_s=None, mean_s=None, p95_s=None, p95_source=None)
    return row


def rows_of(data: dict[str, Any], source: str) -> list[dict[str, Any]]:
    """Turns one parsed result file into row dicts (benchmark entries, then `not_run`), in this schema."""
    membed = data.get("membed") or {}
    profile = membed.get("profile")
    rows = [_benchmark_row(entry, source, profile) for entry in data["benchmarks"]]
    rows += [_not_run_row(entry, source, profile) for entry in membed.get("not_run") or []]
    return rows


def selection_of(data: dict[str, Any], source: str) -> frozenset[str] | None:
    """The node ids `membed.selected` says the run selected; None when the file predates that list."""
    selected = (data.get("membed") or {}).get("selected")
    if selected is None:
        return None
    if not isinstance(selected, list) or not all(isinstance(node, str) for node in selected):
        raise ResultError(f"{source}: `membed.selected` must be a list of pytest node ids.")
    return frozenset(selected)


def frame_of(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Builds the tidy frame from row dicts: the schema's columns first, numbers as float64."""
    frame = pd.DataFrame(list(rows))
    for column in (*EXTRA_COLUMNS, *STAT_COLUMNS):
        if column not in frame.columns:
            frame[column] = None
    for column in NUMERIC_COLUMNS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    # Only a literal true marks a projection; null reads as measured.
    frame["projected"] = frame["projected"].eq(True)
    ordered = [*EXTRA_COLUMNS, *STAT_COLUMNS]
    rest = [c for c in frame.columns if c not in ordered]
    # Copied whole: column by column the frame ends up in ~300 blocks, and pandas warns on each later insert.
    return frame[ordered + rest].reset_index(drop=True).copy()


def load_run(paths: Sequence[str | Path]) -> tuple[pd.DataFrame, frozenset[str] | None]:
    """`load_results` of `paths`, and the node ids their runs selected (see `selection_of`).

    The selection is the union over the files, or None when any file has no
    `membed.selected`: a run that does not say what it selected selected everything
    as far as the gate can tell.
    """
    rows: list[dict[str, Any]] = []
    selections: list[frozenset[str] | None] = []
    for path in paths:
        data = read_result(path)
        rows += rows_of(data, str(path))
        selections.append(selection_of(data, str(path)))
    selected = None if None in selections else frozenset().union(*selections)
    return frame_of(rows), selected


def load_results(paths: Sequence[str | Path]) -> pd.DataFrame:
    """Loads one or more result files into one tidy DataFrame, one row per case.

    Columns: every record field of `analysis.schema.FIELDS` (flattened;
    `options` stays a dict, the per-epoch lists stay lists, `projected` is a
    bool), then its `LOADER_FIELDS` (`name`, `fullname`, `median_s`, `mean_s`,
    `p95_s`, `p95_source`, `rounds`, `source`, `profile`), then any key a file
    holds that the schema does not declare. Cases from `membed.not_run`
    are rows too, with status `skipped` or `failed`, their reason, their node id
    in `fullname` where the entry has one, and no stats.

    Args:
        paths: result files; their rows are concatenated in order.

    Raises:
        ResultError: any file is unusable (see `read_result`).

    Example:
        >>> frame = load_results(["tests/fixtures/result_small.json"])
        >>> sorted(frame["suite"].unique())
        ['accuracy', 'gather', 'lookup', 'memory', 'train_step']
    """
    return load_run(paths)[0]
