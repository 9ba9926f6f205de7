"""Synthetic click-through data: multi-field Zipf ids and clicks drawn from a planted factorization machine.

Each row has one categorical id per field, drawn Zipf-like (id 0 the most
popular) from that field's vocabulary. Its click is drawn Bernoulli from the
planted logistic factorization machine

    logit = b + sum_f w_f[x_f] + sum_{f<g} <v_f[x_f], v_g[x_g]>

whose per-id weight `w_f[i]` and factors `v_f[i]` (rank `rank`) are pure
functions of `(seed, f, i)`: a counter-based hash turned Gaussian, as the
planted ratings of `synthetic.py` do. Only ids that are drawn are ever
materialised, so a field of 10**6 ids costs memory for its rows alone.

Since the true click probability of every row is known, the Bayes-optimal log
loss and AUC of any sample are too (`CtrData.planted_logloss`,
`CtrData.planted_auc`); a model's excess log loss is its distance from them.
At the defaults (8 fields of 100 .. 10**6 ids, rank 8) the click rate is
17-21% depending on the seed (the head ids' weights shift it), the Bayes AUC
about 0.81 and the Bayes log loss 0.36-0.40, against 0.46-0.51 for the
constant predictor (seeds 0-4, 3e5 rows).

References:
    S. Rendle, "Factorization Machines", ICDM 2010 (the planted model).
    M. Naumov et al., "Deep Learning Recommendation Model for Personalization
    and Recommendation Systems", 2019 (multi-field Zipf categorical CTR data).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from membed.data.synthetic import _check_exponent, _check_int, _gaussian_factors, _zipf_from_rng

CTR_DATASET = "synthetic-ctr"
# Eight fields from 1e2 to 1e6 ids, the spread of Criteo's and Avazu's categorical fields.
DEFAULT_CARDINALITIES = (100, 1_000, 10_000, 100_000, 1_000_000, 300, 3_000, 30_000)
# Logit scale: b, and the standard deviations of the summed first-order and pairwise terms.
# Chosen for a click rate of ~20% and a Bayes AUC of ~0.81 (module docstring); they do
# not depend on the number of fields or the rank, which set only how the spread divides.
BIAS = -2.0
LINEAR_STD = 1.0
PAIRWISE_STD = 1.0
_MAX_INT32 = np.iinfo(np.int32).max
# Stream tags: ids of field f use _ID_STREAM + f, its weights _FACTOR_STREAM + f, labels _LABEL_STREAM.
_ID_STREAM, _FACTOR_STREAM, _LABEL_STREAM = 1 << 20, 2 << 20, 3 << 20
_CHUNK_ROWS = 1 << 18
# Probabilities are clipped this far from 0 and 1 before a log, as Keras's cross-entropy does.
LOG_EPSILON = 1e-7


def _check_cardinalities(function: str, cardinalities) -> tuple[int, ...]:
    message = (f"{function}: invalid `cardinalities`: {cardinalities!r}. "
               f"Give at least 2 integers, each in 1..{_MAX_INT32} (one per field).")
    try:
        values = tuple(cardinalities)
    except TypeError:
        raise ValueError(message) from None
    if len(values) < 2 or any(
        isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 1 <= v <= _MAX_INT32 for v in values
    ):
        raise ValueError(message)
    return tuple(int(v) for v in values)


def _check_index(owner: str, index, size: int) -> np.ndarray:
    """Integer positions or a boolean mask of `size` rows; None means every row."""
    if index is None:
        return np.arange(size)
    index = np.asarray(index)
    if index.dtype == bool:
        if index.shape != (size,):
            raise ValueError(f"{owner}: invalid `index`: a boolean mask of shape {index.shape}; it must be ({size},).")
        return np.flatnonzero(index)
    if not np.issubdtype(index.dtype, np.integer) or index.ndim != 1:
        raise ValueError(f"{owner}: invalid `index` ({index.dtype}, {index.ndim}-D). Use 1-D integers or booleans.")
    if index.size and (index.min() < -size or index.max() >= size):
        raise ValueError(f"{owner}: invalid `index`: positions must be in 0..{size - 1}.")
    return index


def binary_logloss(labels, probabilities) -> float:
    """Mean binary cross-entropy of `probabilities` (clipped to [1e-7, 1 - 1e-7]) against 0/1 `labels`.

    Example:
        >>> round(binary_logloss([1, 0], [0.8, 0.4]), 4)
        0.367
    """
    labels = np.asarray(labels, dtype=np.float64)
    probabilities = np.clip(np.asarray(probabilities, dtype=np.float64), LOG_EPSILON, 1.0 - LOG_EPSILON)
    if labels.shape != probabilities.shape or labels.size == 0:
        raise ValueError(f"binary_logloss: labels {labels.shape} and probabilities {probabilities.shape} must be "
                         "non-empty and of one shape.")
    return float(-np.mean(labels * np.log(probabilities) + (1.0 - labels) * np.log1p(-probabilities)))


def binary_auc(labels, scores) -> float:
    """Exact ROC AUC: the chance that a random positive scores above a random negative (ties count half).

    Computed from average ranks (Mann-Whitney U), O(n log n). NaN when
    `labels` hold one class only.

    Example:
        >>> binary_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
        0.75
    """
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.shape != scores.shape or labels.ndim != 1:
        raise ValueError(f"binary_auc: labels {labels.shape} and scores {scores.shape} must be 1-D of one length.")
    positives = int(labels.sum())
    negatives = labels.size - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    _, first, tied = np.unique(scores[order], return_index=True, return_counts=True)
    ranks = np.empty(labels.size, dtype=np.float64)
    ranks[order] = np.repeat(first + (tied + 1) / 2.0, tied)  # 1-based average rank of each tie group
    return float((ranks[labels].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def _scales(num_fields: int, rank: int) -> tuple[float, float]:
    """Standard deviations of w and of each factor entry that give LINEAR_STD and PAIRWISE_STD."""
    pairs = num_fields * (num_fields - 1) // 2
    # A sum of `pairs` dots of `rank` products of two N(0, s^2) entries has variance pairs * rank * s^4.
    return LINEAR_STD / math.sqrt(num_fields), (PAIRWISE_STD**2 / (pairs * rank)) ** 0.25


def planted_ctr_logits(features, rank: int = 8, seed: int = 0) -> np.ndarray:
    """The planted model's logit for each row of `features` (float64 [n]); its sigmoid is the click probability.

    Args:
        features: integer ids [n, F], F >= 2, column f holding field f's ids (>= 0).
        rank: factor dimension of the planted model, >= 1.
        seed: the seed given to `synthetic_ctr`.

    Example:
        >>> data = synthetic_ctr(1000, seed=3)
        >>> np.allclose(1 / (1 + np.exp(-planted_ctr_logits(data.features, seed=3))), data.probabilities)
        True
    """
    rank = _check_int("planted_ctr_logits", "rank", rank, 1)
    seed = _check_int("planted_ctr_logits", "seed", seed, 0)
    features = np.asarray(features)
    if features.ndim != 2 or features.shape[1] < 2 or not np.issubdtype(features.dtype, np.integer) or (
        features.size and features.min() < 0
    ):
        raise ValueError(f"planted_ctr_logits: invalid `features` ({features.dtype}, shape {features.shape}). "
                         "Give integer ids >= 0 of shape [rows, fields], fields >= 2.")
    num_rows, num_fields = features.shape
    weight_scale, factor_scale = _scales(num_fields, rank)
    # Per field, the distinct ids' weight (column 0) and factors (columns 1..rank), and each row's position among them.
    tables, positions = [], []
    for field in range(num_fields):
        unique_ids, rows = np.unique(features[:, field], return_inverse=True)
        tables.append(_gaussian_factors(unique_ids, rank + 1, seed, _FACTOR_STREAM + field))
        positions.append(rows.reshape(-1))
    logits = np.full(num_rows, BIAS, dtype=np.float64)
    # sum_{f<g} <v_f, v_g> = (|sum_f v_f|^2 - sum_f |v_f|^2) / 2: O(F * rank) per row, not O(F^2 * rank).
    for start in range(0, num_rows, _CHUNK_ROWS):
        stop = min(start + _CHUNK_ROWS, num_rows)
        summed = np.zeros((stop - start, rank))
        squares = np.zeros(stop - start)
        for table, rows in zip(tables, positions):
            picked = table[rows[start:stop]]
            logits[start:stop] += weight_scale * picked[:, 0]
            factors = factor_scale * picked[:, 1:]
            summed += factors
            squares += np.einsum("nk,nk->n", factors, factors)
        logits[start:stop] += 0.5 * (np.einsum("nk,nk->n", summed, summed) - squares)
    return logits


@dataclasses.dataclass(frozen=True, eq=False)
class CtrData:
    """Click-through rows: one id per field, a 0/1 click, and the planted model's true click probability.

    Attributes:
        name: the dataset's name, `synthetic-ctr`.
        features: int32 [n, F]; column f holds field f's ids in `0 .. cardinalities[f] - 1`.
        labels: float32 [n], 1.0 for a click.
        cardinalities: the number of ids of each field.
        counts: per field, int64 counts of each id over all rows (length `cardinalities[f]`).
        probabilities: float64 [n], the planted model's click probability of each row.
        rank, exponent, seed: the arguments `synthetic_ctr` was called with.
    """

    name: str
    features: np.ndarray
    labels: np.ndarray
    cardinalities: tuple[int, ...]
    counts: tuple[np.ndarray, ...]
    probabilities: np.ndarray
    rank: int = 8
    exponent: float = 1.05
    seed: int = 0

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_fields(self) -> int:
        return len(self.cardinalities)

    @property
    def click_rate(self) -> float:
        return float(self.labels.mean()) if len(self) else float("nan")

    def subset(self, index) -> "CtrData":
        """The selected rows (integer positions or a boolean mask), with the same cardinalities and counts."""
        rows = _check_index("CtrData.subset", index, len(self))
        return dataclasses.replace(self, features=self.features[rows], labels=self.labels[rows],
                                   probabilities=self.probabilities[rows])

    def planted_logloss(self, index=None) -> float:
        """Mean log loss of the true probabilities on rows `index` (all by default): the Bayes optimum there."""
        rows = _check_index("CtrData.planted_logloss", index, len(self))
        return binary_logloss(self.labels[rows], self.probabilities[rows])

    def planted_auc(self, index=None) -> float:
        """AUC of the true probabilities on rows `index` (all by default): the best any model can rank them."""
        rows = _check_index("CtrData.planted_auc", index, len(self))
        return binary_auc(self.labels[rows], self.probabilities[rows])

    def constant_logloss(self, index=None) -> float:
        """Log loss of predicting the click rate of rows `index` for every one of them (no model at all)."""
        rows = _check_index("CtrData.constant_logloss", index, len(self))
        labels = self.labels[rows]
        return binary_logloss(labels, np.full(labels.shape, labels.mean()))


def synthetic_ctr(
    num_rows: int,
    cardinalities=DEFAULT_CARDINALITIES,
    rank: int = 8,
    exponent: float = 1.05,
    seed: int = 0,
) -> CtrData:
    """Click-through rows with Zipf ids per field and clicks from a planted logistic factorization machine.

    Field f's ids are drawn with `zipf_ids`'s law over its own vocabulary
    (seeded per field); each row's click is Bernoulli(sigmoid(logit)), the
    logit from `planted_ctr_logits` (module docstring). Weights and factors
    are scaled so the first-order and pairwise parts of the logit each have
    a standard deviation of about 1 whatever the number of fields and the
    rank, and b = -2: a click rate of 17-21%, a Bayes AUC of about 0.81.

    Args:
        num_rows: number of rows, >= 1.
        cardinalities: ids per field, at least 2 fields, each 1 .. 2**31 - 1.
        rank: factor dimension of the planted model, >= 1.
        exponent: Zipf exponent of every field's id popularity, >= 0 (0 is uniform).
        seed: non-negative integer seed; the same arguments give the same data.

    Example:
        >>> data = synthetic_ctr(100_000, seed=1)
        >>> data.features.shape, round(data.click_rate, 2), round(data.planted_auc(), 2)
        ((100000, 8), 0.2, 0.81)
    """
    num_rows = _check_int("synthetic_ctr", "num_rows", num_rows, 1)
    cardinalities = _check_cardinalities("synthetic_ctr", cardinalities)
    rank = _check_int("synthetic_ctr", "rank", rank, 1)
    exponent = _check_exponent("synthetic_ctr", exponent)
    seed = _check_int("synthetic_ctr", "seed", seed, 0)
    features = np.empty((num_rows, len(cardinalities)), dtype=np.int32)
    for field, cardinality in enumerate(cardinalities):
        rng = np.random.default_rng([seed, _ID_STREAM + field])
        features[:, field] = _zipf_from_rng(rng, cardinality, num_rows, exponent)
    probabilities = 1.0 / (1.0 + np.exp(-planted_ctr_logits(features, rank, seed)))
    clicks = np.random.default_rng([seed, _LABEL_STREAM]).random(num_rows) < probabilities
    counts = tuple(np.bincount(features[:, field], minlength=cardinality).astype(np.int64)
                   for field, cardinality in enumerate(cardinalities))
    return CtrData(name=CTR_DATASET, features=features, labels=clicks.astype(np.float32),
                   cardinalities=cardinalities, counts=counts, probabilities=probabilities,
                   rank=rank, exponent=exponent, seed=seed)
