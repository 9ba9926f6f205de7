"""Id streams of a dataset: what a benchmark case looks up, drawn from a synthetic dataset or one side of MovieLens.

A case names its ids by *dataset*: `synthetic-zipf` (Zipf-like popularity,
id 0 the most popular), `synthetic-uniform`, or a MovieLens variant
(`ml-100k`, ...) with a `side`, its users or its items. `DatasetIds` draws
seeded batches of ids from it and gives the per-id counts that
frequency-aware strategies are built with. It is a frozen dataclass whose
`as_dict` / `from_dict` round trip through JSON, so a case's ids can be
handed to another process.

Example:
    >>> ids = DatasetIds("synthetic-zipf", 10**6)
    >>> ids.sample(4, seed=1).shape, ids.counts().shape
    ((4,), (1000000,))
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

import numpy as np

from membed.data.movielens import CACHE_DIR_ENV, DATA_DIR_ENV, RatingsData, load_movielens
from membed.data.synthetic import uniform_ids, zipf_expected_counts, zipf_ids

# Datasets whose ids are drawn, not read; anything else is a MovieLens name.
SYNTHETIC_DATASETS = ("synthetic-zipf", "synthetic-uniform")
SIDES = ("users", "items")
# Zipf exponent of `synthetic-zipf` (membed.data.zipf_ids' default).
ZIPF_EXPONENT = 1.05
# Synthetic counts are the expected counts of this many draws per id.
DRAWS_PER_ID = 10
# The old name of `dataset` in a `DatasetIds` dict, accepted by `from_dict` for one release.
_OLD_DATASET_KEY = "vocab"


def load_ratings(name: str, data_dir: str | None = None, download: bool = False) -> RatingsData:
    """MovieLens variant `name`, loaded once and kept (the last four loaded), as `load_movielens` finds it.

    The cache is keyed on the arguments and on `$MEMBED_DATA_DIR` /
    `$MEMBED_CACHE_DIR`, so changing where data is looked for loads again.

    Raises:
        DatasetUnavailable: the variant is in none of the places looked in
            (and `download` is False, or the download failed).

    Example:
        >>> load_ratings("ml-100k").num_users
        943
    """
    return _load_ratings_cached(name, data_dir, bool(download), os.environ.get(DATA_DIR_ENV),
                                os.environ.get(CACHE_DIR_ENV))


@functools.lru_cache(maxsize=4)
def _load_ratings_cached(name: str, data_dir: str | None, download: bool, _data_env: str | None,
                         _cache_env: str | None) -> RatingsData:
    return load_movielens(name, data_dir=data_dir, download=download)


@dataclasses.dataclass(frozen=True)
class DatasetIds:
    """The ids of a dataset: a synthetic stream, or the users or items of a MovieLens variant.

    Args:
        dataset: `synthetic-zipf`, `synthetic-uniform` or a MovieLens name (`ml-100k` ...).
        vocab_size: number of ids; for MovieLens, `DatasetIds.movielens` sets it.
        side: `users` or `items` for MovieLens; None for synthetic datasets.
        data_dir: folder holding extracted MovieLens folders (else `$MEMBED_DATA_DIR`, the cache).
        download: let a MovieLens variant that is not found be downloaded.

    Example:
        >>> DatasetIds("synthetic-uniform", 1000).sample(3, seed=0)
        array([850, 636, 511])
    """

    dataset: str
    vocab_size: int
    side: str | None = None
    data_dir: str | None = None
    download: bool = False

    def __post_init__(self) -> None:
        label = type(self).__name__
        if not isinstance(self.dataset, str):
            raise ValueError(f"{label}: invalid `dataset`: {self.dataset!r}. Use one of: "
                             f"{', '.join(SYNTHETIC_DATASETS)} or a MovieLens name.")
        if self.dataset in SYNTHETIC_DATASETS:
            if self.side is not None:
                raise ValueError(f"{label}: a synthetic dataset has no `side`; got {self.side!r}.")
        elif self.side not in SIDES:
            raise ValueError(f"{label}: invalid `side`: {self.side!r}. Use one of: {', '.join(SIDES)}.")
        if isinstance(self.vocab_size, bool) or not isinstance(self.vocab_size, (int, np.integer)) or (
            self.vocab_size < 1
        ):
            raise ValueError(f"{label}: invalid `vocab_size`: {self.vocab_size!r}. It must be an integer >= 1.")

    @classmethod
    def movielens(cls, name: str, side: str, data_dir: str | None = None, download: bool = False) -> DatasetIds:
        """The users or items of MovieLens variant `name`, sized from its data.

        Raises:
            ValueError: `side` is not `users` or `items`.
            DatasetUnavailable: the variant is not found (see `load_ratings`).
        """
        if side not in SIDES:
            raise ValueError(f"{cls.__name__}: invalid `side`: {side!r}. Use one of: {', '.join(SIDES)}.")
        data = load_ratings(name, data_dir, download)
        size = data.num_users if side == "users" else data.num_items
        return cls(name, int(size), side, data_dir, download)

    @property
    def synthetic(self) -> bool:
        """True for ids drawn from a synthetic distribution, False for MovieLens."""
        return self.dataset in SYNTHETIC_DATASETS

    def _ratings(self) -> RatingsData:
        return load_ratings(self.dataset, self.data_dir, self.download)

    def sample(self, size: int, seed: int = 0) -> np.ndarray:
        """`size` int64 ids, seeded; MovieLens draws rows of the ratings file, so popular ids come often."""
        if self.dataset == "synthetic-zipf":
            return zipf_ids(self.vocab_size, size, exponent=ZIPF_EXPONENT, seed=seed)
        if self.dataset == "synthetic-uniform":
            return uniform_ids(self.vocab_size, size, seed=seed)
        column = self._ratings().users if self.side == "users" else self._ratings().items
        rows = np.random.default_rng(seed).integers(0, len(column), size=size)
        return column[rows].astype(np.int64)

    def counts(self) -> np.ndarray:
        """Per-id counts for strategies that use frequencies (expected counts for synthetic datasets)."""
        if self.dataset == "synthetic-zipf":
            return zipf_expected_counts(self.vocab_size, DRAWS_PER_ID * self.vocab_size, ZIPF_EXPONENT)
        if self.dataset == "synthetic-uniform":
            return np.full(self.vocab_size, float(DRAWS_PER_ID))
        data = self._ratings()
        return np.asarray(data.user_counts if self.side == "users" else data.item_counts)

    def as_dict(self) -> dict[str, Any]:
        """The fields as a JSON-able dict; `from_dict` rebuilds the same ids."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, spec: dict) -> DatasetIds:
        """Rebuilds ids from `as_dict()`; the old key `vocab` is accepted for `dataset` for one release.

        Example:
            >>> DatasetIds.from_dict({"vocab": "synthetic-zipf", "vocab_size": 10}).dataset
            'synthetic-zipf'
        """
        if not isinstance(spec, dict):
            raise ValueError(f"{cls.__name__}.from_dict: expected a dict; got {type(spec).__name__}.")
        fields = dict(spec)
        if _OLD_DATASET_KEY in fields:
            if "dataset" in fields:
                raise ValueError(f"{cls.__name__}.from_dict: both `dataset` and its old name "
                                 f"`{_OLD_DATASET_KEY}` are given; keep `dataset`.")
            fields["dataset"] = fields.pop(_OLD_DATASET_KEY)
        known = [field.name for field in dataclasses.fields(cls)]
        unknown = sorted(set(fields) - set(known))
        if unknown:
            raise ValueError(f"{cls.__name__}.from_dict: unknown key {unknown[0]!r}. Valid keys: {', '.join(known)}.")
        return cls(**fields)
