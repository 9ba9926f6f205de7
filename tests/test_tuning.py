"""bench.tuning: the tune profile's best step sizes, stored and read back for quick and full."""

import json

import pytest

from bench import grid, tuning


def rows(dataset, strategy, preset, losses, metric="val_mse", optimizer="adam"):
    return [{"dataset": dataset, "strategy": strategy, "preset": preset, "optimizer": optimizer,
             "learning_rate": rate, metric: loss} for rate, loss in losses.items()]


def test_the_lowest_validation_loss_wins_and_a_diverged_rate_never_does():
    found = tuning.choose(rows("ml-100k", "hash", "20x", {1e-3: 0.95, 3e-3: 0.92, 1e-2: float("nan")})
                          + rows("synthetic-ctr", "hash", "20x", {1e-3: 0.45, 3e-3: 0.44}, metric="val_logloss"))
    assert found["rating"]["hash/20x/adam"]["learning_rate"] == 3e-3
    assert found["rating"]["hash/20x/adam"]["tried"] == {"0.001": 0.95, "0.003": 0.92, "0.01": None}
    assert found["ctr"]["hash/20x/adam"] == {"learning_rate": 3e-3, "val_logloss": 0.44,
                                             "tried": {"0.001": 0.45, "0.003": 0.44}}


def test_rows_of_other_datasets_are_not_tuned_on():
    assert tuning.choose(rows("ml-latest-small", "qr", "5x", {1e-3: 0.9})) == {}


def test_a_case_takes_its_family_s_stored_rate_and_says_where_it_came_from():
    stored = {"run": {"date": "2026-12-01", "code_version": "abc"},
              "choices": {"rating": {"qr/5x/adam": {"learning_rate": 0.01}}}}
    planted = grid.Case("accuracy", "qr", "synthetic-planted", None, 64, 512, preset="5x", optimizer="adam")
    assert tuning.learning_rate_for(planted, 1e-3, stored) == (0.01, "tuned on ml-100k (2026-12-01, code abc)")
    ctr = grid.Case("accuracy", "qr", "synthetic-ctr", None, 16, 1024, preset="5x", optimizer="adam")
    assert tuning.learning_rate_for(ctr, 3e-3, stored) == (3e-3, "default")


def test_a_malformed_file_is_named(tmp_path):
    path = tmp_path / "rates.json"
    path.write_text(json.dumps({"something": 1}))
    with pytest.raises(ValueError, match="not a learning-rate file"):
        tuning.load(path)


def test_the_stored_file_covers_every_quick_accuracy_case():
    # reports/learning_rates.json comes from a tune run; quick's cases must all find their rate there.
    from bench.options import selection_from_options
    from bench.test_accuracy import ACCURACY

    stored = tuning.load()
    skipped = stored.get("skipped", {})  # cases the tune run could not train, with the reason (mixed_dim 20x)
    missing = [case.case_id() for case in grid.cases(ACCURACY, selection_from_options("quick", None, None, None))
               if tuning.learning_rate_for(case, 0.0, stored)[1] == "default"
               and tuning.key(case.strategy, case.preset, case.optimizer) not in skipped.get(
                   tuning.family(case.dataset), {})]
    assert not missing, f"no tuned step size for {missing}: run the tune profile (bench/tuning.py)"
