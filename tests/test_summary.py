"""analysis.summary: the best strategy per compression level, its seeds' CI, lookup cost and train peak."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis.stats import t975
from analysis.summary import best_per_level, level_of, summary_table

MIB = 1024 * 1024


def case(suite: str, strategy: str, **values) -> dict:
    row = {"suite": suite, "status": "ok", "dataset": "ml-100k", "vocab_size": 2625.0, "strategy": strategy,
           "preset": None, "optimizer": None, "val_mse": np.nan, "full_val_mse": np.nan, "param_bytes": np.nan,
           "index_bytes": 0.0, "peak_alloc_bytes_train": np.nan, "gather_ratio": np.nan, "projected": False}
    row.update(values)
    return row


def fitted(strategy: str, preset: str, val_mse: float, optimizer: str = "adam", **values) -> dict:
    return case("accuracy", strategy, preset=preset, val_mse=val_mse, optimizer=optimizer, full_val_mse=1.0, **values)


@pytest.fixture
def frame() -> pd.DataFrame:
    rows = [
        fitted("full", "baseline", 1.0),
        fitted("qr", "5x", 0.9),
        fitted("hash", "5x", 0.95),
        fitted("qr", "20x", 1.2),
        fitted("tt", "20x", 1.1),
        fitted("tt", "20x", 1.05, optimizer="rowwise_adagrad"),
        fitted("hash", "100x", 1.4),
        fitted("example_qr+example_md", "example", 0.5),  # not a compression level: never "best"
        fitted("mixed_dim", "100x", np.nan, status="skipped"),
        case("accuracy", "qr", dataset="synthetic-planted", vocab_size=20000.0, preset="5x", val_mse=0.3,
             optimizer="adam"),
    ]
    for size, ratio in ((1000, 2.0), (100000, 3.0), (1000000, 4.0)):
        rows += [case("lookup", name, dataset="synthetic-zipf", vocab_size=float(size), gather_ratio=ratio * k)
                 for name, k in (("qr", 1.0), ("hash", 0.5), ("tt", 2.0))]
    rows += [
        case("memory", "tt", dataset="synthetic-zipf", vocab_size=1000.0, optimizer="rowwise_adagrad",
             param_bytes=1 * MIB, peak_alloc_bytes_train=7 * MIB),
        case("memory", "tt", dataset="synthetic-zipf", vocab_size=1000.0, optimizer="adam",
             param_bytes=1 * MIB, peak_alloc_bytes_train=3 * MIB),
        case("memory", "tt", dataset="synthetic-zipf", vocab_size=1000000.0, optimizer="rowwise_adagrad",
             param_bytes=4 * MIB, peak_alloc_bytes_train=8 * MIB),
        case("memory", "qr", dataset="synthetic-zipf", vocab_size=1000.0, optimizer="adam",
             param_bytes=1 * MIB, index_bytes=1 * MIB, peak_alloc_bytes_train=5 * MIB),
    ]
    return pd.DataFrame(rows)


def test_level_of_reads_compression_presets_only():
    assert [level_of(p) for p in ("5x", "20x", "100x", "example", "baseline", None)] == [5, 20, 100, None, None, None]


def test_the_best_case_per_dataset_and_level_with_its_costs(frame):
    best = best_per_level(frame)
    picked = best[["dataset", "level", "strategy", "optimizer"]].values.tolist()
    assert sorted(picked) == [
        ["ml-100k", "100x", "hash", "adam"],
        ["ml-100k", "20x", "tt", "rowwise_adagrad"],
        ["ml-100k", "5x", "qr", "adam"],
        ["synthetic-planted", "5x", "qr", "adam"],
    ]
    tt = best[best["strategy"] == "tt"].iloc[0]
    # 2,625 ids: the lookup at 1,000 is nearest on a log scale; the train peak of tt's own optimizer.
    assert tt["lookup ×gather"] == pytest.approx(4.0)
    assert tt["train peak ×weights"] == pytest.approx(7.0)
    assert tt["vs full %"] == pytest.approx(5.0)
    qr = best[(best["strategy"] == "qr") & (best["dataset"] == "ml-100k")].iloc[0]
    assert qr["train peak ×weights"] == pytest.approx(2.5)  # index bytes count as weights
    planted = best[best["dataset"] == "synthetic-planted"].iloc[0]
    assert planted["lookup ×gather"] == pytest.approx(3.0)  # 20,000 ids: nearest is 100,000
    assert planted["train peak ×weights"] == pytest.approx(2.5)  # qr's only memory size


def test_levels_run_from_least_to_most_compression(frame):
    best = best_per_level(frame)
    assert best.loc[best["dataset"] == "ml-100k", "level"].tolist() == ["5x", "20x", "100x"]


def test_several_seeds_give_a_mean_and_a_t_interval(frame):
    seeds = pd.DataFrame([fitted("qr", "5x", 0.85), fitted("qr", "5x", 0.87)])
    best = best_per_level(pd.concat([frame, seeds], ignore_index=True))
    qr = best[(best["dataset"] == "ml-100k") & (best["level"] == "5x")].iloc[0]
    values = np.array([0.9, 0.85, 0.87])
    assert qr["seeds"] == 3 and qr["test loss"] == pytest.approx(values.mean())
    assert qr["± 95% CI"] == pytest.approx(t975(2) * values.std(ddof=1) / math.sqrt(3))


def test_a_record_of_several_seeds_keeps_its_interval_and_is_told_apart_or_not(frame):
    # Records of this round carry their seeds: the test loss, its half-width and the per-seed values.
    rows = [fitted("qr", "5x", 0.9, test_loss=0.80, test_loss_ci95=0.01, seeds=[1, 2, 3]),
            fitted("hash", "5x", 0.95, test_loss=0.85, test_loss_ci95=0.01, seeds=[1, 2, 3]),
            fitted("tt", "20x", 1.1, test_loss=0.90, test_loss_ci95=0.05, seeds=[1, 2, 3]),
            fitted("qr", "20x", 1.2, test_loss=0.93, test_loss_ci95=0.05, seeds=[1, 2, 3])]
    others = frame[~frame["preset"].isin(["5x", "20x"]) | (frame["dataset"] != "ml-100k")]
    best = best_per_level(pd.concat([others, pd.DataFrame(rows)], ignore_index=True))
    best = best[best["dataset"] == "ml-100k"].set_index("level")
    assert best.loc["5x", ["strategy", "test loss", "± 95% CI", "seeds"]].tolist() == ["qr", 0.80, 0.01, 3]
    assert best.loc["5x", ["runner-up", "apart"]].tolist() == ["hash", "yes"]  # 0.81 < 0.84
    assert best.loc["20x", ["strategy", "runner-up", "apart"]].tolist() == ["tt", "qr", "no"]  # 0.95 > 0.88


def test_one_seed_says_so_and_shows_no_interval(frame):
    table = summary_table(frame)
    assert table.lead and "1 seed per case" in table.note
    assert "± 95% CI" not in table.frame.columns and set(table.frame["seeds"]) == {1}


def test_a_pair_takes_the_mean_lookup_and_the_larger_peak(frame):
    pair = fitted("qr+tt", "20x", 0.5)
    best = best_per_level(pd.concat([frame, pd.DataFrame([pair])], ignore_index=True))
    row = best[best["level"] == "20x"].iloc[0]
    assert row["strategy"] == "qr+tt"
    assert row["lookup ×gather"] == pytest.approx((2.0 + 4.0) / 2)
    assert row["train peak ×weights"] == pytest.approx(3.0)  # tt with adam (3x) > qr (2.5x)


def test_per_id_cost_and_floor_show_when_recorded_at_the_largest_batch(frame):
    extra = [case("lookup", "qr", dataset="synthetic-zipf", vocab_size=1000.0, batch_size=b, gather_ratio=r,
                  ns_per_id=n, floor_ratio=f) for b, r, n, f in ((4096, 9.0, 90.0, 20.0), (65536, 1.5, 2.0, 4.0))]
    lookups = frame[frame["suite"] == "lookup"].assign(batch_size=np.nan)
    others = frame[frame["suite"] != "lookup"]
    full = pd.concat([others, lookups[lookups["strategy"] != "qr"], pd.DataFrame(extra)], ignore_index=True)
    table = summary_table(full).frame
    row = table[(table["dataset"] == "ml-100k") & (table["level"] == "5x")].iloc[0]
    assert (row["lookup ×gather"], row["lookup ns/id"], row["lookup ×np.take"]) == (1.5, 2.0, 4.0)
    assert "lookup ns/id" not in summary_table(frame).frame.columns


def test_no_accuracy_case_at_a_level_gives_an_empty_summary():
    frame = pd.DataFrame([fitted("full", "baseline", 1.0)])
    assert best_per_level(frame).empty


def test_the_runner_up_is_told_apart_by_the_difference_paired_by_seed(frame):
    # Both intervals are wide (each seed's split moves every loss alike); their per-seed differences are not.
    rows = [fitted("qr", "5x", 0.9, test_loss=1.0, test_loss_ci95=0.2, seeds=[1, 2, 3],
                   test_mse_per_seed=[0.9, 1.0, 1.1]),
            fitted("hash", "5x", 0.9, test_loss=1.02, test_loss_ci95=0.2, seeds=[1, 2, 3],
                   test_mse_per_seed=[0.92, 1.02, 1.12])]
    others = frame[(frame["preset"] != "5x") | (frame["dataset"] != "ml-100k")]
    best = best_per_level(pd.concat([others, pd.DataFrame(rows)], ignore_index=True))
    row = best[(best["dataset"] == "ml-100k") & (best["level"] == "5x")].iloc[0]
    assert (row["strategy"], row["runner-up"], row["apart"]) == ("qr", "hash", "yes")


def test_the_amortised_lookup_cost_is_preferred_where_recorded(frame):
    lookups = frame["suite"] == "lookup"
    amortised = frame.assign(amortised_gather_ratio=np.where(lookups, 7.0, np.nan),
                             amortised_ns_per_id=np.where(lookups, 3.0, np.nan))
    row = best_per_level(amortised).iloc[0]
    assert (row["lookup ×gather"], row["lookup ns/id"]) == (7.0, 3.0)
