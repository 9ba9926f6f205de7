"""Helpers shared by the strategy tests: teach a layer a planted target, randomise weights."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


def fit_to_teacher(student, teacher, ids, steps=80, learning_rate=0.05) -> tuple[float, float]:
    """MSE of `student` against `teacher`'s outputs before and after `steps` full-batch Adam steps."""
    return fit_to_targets(student, ids, ops.convert_to_numpy(teacher(ids)), steps, learning_rate)


def fit_to_targets(layer, ids, targets, steps=60, learning_rate=0.01) -> tuple[float, float]:
    """MSE of `layer` against `targets` before and after `steps` full-batch Adam steps."""
    model = keras.Sequential([keras.Input(shape=(), dtype="int32"), layer])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mse")
    before = model.evaluate(ids, targets, batch_size=len(ids), verbose=0)
    # One epoch over `steps` copies of the batch: far less per-epoch overhead than `steps` epochs.
    model.fit(
        np.tile(ids, steps), np.tile(targets, (steps, 1)), batch_size=len(ids), shuffle=False, verbose=0
    )
    return before, model.evaluate(ids, targets, batch_size=len(ids), verbose=0)


def randomise_weights(layer, seed=0) -> None:
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.normal(size=w.shape).astype("float32") for w in layer.get_weights()])
