"""Lookup suite: a compiled forward pass over a fresh batch per round, against a bare `tf.gather`.

The `gather` rows time `tf.gather` from a full float32 table on the same ids
(one row per dataset, size and dim of the paired lookup and train_step
suites); when V rows do not fit in memory the table has the largest power of
ten of rows that does, ids folded into it, and the row's
`options.table_rows` says how many. Each lookup case records `gather_ratio`:
its median over the median of the same bare gather timed before each of its
rounds, on that round's ids (`Harness.time_against_gather`).
"""

from __future__ import annotations

from bench import axes, grid, rules, steps
from membed.measure import LayerSizes

GATHER = grid.Suite("gather", "reference",
                    axes=(axes.fixed(strategy="gather"), axes.id_datasets_of("lookup", "train_step"), axes.dims))
LOOKUP = grid.Suite("lookup", "paired", axes=(axes.registered, axes.id_datasets, axes.dims), rules=rules.SIZE_RULES)


@GATHER.test
def test_gather(benchmark, case: grid.Case, harness, record: dict) -> None:
    source = harness.source(case)
    record.update(vocab_size=source.vocab_size, case=case.case_id(source.vocab_size))
    gather, rows, setup = harness.gather_function(source, case.dim)
    record.update(options={"table_rows": rows},
                  **LayerSizes.float32(rows * case.dim).as_case(source.vocab_size, case.dim).as_dict())
    harness.time(benchmark, gather, setup)


@LOOKUP.test
def test_lookup(benchmark, case: grid.Case, harness, record: dict) -> None:
    source = harness.source(case)
    harness.admit(case, record, source.vocab_size)
    layer = harness.build_layer(case, source, record)
    record["gather_ratio"] = harness.time_against_gather(
        benchmark, steps.compiled_lookup(layer), harness.batches(source, case.batch_size), source, case.dim
    )
