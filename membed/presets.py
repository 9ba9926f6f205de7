"""Named (user, item) strategy pairs: the example's two models and compression presets.

The accuracy suite and `python -m membed reproduce` use these, so that the
example's table is reproduced in every run and every strategy is trained at
stated compressions.

Presets:
    baseline: `full` on users and items (the example's baseline).
    example: `example_qr` on users, `example_md` on items (the example's
        memory-efficient model).
    5x, 20x, 100x: the strategy on users and items, with the options its
        `options_for_compression` gives for about that many times fewer
        parameters than a full table of the same size.
    A strategy may name others (`accuracy_presets`): `quantized` has `int8`,
    `float16`, `bfloat16`, trained as `full` and converted after training.
"""

from __future__ import annotations

import dataclasses
import math

import keras

from membed import strategies
from membed.strategies.base import BYTES_PER_DTYPE
from membed.strategies.storage import STORAGES, check_storage, stored_copy
from membed.train import TrainResult

# The storages the accuracy suite evaluates a trained pair in (float32 first: the
# trained pair itself, through the same evaluation, so each difference is the storage's).
STORAGE_STEPS = STORAGES
EVAL_BATCH_SIZE = 1024

@dataclasses.dataclass(frozen=True)
class Pair:
    """A rating model's embedding strategies; `error` says why it cannot be built."""

    preset: str
    user: str
    item: str
    user_options: dict = dataclasses.field(default_factory=dict)
    item_options: dict = dataclasses.field(default_factory=dict)
    error: str | None = None

    @property
    def strategy(self) -> str:
        return self.user if self.user == self.item else f"{self.user}+{self.item}"


BASELINE = Pair("baseline", "full", "full")
EXAMPLE = Pair("example", "example_qr", "example_md")


def compression_presets(strategy: str, num_users: int, num_items: int, dim: int = 64,
                        user_counts=None, item_counts=None) -> list[Pair]:
    """The strategy's named presets; unreachable ones carry the reason in `error`."""
    cls = strategies.get(strategy)
    user_presets = cls.accuracy_presets(num_users, dim, user_counts)
    item_presets = cls.accuracy_presets(num_items, dim, item_counts)
    pairs = []
    for preset, user_options in user_presets.items():
        item_options = item_presets[preset]
        problem = next((p for p in (user_options, item_options) if isinstance(p, ValueError)), None)
        if problem is not None:
            pairs.append(Pair(preset, strategy, strategy, error=str(problem)))
        else:
            pairs.append(Pair(preset, strategy, strategy, user_options, item_options))
    return pairs


def accuracy_pairs(strategy: str, num_users: int, num_items: int, dim: int = 64,
                   user_counts=None, item_counts=None) -> list[Pair]:
    """The pairs the accuracy suite trains for one registered strategy (counts: the data's)."""
    if strategy == "full":
        return [BASELINE]
    if strategy in (EXAMPLE.user, EXAMPLE.item):
        return [EXAMPLE]
    return compression_presets(strategy, num_users, num_items, dim, user_counts, item_counts)


def fit_pair(pair: Pair, data, train_idx, val_idx, dim: int = 64, storages: tuple[str, ...] = (),
             **train_options) -> tuple:
    """Seeds, builds and trains `pair` on `data`; returns (model, PairResult).

    A strategy with `trains_as` (int8 tables) is trained as that strategy and
    converted after training; the per-epoch lists are the float model's, and
    the kept epoch's entries (`best_epoch`) and the test metrics are the
    converted model's.

    Args:
        storages: storages to evaluate the trained pair in again (see
            `evaluate_by_storage`), e.g. `STORAGE_STEPS`; none by default.
        **train_options: `membed.train.train_model`'s options (epochs, seed, ...).
    """
    from membed.model import pair_model, rating_model
    from membed.train import compile_for_ratings, evaluate_ratings, set_seed, train_model

    set_seed(train_options.get("seed", 0))
    user_cls, item_cls = strategies.get(pair.user), strategies.get(pair.item)
    trained_user = user_cls.trains_as or pair.user
    trained_item = item_cls.trains_as or pair.item
    model = pair_model(data, trained_user, trained_item, dim,
                       None if user_cls.trains_as else pair.user_options,
                       None if item_cls.trains_as else pair.item_options)
    result = PairResult(**dataclasses.asdict(train_model(model, data, train_idx, val_idx, **train_options)))
    if user_cls.trains_as or item_cls.trains_as:
        user_layer, item_layer = model.get_layer("user_embedding"), model.get_layer("item_embedding")
        if user_cls.trains_as:
            user_layer = user_cls.from_trained(user_layer, **pair.user_options)
        if item_cls.trains_as:
            item_layer = item_cls.from_trained(item_layer, **pair.item_options)
        model = rating_model(user_layer, item_layer)
        compile_for_ratings(model)
        best = result.best_epoch - 1
        result.val_mse[best], result.val_mae[best] = evaluate_ratings(model, data, val_idx, EVAL_BATCH_SIZE)
        result.val_rmse[best] = result.val_mse[best] ** 0.5
        if train_options.get("test_idx") is not None:
            result.test_mse, result.test_mae = evaluate_ratings(model, data, train_options["test_idx"],
                                                                EVAL_BATCH_SIZE)
            result.test_rmse = result.test_mse ** 0.5
        result.params = int(model.count_params())
    if storages:
        by_storage = evaluate_by_storage(model, data, val_idx, storages)
        result.val_mse_by_storage, result.param_bytes_by_storage = by_storage.val_mse, by_storage.param_bytes
    return model, result


@dataclasses.dataclass
class PairResult(TrainResult):
    """A fit's `TrainResult`, plus the pair evaluated with its tables in other storages (if asked).

    Attributes:
        val_mse_by_storage: storage -> validation MSE of the trained pair
            with both layers' tables stored so (`evaluate_by_storage`).
        param_bytes_by_storage: storage -> bytes of both layers' weights then.
    """

    val_mse_by_storage: dict[str, float] = dataclasses.field(default_factory=dict)
    param_bytes_by_storage: dict[str, int] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class StorageEvaluation:
    """A trained pair evaluated again with both layers' tables in each storage.

    Attributes:
        val_mse: storage -> validation MSE (`float32` is the trained pair
            itself, evaluated the same way, so differences are the storage's).
        param_bytes: storage -> bytes of the two layers' weights.
        skipped: why no storage was evaluated (empty dicts), else None.
    """

    val_mse: dict[str, float]
    param_bytes: dict[str, int]
    skipped: str | None = None


def evaluate_by_storage(model, data, val_idx, storages: tuple[str, ...] = STORAGE_STEPS) -> StorageEvaluation:
    """Validation MSE of a trained rating model with both embedding layers' tables in each storage.

    Each storage is applied to copies of the two layers (`storage.stored_copy`),
    so `model` is left as it is; dense weights (projections, MLPs) stay
    float32. A pair is skipped, with the reason, when a layer has no tables
    (`dhe`) or is already stored in another dtype (the `quantized` presets).

    Example:
        >>> model, result = fit_pair(BASELINE, data, train_idx, val_idx, epochs=1)
        >>> evaluate_by_storage(model, data, val_idx).val_mse  # doctest: +SKIP
        {'float32': 0.93, 'float16': 0.93, 'bfloat16': 0.931, 'int8': 0.93}
    """
    from membed.model import rating_model
    from membed.train import compile_for_ratings, make_dataset

    for storage in storages:
        check_storage("evaluate_by_storage", storage)
    layers = [model.get_layer("user_embedding"), model.get_layer("item_embedding")]
    for layer in layers:
        if not getattr(layer, "table_names", None):
            return StorageEvaluation({}, {}, f"{layer.name} ({type(layer).__name__}) has no tables to store.")
        if layer.storage != "float32":
            return StorageEvaluation({}, {}, f"{layer.name} is already stored as {layer.storage}.")
    dataset = make_dataset(data, val_idx, EVAL_BATCH_SIZE, shuffle=False)
    val_mse, param_bytes = {}, {}
    for storage in storages:
        stored = [stored_copy(layer, storage) for layer in layers]
        converted = rating_model(*stored)
        compile_for_ratings(converted)
        metrics = converted.evaluate(dataset, verbose=0, return_dict=True)
        val_mse[storage] = float(metrics["loss"])
        param_bytes[storage] = sum(
            math.prod(w.shape) * BYTES_PER_DTYPE[keras.backend.standardize_dtype(w.dtype)]
            for layer in stored for w in layer.weights
        )
    return StorageEvaluation(val_mse, param_bytes)
