"""Blocks suite: mixed_dim against the example's masked MD layer as the number of blocks grows.

On the example's 3,706 movies (Zipf ids and counts), with 3 blocks (the
example's 400/1700 boundaries and 64/32/16 dims) and with 8 and 16 evenly
sized blocks whose dims halve from 64 down to 1. mixed_dim looks each id up
in its own block only; example_md looks every id up in every block and
masks, so its cost grows with the number of blocks. Each case records
`gather_ratio` against the bare `tf.gather` of the same output shape.
"""

from __future__ import annotations

from typing import Any, Mapping

from bench import axes, grid, rules, steps
from membed.strategies.example_md import EXAMPLE_BOUNDARIES, example_dims

BLOCK_COUNTS = (3, 8, 16)
BLOCK_STRATEGIES = ("mixed_dim", "example_md")
MOVIES = 3706  # the example's


def block_counts(selection: grid.Selection, case: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One variant per number of blocks: `3-blocks`, `8-blocks`, `16-blocks`."""
    return [{"preset": f"{count}-blocks"} for count in BLOCK_COUNTS]


def block_strategies(selection: grid.Selection, case: Mapping[str, Any]) -> list[dict[str, Any]]:
    """mixed_dim and example_md, where selected."""
    return [{"strategy": name} for name in BLOCK_STRATEGIES if name in selection.strategies]


BLOCKS = grid.Suite(
    "blocks", "paired",
    axes=(block_counts, block_strategies,
          axes.fixed(dataset="synthetic-zipf", vocab_size=MOVIES, dim=grid.ACCURACY_DIM)),
    rules=rules.SIZE_RULES,
)


def block_options(count: int, vocab_size: int, dim: int) -> dict:
    """The example's blocks for 3, else `count` evenly sized blocks with halving dims."""
    if count == 3:
        return {"boundaries": list(EXAMPLE_BOUNDARIES), "dims": example_dims(dim)}
    boundaries = [round(vocab_size * j / count) for j in range(1, count)]
    return {"boundaries": boundaries, "dims": [max(1, dim >> min(b, 6)) for b in range(count)]}


@BLOCKS.test
def test_blocks(benchmark, case: grid.Case, harness, record: dict) -> None:
    count = int(case.preset.split("-")[0])
    options = block_options(count, case.vocab_size, case.dim)
    source = harness.source(case)
    harness.admit(case, record, source.vocab_size, options)
    layer = harness.build_layer(case, source, record, options)
    record["gather_ratio"] = harness.time_against_gather(
        benchmark, steps.compiled_lookup(layer), harness.batches(source, case.batch_size), source, case.dim
    )
