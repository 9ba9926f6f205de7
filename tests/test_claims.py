"""analysis.claims: each published claim judged from test losses and their seeds' intervals."""

import math

import pandas as pd

from analysis.claims import Claim, judge


def fit(strategy, preset, loss, half, dataset="ml-100k"):
    return {"suite": "accuracy", "status": "ok", "dataset": dataset, "optimizer": "adam", "strategy": strategy,
            "preset": preset, "val_mse": loss, "test_mse": loss, "test_mse_ci95": half}


def verdicts(rows, claim):
    return judge(pd.DataFrame(rows), (claim,)).set_index(["dataset", "preset"])["verdict"].to_dict()


def test_within_holds_fails_or_is_inconclusive_by_the_interval_of_the_difference():
    claim = Claim("x", "", "tt", ("5x", "20x", "100x"), tolerance=0.02)
    rows = [fit("full", "baseline", 1.00, 0.003),
            fit("tt", "5x", 1.005, 0.003),   # 0.005 + 0.004 <= 0.02: holds
            fit("tt", "20x", 1.05, 0.003),   # 0.05 - 0.004 > 0.02: fails
            fit("tt", "100x", 1.02, 0.01)]   # straddles 0.02: inconclusive
    assert verdicts(rows, claim) == {("ml-100k", "5x"): "holds", ("ml-100k", "20x"): "fails",
                                     ("ml-100k", "100x"): "inconclusive"}


def test_unbeaten_fails_when_a_rival_is_better_beyond_the_noise():
    claim = Claim("y", "", "hash", ("5x",), kind="unbeaten", rivals=("qr", "tt"))
    apart = [fit("hash", "5x", 1.0, 0.01), fit("qr", "5x", 0.9, 0.01), fit("tt", "5x", 1.1, 0.01)]
    close = [fit("hash", "5x", 1.0, 0.01), fit("qr", "5x", 0.99, 0.01)]
    behind = [fit("hash", "5x", 1.0, 0.01), fit("qr", "5x", 1.1, 0.01)]
    assert verdicts(apart, claim) == {("ml-100k", "5x"): "fails"}
    assert verdicts(close, claim) == {("ml-100k", "5x"): "inconclusive"}
    assert verdicts(behind, claim) == {("ml-100k", "5x"): "holds"}


def test_a_preset_that_did_not_run_and_one_seed_say_so():
    claim = Claim("z", "", "mixed_dim", ("20x",))
    assert verdicts([fit("full", "baseline", 1.0, 0.01)], claim) == {("ml-100k", "20x"): "not run"}
    one_seed = [fit("full", "baseline", 1.0, math.nan), fit("mixed_dim", "20x", 1.0, math.nan)]
    assert verdicts(one_seed, claim) == {("ml-100k", "20x"): "inconclusive"}
