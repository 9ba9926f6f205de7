"""Lookup suite: a compiled forward pass over a fresh batch per round, against a bare `tf.gather`.

The `gather` rows time `tf.gather` from a full float32 table on the same ids
(one row per dataset, size and dim of the paired lookup and train_step
suites); when V rows do not fit in memory the table has the largest power of
ten of rows that does, ids folded into it, and the row's
`options.table_rows` says how many. Each lookup case records `gather_ratio`:
its median over the median of the same bare gather timed before each of its
rounds, on that round's ids (`Harness.time_paired`), and from the same rounds
`floor_ratio` (against `np.take` on a NumPy copy of the gather's table),
`ns_per_id`, `call_floor_ns` (a `tf.function` returning its input) and
`gather_ratio_rounds`. Then `Harness.time_amortised` times the layer and the
gather `harness.AMORTISED_BATCHES` batches per call, so TensorFlow's per-call
cost is a few percent of a call: `amortised_gather_ratio`, `amortised_ns_per_id`;
for a compute-bound strategy (dhe, tt) also `amortised_compute_ratio`, against a
dense MLP timed in the same rounds, which a busy host slows as it slows them.
"""

from __future__ import annotations

from bench import axes, grid, rules, steps
from membed.measure import LayerSizes

GATHER = grid.Suite("gather", "reference",
                    axes=(axes.fixed(strategy="gather"), axes.id_datasets_of("lookup", "train_step"), axes.dims))
# Datasets and sizes outermost: every strategy at one size runs against the same bare-gather table,
# built once (at 1e7 rows, 2.4 GB and seconds to fill), not once a case.
LOOKUP = grid.Suite("lookup", "paired", axes=(axes.id_datasets, axes.dims, axes.registered), rules=rules.SIZE_RULES)


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
    lookup = steps.compiled_lookup(layer)
    pairing = harness.time_paired(benchmark, lookup, harness.batches(source, case.batch_size), source, case.dim)
    record.update(pairing.as_record())
    record.update(harness.time_amortised(lookup, source, case.dim, case.batch_size, compute_bound=layer.compute_bound))
