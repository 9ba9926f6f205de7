"""membed.optim: each optimizer against a NumPy reference, row sparsity, saving, the registry; FusedAdam."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import membed.optim
from membed import strategies
from membed.model import rating_model
from membed.optim import NAMES, FusedAdam, get, state_bytes_per_row

ROW_SPARSE = [name for name in NAMES if membed.optim.entry(name).row_sparse]
VOCAB, DIM, OUT = 12, 4, 2
LEARNING_RATE = 0.05
# Three steps, each with a repeated id; rows 2, 4, 6, 8, 10 and 11 are never looked up.
BATCHES = [np.array([1, 3, 3, 5, 1, 3]), np.array([0, 3, 7, 7]), np.array([5, 5, 5, 9, 1])]


# ----- the NumPy reference ----------------------------------------------------
def reference_gradients(table, kernel, ids, target):
    """Gradients of sum((table[ids] @ kernel - target)**2): the table's (summed per row), the
    sum of each occurrence's squared slice (what Keras's Adam squares), and the kernel's."""
    vectors = table[ids]
    residual = 2.0 * (vectors @ kernel - target)
    per_occurrence = residual @ kernel.T
    table_grad, occurrence_squares = np.zeros_like(table), np.zeros_like(table)
    np.add.at(table_grad, ids, per_occurrence)
    np.add.at(occurrence_squares, ids, per_occurrence**2)
    return table_grad, occurrence_squares, vectors.T @ residual


def reference_update(name, weight, grad, grad_squared, rows, state, step):
    """One step of rule `name` on `rows` of the float64 array `weight`, in place (state in `state`)."""
    g = grad[rows]
    if name == "sgd":
        weight[rows] -= LEARNING_RATE * g
    elif name == "adagrad":
        acc = state.setdefault("acc", np.full(weight.shape, 0.1))
        acc[rows] += g**2
        weight[rows] -= LEARNING_RATE * g / (np.sqrt(acc[rows]) + 1e-7)
    elif name == "rowwise_adagrad":
        acc = state.setdefault("acc", np.zeros(weight.shape[0]))
        acc[rows] += np.mean(g**2, axis=tuple(range(1, g.ndim)))  # a rank-1 variable: one value per row
        weight[rows] -= LEARNING_RATE * g / (np.sqrt(acc[rows]).reshape((-1,) + (1,) * (g.ndim - 1)) + 1e-8)
    else:  # adam, lazy_adam
        m = state.setdefault("m", np.zeros(weight.shape))
        v = state.setdefault("v", np.zeros(weight.shape))
        m[rows] = 0.9 * m[rows] + 0.1 * g
        v[rows] = 0.999 * v[rows] + 0.001 * grad_squared[rows]
        alpha = LEARNING_RATE * np.sqrt(1 - 0.999**step) / (1 - 0.9**step)
        weight[rows] -= alpha * m[rows] / (np.sqrt(v[rows]) + 1e-7)


def initial_weights():
    rng = np.random.default_rng(0)
    return rng.normal(size=(VOCAB, DIM)).astype("float32"), rng.normal(size=(DIM, OUT)).astype("float32")


def targets(step):
    return np.random.default_rng(100 + step).normal(size=(len(BATCHES[step]), OUT)).astype("float32")


def gather_model(name):
    """A table looked up with tf.gather (sparse gradient) times a dense kernel, and a compiled step."""
    table_init, kernel_init = initial_weights()
    table, kernel = keras.Variable(table_init, name="table"), keras.Variable(kernel_init, name="kernel")
    optimizer = get(name, learning_rate=LEARNING_RATE)
    optimizer.build([table, kernel])

    @tf.function
    def step(ids, target):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(tf.gather(table.value, ids) @ kernel.value - target))
        grads = tape.gradient(loss, [table.value, kernel.value])
        assert isinstance(grads[0], tf.IndexedSlices)  # checked at trace time
        optimizer.apply_gradients(zip(grads, [table, kernel]))

    return table, kernel, optimizer, step


# ----- the rules --------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_optimizer_matches_numpy_reference_over_three_steps_with_repeated_ids(name):
    table, kernel, _, step = gather_model(name)
    ref_table, ref_kernel = (w.astype(np.float64) for w in initial_weights())
    table_state, kernel_state = {}, {}
    for t, ids in enumerate(BATCHES):
        target = targets(t)
        table_grad, occurrence_squares, kernel_grad = reference_gradients(ref_table, ref_kernel, ids, target)
        # Row-sparse rules touch the looked-up rows; Keras's Adam rewrites every row, and
        # squares each occurrence's slice before summing them (its IndexedSlices arithmetic).
        rows = np.unique(ids) if membed.optim.entry(name).row_sparse else np.arange(VOCAB)
        squares = occurrence_squares if name == "adam" else table_grad**2
        reference_update(name, ref_table, table_grad, squares, rows, table_state, t + 1)
        reference_update(name, ref_kernel, kernel_grad, kernel_grad**2, np.arange(DIM), kernel_state, t + 1)
        step(tf.constant(ids), tf.constant(target))
        np.testing.assert_allclose(table.numpy(), ref_table, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(kernel.numpy(), ref_kernel, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ROW_SPARSE)
def test_untouched_rows_are_bit_identical_after_each_step(name):
    table, _, optimizer, step = gather_model(name)
    for t, ids in enumerate(BATCHES):
        before = table.numpy()
        slots_before = [slot.numpy() for slot in optimizer.slot_variables(table)]
        step(tf.constant(ids), tf.constant(targets(t)))
        untouched = np.setdiff1d(np.arange(VOCAB), ids)
        np.testing.assert_array_equal(table.numpy()[untouched], before[untouched])
        assert not np.array_equal(table.numpy()[ids], before[ids])
        for slot, slot_before in zip(optimizer.slot_variables(table), slots_before):
            np.testing.assert_array_equal(slot.numpy()[untouched], slot_before[untouched])


@pytest.mark.parametrize("name", ROW_SPARSE)
def test_repeated_ids_are_summed_before_the_update(name):
    rng = np.random.default_rng(1)
    first, second = rng.normal(size=(2, DIM)).astype("float32")
    results = []
    for indices, values in (([3, 6, 3], [first, second, second]), ([3, 6], [first + second, second])):
        table = keras.Variable(initial_weights()[0])
        optimizer = get(name, learning_rate=LEARNING_RATE)
        gradient = tf.IndexedSlices(tf.constant(np.stack(values)), tf.constant(indices), tf.constant([VOCAB, DIM]))
        optimizer.apply_gradients([(gradient, table)])
        results.append(table.numpy())
    np.testing.assert_allclose(results[0], results[1], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", ROW_SPARSE)
def test_sparse_step_makes_no_table_sized_tensor(name):
    rows = 10007  # a size no other tensor of the step has
    table = keras.Variable(np.zeros((rows, DIM), "float32"))
    optimizer = get(name)

    @tf.function
    def step(ids):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(tf.gather(table.value, ids) - 1.0))
        optimizer.apply_gradients([(tape.gradient(loss, table.value), table)])

    ids = tf.constant([1, 3, 3])
    step(ids)
    graph = step.get_concrete_function(ids).graph
    table_sized = {op.type for op in graph.get_operations() for out in op.outputs
                   if out.shape.rank and out.shape[0] == rows}
    assert not table_sized, f"{name} makes tensors of the table's size in: {sorted(table_sized)}"


def test_the_table_sized_tensor_check_catches_keras_adam():
    table = keras.Variable(np.zeros((10007, DIM), "float32"))
    optimizer = get("adam")

    @tf.function
    def step(ids):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.gather(table.value, ids))
        optimizer.apply_gradients([(tape.gradient(loss, table.value), table)])

    ids = tf.constant([1])
    step(ids)
    ops = step.get_concrete_function(ids).graph.get_operations()
    assert any(out.shape.rank and out.shape[0] == 10007 for op in ops for out in op.outputs)


@pytest.mark.parametrize("name", ROW_SPARSE)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_16_bit_tables_follow_the_float32_rule(name, dtype):
    # Row arithmetic runs in float32: in bfloat16 Adam's beta_2 = 0.999 would round to 1 and never step.
    results = {}
    for storage in ("float32", dtype):
        table = keras.Variable(initial_weights()[0], dtype=storage)
        kernel = keras.Variable(initial_weights()[1], dtype=storage)
        optimizer = get(name, learning_rate=LEARNING_RATE)
        for t, ids in enumerate(BATCHES):
            with tf.GradientTape() as tape:
                vectors = tf.cast(tf.gather(table.value, ids), "float32") @ tf.cast(kernel.value, "float32")
                loss = tf.reduce_sum(tf.square(vectors - targets(t)))
            optimizer.apply_gradients(zip(tape.gradient(loss, [table.value, kernel.value]), [table, kernel]))
        results[storage] = (tf.cast(table.value, "float32").numpy(), tf.cast(kernel.value, "float32").numpy())
    start = initial_weights()
    for got, expected, before in zip(results[dtype], results["float32"], start):
        moved = np.abs(expected - before) > 1e-3
        assert moved.any()
        np.testing.assert_allclose(got[moved], expected[moved], rtol=0.05, atol=0.02)


# ----- Keras integration: compile, fit, save --------------------------------------
def tiny_model(seed=0):
    keras.utils.set_random_seed(seed)
    return rating_model(strategies.build("full", 50, 8), strategies.build("full", 40, 8))


def ratings(seed, n=64):
    rng = np.random.default_rng(seed)
    # Users 0..29 and items 0..19 only: the other rows are never touched.
    inputs = {"user": rng.integers(0, 30, n).astype("int32"), "item": rng.integers(0, 20, n).astype("int32")}
    return inputs, rng.uniform(1, 5, n).astype("float32")


def test_compile_and_fit_with_rowwise_adagrad_trains_touched_rows_only():
    model = tiny_model()
    model.compile(optimizer=get("rowwise_adagrad", learning_rate=0.1), loss="mse")
    inputs, labels = ratings(0, n=256)
    tables = [w for w in model.trainable_weights if tuple(w.shape) == (50, 8)]
    before = tables[0].numpy()
    history = model.fit(inputs, labels, batch_size=32, epochs=3, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    np.testing.assert_array_equal(tables[0].numpy()[30:], before[30:])
    assert not np.array_equal(tables[0].numpy()[:30], before[:30])
    accumulators = [v for v in model.optimizer.variables if v.name.endswith("row_accumulator")]
    assert sorted(tuple(v.shape) for v in accumulators) == [(40,), (50,)]


@pytest.mark.parametrize("name", NAMES)
def test_slots_are_saved_and_restored_and_training_continues_identically(name, tmp_path):
    model = tiny_model()
    model.compile(optimizer=get(name, learning_rate=0.05), loss="mse")
    inputs, labels = ratings(0)
    model.fit(inputs, labels, batch_size=16, epochs=1, verbose=0)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert type(loaded.optimizer) is type(model.optimizer)
    # iteration, learning_rate, then the slots (none for sgd)
    assert len(loaded.optimizer.variables) == len(model.optimizer.variables) > (2 if name != "sgd" else 1)
    for saved, restored in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(restored.numpy(), saved.numpy())
    more_inputs, more_labels = ratings(1)
    for m in (model, loaded):
        m.fit(more_inputs, more_labels, batch_size=16, epochs=1, shuffle=False, verbose=0)
    for original, restored in zip(model.weights, loaded.weights):
        np.testing.assert_allclose(restored.numpy(), original.numpy(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", ROW_SPARSE)
def test_dense_layer_gets_the_dense_rule(name):
    keras.utils.set_random_seed(0)
    dense = keras.layers.Dense(3)
    x = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
    dense.build(x.shape)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(dense(x)))
    grads = tape.gradient(loss, dense.trainable_variables)
    expected = []
    for weight, grad in zip(dense.trainable_variables, grads):
        value, grad = weight.numpy().astype(np.float64), grad.numpy().astype(np.float64)
        reference_update(name, value, grad, grad**2, np.arange(value.shape[0]), {}, 1)
        expected.append(value)
    get(name, learning_rate=LEARNING_RATE).apply_gradients(zip(grads, dense.trainable_variables))
    for weight, value in zip(dense.trainable_variables, expected):
        np.testing.assert_allclose(weight.numpy(), value, rtol=1e-6, atol=1e-6)


# ----- errors and the registry ------------------------------------------------
@pytest.mark.parametrize("name", ROW_SPARSE)
def test_non_trainable_int8_table_is_refused(name):
    layer = strategies.build("quantized", 100, 8, storage="int8")
    int8_table = next(w for w in layer.weights if w.dtype == "int8")
    with pytest.raises(ValueError, match=r"cannot update .*\(int8\): it is not trainable"):
        get(name).build(layer.weights)
    gradient = tf.IndexedSlices(tf.ones((1, 8), "int8"), tf.constant([0]), tf.constant([100, 8]))
    with pytest.raises(ValueError, match="not trainable"):
        get(name).apply_gradients([(gradient, int8_table)])


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"Unknown optimizer 'adamw'\. Use one of: adam, lazy_adam, adagrad, "
                                         r"rowwise_adagrad, sgd\."):
        get("adamw")


@pytest.mark.parametrize("name, options, message", [
    ("rowwise_adagrad", {"epsilon": -1.0}, "must be >= 0; got 0.0 and -1.0"),
    ("adagrad", {"initial_accumulator_value": -0.1}, "must be >= 0; got -0.1"),
    ("lazy_adam", {"beta_1": 1.0}, r"`beta_1` must be in \[0, 1\); got 1.0"),
])
def test_bad_hyperparameters_are_refused(name, options, message):
    with pytest.raises(ValueError, match=message):
        get(name, **options)


def test_weight_decay_is_refused():
    with pytest.raises(ValueError, match="weight_decay"):
        get("lazy_adam", weight_decay=0.01)


def test_state_bytes_per_row_formulas():
    assert {name: state_bytes_per_row(name, 64) for name in NAMES} == {
        "adam": 512, "lazy_adam": 512, "adagrad": 256, "rowwise_adagrad": 4, "sgd": 0}
    assert state_bytes_per_row("adagrad", 64, "bfloat16") == 128
    assert state_bytes_per_row("rowwise_adagrad", 64, "float16") == 4
    with pytest.raises(ValueError, match="invalid `dim`"):
        state_bytes_per_row("sgd", 0)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_state_bytes_per_row_matches_the_built_slots(name, dtype):
    table = keras.Variable(np.zeros((30, 16)), dtype=dtype)
    optimizer = get(name)
    optimizer.build([table])
    slot_bytes = sum(int(np.prod(v.shape)) * membed.optim.BYTES_PER_FLOAT[v.dtype]
                     for v in optimizer.variables[2:])  # after `iteration` and `learning_rate`
    assert slot_bytes == 30 * state_bytes_per_row(name, 16, dtype)


@pytest.mark.parametrize("name", ROW_SPARSE)
def test_optimizer_round_trips_its_config(name):
    optimizer = get(name, learning_rate=0.3)
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert type(restored) is type(optimizer) and restored.get_config() == optimizer.get_config()


# ----- FusedAdam: Keras's Adam in one op per variable --------------------------
def run(optimizer, densify: bool, steps: int = 15):
    rng = np.random.default_rng(0)
    table = keras.Variable(rng.normal(size=(40, 4)).astype("float32"))
    scale = keras.Variable(np.ones((4,), "float32"))

    @tf.function
    def step(ids):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(tf.gather(table.value, ids) * scale.value - 1.0))
        grads = tape.gradient(loss, [table.value, scale.value])
        if densify:
            grads = [tf.convert_to_tensor(g) for g in grads]
        optimizer.apply_gradients(zip(grads, [table, scale]))

    for s in range(steps):
        step(tf.constant(np.random.default_rng(s).integers(0, 40, 8)))  # repeats included
    return table.numpy(), scale.numpy()


@pytest.mark.parametrize("sparse", [False, True])
def test_fused_adam_matches_keras_adam_on_dense_gradients(sparse):
    expected = run(keras.optimizers.Adam(learning_rate=1e-2), densify=True)
    # FusedAdam densifies sparse gradients itself: every row's moments decay each step.
    got = run(FusedAdam(learning_rate=1e-2), densify=not sparse)
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)


def test_fused_adam_round_trips_its_config():
    optimizer = FusedAdam(learning_rate=3e-3, beta_1=0.8)
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(restored, FusedAdam) and restored.get_config() == optimizer.get_config()
