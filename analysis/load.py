"""Load pytest-benchmark result files into one tidy DataFrame, one row per case.

The input contract is the schema in bench/README.md (schema_version 1): pytest-benchmark's
own JSON, each `benchmarks` entry carrying the case description in `extra_info`,
plus a top-level `membed` block whose `not_run` list names every case that was
skipped or errored before producing an entry. Both kinds of case become rows, so
nothing a run attempted vanishes from the report. Each row keeps its pytest node
id in `fullname`; `membed.selected`, where present, lists the node ids the run
selected (after -k / path filtering), so that the gate can tell a case outside
a slice from one that went missing.

Latency tail: pytest-benchmark's stats have no p95. `p95_s` is, in order of
preference, the 95th percentile of `stats.data` (present only with
`--benchmark-save-data`), the suite's own `extra_info.p95_seconds`, or
`stats.max`. Column `p95_source` says which (`data`, `extra_info`, `max`), so a
table can label a max as a max.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis import journal

SUPPORTED_SCHEMA_VERSIONS = (1,)

# Every extra_info key of schema_version 1, in the order tables show them.
EXTRA_COLUMNS = (
    "schema_version",
    "case",
    "suite",
    "status",
    "reason",
    "strategy",
    "options",
    "preset",
    "vocab",
    "vocab_size",
    "dim",
    "batch_size",
    "params",
    "param_bytes",
    "index_bytes",
    "train_state_bytes",
    "compression",
    "peak_alloc_bytes_lookup",
    "peak_rss_bytes_lookup",
    "peak_alloc_bytes_train",
    "peak_rss_bytes_train",
    "gather_ratio",
    "val_mse",
    "val_mae",
    "val_rmse",
    "val_mse_per_epoch",
    "val_mae_per_epoch",
    "val_rmse_per_epoch",
    "train_mse_per_epoch",
    "epochs",
    "noise_floor_mse",
    "excess_mse",
    "fit_seconds",
)
LIST_COLUMNS = ("val_mse_per_epoch", "val_mae_per_epoch", "val_rmse_per_epoch", "train_mse_per_epoch")
# Columns that hold text, a dict or lists; every other schema key is a number.
TEXT_COLUMNS = ("case", "suite", "status", "reason", "strategy", "options", "preset", "vocab")
NUMERIC_COLUMNS = (
    *(c for c in EXTRA_COLUMNS if c not in TEXT_COLUMNS + LIST_COLUMNS),
    "p95_seconds",
    "median_s",
    "mean_s",
    "p95_s",
    "rounds",
)
STAT_COLUMNS = ("name", "fullname", "median_s", "mean_s", "p95_s", "p95_source", "rounds", "source", "profile")
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


def check_schema_version(version: Any, where: str) -> None:
    """Raises `ResultError` unless `version` is one this package reads."""
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        supported = ", ".join(str(v) for v in SUPPORTED_SCHEMA_VERSIONS)
        raise ResultError(f"{where}: incompatible schema_version {version!r}. This report reads: {supported}.")


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


def p95_of(stats: dict[str, Any], extra_info: dict[str, Any]) -> tuple[float, str]:
    """Returns (seconds, source) for the latency tail; see the module docstring for the order."""
    data = stats.get("data")
    if isinstance(data, list) and data:
        return float(np.percentile(np.asarray(data, dtype=float), 95)), "data"
    if extra_info.get("p95_seconds") is not None:
        return float(extra_info["p95_seconds"]), "extra_info"
    if stats.get("max") is not None:
        return float(stats["max"]), "max"
    return math.nan, "none"


def _benchmark_row(entry: dict[str, Any], source: str, profile: str | None) -> dict[str, Any]:
    extra_info = dict(entry.get("extra_info") or {})
    stats = entry.get("stats") or {}
    row: dict[str, Any] = {key: None for key in EXTRA_COLUMNS}
    row.update(extra_info)
    row["status"] = extra_info.get("status") or "ok"
    row["case"] = extra_info.get("case") or entry.get("name")
    row["name"] = entry.get("name")
    row["fullname"] = entry.get("fullname")
    row["source"] = source
    row["profile"] = profile
    row["rounds"] = stats.get("rounds")
    if row["status"] == "ok":
        row["median_s"] = stats.get("median")
        row["mean_s"] = stats.get("mean")
        row["p95_s"], row["p95_source"] = p95_of(stats, extra_info)
    else:
        # The schema says a failed case's stats are meaningless; keep them out of every table.
        row["median_s"] = row["mean_s"] = row["p95_s"] = None
        row["p95_source"] = None
    return row


def _not_run_row(entry: dict[str, Any], source: str, profile: str | None) -> dict[str, Any]:
    row: dict[str, Any] = {key: None for key in EXTRA_COLUMNS}
    row.update(entry)
    row["status"] = entry.get("status") or "skipped"
    row["name"] = row["case"]
    row.update(fullname=entry.get("fullname"), source=source, profile=profile, rounds=None)
    row.update(median_s=None, mean_s=None, p95_s=None, p95_source=None)
    return row


def rows_of(data: dict[str, Any], source: str) -> list[dict[str, Any]]:
    """Turns one parsed result file into row dicts (benchmark entries, then `not_run`)."""
    membed = data.get("membed") or {}
    profile = membed.get("profile")
    rows = [_benchmark_row(entry, source, profile) for entry in data["benchmarks"]]
    rows += [_not_run_row(entry, source, profile) for entry in membed.get("not_run") or []]
    for row in rows:
        check_schema_version(row.get("schema_version") or 1, f"{source}: case {row['case']!r}")
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
    """Builds the tidy frame from row dicts: known columns first, numbers as float64."""
    frame = pd.DataFrame(list(rows))
    for column in (*EXTRA_COLUMNS, *STAT_COLUMNS):
        if column not in frame.columns:
            frame[column] = None
    for column in NUMERIC_COLUMNS:
        if column in frame.columns:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    # Only a literal true marks a projection; absent keys (NaN/None) read as measured.
    frame["projected"] = frame["projected"].eq(True) if "projected" in frame else False
    # A memory case that was not run but carries sizes holds them from the cost
    # formulas (the suite fills them before deciding to skip): a projection too.
    formula_only = (frame["suite"] == "memory") & frame["status"].isin(["skipped", "failed"]) & frame["params"].notna()
    frame["projected"] = frame["projected"] | formula_only
    ordered = [*EXTRA_COLUMNS, "projected", *STAT_COLUMNS]
    rest = [c for c in frame.columns if c not in ordered]
    return frame[ordered + rest].reset_index(drop=True)


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

    Columns: every extra_info key of the schema (flattened; `options` stays a
    dict and the per-epoch lists stay lists), any extra keys a suite added,
    `projected` (bool), and `name`, `fullname`, `median_s`, `mean_s`, `p95_s`,
    `p95_source`, `rounds`, `source`, `profile`. Cases from `membed.not_run`
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
