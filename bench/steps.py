"""The steps the suites time and measure: a compiled lookup, a compiled training step, and one memory case.

The lookup, blocks and train-step suites time `compiled_lookup` and
`compiled_train_step` (the lookup suite also `amortised`, K batches per
call); the memory suite runs `memory_case` in a fresh process
per case through membed's generic isolation (`measure_memory`, which calls
`membed.measure.isolation.run_isolated(MEMORY_CASE, spec)`). The memory case
runs the same two steps eagerly: tracing a training step costs a second or so
per fresh process, and the peaks are those of the same ops.

A memory case, on one layer, under a `membed.measure.probes.Probe`:
    build: the allocator peak of constructing and building the layer,
        initializer temporaries included (`peak_alloc_bytes_build`).
    lookup: statistics are reset once the layer is built, so
        `peak_alloc_bytes_lookup` is the built weights and index plus what
        one forward pass over a batch allocates. `peak_rss_bytes_lookup` is
        the process's peak RSS over build and lookup, above its RSS before
        building.
    train: statistics reset again, then one step of the spec's optimizer
        (`membed.optim`, Keras's Adam by default) on an MSE loss, the
        optimizer's slots created by it: the weights, slots, gradients and
        temporaries (`peak_alloc_bytes_train`). `peak_rss_bytes_train` is the
        peak RSS above the same baseline, so it also holds the pages the
        earlier phases touched. Null when the layer has no trainable weights.
        The baseline itself (the runtime, the case's ids) is `rss_baseline_bytes`:
        added to a peak, it gives the process's whole peak RSS, as tools that
        report one number count it.
        `optimizer_state_bytes` is read from the optimizer's slots afterwards.

Example:
    >>> spec = {"strategy": "full", "vocab_size": 10_000, "dim": 64, "ids": {"dataset": "synthetic-zipf"}}
    >>> result = measure_memory(spec, timeout_s=300)
    >>> result["status"], result["peak_alloc_bytes_lookup"] > 4 * 10_000 * 64
    ('ok', True)
"""

from __future__ import annotations

import importlib
import time
from typing import Any, Callable

import numpy as np

from membed import strategies
from membed.data.ids import DatasetIds
from membed.measure import isolation, sizes
from membed.measure.probes import DEFAULT_RSS_INTERVAL_S, Probe, default_reserve_bytes

# What `measure_memory` runs in the child.
MEMORY_CASE = "bench.steps:memory_case"
DEFAULT_BATCH_SIZE = 4096
DEFAULT_LEARNING_RATE = 1e-3
DEFAULT_OPTIMIZER = "adam"  # Keras's Adam: the step of every suite before the optimizer was an axis
# Measured fields of a memory case's result; all None in a failed one.
RESULT_KEYS = (
    "options",
    "params",
    "trainable_params",
    "param_bytes",
    "index_bytes",
    "peak_alloc_bytes_build",
    "peak_alloc_bytes_lookup",
    "peak_rss_bytes_lookup",
    "peak_alloc_bytes_train",
    "peak_rss_bytes_train",
    "optimizer_state_bytes",
    "rss_baseline_bytes",
)
SPEC_KEYS = ("strategy", "vocab_size", "dim", "ids", "options", "batch_size", "seed", "optimizer", "learning_rate",
             "rss_interval_s", "reserve_bytes", "module")


# ----- the steps the suites time -------------------------------------------------
def compiled_lookup(layer, compile: bool = True) -> Callable:
    """The layer's forward pass, ids -> vectors, as a `tf.function` (or eager with `compile=False`).

    Example:
        >>> lookup = compiled_lookup(strategies.build("qr", 10**6, 64))
        >>> lookup(np.arange(4096)).shape
        TensorShape([4096, 64])
    """
    import tensorflow as tf

    def lookup(ids):
        return layer(ids)

    # Keras 3 layers have no tensor-dependent Python control flow, so autograph
    # has nothing to convert; skipping it makes each first call a lot cheaper.
    return tf.function(lookup, autograph=False) if compile else lookup


def amortised(step: Callable, batches: int) -> Callable:
    """`step` over each of `batches` batches inside one `tf.function` call: (batches, batch) ids -> a scalar.

    A `tf.while_loop` (one iteration at a time) calls `step` on each batch and
    adds the output's first value to a scalar that the call returns, so
    every output is computed in full and none is kept: each batch runs the
    ops one call of `step` runs, and TensorFlow's per-call cost is paid once
    for all of them. `loop(stacked, count=1)` runs the same graph over the
    first batch only: a warm-up that traces without doing all the work.
    Measured here (batch 4096 x dim 64): a loop like this
    traces in 0.1-0.7 s where a Python-unrolled one of 32 batches took 1-2 s,
    and `tf.map_fn` spent ~300 us per iteration stacking its outputs.

    Args:
        step: ids -> output, such as a layer or `lambda ids: tf.gather(table, ids)`.
        batches: how many batches one call takes, >= 1.

    Example:
        >>> loop = amortised(strategies.build("qr", 10**6, 64), batches=4)
        >>> loop(np.zeros((4, 4096), "int64")).shape
        TensorShape([])
    """
    import tensorflow as tf

    if not isinstance(batches, int) or isinstance(batches, bool) or batches < 1:
        raise ValueError(f"Invalid `batches`: {batches!r}. Use an int >= 1.")

    def loop(stacked, count):
        def body(index, total):
            output = step(stacked[index])
            return index + 1, total + tf.cast(tf.reshape(output, [-1])[0], tf.float32)

        _, total = tf.while_loop(lambda index, total: index < count, body,
                                 (tf.constant(0), tf.constant(0.0)), parallel_iterations=1)
        return total

    compiled = tf.function(loop, autograph=False)
    counts = {}

    def call(stacked, count: int = batches):
        """Runs the loop over the first `count` batches (1: a cheap warm-up that traces the same graph)."""
        if count not in counts:
            counts[count] = tf.constant(count)
        return compiled(stacked, counts[count])

    return call


def make_optimizer(name: str = DEFAULT_OPTIMIZER, learning_rate: float = DEFAULT_LEARNING_RATE):
    """A new optimizer `name` of `membed.optim` (`adam`: Keras's Adam); ValueError lists the valid names.

    Example:
        >>> type(make_optimizer("rowwise_adagrad", 0.1)).__name__
        'RowwiseAdagrad'
    """
    from membed import optim

    return optim.get(name, learning_rate=learning_rate)


def optimizer_state_bytes(optimizer) -> int | None:
    """Bytes of a built Keras optimizer's slots: every variable but its step counter and step size; None if unbuilt.

    Example:
        >>> optimizer = make_optimizer("rowwise_adagrad")
        >>> optimizer.build(strategies.build("full", 1000, 64).trainable_variables)
        >>> optimizer_state_bytes(optimizer)  # one float32 per row
        4000
    """
    if not getattr(optimizer, "built", False):
        return None
    bookkeeping = {id(optimizer.iterations)}
    slots = [v for v in optimizer.variables
             if id(v) not in bookkeeping and not (v.name == "learning_rate" and len(v.shape) == 0)]
    return int(sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in slots))


def compiled_train_step(layer, learning_rate: float = DEFAULT_LEARNING_RATE, compile: bool = True,
                        optimizer=DEFAULT_OPTIMIZER) -> Callable:
    """One optimizer step on the MSE between the layer's vectors and a target, as a `tf.function`.

    The optimizer's slots are created by the first call, so that call's
    memory includes them. With `compile=False` the step runs eagerly.
    Raises ValueError when the layer has no trainable weights (an int8
    table, for example).

    Args:
        layer: the embedding layer (built here if it is not).
        learning_rate: the step size of an optimizer given by name.
        compile: trace the step as a `tf.function`; False runs it eagerly.
        optimizer: a name of `membed.optim.NAMES` (default `adam`, Keras's Adam),
            or a Keras optimizer (`make_optimizer`), whose slots the caller can
            then read (`optimizer_state_bytes`).

    Example:
        >>> step = compiled_train_step(strategies.build("full", 1000, 64), optimizer="rowwise_adagrad")
        >>> float(step(np.arange(8), np.zeros((8, 64), "float32"))) >= 0
        True
    """
    import keras
    import tensorflow as tf

    if not layer.built:
        layer.build((None,))
    variables = list(layer.trainable_variables)
    if not variables:
        label = getattr(layer, "strategy_name", "") or type(layer).__name__
        raise ValueError(f"{label}: the layer has no trainable weights; there is no training step to take.")
    if isinstance(optimizer, str):
        optimizer = make_optimizer(optimizer, learning_rate)

    def train_step(ids, target):
        with tf.GradientTape() as tape:
            # training=True: the graph path, whose embedding gradients stay sparse.
            loss = keras.ops.mean(keras.ops.square(layer(ids, training=True) - target))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    return tf.function(train_step, autograph=False) if compile else train_step


def make_target(batch_size: int, dim: int, seed: int = 0) -> np.ndarray:
    """A float32 (batch_size, dim) regression target for the training step, seeded."""
    return np.random.default_rng(seed).normal(0.0, 0.05, size=(batch_size, dim)).astype(np.float32)


# ----- one memory case --------------------------------------------------------------
def strategy_module(name: str) -> str:
    """The module that defines (and so registers) strategy `name`, for a spec's `module`."""
    return strategies.get(name).__module__


def check_spec(spec: dict) -> dict:
    """Validates a memory-case spec and fills its defaults; raises ValueError naming what is wrong.

    Keys: `strategy`, `vocab_size`, `dim`, `ids` (a `DatasetIds` dict, the
    old key `vocab` accepted for `dataset`; its `vocab_size` defaults to the
    spec's), and optionally `options` ({}), `batch_size` (4096), `seed` (0),
    `optimizer` (`adam`, a name of `membed.optim.NAMES`),
    `learning_rate` (1e-3), `rss_interval_s` (0.005), `reserve_bytes` (from
    the estimate), `module` (imported first: the module that registers a
    strategy defined outside `membed.strategies`; `strategy_module(name)`
    gives it).

    Example:
        >>> check_spec({"strategy": "full", "vocab_size": 10, "dim": 4})["ids"]
        {'vocab_size': 10, 'dataset': 'synthetic-zipf'}
    """
    if not isinstance(spec, dict):
        raise ValueError(f"measure spec: must be a JSON object; got {type(spec).__name__}.")
    unknown = sorted(set(spec) - set(SPEC_KEYS))
    if unknown:
        raise ValueError(f"measure spec: unknown key {unknown[0]!r}. Valid keys: {', '.join(sorted(SPEC_KEYS))}.")
    missing = [key for key in ("strategy", "vocab_size", "dim") if key not in spec]
    if missing:
        raise ValueError(f"measure spec: missing key {missing[0]!r}.")
    if spec.get("module"):
        # A strategy registered outside membed.strategies registers on import.
        importlib.import_module(spec["module"])
    strategies.get(spec["strategy"])
    full = {"options": {}, "batch_size": DEFAULT_BATCH_SIZE, "seed": 0, "optimizer": DEFAULT_OPTIMIZER,
            "learning_rate": DEFAULT_LEARNING_RATE, "rss_interval_s": DEFAULT_RSS_INTERVAL_S,
            "ids": {"dataset": "synthetic-zipf"}, **spec}
    from membed import optim

    try:
        optim.entry(full["optimizer"])
    except ValueError as error:
        raise ValueError(f"measure spec: invalid `optimizer`: {error}") from None
    full["ids"] = {"vocab_size": full["vocab_size"], **full["ids"]}
    for key in ("vocab_size", "dim", "batch_size"):
        value = full[key]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"measure spec: invalid `{key}`: {value!r}. It must be an integer >= 1.")
    if full["ids"]["vocab_size"] != full["vocab_size"]:
        raise ValueError(
            f"measure spec: `ids.vocab_size` ({full['ids']['vocab_size']}) differs from "
            f"`vocab_size` ({full['vocab_size']})."
        )
    return full


def failed(reason: str, **fields: Any) -> dict[str, Any]:
    """A failed memory case: every measured field None, with the reason."""
    return isolation.failed(reason, **{key: None for key in RESULT_KEYS}, **fields)


def memory_case(spec: dict) -> dict[str, Any]:
    """Measures one case in this process: build, lookup and train peaks (see the module docstring).

    Run it in a process of its own (`measure_memory`, or `python -m
    membed.measure SPEC`): the probe switches on TensorFlow's BFC allocator
    before its first op, and the RSS it reports is the process's.

    Returns:
        {"status": "ok", "reason": None, "options", "params",
        "trainable_params", "param_bytes", "index_bytes", the five peaks
        (bytes or None), "optimizer_state_bytes" (0 without a train step),
        "allocator": None or why the allocator numbers are missing, "seconds"}.
    """
    from membed import optim  # noqa: F401 - imported before any phase: its import is no part of a peak

    spec = check_spec(spec)
    started = time.perf_counter()
    name, vocab_size, dim, batch_size = spec["strategy"], spec["vocab_size"], spec["dim"], spec["batch_size"]
    options = strategies.registry.resolve_options(name, spec["options"])
    estimate = sizes.case_sizes(name, vocab_size, dim, options)
    reserve = spec.get("reserve_bytes") or default_reserve_bytes(
        sizes.estimated_peak_bytes(estimate.train_state_bytes, batch_size, dim))
    probe = Probe(int(reserve), spec["rss_interval_s"])
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(spec["seed"])
    source = DatasetIds.from_dict(spec["ids"])
    # Copied into the allocator: `tf.constant` aliases a NumPy buffer or copies it, by its
    # alignment, so the ids and target were counted in one process and not in the next.
    ids = tf.raw_ops.DeepCopy(x=tf.constant(source.sample(batch_size, spec["seed"])))
    target = tf.raw_ops.DeepCopy(x=tf.constant(make_target(batch_size, dim, spec["seed"])))
    counts = source.counts() if strategies.get(name).needs_counts else None

    def build_and_lookup():
        with probe.phase("build"):
            layer = strategies.build(name, vocab_size, dim, counts=counts, **options)
            if not layer.built:  # Keras builds at construction when `build` needs no input shape
                layer.build((batch_size,))
        with probe.phase("lookup"):
            compiled_lookup(layer, compile=False)(ids).numpy()
        return layer

    layer = probe.rss_span("lookup", build_and_lookup)
    resolved, built = sizes.layer_options(layer), sizes.layer_sizes(layer)
    optimizers = []
    if built.trainable_params:

        def train_one_step():
            with probe.phase("train"):
                optimizers.append(make_optimizer(spec["optimizer"], spec["learning_rate"]))
                compiled_train_step(layer, compile=False, optimizer=optimizers[0])(ids, target).numpy()

        probe.rss_span("train", train_one_step)
    measured = {
        "options": resolved,
        **built.as_dict(),
        "optimizer_state_bytes": optimizer_state_bytes(optimizers[0]) if optimizers else 0,
        "rss_baseline_bytes": probe.rss_baseline,
        **{f"peak_alloc_bytes_{phase}": peak for phase, peak in probe.alloc_peaks.items()},
        **{f"peak_rss_bytes_{span}": peak for span, peak in probe.rss_peaks.items()},
    }
    return {
        "status": "ok",
        "reason": None,
        **{key: measured.get(key) for key in RESULT_KEYS},
        "allocator": probe.unavailable,
        "seconds": time.perf_counter() - started,
    }


def measure_memory(spec: dict, timeout_s: float = isolation.DEFAULT_TIMEOUT_S,
                   method: str = "fork") -> dict[str, Any]:
    """Runs `memory_case(spec)` in a fresh process and returns its result, or why there is none.

    Never raises for a failing case: an exception inside the child, a crash,
    a kill (out of memory) or a timeout all come back as `{"status":
    "failed", "reason": ...}` with the measured fields None. A malformed
    spec raises ValueError before anything starts.

    Args:
        spec: see `check_spec`.
        timeout_s: seconds before the child is killed.
        method: `fork` (the default, fast) or `exec`; see `membed.measure.isolation`.

    Example:
        >>> measure_memory({"strategy": "qr", "vocab_size": 10**6, "dim": 64})["status"]
        'ok'
    """
    spec = sizes.jsonable(check_spec(spec))  # NumPy integers as Python ones: the payload travels as JSON
    started = time.perf_counter()
    result = isolation.run_isolated(MEMORY_CASE, spec, timeout_s, method)
    if result.get("status") != "ok":
        result = {**failed(result.get("reason") or "no reason given"), **result}
    result.setdefault("seconds", time.perf_counter() - started)
    return result
