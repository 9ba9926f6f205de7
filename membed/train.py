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


class TrainingDiverged(FloatingPointError):
    """A fit whose loss became NaN or infinite; the message says in which epoch and at what step size."""


@dataclasses.dataclass
class TrainResult:
    """Per-epoch metrics of one fit; lists have one entry per epoch run.

    Attributes:
        best_epoch: the epoch (1-based) whose weights the model holds: with early
            stopping the one of lowest validation MSE (restored), else the last.
        test_mse, test_mae, test_rmse: the test split's metrics with the final
            (with early stopping: the best epoch's) weights; None without a test split.
    """

    train_mse: list[float]
    val_mse: list[float]
    val_mae: list[float]
    val_rmse: list[float]
    fit_seconds: float
    params: int
    best_epoch: int = 0
    test_mse: float | None = None
    test_mae: float | None = None
    test_rmse: float | None = None

    @property
    def epochs_run(self) -> int:
        return len(self.val_mse)

    @property
    def best_val_mse(self) -> float:
        return self.val_mse[self.best_epoch - 1]

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_history(cls, history: keras.callbacks.History, fit_seconds: float, params: int,
                     restored_best: bool = False) -> "TrainResult":
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
            best_epoch=int(np.argmin(logs["val_loss"])) + 1 if restored_best else len(logs["val_loss"]),
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
    patience: int | None = None,
    test_idx: np.ndarray | None = None,
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
        patience: early stopping: with a number, `epochs` is a budget, training
            stops once validation MSE has not improved for `patience` epochs, and
            the best epoch's weights are restored. None (the example's recipe,
            `membed reproduce`) trains exactly `epochs` epochs.
        test_idx: rows of a test split, evaluated once after training
            (`test_mse`, `test_mae`, `test_rmse` of the result).

    Raises:
        TrainingDiverged: the training loss became NaN or infinite.
    """
    if epochs < 1:
        raise ValueError(f"Invalid `epochs`: {epochs}. It must be >= 1.")
    if batch_size < 1:
        raise ValueError(f"Invalid `batch_size`: {batch_size}. It must be >= 1.")
    if patience is not None and (isinstance(patience, bool) or not isinstance(patience, int) or patience < 1):
        raise ValueError(f"Invalid `patience`: {patience!r}. It must be an integer >= 1, or None (no early stopping).")
    compile_for_ratings(model, learning_rate, jit_compile, steps_per_execution, fused_adam, optimizer)
    train = make_dataset(data, train_idx, batch_size, shuffle=True, seed=seed)
    val = make_dataset(data, val_idx, batch_size, shuffle=False)
    callbacks: list[keras.callbacks.Callback] = [keras.callbacks.TerminateOnNaN()]
    if patience is not None:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience,
                                                       restore_best_weights=True))
    if progress is not None:
        callbacks.append(_EpochProgress(progress, progress.add_task(model.name, total=epochs)))
    start = time.perf_counter()
    # Created eagerly, the optimizer's slots cost milliseconds; left to `fit`,
    # they are created while the train step is traced, which took ~0.9 s of a
    # 3.6 s ml-100k epoch (py-spy: TF lifts each initializer out of the graph).
    model.optimizer.build(model.trainable_variables)
    history = model.fit(train, validation_data=val, epochs=epochs, verbose=0, callbacks=callbacks, shuffle=False)
    fit_seconds = time.perf_counter() - start
    check_finite(history, learning_rate, optimizer)
    result = TrainResult.from_history(history, fit_seconds, int(model.count_params()), restored_best=patience is not None)
    if test_idx is not None:
        result.test_mse, result.test_mae = evaluate_ratings(model, data, test_idx)
        result.test_rmse = float(np.sqrt(result.test_mse))
    return result


def check_finite(history: keras.callbacks.History, learning_rate: float, optimizer: str) -> None:
    """Raises `TrainingDiverged` when an epoch's loss (or the last, cut short by TerminateOnNaN) is not finite."""
    for name in ("loss", "val_loss"):
        for epoch, value in enumerate(history.history.get(name, []), start=1):
            if not np.isfinite(value):
                raise TrainingDiverged(f"training diverged: {name} is {value} in epoch {epoch} "
                                       f"({optimizer} at learning rate {learning_rate:g}).")


def evaluate_ratings(model: keras.Model, data, index: np.ndarray, batch_size: int = 1024) -> tuple[float, float]:
    """(MSE, MAE) of a compiled rating model on rows `index` of `data`."""
    metrics = model.evaluate(make_dataset(data, index, batch_size, shuffle=False), verbose=0, return_dict=True)
    return float(metrics["loss"]), float(metrics["mae"])
