"""The DLRM-style CTR model: interactions, presets per field, the seeded fit with early stopping, the CLI."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from membed import ctr, strategies
from membed.__main__ import main
from membed.ctr import DotInteraction, build_ctr_model, compile_for_ctr, ctr_presets, fit_ctr
from membed.data import synthetic_ctr, train_val_test_split
from membed.train import TrainingDiverged

# Two small fields that every preset keeps full and two that strategies compress.
CARDINALITIES = (20, 300, 5_000, 50_000)
LARGE_FIELDS = (2, 3)


@pytest.fixture(scope="module")
def small():
    data = synthetic_ctr(12_000, cardinalities=CARDINALITIES, seed=3)
    return data, train_val_test_split(len(data), seed=3)


def test_dot_interaction_is_every_pair_of_field_vectors_once():
    vectors = np.random.default_rng(0).normal(size=(5, 4, 3)).astype("float32")
    out = keras.ops.convert_to_numpy(DotInteraction()(vectors))
    pairs = [(f, g) for f in range(4) for g in range(f + 1, 4)]
    assert out.shape == (5, len(pairs))
    for column, (f, g) in enumerate(pairs):
        np.testing.assert_allclose(out[:, column], np.sum(vectors[:, f] * vectors[:, g], axis=1), rtol=1e-5)
    with pytest.raises(ValueError, match=r"Use \[batch, fields >= 2, dim\]"):
        DotInteraction()(np.ones((2, 1, 3), "float32"))


def test_model_has_one_layer_per_field_and_predicts_probabilities(small):
    data, _ = small
    model = build_ctr_model(data, ctr_presets("full", data)[0], dim=8)
    for field, cardinality in enumerate(CARDINALITIES):
        layer = model.get_layer(f"field_{field}")
        assert (layer.strategy_name, layer.vocab_size, layer.dim) == ("full", cardinality, 8)
    embedding_params = sum(c * 8 for c in CARDINALITIES)
    # Top MLP on 4 * 8 field values + 6 dots: (38 + 1) * 64 + (64 + 1) * 32 + 33.
    assert model.count_params() == embedding_params + 39 * 64 + 65 * 32 + 33
    probabilities = np.asarray(model(data.features[:7]))
    assert probabilities.shape == (7,) and np.all((probabilities > 0) & (probabilities < 1))


def test_presets_compress_large_fields_and_keep_small_ones_full(small):
    data, _ = small
    assert [(p.preset, p.field_strategies) for p in ctr_presets("full", data)] == [("baseline", ("full",) * 4)]
    assert [p.preset for p in ctr_presets("example_qr", data)] == ["example"]
    assert [p.preset for p in ctr_presets("quantized", data)] == ["int8", "float16", "bfloat16"]
    hashed = ctr_presets("hash", data, dim=16)
    assert [p.preset for p in hashed] == ["5x", "20x", "100x"]
    for preset in hashed:
        assert preset.error is None and preset.strategy == "hash"
        assert preset.field_strategies == ("full", "full", "hash", "hash")
        for field in LARGE_FIELDS:
            expected = strategies.get("hash").accuracy_presets(CARDINALITIES[field], 16, data.counts[field])
            assert preset.field_options[field] == expected[preset.preset]
    with pytest.raises(ValueError, match="Unknown strategy 'nope'"):
        ctr_presets("nope", data)


@pytest.mark.parametrize("strategy", strategies.names())
def test_every_strategy_builds_and_trains_a_step_or_says_why(small, strategy):
    data, (train_idx, _, _) = small
    presets = ctr_presets(strategy, data, dim=8)
    preset = next((p for p in presets if p.preset == "20x"), presets[0])
    if preset.error:
        assert preset.error.startswith("field_") and strategy in preset.error
        with pytest.raises(ValueError, match="cannot be built"):
            build_ctr_model(data, preset, dim=8)
        return
    model = build_ctr_model(data, preset, dim=8, trainable=True)
    compile_for_ctr(model, learning_rate=1e-2)
    batch = train_idx[:256]
    before = [w.copy() for w in model.get_weights()]
    loss = model.train_on_batch(data.features[batch], data.labels[batch])
    loss = loss[0] if isinstance(loss, list) else loss
    assert np.isfinite(loss)
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_full_baseline_learns_beyond_the_constant_predictor(small):
    data, (train_idx, val_idx, test_idx) = small
    result = fit_ctr(data, ctr_presets("full", data)[0], train_idx, val_idx, test_idx, dim=8, max_epochs=2,
                     learning_rate=1e-2, seed=1)
    assert result.test_logloss < data.constant_logloss(test_idx) - 0.01
    assert result.test_auc > 0.6
    assert result.planted_logloss == data.planted_logloss(test_idx)
    assert result.planted_auc == data.planted_auc(test_idx)
    assert result.excess_logloss == pytest.approx(result.test_logloss - result.planted_logloss)
    assert result.excess_logloss > 0  # no model beats the true probabilities by much on 1,200 rows
    assert result.epochs_run == len(result.val_logloss) == len(result.val_auc) == len(result.train_logloss)
    assert result.params == build_ctr_model(data, ctr_presets("full", data)[0], dim=8).count_params()


def test_same_seed_same_numbers_and_the_best_epoch_is_kept(small):
    data, (train_idx, val_idx, test_idx) = small
    preset = ctr_presets("hash", data, dim=8)[1]
    # At this step size the model over-fits after its first epochs: early stopping ends the fit.
    options = dict(dim=8, max_epochs=5, patience=1, learning_rate=2e-2, seed=7)
    first = fit_ctr(data, preset, train_idx, val_idx, test_idx, **options)
    again = fit_ctr(data, preset, train_idx, val_idx, test_idx, **options)
    assert {k: v for k, v in first.as_dict().items() if k != "fit_seconds"} == \
        {k: v for k, v in again.as_dict().items() if k != "fit_seconds"}
    assert first.best_epoch == int(np.argmin(first.val_logloss)) + 1
    assert first.best_epoch < first.epochs_run <= 5
    # The test metrics are the best epoch's weights': a fit that stops there scores the same.
    stopped = fit_ctr(data, preset, train_idx, val_idx, test_idx, **{**options, "max_epochs": first.best_epoch})
    assert stopped.test_logloss == first.test_logloss and stopped.test_auc == first.test_auc
    other = fit_ctr(data, preset, train_idx, val_idx, test_idx, **{**options, "seed": 8, "max_epochs": 1})
    assert other.val_logloss[0] != first.val_logloss[0]


def test_quantized_trains_as_full_then_converts_its_large_fields(small):
    data, (train_idx, val_idx, test_idx) = small
    int8 = next(p for p in ctr_presets("quantized", data, dim=8) if p.preset == "int8")
    result = fit_ctr(data, int8, train_idx, val_idx, test_idx, dim=8, max_epochs=1, learning_rate=1e-2)
    baseline = build_ctr_model(data, ctr_presets("full", data)[0], dim=8).count_params()
    # int8 keeps every value and adds one float32 scale per row of each converted field.
    assert result.params == baseline + sum(CARDINALITIES[f] for f in LARGE_FIELDS)
    assert np.isfinite(result.test_logloss) and result.test_auc > 0.5


def test_a_diverging_fit_raises_training_diverged(small):
    data, (train_idx, val_idx, test_idx) = small
    with pytest.raises(TrainingDiverged, match=r"training diverged: loss is nan in epoch 1 \(full/baseline, sgd"):
        fit_ctr(data, ctr_presets("full", data)[0], train_idx, val_idx, test_idx, dim=8, max_epochs=2,
                optimizer="sgd", learning_rate=1e30)


def test_fit_rejects_bad_arguments(small):
    data, (train_idx, val_idx, test_idx) = small
    baseline = ctr_presets("full", data)[0]
    for option, value in (("max_epochs", 0), ("patience", 0), ("batch_size", 0), ("max_epochs", 1.5)):
        with pytest.raises(ValueError, match=f"fit_ctr: invalid `{option}`: {value}. It must be an integer >= 1."):
            fit_ctr(data, baseline, train_idx, val_idx, test_idx, **{option: value})
    with pytest.raises(ValueError, match="`test_idx` is empty"):
        fit_ctr(data, baseline, train_idx, val_idx, np.array([], int))
    with pytest.raises(ValueError, match="Unknown optimizer 'nope'. Use one of: adam, lazy_adam"):
        fit_ctr(data, baseline, train_idx, val_idx, test_idx, optimizer="nope")
    unreachable = ctr.CtrPreset("20x", "mixed_dim", error="field_2 (5000 ids): mixed_dim: cannot reach 20x")
    with pytest.raises(ValueError, match="cannot be built: field_2"):
        fit_ctr(data, unreachable, train_idx, val_idx, test_idx)


def test_cli_trains_a_ctr_preset(capsys):
    argv = ["train", "--dataset", "synthetic-ctr", "--strategy", "hash", "--preset", "20x", "--num-rows", "4000",
            "--epochs", "1", "--seed", "3", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["dataset"], result["strategy"], result["preset"], result["dim"]) == ("synthetic-ctr", "hash",
                                                                                        "20x", 16)
    assert result["epochs_run"] == 1 and 0 < result["test_auc"] < 1
    assert result["excess_logloss"] == pytest.approx(result["test_logloss"] - result["planted_logloss"])
    # hash 20x on the five fields of more than 1,000 ids: far fewer parameters than full tables.
    assert result["params"] < sum(result["cardinalities"]) * 16 / 10


def test_cli_table_and_dry_run(capsys):
    argv = ["train", "--dataset", "synthetic-ctr", "--strategy", "full", "--num-rows", "100", "--dry-run", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["preset"] == "baseline" and result["params"] > sum(result["cardinalities"]) * 16
    argv = ["train", "--dataset", "synthetic-ctr", "--strategy", "qr", "--preset", "100x", "--num-rows", "2000",
            "--epochs", "1"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "excess" in out and "AUC" in out and "qr 100x" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--dataset", "synthetic-ctr"], "--dataset synthetic-ctr needs --strategy"),
        (["--dataset", "synthetic-ctr", "--strategy", "hash", "--preset", "7x"],
         "Unknown --preset '7x' for hash. Use one of: 5x, 20x, 100x."),
        (["--dataset", "synthetic-ctr", "--strategy", "nope"], "Unknown strategy 'nope'"),
        (["--dataset", "synthetic-ctr", "--strategy", "hash", "--num-rows", "3"], "invalid --num-rows: 3"),
        (["--dataset", "synthetic", "--strategy", "hash"], "--dataset synthetic needs --user and --item"),
    ],
)
def test_cli_ctr_usage_errors(capsys, argv, message):
    assert main(["train", *argv, "--num-rows", "100"] if "--num-rows" not in argv else ["train", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
