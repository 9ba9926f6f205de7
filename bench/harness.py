"""The harness the suites share: data, the suite's skip rules, layers, timing, the bare-gather reference.

`bench/conftest.py` hands one `Harness` to every case (the `harness`
fixture); the suites call it for their data, their rules and their timing.
"""

from __future__ import annotations

import gc
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import pytest

from bench import grid, rules, steps
from membed import measure, strategies
from membed.data import SYNTHETIC_DATASETS, DatasetIds, DatasetUnavailable, load_ratings, planted_ratings

if TYPE_CHECKING:
    from membed.data import RatingsData

ROOT = Path(__file__).resolve().parents[1]
SHARED_MOVIELENS = ROOT.parent / "shared" / "data" / "movielens"


class Harness:
    """Per-session helpers the suites share: data, their suite's rules, layers, timing, the gather reference."""

    def __init__(self, selection: grid.Selection):
        self.selection = selection
        self.profile = selection.profile
        self._reference = None  # (key, bare gather, its rows) of the last paired case
        self._planted = None

    # -- datasets
    def _unavailable(self, name: str, error: DatasetUnavailable) -> None:
        # The library's advice names its Python arguments; here it is said in the benchmark's terms.
        hint = "" if self.selection.allow_download else " or run with --allow-download"
        pytest.skip(f"{name} not available: {error.finding}. Provide it with "
                    f"MEMBED_DATA_DIR=/folder/holding/{name}/ (CI: MEMBED_DATA_DIR={SHARED_MOVIELENS}){hint}.")

    def source(self, case: grid.Case) -> DatasetIds:
        """The case's ids; skips when its MovieLens variant is not available."""
        if case.dataset in SYNTHETIC_DATASETS:
            return DatasetIds(case.dataset, case.vocab_size)
        try:
            return DatasetIds.movielens(case.dataset, case.side, download=self.selection.allow_download)
        except DatasetUnavailable as error:
            self._unavailable(case.dataset, error)

    def ratings(self, dataset: str) -> RatingsData:
        """Ratings for the accuracy and pipeline suites: planted synthetic data or a MovieLens variant."""
        if dataset == grid.PLANTED:
            if self._planted is None:
                self._planted = planted_ratings(**self.profile.planted, seed=grid.SEED)
            return self._planted
        try:
            return load_ratings(dataset, None, self.selection.allow_download)
        except DatasetUnavailable as error:
            self._unavailable(dataset, error)

    # -- the suite's rules
    def admit(self, case: grid.Case, record: dict, vocab_size: int, options: dict | None = None) -> measure.CaseSizes:
        """Fills the record's size fields from the cost formula, or skips the case with its suite's rule's reason.

        A case skipped for its size keeps its sizes from the cost formulas,
        marked as a projection, so the report can draw the analytic line
        beyond what fits.
        """
        record.update(vocab_size=int(vocab_size), case=case.case_id(vocab_size))
        admission = rules.admit(case, vocab_size, options, grid.declaration(case.suite).rules)
        if admission.sizes is not None:
            record.update(options=admission.options, **admission.sizes.as_dict())
        if admission.projected:
            record["projected"] = True
        if admission.reason is not None:
            pytest.skip(admission.reason)
        return admission.sizes

    # -- layers
    def build_layer(self, case: grid.Case, source: DatasetIds, record: dict, options: dict | None = None):
        """The case's layer, seeded, with counts where the strategy uses them; record gets its real sizes."""
        import keras

        keras.utils.set_random_seed(grid.SEED)
        counts = source.counts() if strategies.get(case.strategy).needs_counts else None
        layer = strategies.build(case.strategy, source.vocab_size, case.dim, counts=counts, **(options or {}))
        if not layer.built:
            layer.build((case.batch_size,))
        record.update(options=measure.layer_options(layer),
                      **measure.layer_sizes(layer).as_case(source.vocab_size, case.dim).as_dict())
        return layer

    # -- timing
    def batches(self, source: DatasetIds, batch_size: int, dim: int | None = None) -> Callable[[], tuple]:
        """A pedantic `setup`: each call draws a fresh batch (and a target when `dim` is given)."""
        import tensorflow as tf

        counter = iter(range(1, 1 << 62))

        def setup():
            seed = next(counter)
            ids = tf.constant(source.sample(batch_size, seed))
            if dim is None:
                return (ids,), {}
            return (ids, tf.constant(steps.make_target(batch_size, dim, seed))), {}

        return setup

    def _warm(self, function: Callable, setup: Callable) -> int:
        """Traces `function`, then times one warm call to choose the number of rounds."""
        args, kwargs = setup()
        function(*args, **kwargs)
        args, kwargs = setup()
        start = time.perf_counter()
        function(*args, **kwargs)
        return self.profile.rounds_for(time.perf_counter() - start)

    def time(self, benchmark, function: Callable, setup: Callable) -> float:
        """Times `function` over fresh inputs with pytest-benchmark; returns the median seconds."""
        rounds = self._warm(function, setup)
        # The timed call of `_warm` was the first warm-up round.
        benchmark.pedantic(function, setup=setup, rounds=rounds, warmup_rounds=self.profile.warmup_rounds - 1,
                           iterations=1)
        return float(benchmark.stats.stats.median)

    # -- the bare-gather reference
    def gather_function(self, source: DatasetIds, dim: int):
        """(tf.function gathering from a full float32 table, its rows, a fresh-batch setup)."""
        import tensorflow as tf

        rows = rules.gather_rows(source.vocab_size, dim)
        table = tf.random.uniform((rows, dim), seed=grid.SEED)
        gather = tf.function(lambda ids: tf.gather(table, ids))
        draw = self.batches(source, self.profile.batch_size)

        def setup():
            (ids,), _ = draw()
            # A capped table (V too large to hold) serves the same ids folded into its rows.
            return ((ids % rows) if rows < source.vocab_size else ids,), {}

        return gather, rows, setup

    def time_against_gather(self, benchmark, function: Callable, setup: Callable,
                            source: DatasetIds, dim: int) -> float:
        """Times `function` like `time` and returns its median over the bare gather's, paired round by round.

        Before each round, untimed by pytest-benchmark, the bare `tf.gather`
        is timed on that round's ids, so both medians come from the same
        minute of the run and the same batches. (Timing every gather row
        first and the cases later let the machine's drift into the ratio.)
        """
        gather, rows = self._reference_gather(source, dim)
        samples: list[float] = []

        def paired_setup():
            args, kwargs = setup()
            ids = args[0]
            # A capped table (V too large to hold) serves the same ids folded into its rows.
            folded = (ids % rows) if rows < source.vocab_size else ids
            start = time.perf_counter()
            gather(folded)
            samples.append(time.perf_counter() - start)
            return args, kwargs

        median = self.time(benchmark, function, paired_setup)
        timed = samples[-int(benchmark.stats.stats.rounds):]  # the rounds after the warm-up
        return median / float(np.median(timed))

    def _reference_gather(self, source: DatasetIds, dim: int):
        """(bare-gather function, its table rows) for `source`; one table is kept, for consecutive cases."""
        key = (source.dataset, source.side, source.vocab_size, dim)
        if self._reference is None or self._reference[0] != key:
            self.drop_reference()
            gather, rows, _ = self.gather_function(source, dim)
            self._reference = (key, gather, rows)
        return self._reference[1], self._reference[2]

    def drop_reference(self) -> None:
        """Frees the kept bare-gather table."""
        if self._reference is not None:
            key, _, rows = self._reference
            self._reference = None
            release_memory(4 * rows * key[3])


# A case that held at least this many bytes of tables is collected right after it.
COLLECT_AFTER_BYTES = 64 << 20


def release_memory(held_bytes: int | None) -> None:
    """Collects garbage after a case that held large tables, so they do not outlive it.

    Keras layers and tf.functions sit in reference cycles, so their tables
    wait for the cyclic collector; a collection costs about 0.2 s, which is
    why small cases skip it.
    """
    if held_bytes is not None and held_bytes >= COLLECT_AFTER_BYTES:
        gc.collect()
