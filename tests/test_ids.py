"""membed.data.ids: the ids of a dataset, synthetic or one side of MovieLens, seeded and JSON round-tripping."""

import json

import numpy as np
import pytest

from membed import data
from membed.data.ids import SIDES, SYNTHETIC_DATASETS, DatasetIds, load_ratings


@pytest.mark.parametrize("dataset", SYNTHETIC_DATASETS)
def test_synthetic_ids_are_seeded_and_in_range(dataset):
    ids = DatasetIds(dataset, 10**8)
    first, again, other = ids.sample(4096, seed=3), ids.sample(4096, seed=3), ids.sample(4096, seed=4)
    assert first.dtype == np.int64
    assert first.min() >= 0 and first.max() < 10**8
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert DatasetIds(dataset, 1000).counts().shape == (1000,)
    assert ids.synthetic


def test_zipf_counts_put_low_ids_first_and_uniform_counts_are_flat():
    zipf = DatasetIds("synthetic-zipf", 1000).counts()
    assert zipf[0] > zipf[10] > zipf[999]
    assert set(DatasetIds("synthetic-uniform", 1000).counts()) == {10.0}


def test_movielens_ids_are_users_or_items(movielens_dir, monkeypatch):
    monkeypatch.setenv("MEMBED_DATA_DIR", str(movielens_dir))
    users = DatasetIds.movielens("ml-100k", "users")
    items = DatasetIds.movielens("ml-100k", "items")
    assert (users.dataset, users.side, users.vocab_size) == ("ml-100k", "users", 943)
    assert items.vocab_size == 1682 and not items.synthetic
    assert items.sample(1000, seed=0).max() < 1682
    np.testing.assert_array_equal(items.sample(50, seed=1), items.sample(50, seed=1))
    assert users.counts().sum() == 100_000
    assert DatasetIds.from_dict(json.loads(json.dumps(users.as_dict()))) == users


def test_load_ratings_loads_once_per_place(movielens_dir, monkeypatch):
    monkeypatch.setenv("MEMBED_DATA_DIR", str(movielens_dir))
    assert load_ratings("ml-100k") is load_ratings("ml-100k", None, False)
    assert load_ratings("ml-100k").num_items == 1682


def test_from_dict_accepts_the_old_key_vocab_for_one_release():
    ids = DatasetIds.from_dict({"vocab": "synthetic-zipf", "vocab_size": 10})
    assert ids == DatasetIds("synthetic-zipf", 10)
    assert "vocab" not in ids.as_dict() and ids.as_dict()["dataset"] == "synthetic-zipf"
    with pytest.raises(ValueError, match="both `dataset` and its old name `vocab`"):
        DatasetIds.from_dict({"vocab": "synthetic-zipf", "dataset": "synthetic-zipf", "vocab_size": 10})
    with pytest.raises(ValueError, match="unknown key 'stream'. Valid keys: dataset, vocab_size"):
        DatasetIds.from_dict({"stream": "synthetic-zipf", "vocab_size": 10})


@pytest.mark.parametrize(
    "arguments, message",
    [
        (("ml-100k", 943, "movies"), "invalid `side`: 'movies'. Use one of: users, items"),
        (("synthetic-zipf", 943, "users"), "a synthetic dataset has no `side`"),
        (("synthetic-zipf", 0), "invalid `vocab_size`: 0"),
        (("synthetic-zipf", True), "invalid `vocab_size`: True"),
        ((None, 10), "invalid `dataset`: None"),
    ],
)
def test_bad_fields_are_named(arguments, message):
    with pytest.raises(ValueError, match=message):
        DatasetIds(*arguments)


def test_movielens_rejects_a_bad_side_before_loading():
    with pytest.raises(ValueError, match="invalid `side`: 'movies'"):
        DatasetIds.movielens("ml-100k", "movies")


def test_membed_data_exports_the_one_name():
    assert data.DatasetIds is DatasetIds and data.load_ratings is load_ratings
    assert data.SYNTHETIC_DATASETS == ("synthetic-zipf", "synthetic-uniform") and data.SIDES == SIDES


def test_the_old_name_is_a_thin_alias():
    from membed import measure

    old = measure.IdSource("synthetic-zipf", 10**6)
    assert isinstance(old, DatasetIds) and old.vocab == old.dataset == "synthetic-zipf"
    np.testing.assert_array_equal(old.sample(8, seed=2), DatasetIds("synthetic-zipf", 10**6).sample(8, seed=2))
    assert measure.IdSource.from_dict({"vocab": "synthetic-uniform", "vocab_size": 5}) == measure.IdSource(
        "synthetic-uniform", 5)
    assert measure.SYNTHETIC_VOCABS == SYNTHETIC_DATASETS
