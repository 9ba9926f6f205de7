"""The report's first screen: per dataset, the best strategy at each compression level and what it costs.

For each dataset of the accuracy suite and each compression preset (`5x`,
`20x`, `100x`: the presets named `<n>x`), the case with the lowest test
loss (`test_loss`: test MSE on rating datasets, test log loss on
synthetic-ctr; val MSE for records from before the test split), with:

- its loss: the mean over the case's seeds and the 95% confidence
  half-width the record carries (a case loaded from several result files:
  the mean of their means and the half-width over them);
- the runner-up (the best other strategy at that level) and whether the two
  are told apart: `yes` when the 95% interval of their difference excludes
  zero (paired by seed where both records carry their seeds' values, else
  their two intervals do not overlap), `no` when it does not (the ranking is
  inside the noise), `?` without seeds;
- its per-id lookup cost: the lookup suite's `amortised_gather_ratio` and
  `amortised_ns_per_id` (32 batches a call, so TensorFlow's per-call cost is
  a few percent; the per-call `gather_ratio`, `ns_per_id` where a record has
  no amortised timing) and `floor_ratio`, for the same strategy at the vocab
  size nearest the dataset's;
- its train-step peak against its weights: the memory suite's
  `peak_alloc_bytes_train / (param_bytes + index_bytes)` for the same strategy
  and optimizer at the nearest size.

A pair `user+item` (the example's) takes the mean of its two strategies'
lookup ratios and the larger of their train peaks. Pure frames in, frames
out; `summary_table` wraps the result in a `Table` for the renderers.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from analysis import schema
from analysis.frames import Table, accuracy_loss, ok_rows
from analysis.stats import mean_ci95, paired_difference

# An accuracy preset that names a compression level: `5x`, `20x`, `100x`.
LEVEL_PATTERN = re.compile(r"^(\d+(?:\.\d+)?)x$")
SEED_KEYS = ("dataset", "vocab_size", "strategy", "preset", "optimizer")
COLUMNS = (
    "dataset",
    "ids",
    "level",
    "strategy",
    "optimizer",
    "test loss",
    "± 95% CI",
    "seeds",
    "runner-up",
    "runner-up loss",
    "apart",
    "vs full %",
    "lookup ×gather",
    "lookup ns/id",
    "lookup ×np.take",
    "train peak ×weights",
)


def level_of(preset: object) -> float | None:
    """The compression of a preset named `<n>x` (`'20x'` -> 20.0); None for any other preset.

    Example:
        >>> level_of("20x"), level_of("example"), level_of(None)
        (20.0, None, None)
    """
    match = LEVEL_PATTERN.match(preset) if isinstance(preset, str) else None
    return float(match.group(1)) if match else None


def seed_means(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per case key of `SEED_KEYS`: mean loss, its 95% CI half-width (NaN for one seed), seeds.

    The loss is `test_loss` where the rows have it, else `val_mse`. A case in one
    row keeps the mean and half-width its record carries; a case in several rows
    (result files) is their mean, with the half-width over them.

    Example:
        >>> out = seed_means(pd.DataFrame({"dataset": ["d"] * 2, "vocab_size": [9] * 2, "strategy": ["qr"] * 2,
        ...     "preset": ["5x"] * 2, "optimizer": ["adam"] * 2, "val_mse": [1.0, 1.2]}))
        >>> out[["loss", "seeds"]].values.tolist()
        [[1.1, 2.0]]
    """
    keyed = accuracy_loss(rows.assign(optimizer=rows["optimizer"].fillna(schema.DEFAULT_OPTIMIZER)))
    keyed = keyed.assign(_loss=keyed["loss"], _ci=keyed["loss_ci95"],
                         _seeds=keyed["seeds"].map(lambda v: float(len(v)) if isinstance(v, list) else 1.0)
                         if "seeds" in keyed else 1.0)
    records = []
    for key, group in keyed.groupby(list(SEED_KEYS), sort=True, dropna=False):
        values = group["_loss"].to_numpy(dtype="float64")
        if len(values) == 1:
            mean, ci, seeds = float(values[0]), float(group["_ci"].iloc[0]), float(group["_seeds"].iloc[0])
            first = group.iloc[0]
            losses = {name: first.get(name) for name in ("seeds", "test_mse_per_seed", "test_logloss_per_seed")}
        else:
            (mean, ci), seeds, losses = mean_ci95(values), float(group["_seeds"].sum()), {}
        full = group["full_val_mse"].mean() if "full_val_mse" in group else np.nan
        records.append({**dict(zip(SEED_KEYS, key)), "loss": mean, "ci": ci, "seeds": seeds, "full_val_mse": full,
                        "val_mse": float(group["val_mse"].astype("float64").mean()), "per_seed": losses})
    return pd.DataFrame(records, columns=[*SEED_KEYS, "loss", "ci", "seeds", "full_val_mse", "val_mse", "per_seed"])


def told_apart(first: pd.Series, second: pd.Series) -> bool | None:
    """Whether two `seed_means` rows' losses differ beyond the noise: paired by seed where both carry their seeds'
    values (`analysis.stats.paired_difference`), else their 95% intervals do not overlap; None without seeds."""
    difference, half = paired_difference({**first["per_seed"], "loss": first["loss"], "loss_ci95": first["ci"]},
                                         {**second["per_seed"], "loss": second["loss"], "loss_ci95": second["ci"]})
    return None if math.isnan(half) else abs(difference) > half


def nearest(rows: pd.DataFrame, vocab_size: float) -> pd.DataFrame:
    """The rows of `rows` at the vocab size nearest `vocab_size` on a log scale (ties to the larger)."""
    sizes = rows["vocab_size"].dropna().unique()
    if not len(sizes) or not vocab_size or vocab_size <= 0:
        return rows.iloc[0:0]
    distance = np.abs(np.log(sizes.astype("float64")) - math.log(vocab_size))
    best = sizes[np.lexsort((-sizes.astype("float64"), distance))[0]]
    return rows[rows["vocab_size"] == best]


def lookup_cost(frame: pd.DataFrame, strategy: str, vocab_size: float) -> dict[str, float]:
    """{gather_ratio, ns_per_id, floor_ratio} of `strategy`'s ok lookup cases at the nearest size (NaN if none).

    Where the suite has a batch-size axis, the largest batch (the per-call floor amortised) is taken; the
    median over whatever rows remain (datasets).
    """
    lookups = ok_rows(frame[(frame["suite"] == "lookup") & (frame["strategy"] == strategy)])
    rows = nearest(lookups, vocab_size)
    if "batch_size" in rows and rows["batch_size"].notna().any():
        rows = rows[rows["batch_size"] == rows["batch_size"].max()]

    def median(*names: str) -> float:  # the first of `names` the rows record
        for name in names:
            if name in rows and rows[name].notna().any():
                return float(rows[name].median())
        return np.nan

    # The amortised timing (32 batches a call) where recorded: the work, not TensorFlow's per-call cost.
    return {"gather_ratio": median("amortised_gather_ratio", "gather_ratio"),
            "ns_per_id": median("amortised_ns_per_id", "ns_per_id"), "floor_ratio": median("floor_ratio")}


def train_peak_ratio(frame: pd.DataFrame, strategy: str, optimizer: str, vocab_size: float) -> float:
    """peak_alloc_bytes_train / (param_bytes + index_bytes) of `strategy`'s memory case with `optimizer`.

    At the nearest measured size; the default optimizer's case when none has `optimizer`; NaN without one.
    """
    memory = ok_rows(frame[(frame["suite"] == "memory") & (frame["strategy"] == strategy)])
    if "peak_alloc_bytes_train" not in memory:
        return np.nan
    memory = memory.dropna(subset=["peak_alloc_bytes_train"])
    used = memory["optimizer"].fillna(schema.DEFAULT_OPTIMIZER) if "optimizer" in memory else None
    if used is not None and (used == optimizer).any():
        memory = memory[used == optimizer]
    elif used is not None:
        memory = memory[used == schema.DEFAULT_OPTIMIZER]
    rows = nearest(memory, vocab_size)
    weights = rows["param_bytes"].astype("float64") + rows["index_bytes"].fillna(0).astype("float64")
    ratios = rows["peak_alloc_bytes_train"].astype("float64") / weights.where(weights > 0)
    return float(ratios.median()) if ratios.notna().any() else np.nan


def best_per_level(frame: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and compression level, the lowest-loss accuracy case, its runner-up and its costs (`COLUMNS`).

    Args:
        frame: the loaded frame, with `analysis.frames.with_baseline_mse`'s columns where available.

    Example:
        >>> best_per_level(frame)[["dataset", "level", "strategy"]].values.tolist()  # doctest: +SKIP
        [['ml-100k', '5x', 'qr'], ['ml-100k', '20x', 'mixed_dim'], ['ml-100k', '100x', 'qr']]
    """
    accuracy = ok_rows(frame[frame["suite"] == "accuracy"])
    accuracy = accuracy[accuracy_loss(accuracy)["loss"].notna()]
    accuracy = accuracy[accuracy["preset"].map(level_of).notna()]
    if accuracy.empty:
        return pd.DataFrame(columns=COLUMNS)
    if "optimizer" not in accuracy:
        accuracy = accuracy.assign(optimizer=None)
    means = seed_means(accuracy)
    means["_level"] = means["preset"].map(level_of)
    ranked = means.sort_values(["dataset", "vocab_size", "_level", "loss"], kind="stable")
    records = []
    for _, level in ranked.groupby(["dataset", "vocab_size", "_level"], sort=True, dropna=False):
        row = level.iloc[0]
        others = level[level["strategy"] != row["strategy"]]
        runner = others.iloc[0] if len(others) else None
        apart = None if runner is None else told_apart(row, runner)
        parts = str(row["strategy"]).split("+")
        lookups = [lookup_cost(frame, part, row["vocab_size"]) for part in parts]
        peaks = [train_peak_ratio(frame, part, row["optimizer"], row["vocab_size"]) for part in parts]
        cost = {name: _combine([c[name] for c in lookups], np.mean) for name in lookups[0]}
        full = row["full_val_mse"]
        records.append({
            "dataset": row["dataset"],
            "ids": row["vocab_size"],
            "level": row["preset"],
            "strategy": row["strategy"],
            "optimizer": row["optimizer"],
            "test loss": row["loss"],
            "± 95% CI": row["ci"],
            "seeds": row["seeds"],
            "runner-up": None if runner is None else runner["strategy"],
            "runner-up loss": np.nan if runner is None else runner["loss"],
            "apart": None if runner is None else {True: "yes", False: "no", None: "?"}[apart],
            "vs full %": 100.0 * (row["val_mse"] - full) / full if full and not pd.isna(full) else np.nan,
            "lookup ×gather": cost["gather_ratio"],
            "lookup ns/id": cost["ns_per_id"],
            "lookup ×np.take": cost["floor_ratio"],
            "train peak ×weights": _combine(peaks, np.max),
        })
    return pd.DataFrame(records, columns=COLUMNS)


def _combine(values: list[float], how) -> float:
    present = [v for v in values if not pd.isna(v)]
    return float(how(present)) if len(present) == len(values) and present else np.nan


def summary_table(frame: pd.DataFrame) -> Table:
    """`best_per_level` as the report's first table; columns no row fills are left out, and the note says why."""
    best = best_per_level(frame)
    shown = best[[c for c in best.columns if c in ("dataset", "level", "strategy") or best[c].notna().any()]]
    fitted = frame[frame["suite"] == "accuracy"]
    if "optimizer" in shown and ("optimizer" not in fitted or fitted["optimizer"].dropna().nunique() <= 1):
        shown = shown.drop(columns="optimizer")
    seeds = set(best["seeds"].dropna().astype(int))
    seed_text = "1 seed per case: the value, no CI" if seeds == {1} else "mean over seeds, ± the 95% CI (t)"
    note = (
        "Best = lowest test loss (test MSE; synthetic-ctr: test log loss) among the accuracy cases at that preset "
        f"(compression by bytes); {seed_text}. runner-up: the best other strategy at that level; apart: yes when "
        "the 95% interval of their difference, paired by seed, excludes 0; no when it does not (not told apart). "
        "lookup ×gather, ns/id: the lookup suite's amortised timing (32 batches a call: the work, without "
        "TensorFlow's per-call cost; else per call) for the strategy at the vocab size nearest `ids` (its own "
        "default options, not the preset's); ×np.take (per call) where recorded. "
        "train peak ×weights: the memory suite's allocator peak of one train step / (param + index bytes), same "
        "strategy and optimizer, nearest size. A pair a+b: mean of the two lookups, larger of the two peaks."
    )
    return Table("Summary: best strategy per compression level", shown.reset_index(drop=True), note, ("dataset",),
                 lead=True)
