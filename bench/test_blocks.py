"""Blocks suite: mixed_dim against the example's masked MD layer as the number of blocks grows.

On the example's 3,706 movies (Zipf ids and counts), with 3 blocks (the
example's 400/1700 boundaries and 64/32/16 dims) and with 8 and 16 evenly
sized blocks whose dims halve from 64 down to 1. mixed_dim looks each id up
in its own block only; example_md looks every id up in every block and
masks, so its cost grows with the number of blocks. Each case records
`gather_ratio` against the bare `tf.gather` of the same output shape.
"""

from __future__ import annotations

import pytest

from bench import grid
from membed import measure
from membed.strategies.example_md import EXAMPLE_BOUNDARIES, example_dims


def block_options(count: int, vocab_size: int, dim: int) -> dict:
    """The example's blocks for 3, else `count` evenly sized blocks with halving dims."""
    if count == 3:
        return {"boundaries": list(EXAMPLE_BOUNDARIES), "dims": example_dims(dim)}
    boundaries = [round(vocab_size * j / count) for j in range(1, count)]
    return {"boundaries": boundaries, "dims": [max(1, dim >> min(b, 6)) for b in range(count)]}


@pytest.mark.suite("blocks")
def test_blocks(benchmark, case: grid.Case, harness, record: dict) -> None:
    count = int(case.preset.split("-")[0])
    options = block_options(count, case.vocab_size, case.dim)
    source = harness.source(case)
    harness.admit(case, record, source.vocab_size, options)
    layer = harness.build_layer(case, source, record, options)
    record["gather_ratio"] = harness.time_against_gather(
        benchmark, measure.compiled_lookup(layer), harness.batches(source, case.batch_size), source, case.dim
    )
