"""Accuracy suite: a model trained to convergence per seed, each strategy at its own tuned step size.

Rating datasets (MovieLens, synthetic-planted) train the Keras example's
dot-product rating model with a strategy on users and items; synthetic-ctr
trains a DLRM-style click-through model with the strategy on every large
field (`membed.ctr`). Each case trains once per seed of the profile
(`accuracy_seeds`): the seed draws the train / validation / test split
(80/10/10, `membed.data.train_val_test_split`), the initialisation and the
shuffling. A fit runs up to `accuracy_max_epochs` epochs and stops once the
validation loss has not improved for `accuracy_patience` epochs, keeping the
best epoch's weights; the test split is evaluated once, after. Records
carry each seed's values (`<metric>_per_seed`), their mean (`<metric>`) and
the 95% half-width of the mean (`<metric>_ci95`, `analysis.stats`).

The step size is the tuned one (`bench/tuning.py`: the tune profile's choice
per strategy, preset and optimizer, stored in reports/learning_rates.json),
else `membed.train.RATING_LEARNING_RATES`; `learning_rate_source` says which.
Under `--profile tune` each case trains once per step size of
`grid.TUNE_LEARNING_RATES` instead, one seed.

Presets come from `membed.presets`: `baseline` (full tables), `example`
(example_qr users + example_md items) and `5x` / `20x` / `100x` per strategy.
On synthetic-planted data the best achievable MSE is known, so those rows
also carry `noise_floor_mse` and `excess_mse` (test MSE above it). The
benchmark times one fit per seed (a round each): seeding, building the
model, the fit, the test evaluation, and for strategies trained as another
(int8 tables) the conversion; `fit_seconds` is the mean fit alone. After
the last seed, untimed, each seed's trained pair is evaluated again on its
validation split with its tables in each of the profile's `accuracy_storages`
(`val_mse_by_storage`: means over seeds; `val_mse_int8` ... with `_ci95` and
`_per_seed`, as every other metric).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import pytest

from analysis import schema
from analysis.stats import mean_ci95
from bench import axes, distributed, grid, steps, tuning
from bench.harness import ctr_rows
from membed import plan, presets, strategies
from membed.data import find_movielens, train_val_test_split
from membed.measure import jsonable, layer_options, layer_sizes
from membed.train import RATING_LEARNING_RATES

# The full baseline and the example's pair train whatever `--strategies` says.
ALWAYS = ("full", "example_qr")
VAL_FRACTION = TEST_FRACTION = 0.1
# The CTR model's field width and batch (membed.ctr's defaults: a DLRM-sized model).
CTR_DIM = 16
CTR_BATCH_SIZE = 1024


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


def ctr_preset_names(strategy: str, selection: grid.Selection) -> list[str]:
    """The presets the accuracy suite trains `strategy` at on synthetic-ctr (`membed.ctr.ctr_presets`).

    The profile's `accuracy_presets` where the strategy reaches one of them
    on this data; else its most compressed preset that it reaches (`mixed_dim`
    reaches 5x on the 10,000-id fields, not 20x); else the wanted ones, which
    then skip with the reason.
    """
    from membed import ctr

    presets = ctr.ctr_presets(strategy, ctr_rows(tuple(sorted(selection.profile.ctr.items()))), CTR_DIM)
    wanted = selection.profile.accuracy_presets
    if wanted is None:
        return [preset.preset for preset in presets]
    chosen = [preset for preset in presets if preset.preset in wanted]
    if any(preset.error is None for preset in chosen):
        return [preset.preset for preset in chosen]
    reachable = [preset.preset for preset in presets if preset.error is None]
    return reachable[-1:] or [preset.preset for preset in chosen] or [presets[0].preset]


def accuracy_pairs(selection: grid.Selection, case: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each selected strategy's pairs and presets, then the baseline's and the example's.

    On synthetic-ctr a case is one strategy (on every large field) at one preset,
    and the example's two strategies are two cases.
    """
    names = list(selection.strategies)
    if case["dataset"] == grid.CTR:
        names += [name for name in (*ALWAYS, presets.EXAMPLE.item) if name in strategies.names() and name not in names]
        # The profile's narrower CTR list, where the rating datasets cover every strategy and
        # `--strategies` did not choose them.
        only = selection.profile.ctr_strategies
        rating = [dataset for dataset in selection.datasets_of(case["suite"]) if dataset != grid.CTR]
        if only is not None and rating and selection.strategies == tuple(strategies.names()):
            names = [name for name in names if name in only]
        return [{"strategy": name, "preset": preset} for name in names for preset in ctr_preset_names(name, selection)]
    names += [name for name in ALWAYS if name in strategies.names() and name not in names]
    return [{"strategy": pair.strategy, "preset": pair.preset, "user_strategy": pair.user,
             "item_strategy": pair.item}
            for name in names for pair in strategy_pairs(name, selection)]


def fit_datasets(selection: grid.Selection, case: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The rating datasets (`axes.rating_datasets`), then synthetic-ctr if the run has it."""
    return [*axes.rating_datasets(selection, case),
            *([{"dataset": grid.CTR}] if grid.CTR in selection.datasets_of(case["suite"]) else [])]


def fit_shape(selection: grid.Selection, case: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The model's dimension and batch size: the rating model's (profile's batch size) or the CTR model's."""
    if case["dataset"] == grid.CTR:
        return [{"dim": CTR_DIM, "batch_size": CTR_BATCH_SIZE}]
    return [{"dim": grid.ACCURACY_DIM, "batch_size": selection.profile.accuracy_batch_size}]


def fit_optimizers(selection: grid.Selection, case: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The profile's accuracy optimizers of the case's model family, narrowed by `--optimizers` if given."""
    wanted = selection.profile.accuracy_optimizers[tuning.family(case["dataset"])]
    narrowed = selection.optimizers if selection.optimizers != selection.profile.optimizers else None
    return [{"optimizer": name} for name in wanted if narrowed is None or name in narrowed]


def tune_rates(selection: grid.Selection, case: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The tune profile's step sizes for the case's optimizer; no axis in other profiles."""
    rates = selection.profile.tune_learning_rates
    return [{}] if rates is None else [{"learning_rate": rate} for rate in rates[case["optimizer"]]]


# A fit's cost on this 2-core machine: seconds per epoch per 100,000 rows (the clean-clone
# quick run of 2026-12-01: ml-100k fits of 4 epochs took 1.4-2.5 s, dhe 4 s; synthetic-ctr
# fits of 3-4 epochs on 200,000 rows 4.4-6.6 s), the epochs early stopping typically ran
# (the tune profile: ml-100k median 9 of 20 at the chosen step sizes; synthetic-ctr 3, its
# best epoch mostly the first), and a second of building and evaluating.
EPOCH_SECONDS_PER_1E5_ROWS = {"rating": 0.3, "ctr": 0.75}
TYPICAL_EPOCHS = {"rating": 9, "ctr": 3}
MOVIELENS_ROWS = {"ml-100k": 100_000, "ml-latest-small": 100_836, "ml-1m": 1_000_209, "ml-20m": 20_000_263,
                  "ml-25m": 25_000_095}


def expected_seconds(case: grid.Case, profile: grid.Profile) -> float:
    """A case's expected time: one fit per seed, its epochs capped by the profile's budget."""
    family = tuning.family(case.dataset)
    if case.dataset in MOVIELENS_ROWS and find_movielens(case.dataset) is None:
        return 0.0  # not here: it skips at once, or is downloaded first (not counted)
    if family == "ctr":
        rows = profile.ctr["num_rows"]
    else:
        rows = profile.planted["num_ratings"] if case.dataset == grid.PLANTED else MOVIELENS_ROWS[case.dataset]
    epochs = min(profile.accuracy_max_epochs, TYPICAL_EPOCHS[family])
    return len(profile.accuracy_seeds) * (1.0 + EPOCH_SECONDS_PER_1E5_ROWS[family] * epochs * rows / 1e5)


ACCURACY = grid.Suite(
    "accuracy", "fit",
    axes=(fit_datasets, accuracy_pairs, fit_shape, fit_optimizers, tune_rates),
    expected_seconds=expected_seconds,
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


def learning_rate(case: grid.Case, default: float, record: dict) -> float:
    """The case's step size (the tune profile's candidate, the stored tuned one, or `default`), recorded."""
    if case.learning_rate is not None:
        rate, source = case.learning_rate, "tune profile candidate"
    else:
        rate, source = tuning.learning_rate_for(case, default)
    record.update(learning_rate=rate, learning_rate_source=source)
    return rate


def per_seed(benchmark, record: dict, seeds: Sequence[int], fit: Callable[[int], Any]) -> list:
    """Runs `fit(seed)` once per seed, each a timed round; returns the results in seed order.

    Timed by `benchmark.pedantic`, or under pytest-xdist (where pytest-benchmark
    is off) by `bench.distributed.Rounds`, whose rounds go with the record.
    """
    rounds = distributed.Rounds(benchmark)
    results = rounds.run(fit, seeds)
    record.rounds = rounds.samples
    return results


def summarise(record: dict, metric: str, values: Sequence[float | None]) -> None:
    """`<metric>_per_seed`, the mean as `<metric>` and its 95% half-width as `<metric>_ci95`."""
    values = [float(value) for value in values]
    record[f"{metric}_per_seed"] = values
    record[metric], record[f"{metric}_ci95"] = mean_ci95(values)


@ACCURACY.test
def test_accuracy(benchmark, case: grid.Case, harness, record: dict) -> None:
    seeds = harness.profile.accuracy_seeds
    record.update(seeds=list(seeds), epochs=harness.profile.accuracy_max_epochs,
                  patience=harness.profile.accuracy_patience)
    if case.dataset == grid.CTR:
        return fit_ctr_case(benchmark, case, harness, record, seeds)
    data = harness.ratings(case.dataset)
    record["vocab_size"] = data.num_users + data.num_items
    pair = find_pair(case, data)
    record["options"] = jsonable({"user": pair.user_options, "item": pair.item_options})
    if pair.error is not None:
        pytest.skip(f"invalid combination: {pair.error}")
    rate = learning_rate(case, RATING_LEARNING_RATES[case.optimizer], record)

    def fit(seed: int):
        train_idx, val_idx, test_idx = train_val_test_split(len(data), VAL_FRACTION, TEST_FRACTION, seed)
        model, result = presets.fit_pair(
            pair, data, train_idx, val_idx, case.dim, epochs=harness.profile.accuracy_max_epochs,
            patience=harness.profile.accuracy_patience, test_idx=test_idx, batch_size=case.batch_size,
            learning_rate=rate, seed=seed, optimizer=case.optimizer)
        return model, result, val_idx

    fits = per_seed(benchmark, record, seeds, fit)
    model, first = fits[-1][0], fits[0][1]
    results = [result for _, result, _ in fits]
    user, item = model.get_layer("user_embedding"), model.get_layer("item_embedding")
    record.update(
        options={"user": layer_options(user), "item": layer_options(item)},
        **(layer_sizes(user) + layer_sizes(item)).as_case(record["vocab_size"], case.dim).as_dict(),
        val_mse_per_epoch=first.val_mse,
        val_mae_per_epoch=first.val_mae,
        val_rmse_per_epoch=first.val_rmse,
        train_mse_per_epoch=first.train_mse,
        epochs_run_per_seed=[result.epochs_run for result in results],
        best_epoch_per_seed=[result.best_epoch for result in results],
        fit_seconds=sum(result.fit_seconds for result in results) / len(results),
        optimizer_state_bytes=fit_state_bytes(model, pair, data, case.dim, case.optimizer),
    )
    record["epochs_run"] = sum(record["epochs_run_per_seed"]) / len(results)
    for metric, values in (("val_mse", [r.val_mse[r.best_epoch - 1] for r in results]),
                           ("val_mae", [r.val_mae[r.best_epoch - 1] for r in results]),
                           ("val_rmse", [r.val_rmse[r.best_epoch - 1] for r in results]),
                           ("test_mse", [r.test_mse for r in results]), ("test_mae", [r.test_mae for r in results]),
                           ("test_rmse", [r.test_rmse for r in results])):
        summarise(record, metric, values)
    stored = [presets.evaluate_by_storage(seed_model, data, seed_val_idx, storages=harness.profile.accuracy_storages)
              for seed_model, _, seed_val_idx in fits]
    if stored[0].skipped is None:
        storages = list(stored[0].val_mse)
        record.update(val_mse_by_storage={storage: sum(s.val_mse[storage] for s in stored) / len(stored)
                                          for storage in storages},
                      param_bytes_by_storage=stored[0].param_bytes)
        for dtype in schema.STORED_DTYPES:
            if dtype in storages:
                summarise(record, f"val_mse_{dtype}", [s.val_mse[dtype] for s in stored])
    if data.noise_sigma is not None:
        record["noise_floor_mse"] = float(data.noise_sigma) ** 2
        summarise(record, "excess_mse", [r.test_mse - record["noise_floor_mse"] for r in results])


def fit_ctr_case(benchmark, case: grid.Case, harness, record: dict, seeds: Sequence[int]) -> None:
    """The synthetic-ctr case: the DLRM-style model with `case.strategy` on every large field, once per seed."""
    from membed import ctr

    data = harness.ctr_data()
    record["vocab_size"] = int(sum(data.cardinalities))
    preset = next((p for p in ctr.ctr_presets(case.strategy, data, case.dim) if p.preset == case.preset), None)
    if preset is None:
        raise LookupError(f"{case.case_id()}: membed.ctr.ctr_presets no longer defines this preset.")
    record["options"] = jsonable({"fields": list(preset.field_strategies), "field_options": list(preset.field_options)})
    if preset.error is not None:
        pytest.skip(f"invalid combination: {preset.error}")
    rate = learning_rate(case, ctr.CTR_LEARNING_RATES[case.optimizer], record)

    def fit(seed: int):
        train_idx, val_idx, test_idx = train_val_test_split(len(data), VAL_FRACTION, TEST_FRACTION, seed)
        return ctr.fit_ctr(data, preset, train_idx, val_idx, test_idx, dim=case.dim,
                           max_epochs=harness.profile.accuracy_max_epochs, patience=harness.profile.accuracy_patience,
                           batch_size=case.batch_size, learning_rate=rate, optimizer=case.optimizer, seed=seed)

    results = per_seed(benchmark, record, seeds, fit)
    # The embedding layers' sizes as evaluated (int8 tables: converted), built once more untrained;
    # the top MLP (the same in every case) is not counted, as the rating model has none.
    model = ctr.build_ctr_model(data, preset, case.dim)
    fields = [model.get_layer(f"field_{field}") for field in range(data.num_fields)]
    sizes = sum((layer_sizes(layer) for layer in fields[1:]), layer_sizes(fields[0]))
    record.update(
        **sizes.as_case(record["vocab_size"], case.dim).as_dict(),
        val_logloss_per_epoch=results[0].val_logloss,
        epochs_run_per_seed=[result.epochs_run for result in results],
        best_epoch_per_seed=[result.best_epoch for result in results],
        fit_seconds=sum(result.fit_seconds for result in results) / len(results),
        planted_logloss=sum(result.planted_logloss for result in results) / len(results),
        planted_auc=sum(result.planted_auc for result in results) / len(results),
    )
    record["epochs_run"] = sum(record["epochs_run_per_seed"]) / len(results)
    for metric in ("test_logloss", "test_auc", "excess_logloss"):
        summarise(record, metric, [getattr(result, metric) for result in results])
    summarise(record, "val_logloss", [result.val_logloss[result.best_epoch - 1] for result in results])
