"""analysis.claims: each published claim judged from test losses and their seeds' intervals."""

import math

import pandas as pd

from analysis.claims import Claim, judge


def fit(strategy, preset, loss, half, dataset="ml-100k"):
    return {"suite": "accuracy", "status": "ok", "dataset": dataset, "optimizer": "adam", "strategy": strategy,
            "preset": preset, "val_mse": loss, "test_mse": loss, "test_mse_ci95": half}


def seeded(strategy, preset, losses, dataset="ml-100k"):
    return {**fit(strategy, preset, sum(losses) / len(losses), 0.05, dataset), "seeds": [1, 2, 3],
            "test_mse_per_seed": list(losses)}


def test_differences_are_paired_by_seed_where_both_rows_have_them():
    # Each seed's split moves both losses alike: the intervals (0.05) overlap, the paired difference does not.
    claim = Claim("p", "", "hash", ("5x",), kind="unbeaten", rivals=("qr",))
    rows = [seeded("hash", "5x", [0.90, 1.00, 1.10]), seeded("qr", "5x", [0.88, 0.98, 1.08])]
    assert verdicts(rows, claim) == {("ml-100k", "5x"): "fails"}
    within = Claim("w", "", "qr", ("5x",), tolerance=0.01)
    rows = [seeded("full", "baseline", [0.90, 1.00, 1.10]), seeded("qr", "5x", [0.901, 1.001, 1.101])]
    assert verdicts(rows, within) == {("ml-100k", "5x"): "holds"}


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
    alone = [fit("hash", "5x", 1.0, 0.01)]
    assert verdicts(alone, claim) == {("ml-100k", "5x"): "not run"}
    assert verdicts(apart, claim) == {("ml-100k", "5x"): "fails"}
    assert verdicts(close, claim) == {("ml-100k", "5x"): "inconclusive"}
    assert verdicts(behind, claim) == {("ml-100k", "5x"): "holds"}


def test_a_preset_that_did_not_run_and_one_seed_say_so():
    claim = Claim("z", "", "mixed_dim", ("20x",))
    skipped = {**fit("mixed_dim", "20x", None, None), "status": "skipped", "reason": "cannot reach 20x"}
    table = judge(pd.DataFrame([fit("full", "baseline", 1.0, 0.01), skipped]), (claim,))
    assert table[["verdict", "compared"]].values.tolist() == [["not run", "mixed_dim 20x: cannot reach 20x"]]
    # A strategy the run did not select on a dataset gives no row there.
    assert judge(pd.DataFrame([fit("full", "baseline", 1.0, 0.01)]), (claim,)).empty
    one_seed = [fit("full", "baseline", 1.0, math.nan), fit("mixed_dim", "20x", 1.0, math.nan)]
    assert verdicts(one_seed, claim) == {("ml-100k", "20x"): "inconclusive"}
