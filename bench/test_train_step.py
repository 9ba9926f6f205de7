"""Train-step suite: one compiled Adam step through the layer on an MSE loss, a fresh batch per round.

`gather_ratio` is relative to the bare `tf.gather` of the lookup suite (same
ids, same session), not to a full-table training step: the `full` strategy's
own train_step row is that, and the ratio of two rows is left to the report.
A layer without trainable weights skips.
"""

from __future__ import annotations

import pytest

from bench import axes, grid, rules, steps

TRAIN_STEP = grid.Suite("train_step", "paired", axes=(axes.registered, axes.id_datasets, axes.dims),
                        rules=rules.SIZE_RULES)


@TRAIN_STEP.test
def test_train_step(benchmark, case: grid.Case, harness, record: dict) -> None:
    source = harness.source(case)
    harness.admit(case, record, source.vocab_size)
    layer = harness.build_layer(case, source, record)
    try:
        step = steps.compiled_train_step(layer)
    except ValueError as error:
        pytest.skip(f"invalid combination: {error}")
    record["gather_ratio"] = harness.time_against_gather(
        benchmark, step, harness.batches(source, case.batch_size, dim=case.dim), source, case.dim
    )
