"""The harness the suites share: data, the suite's skip rules, layers, timing, the bare-gather reference.

`bench/conftest.py` hands one `Harness` to every case (the `harness`
fixture); the suites call it for their data, their rules and their timing.
"""

from __future__ import annotations

import functools
import gc
import os
import sys
import time
from dataclasses import dataclass
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
# Batches one amortised call loops over (`Harness.time_amortised`). Measured here
# (2 cores shared with other jobs, batch 4096 x dim 64, tf 2.21): the per-call
# floor (a tf.function that returns its input) is 140-400 us with the load; the
# gather in `steps.amortised`'s loop costs ~90 us per batch at V = 1e3 (its least
# work) and ~180 us at 1e6. Floor / gather call at 1e3: 16% with 16 batches; with
# 32, over the quick profile's 96 lookup cases (floor median 382 us): median 4.7%,
# at most 8.8%. 64 would double the time of the slow strategies' cases (dhe:
# ~10 ms per batch) for a few percent. Each record's `amortised_floor_share` says
# what that case got.
AMORTISED_BATCHES = 32
# The largest bare-gather table that `np.take` gets a NumPy copy of (1e6 x 64 float32 is 244 MiB).
NUMPY_COPY_MAX_BYTES = 512 << 20
# Timed rounds of an amortised timing, after one that traces and warms up the loops on one batch.
# Its ratio is the median of the rounds' ratios; with one TensorFlow thread (`--tf-threads`), eleven
# rounds put the case's 95% interval within a few percent (bench/README.md, "Timing that gates").
AMORTISED_ROUNDS = 11
# The compute reference of a compute-bound strategy (`compute_bound`): a dense MLP of DHE's default widths
# (64 -> 256 -> 128 -> dim, relu) on each id, looped over the first COMPUTE_BATCHES batches of a round.
# Measured here (2026-12-02, eight processes, 4096 x 64, 11 rounds): its ratio spread 2.7% for dhe at
# V = 1e3 where the ratio to the bare gather spread 15.4%, and 9.8% for tt at 1e5 against 13%; 8 of
# 32 batches cost ~25 ms a round (the per-call floor ~1% of it).
COMPUTE_WIDTHS = (64, 256, 128)
COMPUTE_BATCHES = 8


# TensorFlow threads of a benchmark run (`--tf-threads`; 0: TensorFlow's own choice, one per core).
# Measured here (2 cores, 32 batches of 4096 ids from a 1e5 x 64 table, 60 rounds): with one thread the
# bare gather took 2.49 ms a call (q10-q90 2.36-2.90) and double_hash's ratio to it held 1.68-1.81
# over six blocks of ten rounds; with TensorFlow's two threads the same gather took 3.83 ms
# (3.26-5.86) and the ratio wandered from 1.15 to 2.50. Per-core cost is also what a serving
# fleet scales by.
DEFAULT_TF_THREADS = 1
THREAD_VARIABLES = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


def use_tf_threads(threads: int) -> None:
    """Runs TensorFlow's ops on `threads` threads (intra- and inter-op), in this process and the ones it starts.

    Must come before TensorFlow's first op: the thread pools are made then.
    0 leaves TensorFlow's default. Raises ValueError on a negative count and
    RuntimeError when this process's TensorFlow has already started.
    """
    if threads < 0:
        raise ValueError(f"--tf-threads must be >= 0 (0: one per core), got {threads}.")
    if threads == 0:
        return
    for name in THREAD_VARIABLES:  # read by child processes' TensorFlow (isolated cases, xdist workers)
        os.environ[name] = str(threads)
    if "tensorflow" in sys.modules:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


@functools.lru_cache(maxsize=2)
def ctr_rows(arguments: tuple[tuple[str, int], ...]):
    """`membed.data.synthetic_ctr(**dict(arguments), seed=grid.SEED)`, made once per process (collection reads
    its presets, the cases train on it)."""
    from membed.data.ctr import synthetic_ctr

    return synthetic_ctr(**dict(arguments), seed=grid.SEED)


class Harness:
    """Per-session helpers the suites share: data, their suite's rules, layers, timing, the gather reference."""

    def __init__(self, selection: grid.Selection):
        self.selection = selection
        self.profile = selection.profile
        self._reference: Reference | None = None  # the bare gather of the last paired case
        self._planted = None

    # -- datasets
    def _unavailable(self, name: str, error: DatasetUnavailable) -> None:
        # The library's advice names its Python arguments; here it is said in the benchmark's terms.
        hint = "" if self.selection.allow_download else " or run with --allow-download"
        # The copy CI points at, named only where it is: elsewhere that path means nothing.
        beside = f" (one is beside this checkout: MEMBED_DATA_DIR={SHARED_MOVIELENS})" if (
            SHARED_MOVIELENS / name).is_dir() else ""
        pytest.skip(f"{name} not available: {error.finding}. Provide it with "
                    f"MEMBED_DATA_DIR=/folder/holding/{name}/{beside}{hint}.")

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

    def ctr_data(self):
        """The synthetic-ctr rows of the profile (`membed.data.synthetic_ctr`), made once per process."""
        return ctr_rows(tuple(sorted(self.profile.ctr.items())))

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
        table, rows = self._gather_table(source, dim)
        gather = self._gather_of(table)
        draw = self.batches(source, self.profile.batch_size)

        def setup():
            (ids,), _ = draw()
            return (fold(ids, rows, source.vocab_size),), {}

        return gather, rows, setup

    @staticmethod
    def _gather_table(source: DatasetIds, dim: int):
        """(the bare gather's float32 table, its rows): V rows, or the largest power of ten that fits."""
        import tensorflow as tf

        rows = rules.gather_rows(source.vocab_size, dim)
        # Filled, not drawn: a gather moves the same bytes whatever they hold, and filling 1e7 x 64
        # floats takes 0.16 s against 1.6 s for random ones, paid again by every case that runs in
        # a process of its own (bench/isolation.py).
        return tf.fill((rows, dim), 0.5), rows

    @staticmethod
    def _gather_of(table):
        import tensorflow as tf

        return tf.function(lambda ids: tf.gather(table, ids))

    def time_against_gather(self, benchmark, function: Callable, setup: Callable,
                            source: DatasetIds, dim: int) -> float:
        """Times `function` like `time` and returns its median over the bare gather's, paired round by round.

        Before each round, untimed by pytest-benchmark, the bare `tf.gather`
        is timed on that round's ids, so both medians come from the same
        minute of the run and the same batches. (Timing every gather row
        first and the cases later let the machine's drift into the ratio.)
        `time_paired` returns this ratio with the other numbers of the same rounds.
        """
        return self.time_paired(benchmark, function, setup, source, dim).gather_ratio

    def time_paired(self, benchmark, function: Callable, setup: Callable,
                    source: DatasetIds, dim: int) -> Pairing:
        """Times `function` like `time`, with three references timed before each round on that round's ids.

        In pytest-benchmark's untimed setup of each round: the bare
        `tf.gather` (as `time_against_gather`), `np.take` on a NumPy copy of
        the same table, and a `tf.function` that returns its input (TensorFlow's
        per-call floor). Returns the `Pairing` of the timed rounds.

        Example:
            >>> pairing = harness.time_paired(benchmark, lookup, harness.batches(source, 4096), source, 64)
            >>> record.update(pairing.as_record())
        """
        reference = self._reference_for(source, dim)
        gathers: list[float] = []
        takes: list[float] = []
        floors: list[float] = []
        batch_sizes: list[int] = []

        def paired_setup():
            args, kwargs = setup()
            ids = args[0]
            folded = fold(ids, reference.rows, source.vocab_size)
            folded_numpy = folded.numpy()
            batch_sizes.append(int(folded_numpy.shape[0]))
            start = time.perf_counter()
            reference.gather(folded)
            gathers.append(time.perf_counter() - start)
            if reference.numpy_table is not None:
                start = time.perf_counter()
                np.take(reference.numpy_table, folded_numpy, axis=0)
                takes.append(time.perf_counter() - start)
            start = time.perf_counter()
            reference.identity(folded)
            floors.append(time.perf_counter() - start)
            return args, kwargs

        median = self.time(benchmark, function, paired_setup)
        rounds = int(benchmark.stats.stats.rounds)
        timed = [float(value) for value in benchmark.stats.stats.data[-rounds:]]
        gathers, takes, floors = gathers[-rounds:], takes[-rounds:], floors[-rounds:]  # after the warm-up
        return Pairing(
            gather_ratio=median / float(np.median(gathers)),
            floor_ratio=median / float(np.median(takes)) if takes else None,
            ns_per_id=median * 1e9 / batch_sizes[-1],
            call_floor_ns=float(np.median(floors)) * 1e9,
            gather_ratio_rounds=[case / gather for case, gather in zip(timed, gathers)],
        )

    def time_amortised(self, step: Callable, source: DatasetIds, dim: int, batch_size: int,
                       batches: int = AMORTISED_BATCHES, compute_bound: bool = False) -> dict:
        """Times `step` and the bare gather `batches` batches per call (`steps.amortised`), alternately.

        Each round stacks `batches` fresh batches (untimed), then times one
        call of the gather loop and one of `step`'s loop on them, in
        alternating order, after a warm-up that traces both loops and runs
        them over one batch. Returns
        the record's `amortised_*` fields: `amortised_gather_ratio` (median
        over median), `amortised_ns_per_id` (the median call over its ids),
        `amortised_batches`, and `amortised_floor_share` (the per-call floor,
        timed right after, over the gather loop's median call). With
        `compute_bound`, each round also times the compute reference (a dense
        MLP, `COMPUTE_WIDTHS`) over its first `COMPUTE_BATCHES` batches, the
        three in turn: `amortised_compute_ratio`, the median over the rounds
        of the case's time per batch over the MLP's.

        Args:
            step: ids -> output; best the case's `tf.function` already traced
                on a batch (`steps.compiled_lookup`): the loop then calls its
                graph and traces in a fraction of the time a loop over the
                bare layer takes (1.2 s against 1.9 s for the 12 strategies).
            source, dim: the case's ids and dim, which pick the bare gather's table.
            batch_size: ids per batch.
            batches: batches per call.
            compute_bound: also time the compute reference (the strategy's `compute_bound`).

        Example:
            >>> lookup = steps.compiled_lookup(layer)
            >>> harness.time_paired(benchmark, lookup, harness.batches(source, 4096), source, 64)
            >>> record.update(harness.time_amortised(lookup, source, 64, 4096))
        """
        import tensorflow as tf

        reference = self._reference_for(source, dim)
        if batches not in reference.gather_loops:
            reference.gather_loops[batches] = steps.amortised(reference.gather, batches)
        gather_loop = reference.gather_loops[batches]
        loop = steps.amortised(step, batches)
        compute_loop = reference.compute_loop() if compute_bound else None
        # Seeds apart from the benchmark's rounds (`batches` counts from 1): fresh ids, still reproducible.
        seeds = iter(range(1 << 40, 1 << 41))
        gathers: list[float] = []
        timed: list[float] = []
        computes: list[float] = []
        for round_index in range(AMORTISED_ROUNDS + 1):
            stacked = tf.constant(np.stack([source.sample(batch_size, next(seeds)) for _ in range(batches)]))
            turns = [(gather_loop, fold(stacked, reference.rows, source.vocab_size), batches, gathers),
                     (loop, stacked, batches, timed)]
            if compute_loop is not None:
                turns.append((compute_loop, stacked, COMPUTE_BATCHES, computes))
            if round_index == 0:  # traces and warms up the loops on one batch; untimed
                for function, ids, _, _ in turns:
                    function(ids, 1)
                continue
            # Which runs first turns round, so none always finds another's data in the caches.
            shift = round_index % len(turns)
            for function, ids, count, samples in turns[shift:] + turns[:shift]:
                start = time.perf_counter()
                function(ids, count)
                samples.append(time.perf_counter() - start)
        gather, median = float(np.median(gathers)), float(np.median(timed))
        floor = measure_call_floor(reference.identity, stacked)
        # Each round's ratio pairs two calls a few milliseconds apart, so a slower minute of the
        # machine moves both; the median of those ratios is what the gate compares.
        ratios = [case / bare for case, bare in zip(timed, gathers)]
        record = {"amortised_gather_ratio": float(np.median(ratios)),
                  "amortised_gather_ratio_rounds": ratios,
                  "amortised_ns_per_id": median * 1e9 / (batches * batch_size),
                  "amortised_batches": batches,
                  "amortised_floor_share": floor / gather}
        if compute_loop is not None:
            per_batch = [(case / batches) / (mlp / COMPUTE_BATCHES) for case, mlp in zip(timed, computes)]
            record.update(amortised_compute_ratio=float(np.median(per_batch)),
                          amortised_compute_ratio_rounds=per_batch)
        return record

    def _reference_for(self, source: DatasetIds, dim: int) -> Reference:
        """The bare-gather `Reference` for `source`; one table is kept, for consecutive cases."""
        key = (source.dataset, source.side, source.vocab_size, dim)
        if self._reference is None or self._reference.key != key:
            self.drop_reference()
            table, rows = self._gather_table(source, dim)
            self._reference = Reference(key, rows, table, self._gather_of(table))
        return self._reference

    def drop_reference(self) -> None:
        """Frees the kept bare-gather table."""
        if self._reference is not None:
            reference = self._reference
            self._reference = None
            release_memory(4 * reference.rows * reference.key[3])


def measure_call_floor(identity: Callable, ids, calls: int = 5) -> float:
    """The median seconds of `calls` calls of a traced `tf.function` that returns its input."""
    identity(ids)
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        identity(ids)
        samples.append(time.perf_counter() - start)
    return float(np.median(samples))


def fold(ids, rows: int, vocab_size: int):
    """A capped gather table (V too large to hold) serves the same ids folded into its rows."""
    return (ids % rows) if rows < vocab_size else ids


@dataclass(frozen=True)
class Pairing:
    """What `Harness.time_paired` measured: the case against its references, in the same rounds.

    Args:
        gather_ratio: the case's median / the bare tf.gather's median.
        floor_ratio: the case's median / the median of `np.take` on the same table and ids; None when the
            table is above `NUMPY_COPY_MAX_BYTES`.
        ns_per_id: the case's median / its batch size, in nanoseconds.
        call_floor_ns: the median of a `tf.function` that returns its input, in nanoseconds.
        gather_ratio_rounds: each timed round's case time / the same round's gather time.
    """

    gather_ratio: float
    floor_ratio: float | None
    ns_per_id: float
    call_floor_ns: float
    gather_ratio_rounds: list[float]

    def as_record(self) -> dict:
        """The record fields (`analysis.schema`) of this pairing."""
        return {field: getattr(self, field) for field in self.__dataclass_fields__}


class Reference:
    """The bare-gather table of consecutive paired cases, with what is timed against it.

    Args:
        key: (dataset, side, vocab_size, dim) of the cases it serves.
        rows: the table's rows (V, or fewer when V rows do not fit; ids are folded).
        table: the float32 tf table.
        gather: `tf.function` gathering from it.
    """

    def __init__(self, key: tuple, rows: int, table, gather: Callable):
        import tensorflow as tf

        self.key = key
        self.rows = rows
        self.table = table
        self.gather = gather
        # `.numpy()` copies; above the cap the copy is not held and `floor_ratio` is null.
        small = 4 * rows * key[3] <= NUMPY_COPY_MAX_BYTES
        self.numpy_table = table.numpy() if small else None
        self.identity = tf.function(lambda ids: ids)
        self.gather_loops: dict[int, Callable] = {}
        self._compute_loop: Callable | None = None

    def compute_loop(self) -> Callable:
        """`steps.amortised` over the compute reference: a dense MLP (`COMPUTE_WIDTHS`, then the dim) on each id.

        Its weights are fixed and small, so the relus stay live; built on first use, kept with the table.
        """
        if self._compute_loop is None:
            import tensorflow as tf

            widths = (*COMPUTE_WIDTHS, self.key[3])
            generator = np.random.default_rng(0)
            kernels = [tf.constant(generator.standard_normal(shape).astype("float32") * 0.05)
                       for shape in zip(widths[:-1], widths[1:])]
            spread = tf.ones([1, widths[0]]) * 1e-3

            def mlp(ids):
                x = tf.cast(tf.reshape(ids % 4093, [-1, 1]), tf.float32) * spread
                for kernel in kernels:
                    x = tf.nn.relu(x @ kernel)
                return x

            self._compute_loop = steps.amortised(tf.function(mlp, autograph=False), AMORTISED_BATCHES)
        return self._compute_loop


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
