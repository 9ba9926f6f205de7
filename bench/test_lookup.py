"""Lookup suite: a compiled forward pass over a fresh batch per round, against a bare `tf.gather`.

The `gather` rows time `tf.gather` from a full float32 table on the same ids
(one row per vocabulary, size and dim); when V rows do not fit in memory the
table has the largest power of ten of rows that does, ids folded into it,
and the row's `options.table_rows` says how many. Each lookup case records
`gather_ratio`: its median over the median of the same bare gather timed
before each of its rounds, on that round's ids (`Harness.time_against_gather`).
"""

from __future__ import annotations

import pytest

from bench import grid
from membed import measure


@pytest.mark.suite("gather")
def test_gather(benchmark, case: grid.Case, harness, record: dict) -> None:
    source = harness.source(case)
    record.update(vocab_size=source.vocab_size, case=case.case_id(source.vocab_size))
    gather, rows, setup = harness.gather_function(source, case.dim)
    values = rows * case.dim
    record.update(
        options={"table_rows": rows},
        params=values,
        param_bytes=4 * values,
        index_bytes=0,
        train_state_bytes=measure.train_state_bytes(4 * values, values),
        compression=measure.compression(source.vocab_size, case.dim, 4 * values),
    )
    harness.time(benchmark, gather, setup)


@pytest.mark.suite("lookup")
def test_lookup(benchmark, case: grid.Case, harness, record: dict) -> None:
    source = harness.source(case)
    harness.admit(case, record, source.vocab_size)
    layer = harness.build_layer(case, source, record)
    record["gather_ratio"] = harness.time_against_gather(
        benchmark, measure.compiled_lookup(layer), harness.batches(source, case.batch_size), source, case.dim
    )
