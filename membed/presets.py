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

from membed import strategies

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


def fit_pair(pair: Pair, data, train_idx, val_idx, dim: int = 64, **train_options):
    """Seeds, builds and trains `pair` on `data`; returns (model, TrainResult).

    A strategy with `trains_as` (int8 tables) is trained as that strategy and
    converted after training; the per-epoch lists are the float model's, and
    the final entries are replaced by the converted model's evaluation.
    """
    from membed.model import pair_model, rating_model
    from membed.train import compile_for_ratings, make_dataset, set_seed, train_model

    set_seed(train_options.get("seed", 0))
    user_cls, item_cls = strategies.get(pair.user), strategies.get(pair.item)
    trained_user = user_cls.trains_as or pair.user
    trained_item = item_cls.trains_as or pair.item
    model = pair_model(data, trained_user, trained_item, dim,
                       None if user_cls.trains_as else pair.user_options,
                       None if item_cls.trains_as else pair.item_options)
    result = train_model(model, data, train_idx, val_idx, **train_options)
    if not (user_cls.trains_as or item_cls.trains_as):
        return model, result
    user_layer, item_layer = model.get_layer("user_embedding"), model.get_layer("item_embedding")
    if user_cls.trains_as:
        user_layer = user_cls.from_trained(user_layer, **pair.user_options)
    if item_cls.trains_as:
        item_layer = item_cls.from_trained(item_layer, **pair.item_options)
    converted = rating_model(user_layer, item_layer)
    compile_for_ratings(converted)
    metrics = converted.evaluate(make_dataset(data, val_idx, 1024, shuffle=False), verbose=0, return_dict=True)
    result.val_mse[-1], result.val_mae[-1] = float(metrics["loss"]), float(metrics["mae"])
    result.val_rmse[-1] = float(metrics["loss"]) ** 0.5
    result.params = int(converted.count_params())
    return converted, result
