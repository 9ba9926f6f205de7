"""The common axes of the suites' grids: strategies, datasets (with sizes or sides), dims, optimizers, fixed fields.

An axis is a function `(selection, case) -> values`: `selection` is the run's
`grid.Selection`, `case` the case fields the axes before it chose (always
`suite` and `batch_size`), and each value a dict of `grid.Case` fields. A
suite's cases are the product of its axes (`grid.cases`); an axis only one
suite needs (the accuracy suite's preset pairs, the blocks suite's counts)
is a function in that suite's test file.

Example:
    >>> from bench import grid, options
    >>> selection = options.selection_from_options("quick", "qr", "1000", "synthetic-zipf,ml-100k")
    >>> id_datasets(selection, {"suite": "lookup"})[1]
    {'dataset': 'ml-100k', 'vocab_size': None, 'side': 'users'}
"""

from __future__ import annotations

from typing import Any, Mapping

from bench.grid import PLANTED, Axis, Selection
from membed.data import MOVIELENS, SIDES, SYNTHETIC_DATASETS


def registered(selection: Selection, case: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The selected strategies (every registered one unless `--strategies` narrows them)."""
    return [{"strategy": name} for name in selection.strategies]


def _id_datasets(selection: Selection, suite: str) -> list[dict[str, Any]]:
    values: list[dict[str, Any]] = []
    for dataset in selection.datasets_of(suite):
        if dataset in SYNTHETIC_DATASETS:
            values += [{"dataset": dataset, "vocab_size": size, "side": None} for size in selection.vocab_sizes_of(dataset)]
        elif dataset in MOVIELENS:
            values += [{"dataset": dataset, "vocab_size": None, "side": side} for side in SIDES]
    return values


def id_datasets(selection: Selection, case: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The suite's datasets as id streams: each synthetic one at its sizes, each MovieLens one's users and items."""
    return _id_datasets(selection, case["suite"])


def id_datasets_of(*suites: str) -> Axis:
    """The id datasets of `suites`, each once, in order (the gather reference serves the paired suites)."""

    def axis(selection: Selection, case: Mapping[str, Any]) -> list[dict[str, Any]]:
        values = [value for suite in suites for value in _id_datasets(selection, suite)]
        return [dict(items) for items in dict.fromkeys(tuple(value.items()) for value in values)]

    axis.__name__ = f"id_datasets_of({', '.join(suites)})"
    return axis


def rating_datasets(selection: Selection, case: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The suite's datasets of ratings: synthetic-planted and MovieLens."""
    return [{"dataset": dataset} for dataset in selection.datasets_of(case["suite"])
            if dataset == PLANTED or dataset in MOVIELENS]


def dims(selection: Selection, case: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The profile's base dimensions."""
    return [{"dim": dim} for dim in selection.profile.dims]


def optimizers(selection: Selection, case: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The profile's optimizers (narrowed by `--optimizers`): the train_step, memory and accuracy suites' last axis.

    In the train_step suite, an optimizer stops at the profile's
    `train_step_max_vocab` for it (full: lazy_adam up to 1e6).

    Last, so that a strategy's cases at one dataset and size run one after
    another; the paired suites put datasets and sizes outermost, so that
    they build each bare-gather table once (`Harness._reference_for`).
    """
    limits = selection.profile.train_step_max_vocab if case.get("suite") == "train_step" else {}
    size = case.get("vocab_size")
    return [{"optimizer": name} for name in selection.optimizers
            if size is None or size <= limits.get(name, size)]


def fixed(**fields: Any) -> Axis:
    """An axis of one value: these fields, the same in every case (`fixed(dim=64)`)."""

    def axis(selection: Selection, case: Mapping[str, Any]) -> list[dict[str, Any]]:
        return [dict(fields)]

    axis.__name__ = f"fixed({', '.join(f'{k}={v!r}' for k, v in fields.items())})"
    return axis
