import numpy as np
import pytest

from membed import data
from membed.model import pair_model
from membed.train import make_dataset, set_seed, train_model


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
