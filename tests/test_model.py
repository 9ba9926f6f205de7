import keras
import numpy as np

from membed import strategies
from membed.model import rating_model


def test_prediction_is_five_times_sigmoid_of_the_dot_product(tmp_path):
    users = strategies.build("full", 10, 4, layer_name="user_embedding")
    items = strategies.build("full", 7, 4, layer_name="item_embedding")
    model = rating_model(users, items)
    feed = {"user": np.array([0, 9, 3], dtype="int32"), "item": np.array([6, 0, 3], dtype="int32")}
    predicted = keras.ops.convert_to_numpy(model(feed))
    u = keras.ops.convert_to_numpy(users.embeddings)[feed["user"]]
    v = keras.ops.convert_to_numpy(items.embeddings)[feed["item"]]
    expected = 5.0 / (1.0 + np.exp(-(u * v).sum(axis=1)))
    np.testing.assert_allclose(predicted, expected, rtol=1e-5)
    assert model.count_params() == 10 * 4 + 7 * 4  # no biases

    model.save(tmp_path / "rating.keras")
    loaded = keras.saving.load_model(tmp_path / "rating.keras")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(feed)), predicted)
