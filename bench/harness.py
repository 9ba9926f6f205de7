"""The harness the suites share: data, the grid's admission rules, layers, timing, the bare-gather reference.

`bench/conftest.py` hands one `Harness` to every case (the `harness`
fixture); the suites call it instead of reaching into `membed.measure`.
"""

from __future__ import annotations

import gc
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import pytest

from bench import grid
from membed import measure

if TYPE_CHECKING:
    from membed.data import DatasetUnavailable

ROOT = Path(__file__).resolve().parents[1]
SHARED_MOVIELENS = ROOT.parent / "shared" / "data" / "movielens"


class Harness:
    """Per-session helpers the suites share: data, gating, layers, timing, the gather reference."""

    def __init__(self, selection: grid.Selection):
        self.selection = selection
        self.profile = selection.profile
        self._reference = None  # (key, bare gather, its rows) of the last paired case
        self._planted = None

    # -- vocabularies and data
    def _unavailable(self, name: str, error: DatasetUnavailable) -> None:
        # The library's advice names its Python arguments; here it is said in the benchmark's terms.
        hint = "" if self.selection.allow_download else " or run with --allow-download"
        pytest.skip(f"{name} not available: {error.finding}. Provide it with "
                    f"MEMBED_DATA_DIR=/folder/holding/{name}/ (CI: MEMBED_DATA_DIR={SHARED_MOVIELENS}){hint}.")

    def source(self, case: grid.Case) -> measure.IdSource:
        """The case's ids; skips when its MovieLens variant is not available."""
        if case.vocab in grid.SYNTHETIC_STREAMS:
            return measure.IdSource(case.vocab, case.vocab_size)
        from membed.data import DatasetUnavailable

        try:
            return measure.IdSource.movielens(case.vocab, case.side, download=self.selection.allow_download)
        except DatasetUnavailable as error:
            self._unavailable(case.vocab, error)

    def ratings(self, vocab: str):
        """Ratings for the accuracy suite: planted synthetic data or a MovieLens variant."""
        if vocab == grid.PLANTED:
            if self._planted is None:
                from membed.data import planted_ratings

                self._planted = planted_ratings(**self.profile.planted, seed=grid.SEED)
            return self._planted
        from membed.data import DatasetUnavailable

        try:
            return measure._load_ratings(vocab, None, self.selection.allow_download)
        except DatasetUnavailable as error:
            self._unavailable(vocab, error)

    # -- rules
    def admit(self, case: grid.Case, record: dict, vocab_size: int, options: dict | None = None) -> measure.CaseSizes:
        """Fills the record's size fields from the cost formula, or skips the case with the reason."""
        record.update(vocab_size=int(vocab_size), case=case.case_id(vocab_size))
        from membed import strategies

        try:
            resolved = strategies.registry.resolve_options(case.strategy, options or {})
            sizes = measure.case_sizes(case.strategy, vocab_size, case.dim, resolved)
        except ValueError as error:
            pytest.skip(f"invalid combination: {error}")
        record.update(options=measure.jsonable(resolved), **sizes.as_dict())
        # A case not run for its size keeps its sizes from the cost formulas, marked as
        # a projection, so the report can draw the analytic line beyond what fits.
        reason = grid.size_skip_reason(case.strategy, vocab_size, case.dim)
        if reason is not None:
            record["projected"] = True
            pytest.skip(reason)
        shortfall = measure.memory_shortfall(
            measure.estimated_peak_bytes(sizes.train_state_bytes, case.batch_size, case.dim))
        if shortfall is not None:
            record["projected"] = True
            pytest.skip(f"too big for this machine: {shortfall}")
        return sizes

    # -- layers
    def build_layer(self, case: grid.Case, source: measure.IdSource, record: dict, options: dict | None = None):
        """The case's layer, seeded, with counts where the strategy uses them; record gets its real sizes."""
        import keras

        from membed import strategies

        keras.utils.set_random_seed(grid.SEED)
        counts = source.counts() if strategies.get(case.strategy).needs_counts else None
        layer = strategies.build(case.strategy, source.vocab_size, case.dim, counts=counts, **(options or {}))
        if not layer.built:
            layer.build((case.batch_size,))
        trainable = int(sum(int(np.prod(v.shape)) for v in layer.trainable_variables))
        record.update(
            options=measure.layer_options(layer),
            params=int(layer.count_params()),
            param_bytes=measure.weight_bytes(layer),
            index_bytes=int(layer.index_bytes),
        )
        record["train_state_bytes"] = measure.train_state_bytes(record["param_bytes"], trainable,
                                                                 record["index_bytes"])
        record["compression"] = measure.compression(source.vocab_size, case.dim,
                                                    record["param_bytes"] + record["index_bytes"])
        return layer

    # -- timing
    def batches(self, source: measure.IdSource, batch_size: int, dim: int | None = None) -> Callable[[], tuple]:
        """A pedantic `setup`: each call draws a fresh batch (and a target when `dim` is given)."""
        import tensorflow as tf

        counter = iter(range(1, 1 << 62))

        def setup():
            seed = next(counter)
            ids = tf.constant(source.sample(batch_size, seed))
            if dim is None:
                return (ids,), {}
            return (ids, tf.constant(measure.make_target(batch_size, dim, seed))), {}

        return setup

    def _warm(self, function: Callable, setup: Callable) -> int:
        """Traces `function`, then times one warm call to choose the number of rounds."""
        args, kwargs = setup()
        function(*args, **kwargs)
        args, kwargs = setup()
        start = time.perf_counter()
        function(*args, **kwargs)
        one = time.perf_counter() - start
        wanted = int(self.profile.round_budget_s / max(one, 1e-9))
        return max(self.profile.min_rounds, min(self.profile.rounds, wanted))

    def time(self, benchmark, function: Callable, setup: Callable) -> float:
        """Times `function` over fresh inputs with pytest-benchmark; returns the median seconds."""
        rounds = self._warm(function, setup)
        # The timed call of `_warm` was the first warm-up round.
        benchmark.pedantic(function, setup=setup, rounds=rounds, warmup_rounds=self.profile.warmup_rounds - 1,
                           iterations=1)
        return float(benchmark.stats.stats.median)

    # -- the bare-gather reference
    def gather_function(self, source: measure.IdSource, dim: int):
        """(tf.function gathering from a full float32 table, its rows, a fresh-batch setup)."""
        import tensorflow as tf

        rows = grid.gather_rows(source.vocab_size, dim)
        table = tf.random.uniform((rows, dim), seed=grid.SEED)
        gather = tf.function(lambda ids: tf.gather(table, ids))
        draw = self.batches(source, self.profile.batch_size)

        def setup():
            (ids,), _ = draw()
            # A capped table (V too large to hold) serves the same ids folded into its rows.
            return ((ids % rows) if rows < source.vocab_size else ids,), {}

        return gather, rows, setup

    def time_against_gather(self, benchmark, function: Callable, setup: Callable,
                            source: measure.IdSource, dim: int) -> float:
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

    def _reference_gather(self, source: measure.IdSource, dim: int):
        """(bare-gather function, its table rows) for `source`; one table is kept, for consecutive cases."""
        key = (source.vocab, source.side, source.vocab_size, dim)
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


# Suites whose timings are paired with the bare gather (Harness.time_against_gather).
PAIRED_SUITES = ("lookup", "blocks", "train_step")

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
