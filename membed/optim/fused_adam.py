"""Adam with one fused update op per variable on TensorFlow."""

from __future__ import annotations

import keras

from membed.optim.base import handle


@keras.saving.register_keras_serializable(package="membed")
class FusedAdam(keras.optimizers.Adam):
    """`keras.optimizers.Adam`, updating each variable with TensorFlow's fused `ResourceApplyAdam`.

    Keras 3's Adam writes its update as about twenty separate ops per
    variable; at the example's batch of 128 a step of a small rating model is
    bound by per-op dispatch, not arithmetic, so those ops dominate it.
    `ResourceApplyAdam` computes the same update in one kernel:

        m += (g - m) * (1 - beta_1);  v += (g**2 - v) * (1 - beta_2)
        var -= lr * sqrt(1 - beta_2**t) / (1 - beta_1**t) * m / (sqrt(v) + epsilon)

    Sparse (`IndexedSlices`) gradients are summed into a dense gradient
    first, so this is textbook Adam, as tf.keras 2's Adam (the Keras
    example's era) computed it after merging duplicate ids. Keras 3.15's Adam
    squares each occurrence's slice before summing, so when a batch repeats
    an id its second moment differs (20 steps with repeats: weights apart by
    up to 0.03 at lr 1e-2; without repeats, and against Keras's Adam fed the
    dense gradient, identical to 1e-6; tests/test_optim.py). Other backends,
    `amsgrad=True` and non-float32 variables use Keras's own update.

    Example:
        >>> model.compile(optimizer=FusedAdam(learning_rate=1e-3), loss="mse")
    """

    def update_step(self, gradient, variable, learning_rate):
        if keras.backend.backend() != "tensorflow" or self.amsgrad or variable.dtype != "float32":
            return super().update_step(gradient, variable, learning_rate)
        import tensorflow as tf

        index = self._get_variable_index(variable)
        step = tf.cast(self.iterations + 1, tf.float32)
        tf.raw_ops.ResourceApplyAdam(
            var=handle(variable),
            m=handle(self._momentums[index]),
            v=handle(self._velocities[index]),
            beta1_power=tf.pow(tf.constant(self.beta_1, tf.float32), step),
            beta2_power=tf.pow(tf.constant(self.beta_2, tf.float32), step),
            lr=tf.cast(learning_rate, tf.float32),
            beta1=tf.constant(self.beta_1, tf.float32),
            beta2=tf.constant(self.beta_2, tf.float32),
            epsilon=tf.constant(self.epsilon, tf.float32),
            grad=tf.convert_to_tensor(gradient, tf.float32),
        )
