"""Every strategy sharded over a mesh of devices with Keras 3's distribution API (JAX backend only).

Keras 3 has no `tf.distribute` parameter-server training; its way to shard a
model is `keras.distribution.ModelParallel`: a `LayoutMap` over a
`DeviceMesh` says how each variable is split, and XLA compiles the
collectives. This package builds a strategy layer that way and measures it:

* `placement.plan_layouts(layer, devices, layout)`: each weight's axes from
  its name (tables row-wise `("model", None)` or column-wise
  `(None, "model")`; small dense weights, TT cores and int8 scales in a
  column layout replicated), or `NotShardable` with a one-line reason;
* `measure.per_device_bytes(arrays)` and `measure.collective_bytes(hlo_text)`:
  bytes each device holds, read from the arrays' `addressable_shards`, and
  bytes the compiled program moves through collectives;
* `optimizers`: SGD, AdaGrad and row-wise AdaGrad written with `jax.numpy`,
  their state sharded like the weight it belongs to;
* `run.run_case(spec)`: one case end to end (build unsharded and sharded,
  compare lookups, one sharded train step), a JSON-able dict.

`placement`, `measure` and `optimizers` import neither JAX nor Keras (their
pure parts are tested from the TensorFlow side); run `run` only in a
process whose Keras backend is JAX (`KERAS_BACKEND=jax`,
with `JAX_ENABLE_X64=true` for the seeded hashes); `bench/sharded.py` starts
such a process. On one CPU, `XLA_FLAGS=--xla_force_host_platform_device_count=8`
presents 8 devices; on GPUs, TPUs or several hosts (`jax.distributed.initialize`)
the same code runs over the real devices.

Example:
    KERAS_BACKEND=jax JAX_ENABLE_X64=true XLA_FLAGS=--xla_force_host_platform_device_count=8 \\
        python -m bench.sharded --strategies full,qr --devices 2,4 --layouts row
"""

from membed.shard.placement import AXIS, LAYOUTS, NotShardable, plan_layouts
from membed.shard.measure import collective_bytes, per_device_bytes

__all__ = ["AXIS", "LAYOUTS", "NotShardable", "collective_bytes", "per_device_bytes", "plan_layouts"]
