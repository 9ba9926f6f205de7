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

from typing import Any, Mapping

import pytest

from bench import axes, grid
from membed import presets, strategies
from membed.data import random_split
from membed.measure import jsonable, layer_options, layer_sizes

# The full baseline and the example's pair train whatever `--strategies` says.
ALWAYS = ("full", "example_qr")


def strategy_pairs(strategy: str, selection: grid.Selection) -> list[presets.Pair]:
    """The (user, item) pairs the accuracy suite trains for `strategy` (from `membed.presets`).

    A profile with `accuracy_presets` keeps the strategy's presets of those
    names, or its first preset when it has none of them, so every strategy
    trains at least once.
    """
    planted = selection.profile.planted
    # Only the preset names and strategies are used here; the options are
    # computed again from the real data when the case runs.
    pairs = presets.accuracy_pairs(strategy, planted["num_users"], planted["num_items"], grid.ACCURACY_DIM)
    wanted = selection.profile.accuracy_presets
    if wanted is None:
        return pairs
    return [pair for pair in pairs if pair.preset in wanted] or pairs[:1]


def accuracy_pairs(selection: grid.Selection, case: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each selected strategy's pairs and presets, then the baseline's and the example's."""
    names = list(selection.strategies)
    names += [name for name in ALWAYS if name in strategies.names() and name not in names]
    return [{"strategy": pair.strategy, "preset": pair.preset, "user_strategy": pair.user,
             "item_strategy": pair.item}
            for name in names for pair in strategy_pairs(name, selection)]


ACCURACY = grid.Suite(
    "accuracy", "fit",
    axes=(axes.rating_datasets, accuracy_pairs,
          axes.fixed(dim=grid.ACCURACY_DIM, batch_size=grid.ACCURACY_BATCH_SIZE)),
)


def find_pair(case: grid.Case, data) -> presets.Pair:
    """The case's pair with options computed for this data's sizes and counts."""
    for owner in case.covers:
        for pair in presets.accuracy_pairs(owner, data.num_users, data.num_items, case.dim,
                                           data.user_counts, data.item_counts):
            if (pair.preset, pair.user, pair.item) == (case.preset, case.user_strategy, case.item_strategy):
                return pair
    raise LookupError(f"{case.case_id()}: membed.presets no longer defines this pair.")


@ACCURACY.test
def test_accuracy(benchmark, case: grid.Case, harness, record: dict) -> None:
    data = harness.ratings(case.dataset)
    record["vocab_size"] = data.num_users + data.num_items
    pair = find_pair(case, data)
    record["options"] = jsonable({"user": pair.user_options, "item": pair.item_options})
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
    user, item = model.get_layer("user_embedding"), model.get_layer("item_embedding")
    record.update(
        options={"user": layer_options(user), "item": layer_options(item)},
        **(layer_sizes(user) + layer_sizes(item)).as_case(record["vocab_size"], case.dim).as_dict(),
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
