"""Memory suite: sizes from the cost formulas, and peak memory measured in a fresh process per case.

The benchmark's timing of this suite is the wall time of one isolated
measurement (one round); it is bookkeeping, not a performance number. What
the suite reports is in `extra_info`: params, param_bytes, index_bytes,
train_state_bytes, compression and the four peak fields.
"""

from __future__ import annotations

import warnings

from bench import axes, grid, rules, steps
from membed.measure import LayerSizes

MEMORY = grid.Suite("memory", "isolated-memory", axes=(axes.registered, axes.id_datasets, axes.dims),
                    rules=rules.SIZE_RULES)
PEAK_FIELDS = ("peak_alloc_bytes_lookup", "peak_rss_bytes_lookup", "peak_alloc_bytes_train", "peak_rss_bytes_train")


class MeasurementFailed(UserWarning):
    """A case ran but its measurement failed (crash, out of memory, timeout, exception); its entry says why."""


@MEMORY.test
def test_memory(benchmark, case: grid.Case, harness, record: dict) -> None:
    source = harness.source(case)
    harness.admit(case, record, source.vocab_size)
    spec = {
        "strategy": case.strategy,
        "vocab_size": source.vocab_size,
        "dim": case.dim,
        "batch_size": case.batch_size,
        "seed": grid.SEED,
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
        **{key: result[key] for key in PEAK_FIELDS},
    )
