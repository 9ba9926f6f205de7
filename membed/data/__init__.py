"""Ratings data: MovieLens loaders with a verified download cache, synthetic ids and planted ratings, splits,
and the id streams of a dataset (`DatasetIds`)."""

from membed.data.ctr import (
    CTR_DATASET,
    CtrData,
    binary_auc,
    binary_logloss,
    planted_ctr_logits,
    synthetic_ctr,
)
from membed.data.download import (
    DataError,
    DatasetUnavailable,
    archive_url,
    clear_failed_downloads,
    download_archive,
    extract_archive,
    fetch_dataset,
)
from membed.data.ids import (
    SIDES,
    SYNTHETIC_DATASETS,
    DatasetIds,
    load_ratings,
)
from membed.data.movielens import (
    MOVIELENS,
    DatasetInfo,
    RatingsData,
    SourceHints,
    dataset_info,
    default_cache_dir,
    find_movielens,
    load_movielens,
    read_ratings,
)
from membed.data.split import random_split, train_val_test_split
from membed.data.synthetic import (
    planted_expected_ratings,
    planted_ratings,
    uniform_ids,
    zipf_expected_counts,
    zipf_ids,
)

__all__ = [
    "CTR_DATASET",
    "MOVIELENS",
    "SIDES",
    "SYNTHETIC_DATASETS",
    "CtrData",
    "DataError",
    "DatasetIds",
    "DatasetInfo",
    "DatasetUnavailable",
    "RatingsData",
    "SourceHints",
    "archive_url",
    "binary_auc",
    "binary_logloss",
    "clear_failed_downloads",
    "dataset_info",
    "default_cache_dir",
    "download_archive",
    "extract_archive",
    "fetch_dataset",
    "find_movielens",
    "load_movielens",
    "load_ratings",
    "planted_ctr_logits",
    "planted_expected_ratings",
    "planted_ratings",
    "random_split",
    "train_val_test_split",
    "read_ratings",
    "synthetic_ctr",
    "uniform_ids",
    "zipf_expected_counts",
    "zipf_ids",
]
