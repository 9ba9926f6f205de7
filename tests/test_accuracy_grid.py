"""The accuracy suite's grid: the quick, full and tune profiles' fit cases (no training here)."""

import pytest

from bench import grid, options
from bench.test_accuracy import ACCURACY, CTR_DIM
from membed import strategies


def cases(profile: str, **narrowed):
    return grid.cases(ACCURACY, options.selection_from_options(profile, None, None, None, **narrowed))


def test_quick_trains_every_registered_strategy_on_ml100k_or_synthetic_ctr_with_two_seeds():
    quick = cases("quick")
    assert {case.dataset for case in quick} == {"ml-100k", "synthetic-ctr"}
    assert set(strategies.names()) <= {name for case in quick for name in case.covers}
    ctr = [case for case in quick if case.dataset == "synthetic-ctr"]
    assert {case.strategy for case in ctr} == {"full", "mixed_dim", "qr"}
    assert all(case.dim == CTR_DIM for case in ctr) and all(case.learning_rate is None for case in quick)
    assert grid.PROFILES["quick"].accuracy_seeds == (1, 2) and len(grid.PROFILES["full"].accuracy_seeds) >= 5


def test_the_tune_profile_trains_each_case_once_per_step_size_and_nothing_else():
    tune = cases("tune")
    rates = {case.learning_rate for case in tune}
    assert rates == set(grid.TUNE_LEARNING_RATES["adam"])
    assert all(case.case_id().endswith(f"/lr{case.learning_rate:g}") for case in tune)
    assert grid.PROFILES["tune"].suites == ("accuracy",) and grid.PROFILES["tune"].accuracy_seeds == (1,)


def test_seeds_can_be_chosen_on_the_command_line():
    selection = options.selection_from_options("quick", None, None, None, seed_list="3,1,3")
    assert selection.profile.accuracy_seeds == (3, 1)
    with pytest.raises(options.GridError, match="invalid --seeds '1,x'"):
        options.selection_from_options("quick", None, None, None, seed_list="1,x")
