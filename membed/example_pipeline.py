"""The Keras example's whole training pipeline, ported as a speed and accuracy peer.

What the example does, kept here on purpose: ids become strings `user_<id>` /
`movie_<id>`, ratings are written to `|`-separated CSV files that
`make_csv_dataset` re-parses every epoch, string ids go through
`StringLookup`, the QR layer looks up `index // num_buckets` and
`index % num_buckets`, and the MD layer runs one `StringLookup`, one gather
and one projection per block for every id and masks the results.

`example_pipeline_fit` trains that on a `RatingsData` split; membed's own
pipeline (in-memory `tf.data`, integer ids, `qr` and `mixed_dim`) is compared
with it in `bench/test_pipeline.py`. Only the split is shared (seeded, so
both see the same rows) instead of the example's unseeded `np.random.rand`.

References:
    Keras example "Memory-efficient embeddings for recommendation systems"
    (Khalid Salama, 2021).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from membed.strategies.example_md import example_boundaries, example_dims
from membed.train import TrainResult, compile_for_ratings

CSV_COLUMNS = ["user_id", "movie_id", "rating"]


class StringQREmbedding(keras.layers.Layer):
    """The example's QREmbedding: StringLookup, then quotient x remainder rows."""

    def __init__(self, vocabulary, embedding_dim, num_buckets, **kwargs):
        super().__init__(**kwargs)
        self.num_buckets = num_buckets
        self.index_lookup = keras.layers.StringLookup(vocabulary=vocabulary, mask_token=None, num_oov_indices=0)
        # Sized so that the quotient cannot run out of range (the example's one crash).
        quotient_rows = max(num_buckets, math.ceil(len(vocabulary) / num_buckets))
        self.q_embeddings = keras.layers.Embedding(quotient_rows, embedding_dim)
        self.r_embeddings = keras.layers.Embedding(num_buckets, embedding_dim)

    def call(self, inputs):
        index = self.index_lookup(inputs)
        quotient = tf.math.floordiv(index, self.num_buckets)
        remainder = tf.math.floormod(index, self.num_buckets)
        return self.q_embeddings(quotient) * self.r_embeddings(remainder)


class StringMDEmbedding(keras.layers.Layer):
    """The example's MixedDimensionEmbedding: every id through every block, masked."""

    def __init__(self, blocks_vocabulary, blocks_embedding_dims, base_embedding_dim, **kwargs):
        super().__init__(**kwargs)
        self.base_embedding_dim = base_embedding_dim
        self.lookups, self.embeddings, self.projections = [], [], []
        for vocabulary, dim in zip(blocks_vocabulary, blocks_embedding_dims):
            self.lookups.append(keras.layers.StringLookup(vocabulary=vocabulary, mask_token=None))
            self.embeddings.append(keras.layers.Embedding(len(vocabulary) + 1, dim))
            self.projections.append(None if dim == base_embedding_dim else keras.layers.Dense(base_embedding_dim))

    def call(self, inputs):
        embeddings = tf.zeros((tf.shape(inputs)[0], self.base_embedding_dim))
        for lookup, embedding, projection in zip(self.lookups, self.embeddings, self.projections):
            token = lookup(inputs)
            mask = tf.expand_dims(tf.cast(token != 0, tf.float32), -1)
            block = embedding(token)
            if projection is not None:
                block = projection(block)
            embeddings = embeddings + block * mask
        return embeddings


def example_model(user_vocabulary, movie_vocabulary, movie_counts, dim: int = 64) -> keras.Model:
    """The example's memory-efficient model on string ids."""
    num_buckets = max(1, len(user_vocabulary) // 50)
    by_frequency = [movie_vocabulary[i] for i in np.argsort(-np.asarray(movie_counts), kind="stable")]
    ends = [0, *example_boundaries(len(movie_vocabulary)), len(movie_vocabulary)]
    blocks = [by_frequency[start:end] for start, end in zip(ends[:-1], ends[1:])]
    user_input = keras.Input(name="user_id", shape=(), dtype="string")
    movie_input = keras.Input(name="movie_id", shape=(), dtype="string")
    user = StringQREmbedding(user_vocabulary, dim, num_buckets, name="user_embedding")(user_input)
    movie = StringMDEmbedding(blocks, example_dims(dim), dim, name="movie_embedding")(movie_input)
    logits = keras.layers.Dot(axes=1, name="dot_similarity")([user, movie])
    prediction = keras.activations.sigmoid(logits) * 5
    return keras.Model(inputs=[user_input, movie_input], outputs=prediction, name="example_memory_efficient")


def write_example_csv(data, index: np.ndarray, path: Path) -> Path:
    """Writes rows `index` as the example does: `user_<id>|movie_<id>|rating`, no header."""
    frame = pd.DataFrame(
        {
            "user_id": ["user_" + str(u) for u in data.user_vocab[data.users[index]]],
            "movie_id": ["movie_" + str(m) for m in data.item_vocab[data.items[index]]],
            "rating": data.ratings[index].astype(float),
        }
    )
    frame.to_csv(path, index=False, sep="|", header=False)
    return path


def csv_dataset(path: Path, batch_size: int = 128, shuffle: bool = True, rows: int | None = None) -> tf.data.Dataset:
    """The example's CSV dataset; with `rows` (the file's), its batch count is declared, so Keras knows where an
    epoch ends instead of warning that the input "ran out of data" at the end of each one."""
    dataset = tf.data.experimental.make_csv_dataset(
        str(path), batch_size=batch_size, column_names=CSV_COLUMNS, label_name="rating",
        num_epochs=1, header=False, field_delim="|", shuffle=shuffle,
    )
    if rows is not None:
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(-(-rows // batch_size)))
    return dataset


def example_pipeline_fit(data, train_idx, val_idx, workdir: str | Path, epochs: int = 1,
                         batch_size: int = 128, learning_rate: float = 1e-3, dim: int = 64) -> TrainResult:
    """Runs the example's pipeline end to end (CSV written, then parsed every epoch)."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    train_csv = write_example_csv(data, train_idx, workdir / "train_data.csv")
    eval_csv = write_example_csv(data, val_idx, workdir / "eval_data.csv")
    user_vocabulary = ["user_" + str(u) for u in data.user_vocab]
    movie_vocabulary = ["movie_" + str(m) for m in data.item_vocab]
    model = example_model(user_vocabulary, movie_vocabulary, data.item_counts, dim)
    compile_for_ratings(model, learning_rate, fused_adam=False)  # the example's keras.optimizers.Adam
    start = time.perf_counter()
    # The CSV dataset shuffles its own rows, as the example's does; fit's shuffle does not apply to a dataset.
    history = model.fit(csv_dataset(train_csv, batch_size, rows=len(train_idx)), epochs=epochs, shuffle=False,
                        validation_data=csv_dataset(eval_csv, batch_size, shuffle=False, rows=len(val_idx)),
                        verbose=0)
    return TrainResult.from_history(history, time.perf_counter() - start, int(model.count_params()))
