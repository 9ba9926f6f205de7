"""The rating model of the Keras example, built from any pair of strategies."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from membed import strategies


@keras.saving.register_keras_serializable(package="membed")
class DotRating(keras.layers.Layer):
    """`sigmoid(<user, item>) * max_rating`, the example's prediction head (no biases)."""

    def __init__(self, max_rating: float = 5.0, **kwargs):
        super().__init__(**kwargs)
        self.max_rating = float(max_rating)

    def call(self, user_vectors, item_vectors):
        logits = ops.sum(user_vectors * item_vectors, axis=-1)
        return ops.sigmoid(logits) * self.max_rating

    def get_config(self):
        return {**super().get_config(), "max_rating": self.max_rating}


def rating_model(user_layer: keras.layers.Layer, item_layer: keras.layers.Layer,
                 name: str = "rating_model") -> keras.Model:
    """Dot-product rating model: inputs {"user", "item"} (int32 indices) -> rating in (0, 5).

    Example:
        >>> model = rating_model(strategies.build("full", 943, 64), strategies.build("full", 1682, 64))
    """
    user = keras.Input(shape=(), dtype="int32", name="user")
    item = keras.Input(shape=(), dtype="int32", name="item")
    rating = DotRating(name="rating")(user_layer(user), item_layer(item))
    return keras.Model({"user": user, "item": item}, rating, name=name)


def pair_model(
    data,
    user: str,
    item: str,
    dim: int = 64,
    user_options: dict | None = None,
    item_options: dict | None = None,
) -> keras.Model:
    """Builds the rating model with strategy `user` on users and `item` on items of `data`.

    Strategies that use per-id counts get the counts of `data` (as the example
    sorts movies by rating count).
    """
    user_layer = strategies.build(user, data.num_users, dim, counts=np.asarray(data.user_counts),
                                  layer_name="user_embedding", **(user_options or {}))
    item_layer = strategies.build(item, data.num_items, dim, counts=np.asarray(data.item_counts),
                                  layer_name="item_embedding", **(item_options or {}))
    return rating_model(user_layer, item_layer)
