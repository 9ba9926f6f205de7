"""The port of the Keras example's whole pipeline (string ids, CSV re-read, masked MD)."""

import numpy as np

from membed import data
from membed.example_pipeline import example_model, example_pipeline_fit, write_example_csv


def test_string_model_has_the_examples_parameter_count():
    # ml-1m sizes: 6,040 users and 3,706 movies give the example's 117,968.
    users = [f"user_{i}" for i in range(6040)]
    movies = [f"movie_{i}" for i in range(3706)]
    counts = np.random.default_rng(0).integers(1, 100, 3706)
    assert example_model(users, movies, counts).count_params() == 117_968


def test_csv_rows_are_the_examples_format(tmp_path):
    ratings = data.planted_ratings(5, 4, 12, seed=0)
    path = write_example_csv(ratings, np.arange(3), tmp_path / "train.csv")
    lines = path.read_text().splitlines()
    assert len(lines) == 3
    user, movie, rating = lines[0].split("|")
    assert user == f"user_{ratings.user_vocab[ratings.users[0]]}"
    assert movie == f"movie_{ratings.item_vocab[ratings.items[0]]}"
    assert float(rating) == float(ratings.ratings[0])


def test_fit_learns_and_reports_per_epoch_metrics(tmp_path):
    ratings = data.planted_ratings(120, 80, 3000, rank=4, noise_sigma=0.2, seed=1)
    train_idx, val_idx = data.random_split(len(ratings), 0.85, seed=1)
    result = example_pipeline_fit(ratings, train_idx, val_idx, tmp_path, epochs=2, batch_size=64, dim=8)
    assert len(result.val_mse) == 2 and result.val_mse[1] < result.val_mse[0]
    assert result.val_rmse[1] == np.sqrt(result.val_mse[1])
    assert (tmp_path / "train_data.csv").exists() and (tmp_path / "eval_data.csv").exists()
