"""A seeded training loop fed from in-memory arrays through tf.data."""

from __future__ import annotations

import dataclasses
import time

import keras
import numpy as np
import tensorflow as tf

from membed import optim
from membed.optim import FusedAdam

# The rating model's step size per optimizer: adam's is the example's, lazy_adam's the same
# (the two differ by their update rule only); the others the best of a few tried on one
# ml-100k epoch (bench/README.md, "accuracy", lists them: at 1e-3 AdaGrad and SGD leave the
# predictions where they start). The accuracy suite and `membed train --optimizer` use them.
RATING_LEARNING_RATES = {"adam": 1e-3, "lazy_adam": 1e-3, "adagrad": 1.0, "rowwise_adagrad": 0.1, "sgd": 2.0}

# Batches per compiled call; see `train_model`.
STEPS_PER_EXECUTION = 32


def set_seed(seed: int) -> None:
    """Seeds Python, NumPy, TensorFlow and Keras (initializers, shuffling)."""
    keras.utils.set_random_seed(seed)


@dataclasses.dataclass
class TrainResult:
    """Per-epoch metrics of one fit; lists have one entry per epoch."""

    train_mse: list[float]
    val_mse: list[float]
    val_mae: list[float]
    val_rmse: list[float]
    fit_seconds: float
    params: int

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_history(cls, history: keras.callbacks.History, fit_seconds: float, params: int) -> "TrainResult":
        logs = history.history
        return cls(
            train_mse=[float(v) for v in logs["loss"]],
            val_mse=[float(v) for v in logs["val_loss"]],
            val_mae=[float(v) for v in logs["val_mae"]],
            # The loss is the mean squared error over all validation ratings, so its
            # square root is their RMSE; no separate metric runs every step.
            val_rmse=[float(np.sqrt(v)) for v in logs["val_loss"]],
            fit_seconds=fit_seconds,
            params=params,
        )


def compile_for_ratings(model: keras.Model, learning_rate: float = 1e-3, jit_compile: bool | str = False,
                        steps_per_execution: int = 1, fused_adam: bool = True, optimizer: str = "adam") -> None:
    """The example's recipe: Adam, MSE loss, MAE metric.

    `fused_adam` uses `membed.optim.FusedAdam` (one update op per variable)
    instead of Keras's Adam; see there for the one difference, on sparse
    gradients. `optimizer` names another of `membed.optim.NAMES` to train
    with instead (`adam`, the default, is the example's Adam as `fused_adam`
    says); ValueError lists the valid names.
    """
    if optimizer == "adam":
        built = (FusedAdam if fused_adam else keras.optimizers.Adam)(learning_rate=learning_rate)
    else:
        built = optim.get(optimizer, learning_rate=learning_rate)
    model.compile(
        optimizer=built,
        loss="mse",
        metrics=[keras.metrics.MeanAbsoluteError(name="mae")],
        jit_compile=jit_compile,
        steps_per_execution=steps_per_execution,
    )


def make_dataset(data, index: np.ndarray, batch_size: int, shuffle: bool, seed: int = 0) -> tf.data.Dataset:
    """(features, rating) batches from the in-memory arrays of `data`, rows `index`.

    With `shuffle`, each epoch reshuffles all rows. Only row numbers pass
    through the shuffle; each batch is then gathered at once, so tf.data works
    per batch rather than per rating (iterating an ml-100k epoch went from
    0.43 s to 0.31 s) with the same order as shuffling the ratings.
    """
    users = tf.constant(data.users[index].astype("int32"))
    items = tf.constant(data.items[index].astype("int32"))
    ratings = tf.constant(data.ratings[index].astype("float32"))
    rows = tf.data.Dataset.range(len(index))
    if shuffle:
        rows = rows.shuffle(len(index), seed=seed, reshuffle_each_iteration=True)

    def gather(picked):
        return {"user": tf.gather(users, picked), "item": tf.gather(items, picked)}, tf.gather(ratings, picked)

    return rows.batch(batch_size).map(gather).prefetch(tf.data.AUTOTUNE)


class _EpochProgress(keras.callbacks.Callback):
    def __init__(self, progress, task):
        super().__init__()
        self.progress, self.task = progress, task

    def on_epoch_end(self, epoch, logs=None):
        self.progress.advance(self.task)


def train_model(
    model: keras.Model,
    data,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    epochs: int = 3,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    seed: int = 0,
    jit_compile: bool | str = False,
    steps_per_execution: int = STEPS_PER_EXECUTION,
    fused_adam: bool = True,
    progress=None,
    optimizer: str = "adam",
) -> TrainResult:
    """Trains with the example's recipe (Adam, MSE loss, MAE metric) and returns per-epoch metrics.

    Args:
        jit_compile: compile the train step with XLA (slower on CPU for these
            gather-bound models; offered for accelerators).
        steps_per_execution: batches run per call of the compiled step. The
            batches and updates are the same as with 1; it only saves the
            per-call Python dispatch, which profiling showed to be about 45% of
            a step of the example's model on CPU.
        fused_adam: train with `membed.optim.FusedAdam` (textbook Adam as one op
            per variable; the default) rather than `keras.optimizers.Adam`.
        progress: an optional `rich.progress.Progress`; one step is advanced per epoch.
        optimizer: a name of `membed.optim.NAMES` to train with (default `adam`,
            the example's; see `compile_for_ratings`).
    """
    if epochs < 1:
        raise ValueError(f"Invalid `epochs`: {epochs}. It must be >= 1.")
    if batch_size < 1:
        raise ValueError(f"Invalid `batch_size`: {batch_size}. It must be >= 1.")
    compile_for_ratings(model, learning_rate, jit_compile, steps_per_execution, fused_adam, optimizer)
    train = make_dataset(data, train_idx, batch_size, shuffle=True, seed=seed)
    val = make_dataset(data, val_idx, batch_size, shuffle=False)
    callbacks = []
    if progress is not None:
        callbacks.append(_EpochProgress(progress, progress.add_task(model.name, total=epochs)))
    start = time.perf_counter()
    # Created eagerly, the optimizer's slots cost milliseconds; left to `fit`,
    # they are created while the train step is traced, which took ~0.9 s of a
    # 3.6 s ml-100k epoch (py-spy: TF lifts each initializer out of the graph).
    model.optimizer.build(model.trainable_variables)
    history = model.fit(train, validation_data=val, epochs=epochs, verbose=0, callbacks=callbacks, shuffle=False)
    return TrainResult.from_history(history, time.perf_counter() - start, int(model.count_params()))
