"""Training memory before building: an estimator part by part, and where a layer fits.

* `estimate(strategy, vocab_size, dim, options, optimizer, batch_size)`: an
  `Estimate` of weights, optimizer state, index, per-batch tensors, the
  step's temporaries and a reservation, with `lookup_peak_bytes` and
  `train_peak_bytes(optimizer)` (`estimator.py`; constants and where they
  come from in `constants.py`);
* `row_wise_hosts(layout, optimizer, batch_size, host_memory_bytes)`: how
  many hosts the layer needs with its tables sharded row-wise (`sharding.py`);
* `python -m membed.plan` (`cli.py`, `main(argv)`): both, for every strategy
  at its default options and presets.

Importing this package imports neither Keras nor TensorFlow; estimating a
strategy does (its cost formula lives with the layer).

Example:
    >>> from membed.plan import estimate
    >>> estimate("full", 10**6, 64, optimizer="rowwise_adagrad").optimizer_state.total
    4000000
"""

from membed.plan.cli import main, parse_size
from membed.plan.constants import ALLOCATOR, HOST, OPTIMIZER_NAMES, OPTIMIZERS, STEP, Reservation
from membed.plan.estimator import Estimate, estimate, estimate_layer, estimate_layout
from membed.plan.layout import Bytes, Layout, Weight
from membed.plan.sharding import Placement, row_wise_hosts

__all__ = [
    "ALLOCATOR", "HOST", "OPTIMIZERS", "OPTIMIZER_NAMES", "STEP", "Bytes", "Estimate", "Layout", "Placement",
    "Reservation", "Weight", "estimate", "estimate_layer", "estimate_layout", "main", "parse_size",
    "row_wise_hosts",
]
