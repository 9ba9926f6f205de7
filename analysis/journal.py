"""The run's journal: one JSON line per finished case, written as it finishes.

A run with `--benchmark-json out/quick.json` also writes `out/quick.jsonl`:
a first line describing the run, a line with the node ids it selected once
they are collected (`{"kind": "selected", "nodes": [...]}`), then one line per
case, `{"kind": "benchmark", "entry": <pytest-benchmark's entry>}` or
`{"kind": "not_run", "entry": <not_run entry>}`, each flushed to disk before
the next case starts. bench/conftest.py writes it; `analysis.load` reads it
like a result file.
A run that dies (Ctrl-C, an out-of-memory kill of pytest itself) keeps every
finished case there; `--resume` runs only the missing ones, and
`python -m analysis.report out/quick.jsonl` reports a run that never finished.

A crash in the middle of a write leaves at most a torn last line, which
`read` drops with a warning.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

SOURCES = ("membed", "bench")  # the code whose version a journal is tied to
SUFFIX = ".jsonl"


def journal_path(json_path: str | Path) -> Path:
    """`out/quick.json` -> `out/quick.jsonl`."""
    return Path(json_path).with_suffix(SUFFIX)


def code_version(root: Path) -> str:
    """A short hash of the Python sources of `membed/` and `bench/`: a resumed run must measure the same code."""
    digest = hashlib.sha256()
    for folder in SOURCES:
        for path in sorted((root / folder).rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@dataclass
class Contents:
    """What a journal holds: the run's description and its finished cases, in order."""

    run: dict[str, Any]
    selected: list[str] | None = None
    benchmarks: list[dict] = field(default_factory=list)
    not_run: list[dict] = field(default_factory=list)

    @property
    def finished(self) -> set[str]:
        """Node ids of the cases that need not run again (an interrupted case runs again)."""
        done = {entry["fullname"] for entry in self.benchmarks}
        return done | {entry["fullname"] for entry in self.not_run if entry.get("status") != "interrupted"}

    def as_result(self) -> dict[str, Any]:
        """The finished cases as a result document (the shape `--benchmark-json` writes), for `analysis.load`."""
        return {
            "benchmarks": self.benchmarks,
            "membed": {
                "schema_version": self.run.get("schema_version", 1),
                "profile": self.run.get("profile"),
                # The journal holds what finished; whether the run did is for its JSON to say.
                "interrupted": self.selected is None or len(self.finished) < len(self.selected),
                "selected": self.selected,
                "not_run": self.not_run,
            },
        }


def read(path: str | Path) -> Contents:
    """Reads a journal; a torn last line is dropped with a warning, a torn line elsewhere is an error.

    Raises:
        ValueError: the file is not a journal (no run line) or is damaged before its end.
    """
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):
                warnings.warn(f"{path} line {number}: torn last line (the run stopped while writing it); "
                              "ignored.", stacklevel=2)
                break
            raise ValueError(f"{path} line {number}: not JSON; the journal is damaged.") from None
    if not records or records[0].get("kind") != "run":
        raise ValueError(f"{path}: not a membed journal (its first line is not the run's description).")
    contents = Contents(run=records[0]["run"])
    for record in records[1:]:
        if record.get("kind") == "benchmark":
            contents.benchmarks.append(record["entry"])
        elif record.get("kind") == "not_run":
            contents.not_run.append(record["entry"])
        elif record.get("kind") == "selected":
            contents.selected = record["nodes"]
    # A case journaled twice (interrupted, then resumed) counts by its last line.
    contents.benchmarks = _last_per_case(contents.benchmarks)
    contents.not_run = [entry for entry in _last_per_case(contents.not_run)
                        if entry["fullname"] not in {done["fullname"] for done in contents.benchmarks}]
    return contents


def _last_per_case(entries: list[dict]) -> list[dict]:
    return list({entry["fullname"]: entry for entry in entries}.values())


class Writer:
    """Appends lines to a journal, each flushed and synced before `write` returns."""

    def __init__(self, path: str | Path, run: dict[str, Any] | None = None):
        self.path = Path(path)
        # A new run starts the file afresh; a resumed one (run=None) appends to it.
        self._stream: TextIO = open(self.path, "w" if run is not None else "a", encoding="utf-8")
        if run is not None:
            self._write({"kind": "run", "run": run})

    def write(self, kind: str, entry: dict) -> None:
        self._write({"kind": kind, "entry": entry})

    def write_selected(self, nodes: list[str]) -> None:
        self._write({"kind": "selected", "nodes": nodes})

    def _write(self, record: dict) -> None:
        self._stream.write(json.dumps(record, default=str) + "\n")
        self._stream.flush()
        os.fsync(self._stream.fileno())

    def close(self) -> None:
        self._stream.close()
