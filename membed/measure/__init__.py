"""Measuring embedding layers: their sizes, the peak memory of named phases, and runs in a fresh process.

* `membed.measure.sizes`: sizes from the cost formulas without building
  anything (`case_sizes`), the one reading of a built layer's sizes
  (`layer_sizes`), the bytes of training with Adam, compression, a peak
  estimate and whether it fits in free memory;
* `membed.measure.probes`: TensorFlow's allocator peak and the process's
  peak RSS over named phases (`Probe`);
* `membed.measure.isolation`: `run_isolated("package.module:function",
  payload)` runs a function in a fresh process and returns its dict, or a
  failed result saying why (exception, crash, out-of-memory kill, timeout).

Moved out, with the old names kept here for one release (`_compat`): the id
streams to `membed.data.ids` (`DatasetIds`, `load_ratings`), the steps the
suites time and the memory case to the repository's `bench/steps.py`.
`python -m membed.measure SPEC` still measures one memory case in the
calling process.

Example:
    >>> from membed.measure import case_sizes, run_isolated
    >>> case_sizes("qr", 10**6, 64).compression  # two 1000 x 64 tables for a million ids
    500.0
    >>> spec = {"strategy": "qr", "vocab_size": 10**6, "dim": 64}
    >>> run_isolated("bench.steps:memory_case", spec)["peak_alloc_bytes_lookup"] > 4 * 2 * 1000 * 64
    True
"""

from membed.measure._compat import (  # noqa: F401 - the private names too: callers reached into them
    DEFAULT_BATCH_SIZE,
    DRAWS_PER_ID,
    MIN_RESERVE_BYTES,
    RESERVE_SHARE,
    SIDES,
    SYNTHETIC_VOCABS,
    ZIPF_EXPONENT,
    IdSource,
    _death_reason,
    _load_ratings,
    check_spec,
    compiled_lookup,
    compiled_train_step,
    failed,
    main,
    make_target,
    measure_isolated,
    measure_peaks,
    strategy_module,
    weight_bytes,
)
from membed.measure.isolation import (
    DEFAULT_TIMEOUT_S,
    METHODS,
    death_reason,
    error_reason,
    run_isolated,
)
from membed.measure.probes import Allocator, Probe, default_reserve_bytes, rss_peak
from membed.measure.sizes import (
    ACTIVATION_VALUES_PER_OUTPUT,
    ADAM_SLOT_BYTES,
    FLOAT32_BYTES,
    SAFETY_FACTOR,
    CaseSizes,
    LayerSizes,
    case_sizes,
    compression,
    estimated_peak_bytes,
    jsonable,
    layer_options,
    layer_sizes,
    memory_shortfall,
    train_state_bytes,
)

__all__ = [
    "ACTIVATION_VALUES_PER_OUTPUT",
    "ADAM_SLOT_BYTES",
    "DEFAULT_TIMEOUT_S",
    "FLOAT32_BYTES",
    "METHODS",
    "SAFETY_FACTOR",
    "Allocator",
    "CaseSizes",
    "LayerSizes",
    "Probe",
    "case_sizes",
    "compression",
    "death_reason",
    "default_reserve_bytes",
    "error_reason",
    "estimated_peak_bytes",
    "jsonable",
    "layer_options",
    "layer_sizes",
    "memory_shortfall",
    "rss_peak",
    "run_isolated",
    "train_state_bytes",
    # Kept for one release; each one's docstring or comment in _compat says where it moved.
    "DEFAULT_BATCH_SIZE",
    "DRAWS_PER_ID",
    "MIN_RESERVE_BYTES",
    "RESERVE_SHARE",
    "SIDES",
    "SYNTHETIC_VOCABS",
    "ZIPF_EXPONENT",
    "IdSource",
    "check_spec",
    "compiled_lookup",
    "compiled_train_step",
    "failed",
    "main",
    "make_target",
    "measure_isolated",
    "measure_peaks",
    "strategy_module",
    "weight_bytes",
]
