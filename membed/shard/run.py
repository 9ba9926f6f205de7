"""One sharded case end to end: build, compare with the unsharded layer, one sharded train step, measure.

`run_case(spec)`:

1. builds the strategy unsharded (seeded; the reference), and reads where
   each weight goes (`placement.plan_layouts`); a layer that cannot be split
   returns `skipped` with the reason;
2. builds it again under `keras.distribution.ModelParallel` with a
   `LayoutMap` of those placements over a `DeviceMesh` of `devices`
   devices, and copies the reference's values in (the same weights);
3. compiles the lookup (`stateless_call`, ids replicated on every device),
   reads its collectives from the HLO (its output replicated: every device
   gets the whole result), runs it and the reference's lookup on
   the same ids and compares them with `array_equal`;
4. compiles one train step (MSE against a random target, the optimizer of
   `membed.shard.optimizers`, state sharded like its weight, outputs kept
   on the inputs' shardings), runs it, and reads the bytes each device holds
   of weights and state from the arrays' shards, and the devices' peak
   where `memory_stats()` reports one; the same step on the reference gives
   `train_max_abs_diff` (with `compare_train` in the spec), how far the
   sharded update is from the unsharded one.

Everything returned is JSON-able. Needs the JAX backend (see the package).
"""

from __future__ import annotations

import re
import time
from typing import Any

from membed.shard import measure, optimizers, placement

LAYER_NAME = "sharded_layer"


def _skipped(reason: str, **extra: Any) -> dict[str, Any]:
    return {"status": "skipped", "reason": reason, **extra}


def _mesh_sharding(mesh, axes):
    import jax

    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(*axes))


def build_pair(spec: dict[str, Any]):
    """(reference layer, sharded layer, placements, keras DeviceMesh), or raises NotShardable."""
    import jax
    import keras

    from membed import strategies
    from membed.data import DatasetIds

    devices = int(spec["devices"])
    counts = None
    if strategies.get(spec["strategy"]).needs_counts:
        counts = DatasetIds(spec["dataset"], int(spec["vocab_size"])).counts()

    def build():
        keras.utils.set_random_seed(int(spec["seed"]))
        layer = strategies.build(spec["strategy"], int(spec["vocab_size"]), int(spec["dim"]), counts=counts,
                                 layer_name=LAYER_NAME, **dict(spec.get("options") or {}))
        if not layer.built:
            layer.build((None,))
        return layer

    reference = build()
    placements = placement.plan_layouts(reference, devices, spec["layout"])
    mesh = keras.distribution.DeviceMesh((devices,), [placement.AXIS], jax.devices()[:devices])
    layout_map = keras.distribution.LayoutMap(mesh)
    for p in placements:
        layout_map[re.escape(p.weight.path)] = p.axes
    distribution = keras.distribution.ModelParallel(layout_map=layout_map)
    with distribution.scope():
        sharded = build()
        for target, source in zip(sharded.weights, reference.weights):
            target.assign(source.value)
    for p, variable in zip(placements, sharded.weights):
        spec_axes = tuple(variable.value.sharding.spec) + (None,) * (len(p.axes) - len(variable.value.sharding.spec))
        if spec_axes != p.axes:
            raise RuntimeError(f"weight '{p.weight.name}' is laid out as {spec_axes}, not {p.axes} as planned")
    return reference, sharded, placements, mesh


def run_case(spec: dict[str, Any]) -> dict[str, Any]:
    """Runs one sharded case; returns `{"status": ok|skipped|failed, "reason", <measured fields>}`.

    Args:
        spec: strategy, vocab_size, dim, devices, layout (`row` | `column`),
            optimizer (`membed.shard.optimizers`), learning_rate, batch_size,
            seed, dataset (ids of `membed.data.DatasetIds`), options (optional),
            compare_train (optional: also run the train step unsharded and compare).
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    from membed.data import DatasetIds

    started = time.perf_counter()
    devices = int(spec["devices"])
    if jax.device_count() < devices:
        return _skipped(f"{devices} devices asked, {jax.device_count()} present ({jax.devices()[0].platform}); "
                        "on CPU set XLA_FLAGS=--xla_force_host_platform_device_count=N")
    try:
        reference, sharded, placements, mesh = build_pair(spec)
    except placement.NotShardable as error:
        return _skipped(f"{spec['strategy']} cannot be sharded {spec['layout']}-wise over {devices} devices: {error}")
    jax_mesh = sharded.weights[0].value.sharding.mesh
    replicated = _mesh_sharding(jax_mesh, ())
    ids_numpy = np.asarray(DatasetIds(spec["dataset"], int(spec["vocab_size"])).sample(int(spec["batch_size"]),
                                                                                     int(spec["seed"])), np.int32)
    ids = jax.device_put(ids_numpy, replicated)

    # -- lookup: compiled once, its collectives read from the HLO, compared with the reference
    trainable = [v.value for v in sharded.trainable_variables]
    frozen = [v.value for v in sharded.non_trainable_variables]
    # The output replicated: every device gets the whole (batch, dim) result, as a model reading it needs;
    # what that takes (row-wise: an all-reduce of partial rows; column-wise: an all-gather) is the lookup's cost.
    forward = jax.jit(lambda t, f, x: sharded.stateless_call(t, f, x)[0], out_shardings=replicated)
    lookup = forward.lower(trainable, frozen, ids).compile()
    lookup_collectives = measure.collective_bytes(lookup.as_text())
    out = np.asarray(lookup(trainable, frozen, ids))
    reference_forward = jax.jit(lambda t, f, x: reference.stateless_call(t, f, x)[0])
    expected = np.asarray(reference_forward([v.value for v in reference.trainable_variables],
                                            [v.value for v in reference.non_trainable_variables],
                                            jnp.asarray(ids_numpy)))
    matches = bool(np.array_equal(out, expected))
    max_abs_diff = float(np.max(np.abs(out.astype("float64") - expected.astype("float64")))) if out.size else 0.0

    params = measure.per_device_bytes(trainable + frozen)
    result: dict[str, Any] = {
        "status": "ok", "reason": None,
        "per_device_param_bytes": max(params.values()),
        "per_device_param_bytes_all": [params[d] for d in sorted(params)],
        "collective_bytes_per_lookup": lookup_collectives.total,
        "collectives_per_lookup": lookup_collectives.by_op,
        "sharded_matches": matches,
        "max_abs_diff": max_abs_diff,
        "placements": {p.weight.name: [a for a in p.axes] for p in placements},
        "per_device_state_bytes": None, "per_device_train_bytes": None, "collective_bytes_per_step": None,
        "train_max_abs_diff": None, "device_peak_bytes": None,
    }
    if trainable:
        result.update(_train_step(spec, sharded, placements, jax_mesh, ids, trainable, frozen,
                                  reference if spec.get("compare_train") else None))
    result["device_peak_bytes"] = measure.device_peak_bytes(jax.devices()[:devices])
    result["seconds"] = round(time.perf_counter() - started, 3)
    return result


def _train_step(spec, layer, placements, jax_mesh, ids, trainable, frozen, reference) -> dict[str, Any]:
    """One compiled step of the case's optimizer; per-device bytes of weights and state after it.

    With a `reference` (the spec's `compare_train`), the same step runs on the
    unsharded layer (one device) from the same weights: `train_max_abs_diff`
    is the largest difference of the updated weights (not exact in general: a
    sharded gradient may sum rows in another order); else it is None.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    optimizer = optimizers.get(spec["optimizer"])
    learning_rate = float(spec["learning_rate"])
    by_path = {p.weight.path: p for p in placements}
    trainable_placements = [by_path[str(v.path)] for v in layer.trainable_variables]
    weight_shardings = [_mesh_sharding(jax_mesh, p.axes) for p in trainable_placements]
    state_shardings = []
    state = []
    for p, weight, sharding in zip(trainable_placements, trainable, weight_shardings):
        slots = optimizer.slots(p.weight.table)
        state_shardings.append([sharding if slot.kind == "value" else _mesh_sharding(jax_mesh, p.axes[:1])
                                for slot in slots])
        state.append([jax.device_put(array, s) for array, s in
                      zip(optimizer.init(weight, p.weight.table), state_shardings[-1])])
    tables = [p.weight.table for p in trainable_placements]
    rng = np.random.default_rng(int(spec["seed"]))
    target = jax.device_put(rng.standard_normal((ids.shape[0], int(spec["dim"]))).astype("float32"),
                            _mesh_sharding(jax_mesh, ()))

    def step_of(model):
        def loss(t, f, x, y):
            return jnp.mean(jnp.square(model.stateless_call(t, f, x)[0].astype("float32") - y))

        def step(t, s, f, x, y):
            gradients = jax.grad(loss)(t, f, x, y)
            updated = [optimizer.apply(w, g, st, table, learning_rate)
                       for w, g, st, table in zip(t, gradients, s, tables)]
            return [u[0] for u in updated], [u[1] for u in updated]

        return step

    compiled = jax.jit(step_of(layer), out_shardings=(weight_shardings, state_shardings)).lower(
        trainable, state, frozen, ids, target).compile()
    expected = None
    if reference is not None:  # the unsharded step first: the sharded one may reuse its input buffers
        local = jax.devices()[0]
        expected, _ = jax.jit(step_of(reference))(
            [jax.device_put(np.asarray(v.value), local) for v in reference.trainable_variables],
            [[jax.device_put(np.asarray(a), local) for a in arrays] for arrays in state],
            [jax.device_put(np.asarray(v.value), local) for v in reference.non_trainable_variables],
            jax.device_put(np.asarray(ids), local), jax.device_put(np.asarray(target), local))
    new_weights, new_state = compiled(trainable, state, frozen, ids, target)
    jax.block_until_ready(new_weights)
    for array, sharding in zip(new_weights, weight_shardings):
        if not array.sharding.is_equivalent_to(sharding, array.ndim):
            raise RuntimeError(f"the train step returned a weight sharded as {array.sharding}, not {sharding}")
    flat_state = [array for arrays in new_state for array in arrays]
    weights_held = measure.per_device_bytes(new_weights + frozen)
    state_held = measure.per_device_bytes(flat_state)
    both = {d: weights_held.get(d, 0) + state_held.get(d, 0) for d in weights_held}
    train_diff = None if expected is None else max(
        float(np.max(np.abs(np.asarray(a, "float64") - np.asarray(b, "float64")))) if a.size else 0.0
        for a, b in zip(new_weights, expected))
    return {
        "train_max_abs_diff": train_diff,
        "per_device_state_bytes": max(state_held.values()) if state_held else 0,
        "per_device_train_bytes": max(both.values()),
        "collective_bytes_per_step": measure.collective_bytes(compiled.as_text()).total,
    }
