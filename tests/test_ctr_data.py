"""Synthetic click-through data: shapes, determinism, the planted model's statistics, metrics, bad arguments."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from membed import data
from membed.data import CtrData, binary_auc, binary_logloss, planted_ctr_logits, synthetic_ctr
from membed.data.ctr import DEFAULT_CARDINALITIES

SMALL = (20, 500, 5_000)


def test_rows_have_one_id_per_field_in_range_and_counts_match():
    ctr = synthetic_ctr(5_000, cardinalities=SMALL, seed=2)
    assert isinstance(ctr, CtrData) and ctr.name == "synthetic-ctr" == data.CTR_DATASET
    assert ctr.features.dtype == np.int32 and ctr.features.shape == (5_000, 3) and len(ctr) == 5_000
    assert ctr.labels.dtype == np.float32 and set(np.unique(ctr.labels)) <= {0.0, 1.0}
    assert ctr.probabilities.dtype == np.float64 and np.all((ctr.probabilities > 0) & (ctr.probabilities < 1))
    assert ctr.cardinalities == SMALL and ctr.num_fields == 3
    for field, cardinality in enumerate(SMALL):
        column = ctr.features[:, field]
        assert column.min() >= 0 and column.max() < cardinality
        assert ctr.counts[field].shape == (cardinality,)
        np.testing.assert_array_equal(ctr.counts[field], np.bincount(column, minlength=cardinality))
        # Zipf: id 0 is the most popular id of every field.
        assert ctr.counts[field].argmax() == 0


def test_same_seed_same_data_other_seed_other_data():
    first, again = synthetic_ctr(3_000, SMALL, seed=4), synthetic_ctr(3_000, SMALL, seed=4)
    for name in ("features", "labels", "probabilities"):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
    other = synthetic_ctr(3_000, SMALL, seed=5)
    assert not np.array_equal(first.features, other.features)
    assert not np.allclose(first.probabilities, other.probabilities)


def test_an_ids_planted_effect_depends_on_seed_field_and_id_only():
    # The same ids in another row order, or among other rows, get the same logits.
    features = np.array([[0, 3], [7, 1], [0, 3], [2, 9]])
    logits = planted_ctr_logits(features, seed=1)
    assert logits[0] == logits[2]
    np.testing.assert_allclose(planted_ctr_logits(features[::-1], seed=1), logits[::-1])
    np.testing.assert_allclose(planted_ctr_logits(np.vstack([features, [[5, 5]] * 3]), seed=1)[:4], logits)
    # Swapping the fields changes the model: each field has its own weights.
    assert not np.allclose(planted_ctr_logits(features[:, ::-1], seed=1), logits)
    # Ids of any size, with no table of the vocabulary.
    huge = planted_ctr_logits(np.array([[2**31 - 2, 10**9]]), seed=1)
    assert np.isfinite(huge).all()


def test_probabilities_are_the_sigmoid_of_the_planted_logits_and_labels_follow_them():
    ctr = synthetic_ctr(40_000, SMALL, seed=6)
    np.testing.assert_allclose(ctr.probabilities, 1 / (1 + np.exp(-planted_ctr_logits(ctr.features, seed=6))))
    # Clicks are Bernoulli(probability): their mean is within 5 standard errors of the mean probability.
    spread = np.sqrt(np.sum(ctr.probabilities * (1 - ctr.probabilities))) / len(ctr)
    assert abs(ctr.click_rate - ctr.probabilities.mean()) < 5 * spread
    # And they are calibrated: in the top decile of probability, clicks come as often as predicted.
    top = ctr.probabilities >= np.quantile(ctr.probabilities, 0.9)
    assert ctr.labels[top].mean() == pytest.approx(ctr.probabilities[top].mean(), abs=0.03)


@pytest.mark.parametrize("seed", [0, 1])
def test_default_data_has_a_realistic_click_rate_and_a_known_optimum(seed):
    ctr = synthetic_ctr(200_000, seed=seed)
    assert ctr.cardinalities == DEFAULT_CARDINALITIES and min(DEFAULT_CARDINALITIES) <= 100
    assert max(DEFAULT_CARDINALITIES) >= 10**6
    assert 0.10 <= ctr.click_rate <= 0.25
    assert 0.75 <= ctr.planted_auc() <= 0.85
    # The true probabilities beat the best constant by a margin that a model can be measured against.
    assert ctr.planted_logloss() < ctr.constant_logloss() - 0.05


def test_subset_and_per_index_optima():
    ctr = synthetic_ctr(2_000, SMALL, seed=3)
    index = np.arange(0, 2_000, 3)
    part = ctr.subset(index)
    assert len(part) == len(index) and part.cardinalities == ctr.cardinalities
    np.testing.assert_array_equal(part.features, ctr.features[index])
    assert part.counts is ctr.counts  # the whole data's counts, as RatingsData.subset keeps them
    assert part.planted_logloss() == ctr.planted_logloss(index)
    assert part.planted_auc() == ctr.planted_auc(index)
    mask = np.zeros(2_000, bool)
    mask[index] = True
    assert ctr.planted_logloss(mask) == ctr.planted_logloss(index)
    assert ctr.planted_logloss() == binary_logloss(ctr.labels, ctr.probabilities)


def test_binary_auc_is_the_pairwise_win_rate_with_ties_half():
    rng = np.random.default_rng(0)
    labels = rng.random(300) < 0.3
    scores = rng.integers(0, 20, 300).astype(float)  # many ties
    wins = [1.0 if p > n else 0.5 if p == n else 0.0
            for p, n in itertools.product(scores[labels], scores[~labels])]
    assert binary_auc(labels, scores) == pytest.approx(np.mean(wins))
    assert binary_auc([0, 1], [0.2, 0.9]) == 1.0 and binary_auc([1, 0], [0.2, 0.9]) == 0.0
    assert np.isnan(binary_auc([1, 1], [0.2, 0.9]))


def test_binary_logloss():
    assert binary_logloss([1, 0], [0.8, 0.4]) == pytest.approx(-(np.log(0.8) + np.log(0.6)) / 2)
    assert np.isfinite(binary_logloss([1, 0], [0.0, 1.0]))  # clipped, as Keras's cross-entropy
    with pytest.raises(ValueError, match="one shape"):
        binary_logloss([1, 0], [0.5])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_rows": 0}, "synthetic_ctr: invalid `num_rows`: 0. It must be an integer >= 1."),
        ({"num_rows": 10.5}, "invalid `num_rows`"),
        ({"cardinalities": (100,)}, "invalid `cardinalities`: (100,). Give at least 2 integers"),
        ({"cardinalities": (100, 0)}, "invalid `cardinalities`"),
        ({"cardinalities": (100, 2**31)}, "each in 1..2147483647"),
        ({"cardinalities": 100}, "invalid `cardinalities`"),
        ({"cardinalities": (100, 2.5)}, "invalid `cardinalities`"),
        ({"rank": 0}, "invalid `rank`: 0. It must be an integer >= 1."),
        ({"exponent": -1.0}, "invalid `exponent`: -1.0. It must be a finite number >= 0."),
        ({"seed": -1}, "invalid `seed`: -1"),
    ],
)
def test_bad_arguments_say_what_is_valid(kwargs, message):
    arguments = {"num_rows": 10, "cardinalities": SMALL, **kwargs}
    with pytest.raises(ValueError) as error:
        synthetic_ctr(**arguments)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_bad_indices_and_features():
    ctr = synthetic_ctr(100, SMALL)
    with pytest.raises(ValueError, match=r"positions must be in 0..99"):
        ctr.planted_logloss(np.array([0, 100]))
    with pytest.raises(ValueError, match=r"boolean mask of shape \(3,\)"):
        ctr.subset(np.ones(3, bool))
    with pytest.raises(ValueError, match="Use 1-D integers or booleans"):
        ctr.planted_auc(np.array([0.5]))
    with pytest.raises(ValueError, match=r"shape \[rows, fields\], fields >= 2"):
        planted_ctr_logits(np.array([[1], [2]]))
    with pytest.raises(ValueError, match="integer ids >= 0"):
        planted_ctr_logits(np.array([[1, -2]]))
