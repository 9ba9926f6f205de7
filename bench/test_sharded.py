"""Sharded suite: every strategy's tables split over 2, 4 and 8 devices with Keras's `ModelParallel` on JAX.

Each case (strategy x devices x layout, `row` or `column`, in its `preset`:
`row-2dev`) builds the layer unsharded and again under
`keras.distribution.ModelParallel` with a `LayoutMap` from its weight names
(`membed.shard`), in a JAX process of its own (`bench/sharded.py`; one per
run, started at the first case, with every selected case): the benchmark
run's process is TensorFlow's, and one process never holds both backends.
A case records what a device holds (`per_device_param_bytes`,
`per_device_state_bytes` after one sharded train step of row-wise AdaGrad,
from the arrays' shards; `device_peak_bytes` where the platform reports
it), what the compiled lookup and step move through collectives (from the
HLO), whether the sharded lookup equals the unsharded one (`sharded_matches`),
and what `membed.plan.devices` planned for that device (from the cost
formula). A strategy that cannot be split that way (no table, rows the
devices do not divide, a one-dimensional table column-wise) skips with the
reason; without JAX every case skips ("jax is not installed").

The quick profile runs full, qr and hash row-wise on 2 devices; the full
profile every registered strategy on 2, 4 and 8 devices, both layouts.
The benchmark timing of a row is bookkeeping (reading the case's result);
the JAX process's seconds per case are not a result either.
"""

from __future__ import annotations

import warnings
from typing import Any, Mapping

import pytest

from bench import axes, grid, rules, sharded
from membed import strategies
from membed.data import DatasetIds
from membed.plan import devices as plan_devices
from membed.plan.layout import Layout

VOCAB_SIZE = 10_000
DIM = 16
DATASET = "synthetic-zipf"
OPTIMIZER = "rowwise_adagrad"
LEARNING_RATE = 0.01
DEVICES = (2, 4, 8)
LAYOUTS = ("row", "column")
# The quick profile's slice: about 10 s of the JAX process on 2 cores.
QUICK = {"strategies": ("full", "qr", "hash"), "devices": (2,), "layouts": ("row",)}
# Measured vs planned bytes per device: the target of the planner.
PLAN_TOLERANCE = 0.05


def sharded_strategies(selection: grid.Selection, case: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The selected strategies; the quick profile keeps `QUICK`'s."""
    names = selection.strategies
    if selection.profile.name == "quick":
        names = [name for name in names if name in QUICK["strategies"]]
    return [{"strategy": name} for name in names]


def placements(selection: grid.Selection, case: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One variant per layout and device count: `row-2dev`, `column-8dev`, ..."""
    quick = selection.profile.name == "quick"
    return [{"preset": f"{layout}-{devices}dev"} for layout in (QUICK["layouts"] if quick else LAYOUTS)
            for devices in (QUICK["devices"] if quick else DEVICES)]


SHARDED = grid.Suite(
    "sharded", "isolated-memory",
    axes=(sharded_strategies, axes.fixed(dataset=DATASET, vocab_size=VOCAB_SIZE, dim=DIM), placements,
          axes.fixed(optimizer=OPTIMIZER)),
    rules=rules.SIZE_RULES,
)


def layout_of(preset: str) -> tuple[str, int]:
    """('row', 2) from 'row-2dev'."""
    layout, devices = preset.rsplit("-", 1)
    return layout, int(devices.removesuffix("dev"))


def spec_of(case: grid.Case) -> dict[str, Any]:
    layout, devices = layout_of(case.preset)
    return {"case": case.case_id(), "strategy": case.strategy, "vocab_size": case.vocab_size, "dim": case.dim,
            "devices": devices, "layout": layout, "optimizer": case.optimizer, "learning_rate": LEARNING_RATE,
            "batch_size": case.batch_size, "seed": grid.SEED, "dataset": case.dataset}


def planned(case: grid.Case) -> dict[str, int | None]:
    """What `membed.plan.devices.per_device` says one device holds, from the cost formula."""
    layout, devices = layout_of(case.preset)
    counts = DatasetIds(case.dataset, case.vocab_size).counts() if strategies.get(case.strategy).needs_counts else None
    whole = Layout.of(case.strategy, case.vocab_size, case.dim, counts=counts)
    part = plan_devices.per_device(whole, devices, case.optimizer, layout, case.batch_size)
    trains = any(w.trainable for w in whole.weights)
    return {"planned_per_device_param_bytes": part.weights,
            "planned_per_device_state_bytes": part.optimizer_state if trains else None,
            "planned_per_device_bytes": part.weights + part.optimizer_state}


class ShardedRun:
    """The run's JAX process: started at the first case with every selected sharded case, its results kept."""

    def __init__(self, timeout_s: float):
        self.timeout_s = timeout_s
        self.header: dict[str, Any] = {}
        self.results: dict[str, dict[str, Any]] | None = None

    def result(self, case: grid.Case, items) -> dict[str, Any]:
        if self.results is None:
            cases = [item.callspec.params["case"] for item in items
                     if getattr(item, "callspec", None) is not None
                     and isinstance(item.callspec.params.get("case"), grid.Case)
                     and item.callspec.params["case"].suite == SHARDED.name]
            self.header, self.results = sharded.run_in_child([spec_of(c) for c in cases] or [spec_of(case)],
                                                             self.timeout_s)
        if case.case_id() not in self.results:  # not in the first batch (a resumed or re-run case)
            header, more = sharded.run_in_child([spec_of(case)], self.timeout_s)
            self.header = self.header or header
            self.results.update(more)
        return self.results[case.case_id()]


@pytest.fixture(scope="session")
def sharded_run(harness) -> ShardedRun:
    return ShardedRun(harness.selection.measure_timeout_s)


class ShardedMeasurementFailed(UserWarning):
    """The JAX process could not measure a case; its entry says why."""


@SHARDED.test
def test_sharded(benchmark, case: grid.Case, harness, record: dict, sharded_run: ShardedRun, request) -> None:
    missing = sharded.jax_missing()
    if missing:
        pytest.skip(missing)
    layout, devices = layout_of(case.preset)
    record.update(devices=devices, layout=layout, learning_rate=LEARNING_RATE)
    harness.admit(case, record, case.vocab_size)
    record.update(planned(case))
    result = sharded_run.result(case, request.session.items)
    if result["status"] == "skipped":
        pytest.skip(result["reason"])
    benchmark.pedantic(sharded_run.result, args=(case, request.session.items), rounds=1, iterations=1)
    if result["status"] != "ok":
        record.update(status="failed", reason=result["reason"])
        warnings.warn(ShardedMeasurementFailed(f"{record['case']}: {result['reason']}"), stacklevel=1)
        return
    record.update({key: result[key] for key in (
        "per_device_param_bytes", "per_device_state_bytes", "per_device_train_bytes", "device_peak_bytes",
        "collective_bytes_per_lookup", "collective_bytes_per_step", "sharded_matches")})
    if record["planned_per_device_state_bytes"] is None:
        record["planned_per_device_bytes"] = record["planned_per_device_param_bytes"]
