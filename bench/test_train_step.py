"""Train-step suite: one compiled training step through the layer on an MSE loss, a fresh batch per round.

One case per optimizer of the profile (`--optimizers`): `adam` is Keras's
Adam, the suite's step before the optimizer was an axis, and keeps its case
ids; the others are `membed.optim`'s, their ids ending in `/<optimizer>`.
`gather_ratio` is relative to the bare `tf.gather` of the lookup suite (same
ids, same session), not to a full-table training step: the `full` strategy's
own train_step row is that, and the ratio of two rows is left to the report.
The same rounds give `floor_ratio`, `ns_per_id`, `call_floor_ns` and
`gather_ratio_rounds` (`Harness.time_paired`); the step is not amortised.
`optimizer_state_bytes` is read from the optimizer's slots after the timed
rounds. A layer without trainable weights skips.
"""

from __future__ import annotations

import pytest

from bench import axes, grid, rules, steps

# Datasets and sizes outermost, as in the lookup suite: one bare-gather table per size.
TRAIN_STEP = grid.Suite("train_step", "paired", axes=(axes.id_datasets, axes.dims, axes.registered, axes.optimizers),
                        rules=rules.TRAIN_RULES)


@TRAIN_STEP.test
def test_train_step(benchmark, case: grid.Case, harness, record: dict) -> None:
    source = harness.source(case)
    harness.admit(case, record, source.vocab_size)
    layer = harness.build_layer(case, source, record)
    optimizer = steps.make_optimizer(case.optimizer, grid.TRAIN_LEARNING_RATE)
    record["learning_rate"] = grid.TRAIN_LEARNING_RATE
    try:
        step = steps.compiled_train_step(layer, optimizer=optimizer)
    except ValueError as error:
        pytest.skip(f"invalid combination: {error}")
    pairing = harness.time_paired(
        benchmark, step, harness.batches(source, case.batch_size, dim=case.dim), source, case.dim
    )
    record.update(pairing.as_record())
    record["optimizer_state_bytes"] = steps.optimizer_state_bytes(optimizer)
