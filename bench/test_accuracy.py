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

Each pair trains once per optimizer of the profile (`--optimizers`), at
that optimizer's step size (`membed.train.RATING_LEARNING_RATES`): `adam` is the
example's Adam (`FusedAdam`) and keeps the suite's case ids, the others'
end in `/<optimizer>`. After the timed fit, untimed, the trained pair is
evaluated again with its tables in each of the profile's
`accuracy_storages` (`membed.presets.evaluate_by_storage`): the loss of
post-training float16, bfloat16 and int8 storage.
"""

from __future__ import annotations

from typing import Any, Mapping

import pytest

from analysis import schema
from bench import axes, grid, steps
from membed import plan, presets, strategies
from membed.data import random_split
from membed.measure import jsonable, layer_options, layer_sizes
from membed.train import RATING_LEARNING_RATES

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
          axes.fixed(dim=grid.ACCURACY_DIM, batch_size=grid.ACCURACY_BATCH_SIZE), axes.optimizers),
)


def find_pair(case: grid.Case, data) -> presets.Pair:
    """The case's pair with options computed for this data's sizes and counts."""
    for owner in case.covers:
        for pair in presets.accuracy_pairs(owner, data.num_users, data.num_items, case.dim,
                                           data.user_counts, data.item_counts):
            if (pair.preset, pair.user, pair.item) == (case.preset, case.user_strategy, case.item_strategy):
                return pair
    raise LookupError(f"{case.case_id()}: membed.presets no longer defines this pair.")


def fit_state_bytes(model, pair: presets.Pair, data, dim: int, optimizer: str) -> int:
    """The optimizer's slot bytes after the fit (user + item tables; the rating model has no other weight).

    A pair trained as another strategy (int8 tables) is converted after the
    fit and its optimizer is gone: its state is the trained layers' by
    `membed.plan`'s formula.
    """
    built = steps.optimizer_state_bytes(model.optimizer)
    if built is not None:
        return built
    total = 0
    for name, options, vocab_size, counts in ((pair.user, pair.user_options, data.num_users, data.user_counts),
                                              (pair.item, pair.item_options, data.num_items, data.item_counts)):
        trains_as = strategies.get(name).trains_as
        trained, trained_options = (trains_as, None) if trains_as else (name, options)
        total += plan.estimate(trained, vocab_size, dim, trained_options, optimizer=optimizer,
                               counts=counts).optimizer_state.total
    return total


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
    learning_rate = RATING_LEARNING_RATES[case.optimizer]
    record["learning_rate"] = learning_rate
    train_idx, val_idx = random_split(len(data), grid.TRAIN_FRACTION, grid.SEED)
    model, result = benchmark.pedantic(
        presets.fit_pair, args=(pair, data, train_idx, val_idx, case.dim),
        kwargs={"epochs": epochs, "batch_size": grid.ACCURACY_BATCH_SIZE, "learning_rate": learning_rate,
                "seed": grid.SEED, "optimizer": case.optimizer},
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
        optimizer_state_bytes=fit_state_bytes(model, pair, data, case.dim, case.optimizer),
    )
    stored = presets.evaluate_by_storage(model, data, val_idx, storages=harness.profile.accuracy_storages)
    if stored.skipped is None:
        record.update(val_mse_by_storage=stored.val_mse, param_bytes_by_storage=stored.param_bytes,
                      **{f"val_mse_{dtype}": stored.val_mse[dtype] for dtype in schema.STORED_DTYPES
                         if dtype in stored.val_mse})
    if data.noise_sigma is not None:
        record["noise_floor_mse"] = float(data.noise_sigma) ** 2
        record["excess_mse"] = record["val_mse"] - record["noise_floor_mse"]
