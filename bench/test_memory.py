"""Memory suite: sizes from the cost formulas, and peak memory measured in a fresh process per case.

The benchmark's timing of this suite is the wall time of one isolated
measurement (one round); it is bookkeeping, not a performance number. What
the suite reports is in `extra_info`: params, param_bytes, index_bytes,
train_state_bytes, compression and the four peak fields.
"""

from __future__ import annotations

import warnings

import pytest

from bench import grid
from membed import measure


class MeasurementFailed(UserWarning):
    """A case ran but its measurement failed (crash, out of memory, timeout, exception); its entry says why."""


@pytest.mark.suite("memory")
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
        "module": measure.strategy_module(case.strategy),
    }
    result = benchmark.pedantic(
        measure.measure_isolated, args=(spec,), kwargs={"timeout_s": harness.selection.measure_timeout_s},
        rounds=1, iterations=1,
    )
    if result["status"] != "ok":
        record.update(status="failed", reason=result["reason"])
        warnings.warn(MeasurementFailed(f"{record['case']}: {result['reason']}"), stacklevel=1)
        return
    record.update(
        options=result["options"],
        params=result["params"],
        param_bytes=result["param_bytes"],
        index_bytes=result["index_bytes"],
        train_state_bytes=measure.train_state_bytes(
            result["param_bytes"], result["trainable_params"], result["index_bytes"]),
        compression=measure.compression(source.vocab_size, case.dim, result["param_bytes"] + result["index_bytes"]),
        **{key: result[key] for key in (
            "peak_alloc_bytes_lookup", "peak_rss_bytes_lookup", "peak_alloc_bytes_train", "peak_rss_bytes_train")},
    )
