"""Step sizes chosen on validation by the tune profile, stored in the repository, read by quick and full.

The tune profile (`pytest bench --benchmark-only --profile tune`) trains each
accuracy case once per step size of `grid.TUNE_LEARNING_RATES` (one seed,
early stopping on validation). Then

    python -m bench.tuning out/tune.json            # writes reports/learning_rates.json

keeps, per model family, strategy, preset and optimizer, the step size whose
best validation loss was lowest, with every candidate's loss and the run that
measured them (date, code version, profile, grid). The quick and full
profiles train at the stored step size and record which they used
(`learning_rate`, `learning_rate_source`); a case the file does not cover
trains at `membed.train.RATING_LEARNING_RATES` (or the CTR model's default)
and says so.

Model families: the rating model's step sizes are tuned on ml-100k and used
on every rating dataset (MovieLens, synthetic-planted); the CTR model's on
synthetic-ctr.
"""

from __future__ import annotations

if __name__ == "__main__":
    # bench.grid imports the strategies, so Keras and TensorFlow: started without its log lines.
    from membed.quiet import import_tensorflow

    import_tensorflow()

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Mapping  # noqa: E402

from bench import grid  # noqa: E402

STORED = Path(__file__).resolve().parents[1] / "reports" / "learning_rates.json"
# The dataset each model family is tuned on, and the validation loss it is tuned by.
TUNED_ON = {"rating": "ml-100k", "ctr": grid.CTR}
TUNE_METRIC = {"rating": "val_mse", "ctr": "val_logloss"}


def family(dataset: str) -> str:
    """`ctr` for synthetic-ctr, else `rating` (the rating model's datasets)."""
    return "ctr" if dataset == grid.CTR else "rating"


def key(strategy: str, preset: str | None, optimizer: str | None) -> str:
    """The stored choice's key: `strategy/preset/optimizer` (`full/baseline/adam`)."""
    return f"{strategy}/{preset}/{optimizer or grid.DEFAULT_OPTIMIZER}"


def load(path: Path = STORED) -> dict[str, Any]:
    """The stored choices (an empty set when the file is absent); ValueError names a malformed file."""
    if not path.exists():
        return {"run": None, "choices": {}}
    try:
        stored = json.loads(path.read_text())
        stored["choices"]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: not a learning-rate file written by `python -m bench.tuning` ({error}).") from None
    return stored


def learning_rate_for(case: grid.Case, default: float, stored: Mapping[str, Any] | None = None) -> tuple[float, str]:
    """(step size, where it came from) for an accuracy case: the tuned one, else `default`.

    Example:
        >>> case = grid.Case("accuracy", "full", "ml-100k", None, 64, 512, preset="baseline", optimizer="adam")
        >>> learning_rate_for(case, 1e-3, {"run": None, "choices": {}})
        (0.001, 'default')
    """
    stored = load() if stored is None else stored
    which = family(case.dataset)
    choice = stored["choices"].get(which, {}).get(key(case.strategy, case.preset, case.optimizer))
    if choice is None:
        return default, "default"
    run = stored.get("run") or {}
    return float(choice["learning_rate"]), (f"tuned on {TUNED_ON[which]} ({run.get('date', '?')}, "
                                            f"code {run.get('code_version', '?')})")


def choose(rows: list[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per family and key, the step size of lowest validation loss among a tune run's ok accuracy rows.

    A step size whose fit failed (diverged) or whose loss is not finite is listed
    as tried with `null`, and never chosen.

    Example:
        >>> rows = [{"dataset": "ml-100k", "strategy": "full", "preset": "baseline", "optimizer": "adam",
        ...          "learning_rate": lr, "val_mse": loss} for lr, loss in ((1e-3, 0.83), (3e-3, 0.82))]
        >>> choose(rows)["rating"]["full/baseline/adam"]["learning_rate"]
        0.003
    """
    tried: dict[str, dict[str, dict[float, float | None]]] = {}
    for row in rows:
        which = family(row["dataset"])
        if row["dataset"] != TUNED_ON[which]:
            continue
        loss = row.get(TUNE_METRIC[which])
        loss = float(loss) if loss is not None and math.isfinite(float(loss)) else None
        candidates = tried.setdefault(which, {}).setdefault(key(row["strategy"], row["preset"], row["optimizer"]), {})
        candidates[float(row["learning_rate"])] = loss
    choices: dict[str, dict[str, Any]] = {}
    for which, by_key in tried.items():
        for name, candidates in sorted(by_key.items()):
            finite = {rate: loss for rate, loss in candidates.items() if loss is not None}
            if not finite:
                continue
            best = min(finite, key=finite.get)
            choices.setdefault(which, {})[name] = {
                "learning_rate": best, TUNE_METRIC[which]: finite[best],
                "tried": {f"{rate:g}": loss for rate, loss in sorted(candidates.items())}}
    return choices


def code_version(paths: list[Path]) -> str | None:
    """The code version the tune runs recorded in their journals' first line, joined by '+' if they differ."""
    from analysis import journal

    versions = []
    for path in paths:
        journal_file = path if path.suffix == journal.SUFFIX else journal.journal_path(path)
        if journal_file.exists():
            first = json.loads(journal_file.read_text().splitlines()[0])
            versions.append(first.get("run", {}).get("code_version"))
    return "+".join(dict.fromkeys(v for v in versions if v)) or None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tuning",
                                     description="Store the tune profile's best step sizes (bench/tuning.py).")
    parser.add_argument("results", type=Path, nargs="+",
                        help="the --benchmark-json (or journal, .jsonl) of `--profile tune` runs")
    parser.add_argument("--out", type=Path, default=STORED, help=f"where to write them (default {STORED.name} "
                                                                  "in reports/)")
    args = parser.parse_args(argv)
    from analysis.load import load_results

    frame = load_results(args.results)
    fits = frame[(frame["suite"] == "accuracy") & (frame["status"] == "ok") & frame["learning_rate"].notna()]
    if fits.empty:
        print(f"{', '.join(map(str, args.results))}: no tuned accuracy case (run `pytest bench --benchmark-only "
              "--profile tune --benchmark-json out/tune.json` first).", file=sys.stderr)
        return 2
    choices = choose(fits.to_dict("records"))
    # Cases the tune run could not train (a preset the strategy cannot reach): nothing to choose, said why.
    stopped = frame[(frame["suite"] == "accuracy") & (frame["status"] == "skipped") & frame["strategy"].notna()]
    skipped: dict[str, dict[str, str]] = {}
    for row in stopped.to_dict("records"):
        skipped.setdefault(family(row["dataset"]), {})[key(row["strategy"], row["preset"], row["optimizer"])] = \
            row["reason"]
    stored = {"run": {"date": datetime.date.today().isoformat(), "results": [path.name for path in args.results],
                      "profile": "tune", "code_version": code_version(args.results),
                      "grid": grid.TUNE_LEARNING_RATES, "tuned_on": TUNED_ON, "metric": TUNE_METRIC,
                      "command": "pytest bench --benchmark-only --profile tune --benchmark-json out/tune.json; "
                                 "python -m bench.tuning out/tune.json"},
              "choices": choices, "skipped": skipped}
    temporary = args.out.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(stored, indent=1, sort_keys=True) + "\n")
    temporary.replace(args.out)
    count = sum(len(by_key) for by_key in choices.values())
    print(f"{count} step sizes chosen from {len(fits)} fits; written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
