"""The optimizer axis in bench/: the step's optimizer, its slots' bytes, the memory case's train phase, the fit's."""

import numpy as np
import pytest

from bench import steps
from bench.test_accuracy import fit_state_bytes
from membed import data, optim, plan, presets, strategies


def test_make_optimizer_builds_membeds_by_name_and_says_which_names_exist():
    assert type(steps.make_optimizer()).__name__ == "Adam"  # Keras's: the suites' step before the axis
    assert type(steps.make_optimizer("rowwise_adagrad", 0.1)).__name__ == "RowwiseAdagrad"
    assert float(steps.make_optimizer("sgd", 0.5).learning_rate) == 0.5
    with pytest.raises(ValueError, match="Unknown optimizer 'adamw'. Use one of: adam, lazy_adam"):
        steps.make_optimizer("adamw")


@pytest.mark.parametrize("name", optim.NAMES)
def test_optimizer_state_bytes_are_the_slots_of_the_built_optimizer(name):
    layer = strategies.build("full", 1000, 16)
    optimizer = steps.make_optimizer(name)
    assert steps.optimizer_state_bytes(optimizer) is None  # not built: nothing to read
    step = steps.compiled_train_step(layer, optimizer=optimizer)
    step(np.arange(32), steps.make_target(32, 16))
    # The slots, not the step counter or the step size; what membed.optim says a row of a table keeps.
    assert steps.optimizer_state_bytes(optimizer) == 1000 * optim.state_bytes_per_row(name, 16)
    assert steps.optimizer_state_bytes(optimizer) == (
        plan.estimate("full", 1000, 16, optimizer=name).optimizer_state.total)


@pytest.mark.parametrize("name, learning_rate", [("rowwise_adagrad", 0.5), ("sgd", 20.0), ("lazy_adam", 0.05)])
def test_a_step_of_another_optimizer_trains_and_leaves_untouched_rows_alone(name, learning_rate):
    layer = strategies.build("full", 100, 8)
    step = steps.compiled_train_step(layer, learning_rate=learning_rate, optimizer=name)
    untouched = np.asarray(layer.weights[0])[50:].copy()
    target = steps.make_target(16, 8, seed=1)
    losses = [float(step(np.arange(16), target)) for _ in range(20)]
    assert losses[-1] < 0.7 * losses[0]
    np.testing.assert_array_equal(np.asarray(layer.weights[0])[50:], untouched)


def test_the_memory_spec_takes_an_optimizer_and_refuses_an_unknown_one():
    spec = steps.check_spec({"strategy": "full", "vocab_size": 10, "dim": 4})
    assert spec["optimizer"] == "adam" and spec["learning_rate"] == steps.DEFAULT_LEARNING_RATE
    assert steps.check_spec({"strategy": "full", "vocab_size": 10, "dim": 4, "optimizer": "sgd"})["optimizer"] == "sgd"
    with pytest.raises(ValueError, match="measure spec: invalid `optimizer`: Unknown optimizer 'adamw'. Use one of"):
        steps.check_spec({"strategy": "full", "vocab_size": 10, "dim": 4, "optimizer": "adamw"})


def test_a_memory_case_trains_with_its_optimizer():
    spec = {"strategy": "full", "vocab_size": 20_000, "dim": 64, "batch_size": 256}
    adam = steps.measure_memory(spec, timeout_s=300)
    rowwise = steps.measure_memory({**spec, "optimizer": "rowwise_adagrad"}, timeout_s=300)
    assert adam["status"] == rowwise["status"] == "ok", (adam["reason"], rowwise["reason"])
    assert adam["optimizer_state_bytes"] == 2 * 4 * 20_000 * 64 and rowwise["optimizer_state_bytes"] == 4 * 20_000
    # Keras's Adam rewrites both moments of the whole table; row-wise AdaGrad touches the batch's rows.
    table = 4 * 20_000 * 64
    assert adam["peak_alloc_bytes_train"] > 3 * table > rowwise["peak_alloc_bytes_train"] > table
    # A layer without trainable weights has no train phase and no optimizer state.
    int8 = steps.measure_memory({"strategy": "quantized", "vocab_size": 1000, "dim": 8, "batch_size": 64},
                                timeout_s=300)
    assert int8["status"] == "ok" and int8["optimizer_state_bytes"] == 0 and int8["peak_alloc_bytes_train"] is None


def test_the_fit_s_optimizer_state_is_read_from_its_slots_or_from_the_formula_after_a_conversion():
    ratings = data.planted_ratings(300, 200, 3000, rank=4, noise_sigma=0.1, seed=0)
    train_idx, val_idx = data.random_split(len(ratings), 0.85, seed=0)
    model, _ = presets.fit_pair(presets.BASELINE, ratings, train_idx, val_idx, dim=16, epochs=1, batch_size=64,
                                learning_rate=0.1, optimizer="rowwise_adagrad")
    assert type(model.optimizer).__name__ == "RowwiseAdagrad"
    assert fit_state_bytes(model, presets.BASELINE, ratings, 16, "rowwise_adagrad") == 4 * (300 + 200)
    # int8 tables are trained as full, then converted: the converted model's optimizer never ran.
    int8 = next(p for p in presets.accuracy_pairs("quantized", 300, 200, 16) if p.preset == "int8")
    converted, _ = presets.fit_pair(int8, ratings, train_idx, val_idx, dim=16, epochs=1, batch_size=64,
                                    optimizer="sgd", learning_rate=1.0)
    assert steps.optimizer_state_bytes(converted.optimizer) is None
    assert fit_state_bytes(converted, int8, ratings, 16, "adam") == 2 * 4 * (300 + 200) * 16
    assert fit_state_bytes(converted, int8, ratings, 16, "sgd") == 0


def test_train_model_takes_an_optimizer_by_name_and_adam_stays_the_examples():
    from membed.model import pair_model
    from membed.optim import FusedAdam
    from membed.train import compile_for_ratings, set_seed, train_model

    ratings = data.planted_ratings(50, 40, 600, rank=2, noise_sigma=0.1, seed=1)
    train_idx, val_idx = data.random_split(len(ratings), 0.85, seed=1)
    model = pair_model(ratings, "full", "full", dim=4)
    compile_for_ratings(model)
    assert type(model.optimizer) is FusedAdam
    compile_for_ratings(model, optimizer="adam", fused_adam=False)
    assert type(model.optimizer).__name__ == "Adam"
    set_seed(0)
    result = train_model(model, ratings, train_idx, val_idx, epochs=1, batch_size=32, learning_rate=0.1,
                         optimizer="adagrad")
    assert type(model.optimizer).__name__ == "Adagrad" and np.isfinite(result.val_mse).all()
    with pytest.raises(ValueError, match="Unknown optimizer 'adamw'. Use one of: adam"):
        train_model(model, ratings, train_idx, val_idx, epochs=1, optimizer="adamw")
