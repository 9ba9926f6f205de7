"""Memory suite: sizes from the cost formulas, and peak memory measured in a fresh process per case.

One case per optimizer of the profile (`--optimizers`): the optimizer takes
the train phase's step (`adam`, Keras's Adam, keeps the suite's case ids;
the others' end in `/<optimizer>`); a layer without trainable weights has
no train phase, so only its `adam` case runs. Beside each measurement, the
estimate of `membed.plan` for the same case (strategy, size, counts, batch,
optimizer, the allocator's reservation), computed here and not in the
measuring process: `estimated_peak_bytes_lookup` and `_train`.

The benchmark's timing of this suite is the wall time of one isolated
measurement (one round); it is bookkeeping, not a performance number. What
the suite reports is in `extra_info`: params, param_bytes, index_bytes,
train_state_bytes, optimizer_state_bytes, compression, the four peak fields
and the two estimates.
"""

from __future__ import annotations

import warnings

from bench import axes, grid, rules, steps
from membed import plan, strategies
from membed.data import DatasetIds
from membed.measure import LayerSizes

MEMORY = grid.Suite("memory", "isolated-memory", axes=(axes.registered, axes.id_datasets, axes.dims, axes.optimizers),
                    rules=rules.TRAIN_RULES)
PEAK_FIELDS = ("peak_alloc_bytes_lookup", "peak_rss_bytes_lookup", "peak_alloc_bytes_train", "peak_rss_bytes_train")


class MeasurementFailed(UserWarning):
    """A case ran but its measurement failed (crash, out of memory, timeout, exception); its entry says why."""


class EstimateFailed(UserWarning):
    """`membed.plan` could not estimate a case; its estimates are null and its measurement goes on."""


def estimated_peaks(case: grid.Case, source: DatasetIds) -> dict[str, int | None]:
    """`estimated_peak_bytes_lookup` / `_train` of the case as the measuring process builds it (default options)."""
    counts = source.counts() if strategies.get(case.strategy).needs_counts else None
    try:
        estimate = plan.estimate(case.strategy, source.vocab_size, case.dim, optimizer=case.optimizer,
                                 batch_size=case.batch_size, counts=counts)
    except ValueError as error:
        warnings.warn(EstimateFailed(f"{case.case_id(source.vocab_size)}: {error}"), stacklevel=2)
        return {"estimated_peak_bytes_lookup": None, "estimated_peak_bytes_train": None}
    return {"estimated_peak_bytes_lookup": estimate.lookup_peak_bytes,
            "estimated_peak_bytes_train": estimate.train_peak_bytes() if estimate.trains else None}


@MEMORY.test
def test_memory(benchmark, case: grid.Case, harness, record: dict) -> None:
    source = harness.source(case)
    harness.admit(case, record, source.vocab_size)
    record.update(learning_rate=grid.TRAIN_LEARNING_RATE, **estimated_peaks(case, source))
    spec = {
        "strategy": case.strategy,
        "vocab_size": source.vocab_size,
        "dim": case.dim,
        "batch_size": case.batch_size,
        "seed": grid.SEED,
        "optimizer": case.optimizer,
        "learning_rate": grid.TRAIN_LEARNING_RATE,
        "ids": source.as_dict(),
        "module": steps.strategy_module(case.strategy),
    }
    result = benchmark.pedantic(
        steps.measure_memory, args=(spec,), kwargs={"timeout_s": harness.selection.measure_timeout_s},
        rounds=1, iterations=1,
    )
    if result["status"] != "ok":
        record.update(status="failed", reason=result["reason"])
        warnings.warn(MeasurementFailed(f"{record['case']}: {result['reason']}"), stacklevel=1)
        return
    record.update(
        options=result["options"],
        **LayerSizes.from_record(result).as_case(source.vocab_size, case.dim).as_dict(),
        **{key: result[key] for key in (*PEAK_FIELDS, "optimizer_state_bytes", "rss_baseline_bytes")},
    )
