"""The field's published claims, checked against accuracy runs: holds, fails, or inconclusive.

Each claim compares a strategy at some compression presets with a reference
on the same dataset and optimizer, on the accuracy suite's test loss (test
MSE; synthetic-ctr: test log loss) with its 95% half-width over seeds:

- `within`: the strategy's loss is at most `tolerance` (relative to the
  reference's) above the reference's. With d the mean over seeds of the
  per-seed differences strategy - reference (paired: a seed draws the split,
  so both trained and were tested on the same rows) and h its 95%
  half-width: holds when d + h <= tolerance * reference (within it even at
  the interval's worst), fails when d - h > tolerance * reference, else
  inconclusive.
- `unbeaten`: no rival at the same preset is better than the strategy beyond
  the noise: fails when a rival is (d + h < 0 for rival - strategy), holds
  when every rival is worse beyond it (d - h >= 0), else inconclusive.

    python -m analysis.claims out/claims.json [more.json ...]   # the markdown table

A claim with no run on a dataset (a preset the strategy cannot reach there)
says so in its row.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass

import pandas as pd

from analysis.frames import accuracy_loss, ok_rows, with_test_loss
from analysis.load import load_results
from analysis.stats import paired_difference as _difference

REFERENCE = ("full", "baseline")


@dataclass(frozen=True)
class Claim:
    """A published claim: `strategy` at `presets` against the full baseline (`within`) or its rivals (`unbeaten`)."""

    name: str
    source: str
    strategy: str
    presets: tuple[str, ...]
    kind: str = "within"
    tolerance: float = 0.01
    rivals: tuple[str, ...] = ()


CLAIMS = (
    Claim("MD: equal accuracy with 8-16x fewer parameters", "Ginart et al. 2021", "mixed_dim", ("5x", "20x")),
    Claim("TT-Rec: 4-221x smaller with little loss (2%)", "Yin et al. 2021", "tt", ("5x", "20x", "100x"),
          tolerance=0.02),
    Claim("ROBE: 1000x smaller with little loss (2%; 100x here)", "Desai et al. 2022", "robe", ("100x",),
          tolerance=0.02),
    Claim("DHE: comparable with smaller models", "Kang et al. 2021", "dhe", ("5x", "20x")),
    Claim("frequency hashing: 90% smaller, on par", "Zhang et al. 2020", "freq_hash", ("5x", "20x")),
    Claim("plain hashing is a hard baseline at equal memory", "VLDB'24 benchmark", "hash", ("5x", "20x"),
          kind="unbeaten", rivals=("qr", "tt", "dhe", "robe", "double_hash", "freq_hash")),
)


def judge_within(claim: Claim, row: pd.Series, reference: pd.Series) -> str:
    difference, half = _difference(row, reference)
    limit = claim.tolerance * float(reference["loss"])
    if math.isnan(half):
        return "inconclusive"
    if difference + half <= limit:
        return "holds"
    return "fails" if difference - half > limit else "inconclusive"


def judge_unbeaten(row: pd.Series, rivals: pd.DataFrame) -> tuple[str, str]:
    """(verdict, the rival that decides it or '') for `row` against its rivals' rows (paired by seed)."""
    undecided = ""
    for _, rival in rivals.sort_values("loss").iterrows():
        difference, half = _difference(rival, row)  # < 0: the rival is better
        if math.isnan(half):
            undecided = undecided or rival["strategy"]
        elif difference + half < 0:
            return "fails", rival["strategy"]
        elif difference - half < 0:
            undecided = undecided or rival["strategy"]
    return ("inconclusive", undecided) if undecided else ("holds", "")


def judge(frame: pd.DataFrame, claims: tuple[Claim, ...] = CLAIMS) -> pd.DataFrame:
    """One row per claim, dataset, optimizer and preset: the numbers compared and the verdict."""
    frame = frame if "test_loss" in frame else with_test_loss(frame)
    cases = frame[frame["suite"] == "accuracy"]
    cases = cases.assign(optimizer=cases["optimizer"].fillna("adam"))
    rows = accuracy_loss(ok_rows(cases)).dropna(subset=["loss"])
    records = []
    for claim in claims:
        for (dataset, optimizer), group in rows.groupby(["dataset", "optimizer"], sort=True):
            tried = cases[(cases["dataset"] == dataset) & (cases["optimizer"] == optimizer)
                          & (cases["strategy"] == claim.strategy)]
            if tried.empty:
                continue  # the run did not select this strategy on this dataset
            reference = group[(group["strategy"] == REFERENCE[0]) & (group["preset"] == REFERENCE[1])]
            for preset in claim.presets:
                mine = group[(group["strategy"] == claim.strategy) & (group["preset"] == preset)]
                record = {"claim": claim.name, "dataset": dataset, "optimizer": optimizer, "preset": preset}
                if mine.empty:
                    stopped = tried[tried["preset"] == preset]
                    why = stopped["reason"].iloc[0] if len(stopped) else "not selected"
                    records.append({**record, "compared": f"{claim.strategy} {preset}: {why}", "verdict": "not run"})
                    continue
                row = mine.iloc[0]
                text = f"{claim.strategy} {_loss_text(row)}"
                if claim.kind == "within" and not reference.empty:
                    verdict = judge_within(claim, row, reference.iloc[0])
                    difference, half = _difference(row, reference.iloc[0])
                    text += (f" vs full {_loss_text(reference.iloc[0])}; difference {difference:+.4f} ± {half:.4f}, "
                             f"limit {claim.tolerance * float(reference.iloc[0]['loss']):.4f}")
                elif claim.kind == "unbeaten":
                    rivals = group[group["strategy"].isin(claim.rivals) & (group["preset"] == preset)]
                    verdict, decider = judge_unbeaten(row, rivals) if len(rivals) else ("not run", "")
                    best = rivals.sort_values("loss").head(1)
                    if len(best):
                        difference, half = _difference(best.iloc[0], row)
                        text += (f"; best rival {best.iloc[0]['strategy']} {_loss_text(best.iloc[0])}, "
                                 f"difference {difference:+.4f} ± {half:.4f}")
                    text += f" ({decider} decides)" if decider else ""
                else:
                    verdict, text = "not run", text + "; no full baseline here"
                records.append({**record, "compared": text, "verdict": verdict})
    return pd.DataFrame(records, columns=["claim", "dataset", "optimizer", "preset", "compared", "verdict"])


def _loss_text(row: pd.Series) -> str:
    half = row["loss_ci95"]
    return f"{row['loss']:.4f}" + ("" if math.isnan(half) else f" ± {half:.4f}")


def markdown(verdicts: pd.DataFrame) -> str:
    """The table as reports/README.md shows it."""
    from tabulate import tabulate

    return tabulate(verdicts.drop(columns="optimizer" if verdicts["optimizer"].nunique() <= 1 else []),
                    headers="keys", tablefmt="github", showindex=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.claims", description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", help="--benchmark-json files of accuracy runs")
    args = parser.parse_args(argv)
    verdicts = judge(load_results(args.results))
    if verdicts.empty:
        print("no accuracy case in these results", file=sys.stderr)
        return 2
    print(markdown(verdicts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
