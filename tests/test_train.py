import numpy as np
import pytest

from membed import data
from membed.model import pair_model
from membed.train import TrainingDiverged, make_dataset, set_seed, train_model


def test_one_epoch_on_ml100k_lowers_the_loss(movielens_dir):
    ratings = data.load_movielens("ml-100k", data_dir=movielens_dir, download=False)
    train_idx, val_idx = data.random_split(len(ratings), 0.85, seed=42)
    set_seed(42)
    model = pair_model(ratings, "example_qr", "example_md")
    val = make_dataset(ratings, val_idx, 1024, shuffle=False)
    model.compile(loss="mse")
    before = model.evaluate(val, verbose=0)
    result = train_model(model, ratings, train_idx, val_idx, epochs=1, seed=42)
    assert result.params == 52_944
    assert len(result.val_mse) == 1
    assert result.val_mse[0] < before - 0.5  # from ~3.6 (predicting 2.5) to ~1
    assert result.val_rmse[0] == pytest.approx(np.sqrt(result.val_mse[0]), rel=1e-3)


def test_training_is_reproducible_for_a_seed():
    ratings = data.planted_ratings(200, 100, 4000, rank=4, noise_sigma=0.1, seed=3)
    train_idx, val_idx = data.random_split(len(ratings), 0.85, seed=3)
    runs = []
    for _ in range(2):
        set_seed(7)
        model = pair_model(ratings, "qr", "full", dim=8)
        runs.append(train_model(model, ratings, train_idx, val_idx, epochs=2, batch_size=256, seed=7).val_mse)
    assert runs[0] == runs[1]


def test_bad_recipe_is_rejected():
    ratings = data.planted_ratings(20, 10, 100, seed=0)
    model = pair_model(ratings, "full", "full", dim=4)
    with pytest.raises(ValueError, match="Invalid `epochs`: 0"):
        train_model(model, ratings, np.arange(80), np.arange(80, 100), epochs=0)


def test_early_stopping_keeps_the_best_epoch_and_tests_it():
    ratings = data.planted_ratings(200, 100, 6000, rank=4, noise_sigma=0.3, seed=3)
    train_idx, val_idx, test_idx = data.train_val_test_split(len(ratings), seed=3)
    set_seed(7)
    model = pair_model(ratings, "full", "full", dim=32)
    # A large step over-fits 200 x 100 ids quickly: validation MSE turns up within the budget.
    result = train_model(model, ratings, train_idx, val_idx, epochs=30, batch_size=64, learning_rate=3e-2,
                         seed=7, patience=2, test_idx=test_idx)
    assert result.epochs_run < 30
    assert result.best_epoch == int(np.argmin(result.val_mse)) + 1
    assert result.epochs_run - result.best_epoch == 2  # stopped after `patience` epochs without a better one
    # The restored weights are the best epoch's: evaluating validation again gives its MSE.
    again = model.evaluate(make_dataset(ratings, val_idx, 1024, shuffle=False), verbose=0, return_dict=True)
    assert again["loss"] == pytest.approx(result.best_val_mse, rel=1e-4)
    assert result.test_mse is not None and result.test_rmse == pytest.approx(np.sqrt(result.test_mse))


def test_the_same_seed_gives_the_same_fit_with_early_stopping():
    ratings = data.planted_ratings(200, 100, 4000, rank=4, noise_sigma=0.1, seed=3)
    train_idx, val_idx, test_idx = data.train_val_test_split(len(ratings), seed=5)
    runs = []
    for _ in range(2):
        set_seed(11)
        model = pair_model(ratings, "hash", "full", dim=8, user_options={"num_rows": 50})
        runs.append(train_model(model, ratings, train_idx, val_idx, epochs=6, batch_size=64, learning_rate=1e-2,
                                seed=11, patience=1, test_idx=test_idx))
    assert runs[0].val_mse == runs[1].val_mse and runs[0].test_mse == runs[1].test_mse


def test_a_diverging_fit_raises_with_its_epoch_and_step_size():
    ratings = data.planted_ratings(200, 100, 4000, rank=4, noise_sigma=0.1, seed=3)
    train_idx, val_idx = data.random_split(len(ratings), 0.85, seed=3)
    set_seed(7)
    model = pair_model(ratings, "full", "full", dim=8)
    with pytest.raises(TrainingDiverged, match=r"training diverged: loss is nan in epoch 1 \(sgd at learning rate 1e\+30\)"):
        train_model(model, ratings, train_idx, val_idx, epochs=3, learning_rate=1e30, optimizer="sgd")


@pytest.mark.parametrize("patience", [0, -1, 1.5, True])
def test_bad_patience_is_rejected(patience):
    ratings = data.planted_ratings(20, 10, 100, seed=0)
    model = pair_model(ratings, "full", "full", dim=4)
    with pytest.raises(ValueError, match="Invalid `patience`"):
        train_model(model, ratings, np.arange(80), np.arange(80, 100), patience=patience)
