"""Accuracy suite: the Keras example's rating model with a strategy on users and items.

The example's recipe: a dot-product rating model, batch 128, Adam at 1e-3,
MSE loss, an 85/15 seeded split; the quick profile trains 1 epoch, the full
profile 3. Presets come from `membed.presets`: `baseline` (full tables),
`example` (example_qr users + example_md items) and `5x` / `20x` / `100x`
per strategy. On synthetic-planted data the best achievable MSE is known,
so those rows also carry `noise_floor_mse` and `excess_mse`. The benchmark
times `membed.presets.fit_pair` (one round): seeding, building the model,
the fit, and for strategies trained as another (int8 tables) the conversion
and its evaluation; `fit_seconds` is the fit alone.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench import grid
from membed import measure, presets
from membed.data import random_split


def find_pair(case: grid.Case, data) -> presets.Pair:
    """The case's pair with options computed for this data's sizes and counts."""
    for owner in case.covers:
        for pair in presets.accuracy_pairs(owner, data.num_users, data.num_items, case.dim,
                                           data.user_counts, data.item_counts):
            if (pair.preset, pair.user, pair.item) == (case.preset, case.user_strategy, case.item_strategy):
                return pair
    raise LookupError(f"{case.case_id()}: membed.presets no longer defines this pair.")


@pytest.mark.suite("accuracy")
def test_accuracy(benchmark, case: grid.Case, harness, record: dict) -> None:
    data = harness.ratings(case.vocab)
    record["vocab_size"] = data.num_users + data.num_items
    pair = find_pair(case, data)
    record["options"] = measure.jsonable({"user": pair.user_options, "item": pair.item_options})
    if pair.error is not None:
        pytest.skip(f"invalid combination: {pair.error}")
    epochs = harness.profile.accuracy_epochs
    record["epochs"] = epochs
    train_idx, val_idx = random_split(len(data), grid.TRAIN_FRACTION, grid.SEED)
    model, result = benchmark.pedantic(
        presets.fit_pair, args=(pair, data, train_idx, val_idx, case.dim),
        kwargs={"epochs": epochs, "batch_size": grid.ACCURACY_BATCH_SIZE,
                "learning_rate": grid.ACCURACY_LEARNING_RATE, "seed": grid.SEED},
        rounds=1, iterations=1,
    )
    layers = [model.get_layer("user_embedding"), model.get_layer("item_embedding")]
    params = sum(int(layer.count_params()) for layer in layers)
    param_bytes = sum(measure.weight_bytes(layer) for layer in layers)
    index_bytes = sum(int(getattr(layer, "index_bytes", 0)) for layer in layers)
    trainable = sum(int(np.prod(v.shape)) for layer in layers for v in layer.trainable_variables)
    record.update(
        options={"user": measure.layer_options(layers[0]), "item": measure.layer_options(layers[1])},
        params=params,
        param_bytes=param_bytes,
        index_bytes=index_bytes,
        train_state_bytes=measure.train_state_bytes(param_bytes, trainable, index_bytes),
        compression=measure.compression(record["vocab_size"], case.dim, param_bytes + index_bytes),
        val_mse=result.val_mse[-1],
        val_mae=result.val_mae[-1],
        val_rmse=result.val_rmse[-1],
        val_mse_per_epoch=result.val_mse,
        val_mae_per_epoch=result.val_mae,
        val_rmse_per_epoch=result.val_rmse,
        train_mse_per_epoch=result.train_mse,
        fit_seconds=result.fit_seconds,
    )
    if data.noise_sigma is not None:
        record["noise_floor_mse"] = float(data.noise_sigma) ** 2
        record["excess_mse"] = record["val_mse"] - record["noise_floor_mse"]
