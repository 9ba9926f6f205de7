"""Sizes, peak memory and compiled steps for benchmark cases, one fresh process per memory case.

A benchmark case is a strategy at a vocabulary size and base dimension, fed
ids from an `IdSource` (Zipf or uniform synthetic ids, or the users or items
of a MovieLens variant). This module gives three kinds of numbers for it:

* sizes from the cost formulas, without building anything (`case_sizes`):
  parameters, parameter bytes, index bytes, the training state with Adam and
  the compression against a full table;
* peak memory (`measure_peaks`): the TensorFlow allocator's peak and the
  process's peak RSS while the layer is built and looks up one batch, and
  while it takes one Adam step;
* the functions that bench/ times (`compiled_lookup`,
  `compiled_train_step`); the memory child runs the same steps eagerly
  (tracing a training step costs a second or so per fresh process, and
  the peaks are those of the same ops).

Peak memory is taken in a fresh process per case (`measure_isolated`), so a
case cannot leave memory behind for the next one, and a case that runs out
of memory, crashes, raises or hangs comes back as `status: failed` with the
reason instead of ending the run. Processes are forked from a server that
has imported TensorFlow once (importing it takes several seconds); the
server runs no TensorFlow op, so each child starts with TensorFlow
uninitialised. `python -m membed.measure` runs one case in the calling
process: a JSON spec on argv or stdin in, one JSON result line out.

TensorFlow's allocator on CPU: in TF 2.21 the default CPU allocator keeps no
statistics (`tf.config.experimental.reset_memory_stats("CPU:0")` raises
`ValueError: Cannot reset memory stats for device 'CPU:0'`). With
`TF_CPU_ALLOCATOR_USE_BFC=true`, read when the first op runs, the CPU
allocator is a BFC allocator whose `get_memory_info("CPU:0")` reports real
`current` and `peak` bytes. BFC hands out chunks carved from regions that
grow in powers of two, so a 256 MB table shows as a 268 MB chunk; the child
therefore first reserves one large region with an uninitialised tensor (no
page is touched, RSS does not move) and frees it, after which chunks are
split to within 256 bytes of the request.

Example:
    >>> spec = {"strategy": "full", "vocab_size": 10_000, "dim": 64, "ids": {"vocab": "synthetic-zipf"}}
    >>> result = measure_isolated(spec, timeout_s=300)
    >>> result["status"], result["peak_alloc_bytes_lookup"] > 4 * 10_000 * 64
    ('ok', True)
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import json
import multiprocessing
import os
import re
import signal
import sys
import time
import traceback
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import psutil

from membed import strategies

# Estimated peak = SAFETY_FACTOR * (training state + activations). Keras 3's
# Adam updates a gathered table densely, with table-sized temporaries: the
# measured training peak of `full` is 6x its table, 2.0x its training state
# (and building it peaks at 3x the table), so 2.5 leaves some room.
SAFETY_FACTOR = 2.5
# float32 values per output element kept for the backward pass and the loss.
ACTIVATION_VALUES_PER_OUTPUT = 16
# Bytes of Adam state per trainable parameter: two float32 slots.
ADAM_SLOT_BYTES = 8
FLOAT32_BYTES = 4
DEFAULT_BATCH_SIZE = 4096
DEFAULT_TIMEOUT_S = 600.0
# Zipf exponent of the synthetic id streams (membed.data's default).
ZIPF_EXPONENT = 1.05
# Synthetic counts are the expected counts of this many draws per id.
DRAWS_PER_ID = 10
# Vocabulary names of the synthetic id streams; anything else is a MovieLens name.
SYNTHETIC_VOCABS = ("synthetic-zipf", "synthetic-uniform")
SIDES = ("users", "items")
# The allocator-region reservation stays within this share of available memory.
RESERVE_SHARE = 0.8
MIN_RESERVE_BYTES = 256 << 20
# Everything the child needs, imported once in the fork server.
_PRELOAD = ["numpy", "psutil", "memory_profiler", "tensorflow", "keras", "membed.strategies", "membed.data",
            "membed.measure"]
_RESULT_KEYS = (
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
)


# ----- sizes -----------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class CaseSizes:
    """Closed-form sizes of a strategy at one vocabulary size and dimension.

    Attributes:
        params: parameter count (what `count_params()` gives).
        param_bytes: bytes of the parameters in their storage dtypes.
        index_bytes: bytes of non-parameter id-mapping state.
        train_state_bytes: parameters + two float32 Adam slots per trainable
            parameter + index.
        compression: a float32 full table's bytes / (`param_bytes` + `index_bytes`)
            at the same size: by bytes, so a quantized table counts as smaller.
    """

    params: int
    param_bytes: int
    index_bytes: int
    train_state_bytes: int
    compression: float

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def train_state_bytes(param_bytes: int, trainable_params: int, index_bytes: int = 0) -> int:
    """Bytes to train with Adam: the parameters, two float32 slots per trainable parameter, the index.

    Example:
        >>> train_state_bytes(4 * 1000 * 64, 1000 * 64)  # a float32 1000 x 64 table
        768000
    """
    return int(param_bytes) + ADAM_SLOT_BYTES * int(trainable_params) + int(index_bytes)


def compression(vocab_size: int, dim: int, stored_bytes: int) -> float:
    """How many times fewer bytes than a float32 `vocab_size x dim` table `stored_bytes` are.

    By bytes rather than parameters: an int8 table has as many parameters as
    the float32 one (plus its scales) but takes about a quarter of the memory.
    `stored_bytes` is the parameter bytes plus the index bytes.

    Example:
        >>> compression(1000, 64, 25600)  # a float32 100 x 64 table
        10.0
    """
    return float(vocab_size) * dim * FLOAT32_BYTES / max(int(stored_bytes), 1)


def case_sizes(strategy: str, vocab_size: int, dim: int, options: dict | None = None,
               trainable_params: int | None = None) -> CaseSizes:
    """Sizes from the strategy's cost formula; every parameter counts as trainable unless told.

    Raises ValueError (from the strategy) when the configuration is invalid.

    Example:
        >>> case_sizes("full", 1000, 64).train_state_bytes
        768000
    """
    cost = strategies.cost(strategy, vocab_size, dim, **(options or {}))
    trainable = cost.params if trainable_params is None else trainable_params
    return CaseSizes(
        params=int(cost.params),
        param_bytes=int(cost.param_bytes),
        index_bytes=int(cost.index_bytes),
        train_state_bytes=train_state_bytes(cost.param_bytes, trainable, cost.index_bytes),
        compression=compression(vocab_size, dim, cost.param_bytes + cost.index_bytes),
    )


def estimated_peak_bytes(train_state: int, batch_size: int, dim: int) -> int:
    """A generous estimate of the peak bytes of building, looking up and one Adam step.

    Example:
        >>> estimated_peak_bytes(768000, 4096, 64)
        43863040
    """
    activations = 4 * ACTIVATION_VALUES_PER_OUTPUT * int(batch_size) * int(dim)
    return int(SAFETY_FACTOR * (int(train_state) + activations))


def memory_shortfall(needed_bytes: int) -> str | None:
    """Why a case needing `needed_bytes` cannot run now, or None when it fits in available memory.

    Example:
        >>> memory_shortfall(10**15)  # on a machine with 22 GB free
        'needs about 1000000.0 GB (estimated), only 22.0 GB available'
    """
    available = psutil.virtual_memory().available
    if needed_bytes <= available:
        return None
    return f"needs about {needed_bytes / 1e9:.1f} GB (estimated), only {available / 1e9:.1f} GB available"


# ----- id sources ------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def _load_ratings(name: str, data_dir: str | None, download: bool):
    from membed.data import load_movielens

    return load_movielens(name, data_dir=data_dir, download=download)


@dataclasses.dataclass(frozen=True)
class IdSource:
    """Where a case's ids come from: a synthetic stream or one side of a MovieLens variant.

    Attributes:
        vocab: `synthetic-zipf`, `synthetic-uniform` or a MovieLens name (`ml-100k` ...).
        vocab_size: number of ids; for MovieLens, set by `IdSource.movielens`.
        side: `users` or `items` for MovieLens; None for synthetic streams.
        data_dir: folder holding extracted MovieLens folders (else `$MEMBED_DATA_DIR`, the cache).
        download: let a MovieLens variant that is not found be downloaded.

    Example:
        >>> source = IdSource("synthetic-zipf", 10**6)
        >>> source.sample(4, seed=1).shape, source.counts().shape
        ((4,), (1000000,))
    """

    vocab: str
    vocab_size: int
    side: str | None = None
    data_dir: str | None = None
    download: bool = False

    def __post_init__(self) -> None:
        if self.vocab in SYNTHETIC_VOCABS:
            if self.side is not None:
                raise ValueError(f"IdSource: a synthetic vocabulary has no `side`; got {self.side!r}.")
        elif self.side not in SIDES:
            raise ValueError(f"IdSource: invalid `side`: {self.side!r}. Use one of: {', '.join(SIDES)}.")
        if isinstance(self.vocab_size, bool) or not isinstance(self.vocab_size, (int, np.integer)) or (
            self.vocab_size < 1
        ):
            raise ValueError(f"IdSource: invalid `vocab_size`: {self.vocab_size!r}. It must be an integer >= 1.")

    @classmethod
    def movielens(cls, name: str, side: str, data_dir: str | None = None, download: bool = False) -> "IdSource":
        """The users or items of MovieLens variant `name`; raises DatasetUnavailable when not found."""
        data = _load_ratings(name, data_dir, download)
        size = data.num_users if side == "users" else data.num_items
        return cls(name, int(size), side, data_dir, download)

    def _ratings(self):
        return _load_ratings(self.vocab, self.data_dir, self.download)

    def sample(self, size: int, seed: int = 0) -> np.ndarray:
        """`size` int64 ids drawn from the stream; MovieLens draws rows of the ratings file."""
        from membed.data import uniform_ids, zipf_ids

        if self.vocab == "synthetic-zipf":
            return zipf_ids(self.vocab_size, size, exponent=ZIPF_EXPONENT, seed=seed)
        if self.vocab == "synthetic-uniform":
            return uniform_ids(self.vocab_size, size, seed=seed)
        column = self._ratings().users if self.side == "users" else self._ratings().items
        rows = np.random.default_rng(seed).integers(0, len(column), size=size)
        return column[rows].astype(np.int64)

    def counts(self) -> np.ndarray:
        """Per-id counts for strategies that use frequencies (expected counts for synthetic streams)."""
        from membed.data import zipf_expected_counts

        if self.vocab == "synthetic-zipf":
            return zipf_expected_counts(self.vocab_size, DRAWS_PER_ID * self.vocab_size, ZIPF_EXPONENT)
        if self.vocab == "synthetic-uniform":
            return np.full(self.vocab_size, float(DRAWS_PER_ID))
        data = self._ratings()
        return np.asarray(data.user_counts if self.side == "users" else data.item_counts)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, spec: dict) -> "IdSource":
        return cls(**spec)


# ----- compiled steps ----------------------------------------------------------
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


def compiled_train_step(layer, learning_rate: float = 1e-3, compile: bool = True) -> Callable:
    """One Adam step on the MSE between the layer's vectors and a target, as a `tf.function`.

    The optimizer's slots are created by the first call, so that call's
    memory includes them. With `compile=False` the step runs eagerly.
    Raises ValueError when the layer has no trainable weights (an int8
    table, for example).

    Example:
        >>> step = compiled_train_step(strategies.build("full", 1000, 64))
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
    optimizer = keras.optimizers.Adam(learning_rate=learning_rate)

    def train_step(ids, target):
        with tf.GradientTape() as tape:
            # training=True: the graph path, whose embedding gradients stay sparse.
            loss = keras.ops.mean(keras.ops.square(layer(ids, training=True) - target))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    return tf.function(train_step, autograph=False) if compile else train_step


def make_target(batch_size: int, dim: int, seed: int = 0) -> np.ndarray:
    """A float32 (batch_size, dim) regression target for the training step."""
    return np.random.default_rng(seed).normal(0.0, 0.05, size=(batch_size, dim)).astype(np.float32)


def jsonable(value: Any) -> Any:
    """Option values as JSON values: tuples to lists, NumPy scalars and arrays to Python ones.

    Example:
        >>> jsonable({"dims": (64, np.int64(32))})
        {'dims': [64, 32]}
    """
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def layer_options(layer) -> dict[str, Any]:
    """The options a strategy layer ended up with, defaults resolved (e.g. qr's `num_buckets`)."""
    return jsonable({name: getattr(layer, name, None) for name in type(layer).options})


def weight_bytes(layer) -> int:
    """Bytes of the built layer's weights in their storage dtypes."""
    return int(sum(int(np.prod(w.shape)) * np.dtype(w.dtype).itemsize for w in layer.weights))


# ----- peak memory, in the calling process -------------------------------------
@dataclasses.dataclass
class _Allocator:
    """The CPU allocator's statistics, or why there are none."""

    tf: Any
    unavailable: str | None = None

    def start(self, reserve_bytes: int) -> None:
        try:
            self.tf.config.experimental.reset_memory_stats("CPU:0")
        except ValueError as error:
            self.unavailable = (
                f"TF allocator statistics unavailable ({error}); TF_CPU_ALLOCATOR_USE_BFC=true must be set "
                "before TensorFlow runs its first op"
            )
            return
        # One large region up front, uninitialised so no page is touched:
        # later allocations are split from it to their own size.
        while reserve_bytes >= MIN_RESERVE_BYTES:
            try:
                # Allocated and at once dropped: the region stays with the allocator.
                self.tf.raw_ops.Empty(shape=[reserve_bytes], dtype=self.tf.uint8, init=False)
                return
            except Exception:  # the allocator refused; a smaller region still helps
                reserve_bytes //= 2

    def reset(self) -> None:
        if self.unavailable is None:
            self.tf.config.experimental.reset_memory_stats("CPU:0")

    def peak(self) -> int | None:
        if self.unavailable is not None:
            return None
        return int(self.tf.config.experimental.get_memory_info("CPU:0")["peak"])


def _rss_peak(function: Callable[[], Any], baseline: int, interval: float) -> tuple[int, Any]:
    from memory_profiler import memory_usage

    # max_iterations=1: memory_profiler would otherwise call a fast function again.
    peak_mib, value = memory_usage((function, (), {}), interval=interval, max_usage=True, retval=True,
                                   max_iterations=1, backend="psutil")
    return max(0, int(peak_mib * 2**20) - baseline), value


def check_spec(spec: dict) -> dict:
    """Validates a measurement spec and fills its defaults; raises ValueError naming what is wrong.

    Keys: `strategy`, `vocab_size`, `dim`, `ids` (an `IdSource` dict; its
    `vocab_size` defaults to the spec's), and optionally `options` ({}),
    `batch_size` (4096), `seed` (0), `learning_rate` (1e-3),
    `rss_interval_s` (0.005), `reserve_bytes` (from the estimate), `module`
    (imported first: the module that registers a strategy defined outside
    `membed.strategies`; `strategy_module(name)` gives it).
    """
    known = {"strategy", "vocab_size", "dim", "ids", "options", "batch_size", "seed", "learning_rate",
             "rss_interval_s", "reserve_bytes", "module"}
    if not isinstance(spec, dict):
        raise ValueError(f"measure spec: must be a JSON object; got {type(spec).__name__}.")
    unknown = sorted(set(spec) - known)
    if unknown:
        raise ValueError(f"measure spec: unknown key {unknown[0]!r}. Valid keys: {', '.join(sorted(known))}.")
    missing = [key for key in ("strategy", "vocab_size", "dim") if key not in spec]
    if missing:
        raise ValueError(f"measure spec: missing key {missing[0]!r}.")
    if spec.get("module"):
        # A strategy registered outside membed.strategies registers on import.
        importlib.import_module(spec["module"])
    strategies.get(spec["strategy"])
    full = {"options": {}, "batch_size": DEFAULT_BATCH_SIZE, "seed": 0, "learning_rate": 1e-3,
            "rss_interval_s": 0.005, "ids": {"vocab": "synthetic-zipf"}, **spec}
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


def measure_peaks(spec: dict) -> dict[str, Any]:
    """Measures one case in this process: peaks of build + lookup and of one Adam step.

    Run it in a process of its own (`measure_isolated`, or `python -m
    membed.measure`): it sets `TF_CPU_ALLOCATOR_USE_BFC` for TensorFlow's
    first op, and the RSS it reports is the process's.

    Phases, on one layer:
        build: the allocator peak of constructing and building the layer,
            initializer temporaries included (`peak_alloc_bytes_build`).
        lookup: statistics are reset once the layer is built, so
            `peak_alloc_bytes_lookup` is the built weights and index plus
            what one (eager) forward pass over a batch allocates.
            `peak_rss_bytes_lookup` is the process's peak RSS over build and
            lookup, above its RSS before building.
        train: statistics reset again, then one (eager) Adam step on an MSE
            loss, the optimizer's slots created by it: the weights, slots,
            gradients and temporaries (`peak_alloc_bytes_train`).
            `peak_rss_bytes_train` is the peak RSS above the same baseline,
            so it also holds the pages the earlier phases touched. Null when
            the layer has no trainable weights.

    Returns:
        {"status": "ok", "reason": None, "params", "trainable_params",
        "param_bytes", "index_bytes", the five peaks (bytes or None),
        "allocator": None or why the allocator numbers are missing,
        "seconds"}.
    """
    spec = check_spec(spec)
    started = time.perf_counter()
    name, vocab_size, dim, batch_size = spec["strategy"], spec["vocab_size"], spec["dim"], spec["batch_size"]
    options = strategies.registry.resolve_options(name, spec["options"])
    sizes = case_sizes(name, vocab_size, dim, options)
    # Read when TensorFlow runs its first op, which has not happened yet in a fresh child.
    os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")
    import keras
    import tensorflow as tf

    reserve = spec.get("reserve_bytes") or min(
        estimated_peak_bytes(sizes.train_state_bytes, batch_size, dim),
        int(RESERVE_SHARE * psutil.virtual_memory().available),
    )
    allocator = _Allocator(tf)
    allocator.start(int(reserve))
    keras.utils.set_random_seed(spec["seed"])
    source = IdSource.from_dict(spec["ids"])
    ids = tf.constant(source.sample(batch_size, spec["seed"]))
    target = tf.constant(make_target(batch_size, dim, spec["seed"]))
    counts = source.counts() if strategies.get(name).needs_counts else None
    baseline = psutil.Process().memory_info().rss
    result: dict[str, Any] = {key: None for key in _RESULT_KEYS}

    def build_and_lookup():
        allocator.reset()
        layer = strategies.build(name, vocab_size, dim, counts=counts, **options)
        if not layer.built:  # Keras builds at construction when `build` needs no input shape
            layer.build((batch_size,))
        result["peak_alloc_bytes_build"] = allocator.peak()
        allocator.reset()
        compiled_lookup(layer, compile=False)(ids).numpy()
        result["peak_alloc_bytes_lookup"] = allocator.peak()
        return layer

    result["peak_rss_bytes_lookup"], layer = _rss_peak(build_and_lookup, baseline, spec["rss_interval_s"])
    trainable = int(sum(int(np.prod(v.shape)) for v in layer.trainable_variables))
    result.update(
        options=layer_options(layer),
        params=int(layer.count_params()),
        trainable_params=trainable,
        param_bytes=weight_bytes(layer),
        index_bytes=int(layer.index_bytes),
    )
    if trainable:

        def train_one_step():
            allocator.reset()
            compiled_train_step(layer, spec["learning_rate"], compile=False)(ids, target).numpy()
            result["peak_alloc_bytes_train"] = allocator.peak()

        result["peak_rss_bytes_train"], _ = _rss_peak(train_one_step, baseline, spec["rss_interval_s"])
    return {
        "status": "ok",
        "reason": None,
        **result,
        "allocator": allocator.unavailable,
        "seconds": time.perf_counter() - started,
    }


def strategy_module(name: str) -> str:
    """The module that defines (and so registers) strategy `name`, for a spec's `module`."""
    return strategies.get(name).__module__


def failed(reason: str, **fields: Any) -> dict[str, Any]:
    """A failed measurement: every measured field None, with the reason."""
    return {"status": "failed", "reason": reason, **{key: None for key in _RESULT_KEYS}, **fields}


def error_reason(error: BaseException) -> str:
    """One line naming an exception: its type and message.

    Keras wraps what a layer raises in "Exception encountered when calling
    X.call()." with the original message on a later line; that line is kept.

    Example:
        >>> error_reason(ValueError("bad `dim`: 0.\nmore detail"))
        'ValueError: bad `dim`: 0.'
    """
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))  # Keras bolds the message for terminals
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    message = lines[0] if lines else ""
    wrapped = re.match(r"Exception encountered when calling (\S+?)\.call\(", message)
    if wrapped and len(lines) > 1:
        message = f"{lines[1]} (in {wrapped.group(1)}.call)"
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


# ----- isolation: one fresh process per case ----------------------------------
@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _child_environment() -> dict[str, str]:
    return {
        "TF_CPU_ALLOCATOR_USE_BFC": "true",
        "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
    }


@functools.lru_cache(maxsize=1)
def _fork_context():
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(_PRELOAD)
    # The server inherits the environment it is started with; TensorFlow in
    # its children then uses the BFC allocator that keeps statistics.
    from multiprocessing import forkserver

    with _environment(**_child_environment()):
        forkserver.ensure_running()
    return context


def _forked_child(spec: dict, connection) -> None:
    try:
        result = measure_peaks(spec)
    except BaseException as error:  # report anything, the parent decides
        result = failed(error_reason(error), traceback=traceback.format_exc(limit=8))
    connection.send(result)
    connection.close()


def _death_reason(exitcode: int | None, process: str = "the measuring process") -> str:
    """Why `process` ended without a result, from its exit code (negative: the signal that killed it)."""
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        likely = " (likely the out-of-memory killer)" if -exitcode == signal.SIGKILL else ""
        return f"{process} was killed by {name}{likely}"
    return f"{process} exited with code {exitcode} without a result"


def _run_forked(spec: dict, timeout_s: float) -> dict[str, Any]:
    context = _fork_context()
    receiver, sender = context.Pipe(duplex=False)
    # Not a daemon: memory_profiler starts its RSS sampler as a child of the child.
    process = context.Process(target=_forked_child, args=(spec, sender))
    process.start()
    sender.close()
    try:
        if not receiver.poll(timeout_s):
            process.kill()
            return failed(f"timed out after {timeout_s:g} s")
        try:
            return receiver.recv()
        except EOFError:
            process.join(10)
            return failed(_death_reason(process.exitcode))
    except BaseException:
        process.kill()  # interrupted (Ctrl-C): the measurement is abandoned, not waited for
        raise
    finally:
        # After a result the child is only exiting; give it a moment, then make sure.
        process.join(10)
        if process.is_alive():
            process.kill()
            process.join()
        receiver.close()


def _run_exec(spec: dict, timeout_s: float) -> dict[str, Any]:
    import subprocess

    environment = {**os.environ, **_child_environment()}
    try:
        completed = subprocess.run(
            [sys.executable, "-m", "membed.measure"], input=json.dumps(spec), capture_output=True,
            text=True, timeout=timeout_s, env=environment,
        )
    except subprocess.TimeoutExpired:
        return failed(f"timed out after {timeout_s:g} s")
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if lines:
        return json.loads(lines[-1])
    if completed.returncode < 0:
        return failed(_death_reason(completed.returncode))
    tail = completed.stderr.strip().splitlines()[-1:] or [""]
    return failed(f"the measuring process exited with code {completed.returncode}: {tail[0]}")


METHODS = ("fork", "exec")


def measure_isolated(spec: dict, timeout_s: float = DEFAULT_TIMEOUT_S, method: str = "fork") -> dict[str, Any]:
    """Runs `measure_peaks(spec)` in a fresh process and returns its result, or why there is none.

    Never raises for a failing case: an exception inside the child, a crash,
    a kill (out of memory) or a timeout all come back as `{"status":
    "failed", "reason": ...}` with the measured fields None, and the next
    call starts a new process as usual. A malformed spec raises ValueError
    before anything starts.

    Args:
        spec: see `check_spec`.
        timeout_s: seconds before the child is killed.
        method: `fork` (fork from a server that imported TensorFlow once; the
            default, fast) or `exec` (a new `python -m membed.measure`).

    Example:
        >>> measure_isolated({"strategy": "qr", "vocab_size": 10**6, "dim": 64})["status"]
        'ok'
    """
    if method not in METHODS:
        raise ValueError(f"measure_isolated: invalid `method`: {method!r}. Use one of: {', '.join(METHODS)}.")
    if not (isinstance(timeout_s, (int, float)) and timeout_s > 0):
        raise ValueError(f"measure_isolated: invalid `timeout_s`: {timeout_s!r}. It must be a number > 0.")
    spec = check_spec(spec)
    started = time.perf_counter()
    result = _run_forked(spec, timeout_s) if method == "fork" else _run_exec(spec, timeout_s)
    result.setdefault("seconds", time.perf_counter() - started)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m membed.measure [SPEC_JSON]`: measures one case here and prints one JSON line.

    The spec comes from the argument, else stdin. Prints `{"status": "ok", ...}`
    or `{"status": "failed", "reason": ...}`; exit code 0 either way, 2 for a
    malformed spec.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        spec = json.loads(argv[0] if argv else sys.stdin.read())
    except json.JSONDecodeError as error:
        print(f"membed.measure: the spec is not JSON ({error}).", file=sys.stderr)
        return 2
    try:
        spec = check_spec(spec)
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2
    try:
        result = measure_peaks(spec)
    except Exception as error:
        result = failed(error_reason(error))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
