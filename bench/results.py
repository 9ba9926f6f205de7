"""What a run writes, in the shape `analysis` reads: case records, `not_run` entries, the `membed` block.

The fields are `analysis.schema`'s: a `Record` (a case's `extra_info`)
refuses a key the schema does not declare, so a field cannot reach a JSON
file undeclared. bench/conftest.py writes pytest-benchmark's JSON with
these; bench/gpu_lookup.py writes the same shape without pytest.

Example:
    >>> from bench import grid
    >>> record = Record(grid.Case("memory", "qr", "synthetic-zipf", 1000, 64, 4096))
    >>> record["params"] = 2048
    >>> record["vocab"] = "synthetic-zipf"  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: memory/qr/synthetic-zipf/1000/64: unknown result field 'vocab' (schema 2 calls it 'dataset'). ...
"""

from __future__ import annotations

import statistics
from typing import Any, Iterable, Mapping

from analysis import schema
from bench import grid

# Keys of a not_run entry besides the record's.
NOT_RUN_KEYS = ("fullname",)


class Record(dict):
    """A case's extra_info: every schema field, pre-filled from the case (`grid.base_record`), and no other.

    Args:
        case: the case it describes.
        values: fields known already (each one checked).

    Attributes:
        rounds: seconds of each timed round where pytest-benchmark did not time them
            (a pytest-xdist worker, `bench.distributed`); not a field.

    Raises:
        ValueError: on writing a key `analysis.schema` does not declare.
    """

    def __init__(self, case: grid.Case, values: Mapping[str, Any] | None = None):
        super().__init__(grid.base_record(case))
        self.where = case.case_id()
        self.rounds: list[float] = []
        self.update(values or {})

    def __setitem__(self, key: str, value: Any) -> None:
        schema.check_record({key: value}, where=self.get("case") or self.where)
        super().__setitem__(key, value)

    def update(self, *args: Any, **kwargs: Any) -> None:
        values = dict(*args, **kwargs)
        schema.check_record(values, where=values.get("case") or self.get("case") or self.where)
        super().update(values)

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def __ior__(self, values: Mapping[str, Any]) -> Record:
        self.update(values)
        return self


def not_run_entry(case: grid.Case, record: Mapping[str, Any] | None, status: str, reason: str,
                  fullname: str) -> dict[str, Any]:
    """A case that produced no benchmark entry: its record so far, why, and its node id; checked."""
    entry = {**grid.base_record(case), **(record or {}), "status": status, "reason": reason, "fullname": fullname}
    schema.check_record(entry, where=entry["case"], also=NOT_RUN_KEYS)
    return entry


def in_run_order(entries: Iterable[Mapping[str, Any]], selected: list[str]) -> list:
    """`entries` (each with a `fullname`) in the order of `selected`, the rest after them."""
    order = {fullname: index for index, fullname in enumerate(selected)}
    return sorted(entries, key=lambda entry: order.get(entry["fullname"], len(order)))


def membed_block(profile: str | None, selected: list[str], not_run: list[dict], interrupted: bool = False,
                 **more: Any) -> dict[str, Any]:
    """The JSON's top-level `membed` block (bench/README.md, "Result schema")."""
    return {"schema_version": schema.SCHEMA_VERSION, "profile": profile, "interrupted": interrupted,
            "selected": selected, "not_run": not_run, **more}


def journal_run(selection: grid.Selection, keyword: str, paths: list[str], code_version: str) -> dict[str, Any]:
    """The journal's first line: what a resumed run must select to be the same run."""
    return {
        "schema_version": schema.SCHEMA_VERSION,
        "profile": selection.profile.name,
        "strategies": list(selection.strategies),
        "datasets": list(selection.datasets),
        "vocab_sizes": list(selection.vocab_sizes),
        "optimizers": list(selection.optimizers),
        "keyword": keyword,
        "paths": paths,
        "code_version": code_version,
    }


def stats_of(samples: list[float]) -> dict[str, Any]:
    """pytest-benchmark's `stats` of timed rounds (seconds): min, max, mean, stddev, median, quartiles, data.

    For results timed without pytest-benchmark (bench/gpu_lookup.py); the
    quartiles are `statistics.quantiles`' inclusive ones.

    Example:
        >>> stats = stats_of([1.0, 2.0, 3.0, 4.0, 5.0])
        >>> stats["median"], stats["rounds"], stats["iqr"]
        (3.0, 5, 2.0)
    """
    if not samples:
        raise ValueError("stats_of: no timed rounds; time at least one.")
    data = [float(sample) for sample in samples]
    q1, _, q3 = statistics.quantiles(data, n=4, method="inclusive") if len(data) > 1 else (data[0],) * 3
    mean = statistics.mean(data)
    return {
        "min": min(data), "max": max(data), "mean": mean,
        "stddev": statistics.stdev(data) if len(data) > 1 else 0.0,
        "rounds": len(data), "median": statistics.median(data), "iqr": q3 - q1, "q1": q1, "q3": q3,
        "ops": 1.0 / mean if mean > 0 else None, "total": sum(data), "iterations": 1, "data": data,
    }


def benchmark_entry(case: grid.Case, record: Mapping[str, Any], stats: dict[str, Any], fullname: str,
                    **options: Any) -> dict[str, Any]:
    """One `benchmarks` entry as pytest-benchmark writes it, for a case timed without pytest-benchmark."""
    schema.check_record(record, where=case.case_id())
    return {"group": None, "name": fullname.rpartition("::")[2], "fullname": fullname, "params": None,
            "param": case.test_id, "extra_info": dict(record), "options": options, "stats": stats}
