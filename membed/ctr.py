"""A DLRM-style click-through model built from any embedding strategy, its presets and its seeded fit.

The model embeds each field of a `CtrData` row with its own embedding layer
(any registered strategy), takes the dot product of every pair of field
vectors (the upper triangle), concatenates those with the field vectors, and
feeds them to a small top MLP (64-32-1) whose sigmoid is the click
probability. It trains on binary cross-entropy; its metrics are AUC and log
loss, and since the data's true click probabilities are known, the excess log
loss over the Bayes optimum (`CtrResult.excess_logloss`).

There are no dense input features, so DLRM's bottom MLP has nothing to
process and is left out; the field vectors go to the top MLP directly, which
lets it learn the first-order (per-id) terms as well as the pairwise ones.

Example:
    >>> data = synthetic_ctr(100_000, seed=1)
    >>> train_idx, val_idx, test_idx = train_val_test_split(len(data), seed=1)
    >>> preset = next(p for p in ctr_presets("hash", data, dim=16) if p.preset == "20x")
    >>> result = fit_ctr(data, preset, train_idx, val_idx, test_idx, seed=1)
    >>> result.test_auc, result.excess_logloss  # doctest: +SKIP

References:
    M. Naumov et al., "Deep Learning Recommendation Model for Personalization
    and Recommendation Systems", 2019 (the model).
"""

from __future__ import annotations

import dataclasses
import time

import keras
import numpy as np
from keras import ops

from membed import strategies
from membed.data.ctr import binary_auc, binary_logloss

# Fields with at most this many ids keep a full table in every preset: at dim 16 such a table is
# 16,000 parameters or fewer (0.1% of the default data's full model), so compressing it saves nothing
# that matters, while hashing a 100-id field would collide ids that have plenty of data each.
SMALL_FIELD_MAX = 1_000
TOP_MLP_UNITS = (64, 32)
# Step sizes of the CTR model per optimizer, in `fit_ctr` when none is given. adam's was the
# fastest of 1e-3, 3e-3, 1e-2 to reach its best validation log loss on 1e5 rows at batch 1024
# (the full baseline over-fits after 2 epochs at 3e-3); the others are `train.RATING_LEARNING_RATES`'.
CTR_LEARNING_RATES = {"adam": 3e-3, "lazy_adam": 3e-3, "adagrad": 1.0, "rowwise_adagrad": 0.1, "sgd": 2.0}
DEFAULT_DIM = 16
DEFAULT_MAX_EPOCHS = 5
DEFAULT_PATIENCE = 1
PREDICT_BATCH_SIZE = 8192
# Batches per compiled call (see `membed.train.STEPS_PER_EXECUTION`).
STEPS_PER_EXECUTION = 32


@keras.saving.register_keras_serializable(package="membed")
class DotInteraction(keras.layers.Layer):
    """Dot products of every pair of field vectors: [batch, F, dim] -> [batch, F * (F - 1) / 2].

    The pairs are those of the upper triangle (f < g), in row order, as DLRM's
    `interact_features` without self-interactions.

    Example:
        >>> DotInteraction()(np.ones((2, 4, 8), "float32")).shape
        TensorShape([2, 6])
    """

    def build(self, input_shape):
        if len(input_shape) != 3 or input_shape[1] is None or input_shape[1] < 2:
            raise ValueError(f"DotInteraction: invalid input shape {input_shape}. Use [batch, fields >= 2, dim].")
        fields = int(input_shape[1])
        rows, cols = np.triu_indices(fields, k=1)
        self.pair_positions = [int(p) for p in rows * fields + cols]

    def call(self, vectors):
        fields = vectors.shape[1]
        products = ops.matmul(vectors, ops.transpose(vectors, (0, 2, 1)))
        return ops.take(ops.reshape(products, (-1, fields * fields)), self.pair_positions, axis=1)

    def compute_output_shape(self, input_shape):
        fields = input_shape[1]
        return (input_shape[0], fields * (fields - 1) // 2)


def top_mlp(units: tuple[int, ...] = TOP_MLP_UNITS) -> keras.Sequential:
    """ReLU layers of `units`, then one sigmoid unit: the click probability."""
    layers = [keras.layers.Dense(width, activation="relu", name=f"top_{i}") for i, width in enumerate(units)]
    return keras.Sequential([*layers, keras.layers.Dense(1, activation="sigmoid", name="click")], name="top_mlp")


def ctr_model(field_layers: list[keras.layers.Layer], top: keras.Sequential | None = None,
              name: str = "ctr_model") -> keras.Model:
    """DLRM-style model: input "features" (int32 [batch, F]) -> click probability [batch].

    Args:
        field_layers: one embedding layer per field, all of one output width.
        top: the top MLP to reuse (a converted model shares the trained one); a new `top_mlp()` by default.

    Example:
        >>> layers = [strategies.build("full", 100, 16, layer_name=f"field_{i}") for i in range(3)]
        >>> ctr_model(layers).output.shape
        (None,)
    """
    if len(field_layers) < 2:
        raise ValueError(f"ctr_model: got {len(field_layers)} field layers; the dot interactions need at least 2.")
    features = keras.Input(shape=(len(field_layers),), dtype="int32", name="features")
    vectors = ops.stack([layer(features[:, field]) for field, layer in enumerate(field_layers)], axis=1)
    interactions = DotInteraction(name="interactions")(vectors)
    joined = keras.layers.Concatenate(name="joined")([keras.layers.Flatten(name="field_vectors")(vectors),
                                                      interactions])
    probability = (top or top_mlp())(joined)
    return keras.Model(features, ops.squeeze(probability, axis=-1), name=name)


@dataclasses.dataclass(frozen=True)
class CtrPreset:
    """One model of the CTR task: a strategy and options per field; `error` says why it cannot be built.

    Attributes:
        preset: `baseline`, `example`, or a name of the strategy's `accuracy_presets` (`5x`, `int8`, ...).
        strategy: the strategy under test (small fields use `full` whatever it is, see `SMALL_FIELD_MAX`).
        field_strategies: the strategy of each field.
        field_options: the options of each field's strategy.
    """

    preset: str
    strategy: str
    field_strategies: tuple[str, ...] = ()
    field_options: tuple[dict, ...] = ()
    error: str | None = None


def ctr_presets(strategy: str, data, dim: int = DEFAULT_DIM) -> list[CtrPreset]:
    """The CTR models the accuracy suite trains for one registered strategy on `data` (a `CtrData`).

    `full` gives `baseline` (full tables everywhere). `example_qr` and
    `example_md` give `example`: their example options (QR with V // 50
    buckets, mixed dimensions with the example's blocks scaled to V) on every
    field of more than `SMALL_FIELD_MAX` ids. Any other strategy gives one
    preset per name of its `accuracy_presets` (`5x`, `20x`, `100x`; `int8`,
    `float16`, `bfloat16` for `quantized`), those options on the large fields,
    and `full` on fields of at most `SMALL_FIELD_MAX` ids. A preset that some
    large field cannot reach carries that field's error instead.

    Example:
        >>> [p.preset for p in ctr_presets("hash", synthetic_ctr(1000))]
        ['5x', '20x', '100x']
    """
    cls = strategies.get(strategy)
    large = [field for field, cardinality in enumerate(data.cardinalities) if cardinality > SMALL_FIELD_MAX]
    full_everywhere = (("full",) * data.num_fields, ({},) * data.num_fields)
    if strategy == "full" or not large:
        reason = None if strategy == "full" else f"no field has more than {SMALL_FIELD_MAX} ids to compress."
        return [CtrPreset("baseline" if strategy == "full" else "none", strategy, *full_everywhere, error=reason)]
    if strategy in ("example_qr", "example_md"):
        by_field = {field: {"example": {}} for field in large}
    else:
        by_field = {field: cls.accuracy_presets(data.cardinalities[field], dim, data.counts[field])
                    for field in large}
    presets = []
    for name in by_field[large[0]]:
        unreachable = next((field for field in large if isinstance(by_field[field][name], ValueError)), None)
        if unreachable is not None:
            error = f"field_{unreachable} ({data.cardinalities[unreachable]} ids): {by_field[unreachable][name]}"
            presets.append(CtrPreset(name, strategy, *full_everywhere, error=error))
            continue
        field_strategies, field_options = list(full_everywhere[0]), list(full_everywhere[1])
        for field in large:
            field_strategies[field], field_options[field] = strategy, by_field[field][name]
        presets.append(CtrPreset(name, strategy, tuple(field_strategies), tuple(field_options)))
    return presets


def build_ctr_model(data, preset: CtrPreset, dim: int = DEFAULT_DIM, trainable: bool = False) -> keras.Model:
    """The preset's model for `data`: field f's layer is `field_f`, built with the counts of field f.

    With `trainable`, a field whose strategy `trains_as` another (`quantized`)
    is built as that one, to be trained and converted (`fit_ctr` does so).
    """
    if preset.error:
        raise ValueError(f"ctr preset {preset.strategy}/{preset.preset} cannot be built: {preset.error}")
    layers = []
    for field, (name, options) in enumerate(zip(preset.field_strategies, preset.field_options)):
        trains_as = strategies.get(name).trains_as if trainable else None
        layers.append(strategies.build(trains_as or name, data.cardinalities[field], dim, counts=data.counts[field],
                                       layer_name=f"field_{field}", **({} if trains_as else options)))
    return ctr_model(layers)


def compile_for_ctr(model: keras.Model, learning_rate: float | None = None, optimizer: str = "adam",
                    steps_per_execution: int = 1) -> None:
    """Binary cross-entropy (the log loss) and AUC, with `optimizer` at `learning_rate` (its CTR default if None).

    `adam` is `membed.optim.FusedAdam`, as in `membed.train.compile_for_ratings`;
    the other names are `membed.optim.NAMES`.
    """
    from membed import optim

    if optimizer not in CTR_LEARNING_RATES:
        raise ValueError(f"Unknown optimizer {optimizer!r}. Use one of: {', '.join(CTR_LEARNING_RATES)}.")
    rate = CTR_LEARNING_RATES[optimizer] if learning_rate is None else float(learning_rate)
    built = optim.FusedAdam(learning_rate=rate) if optimizer == "adam" else optim.get(optimizer, learning_rate=rate)
    model.compile(optimizer=built, loss="binary_crossentropy", metrics=[keras.metrics.AUC(name="auc")],
                  steps_per_execution=steps_per_execution)


def make_ctr_dataset(data, index: np.ndarray, batch_size: int, shuffle: bool, seed: int = 0):
    """(features, label) batches of rows `index` of `data`; with `shuffle`, reshuffled every epoch."""
    import tensorflow as tf

    features = tf.constant(data.features[index])
    labels = tf.constant(data.labels[index])
    rows = tf.data.Dataset.range(len(index))
    if shuffle:
        rows = rows.shuffle(len(index), seed=seed, reshuffle_each_iteration=True)

    def gather(picked):
        return tf.gather(features, picked), tf.gather(labels, picked)

    # Row numbers are shuffled and each batch gathered at once, as `membed.train.make_dataset` does.
    return rows.batch(batch_size).map(gather).prefetch(tf.data.AUTOTUNE)


def predict_clicks(model: keras.Model, data, index: np.ndarray) -> np.ndarray:
    """The model's click probability of rows `index` of `data`, float64."""
    dataset = make_ctr_dataset(data, index, PREDICT_BATCH_SIZE, shuffle=False)
    return np.asarray(model.predict(dataset.map(lambda features, _: features), verbose=0), dtype=np.float64)


@dataclasses.dataclass
class CtrResult:
    """One CTR fit; per-epoch lists have one entry per epoch run.

    Attributes:
        train_logloss, val_logloss, val_auc: per epoch (Keras's AUC, 200 thresholds).
        epochs_run: epochs trained before early stopping or the budget ended it.
        best_epoch: the epoch (1-based) of the lowest validation log loss, whose weights are kept.
        test_logloss, test_auc: exact, of the kept weights on the test rows.
        planted_logloss, planted_auc: the true probabilities' on the test rows (the Bayes optimum).
        excess_logloss: test_logloss - planted_logloss.
        fit_seconds: wall time of training (the epochs and their validation).
        params: the final model's parameters (after conversion, for `trains_as` strategies).
    """

    train_logloss: list[float]
    val_logloss: list[float]
    val_auc: list[float]
    epochs_run: int
    best_epoch: int
    test_logloss: float
    test_auc: float
    planted_logloss: float
    planted_auc: float
    excess_logloss: float
    fit_seconds: float
    params: int

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _convert_trained(model: keras.Model, preset: CtrPreset) -> keras.Model:
    """The trained model with each `trains_as` field converted to its strategy; the top MLP is shared."""
    layers = []
    for field, (name, options) in enumerate(zip(preset.field_strategies, preset.field_options)):
        layer, cls = model.get_layer(f"field_{field}"), strategies.get(name)
        layers.append(cls.from_trained(layer, **options) if cls.trains_as else layer)
    return ctr_model(layers, top=model.get_layer("top_mlp"))


def fit_ctr(data, preset: CtrPreset, train_idx, val_idx, test_idx, dim: int = DEFAULT_DIM,
            max_epochs: int = DEFAULT_MAX_EPOCHS, patience: int = DEFAULT_PATIENCE, batch_size: int = 1024,
            learning_rate: float | None = None, optimizer: str = "adam", seed: int = 0) -> CtrResult:
    """Seeds, builds and trains `preset` on `data` with early stopping; returns test metrics of the best epoch.

    Training stops when the validation log loss has not improved for
    `patience` epochs, or after `max_epochs`; the best epoch's weights are
    restored before the test rows are scored. A `trains_as` strategy
    (`quantized`) is trained as that one and converted after: its kept
    epoch's validation entries and the test metrics are the converted model's.

    Args:
        data: a `CtrData`.
        preset: one of `ctr_presets(...)`; one with an `error` raises ValueError.
        train_idx, val_idx, test_idx: disjoint row positions (`train_val_test_split`).
        dim: embedding width of every field.
        max_epochs, patience: the epoch budget and early stopping's patience, each >= 1.
        learning_rate: None for the optimizer's `CTR_LEARNING_RATES` entry.
        optimizer: `adam` (membed's FusedAdam) or another of `CTR_LEARNING_RATES`.
        seed: seeds the initial weights and the shuffling; the same seed gives the same numbers.

    Raises:
        membed.train.TrainingDiverged: the loss became NaN or infinite.
    """
    from membed.train import TrainingDiverged, set_seed

    for option, value in (("max_epochs", max_epochs), ("patience", patience), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"fit_ctr: invalid `{option}`: {value!r}. It must be an integer >= 1.")
    for option, index in (("train_idx", train_idx), ("val_idx", val_idx), ("test_idx", test_idx)):
        if len(index) == 0:
            raise ValueError(f"fit_ctr: `{option}` is empty; each split needs at least one row.")
    set_seed(seed)
    model = build_ctr_model(data, preset, dim, trainable=True)
    compile_for_ctr(model, learning_rate, optimizer, STEPS_PER_EXECUTION)
    rate = float(model.optimizer.learning_rate.numpy())
    callbacks = [keras.callbacks.TerminateOnNaN(),
                 keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True)]
    start = time.perf_counter()
    model.optimizer.build(model.trainable_variables)  # eagerly, not while tracing (see membed.train.train_model)
    history = model.fit(make_ctr_dataset(data, train_idx, batch_size, shuffle=True, seed=seed),
                        validation_data=make_ctr_dataset(data, val_idx, PREDICT_BATCH_SIZE, shuffle=False),
                        epochs=max_epochs, verbose=0, callbacks=callbacks, shuffle=False)
    fit_seconds = time.perf_counter() - start
    logs = history.history
    for name in ("loss", "val_loss"):
        for epoch, value in enumerate(logs.get(name, []), start=1):
            if not np.isfinite(value):
                raise TrainingDiverged(f"training diverged: {name} is {value} in epoch {epoch} "
                                       f"({preset.strategy}/{preset.preset}, {optimizer} at learning rate {rate:g}).")
    val_logloss, val_auc = [float(v) for v in logs["val_loss"]], [float(v) for v in logs["val_auc"]]
    best_epoch = int(np.argmin(val_logloss)) + 1
    if any(strategies.get(name).trains_as for name in preset.field_strategies):
        model = _convert_trained(model, preset)
        compile_for_ctr(model, rate, optimizer)
        probabilities = predict_clicks(model, data, val_idx)
        val_logloss[best_epoch - 1] = binary_logloss(data.labels[val_idx], probabilities)
        val_auc[best_epoch - 1] = binary_auc(data.labels[val_idx], probabilities)
    probabilities = predict_clicks(model, data, test_idx)
    test_logloss = binary_logloss(data.labels[test_idx], probabilities)
    planted_logloss = data.planted_logloss(test_idx)
    return CtrResult(
        train_logloss=[float(v) for v in logs["loss"]],
        val_logloss=val_logloss,
        val_auc=val_auc,
        epochs_run=len(val_logloss),
        best_epoch=best_epoch,
        test_logloss=test_logloss,
        test_auc=binary_auc(data.labels[test_idx], probabilities),
        planted_logloss=planted_logloss,
        planted_auc=data.planted_auc(test_idx),
        excess_logloss=test_logloss - planted_logloss,
        fit_seconds=fit_seconds,
        params=int(model.count_params()),
    )
