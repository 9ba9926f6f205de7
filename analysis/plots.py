"""PNG plots of a result frame, drawn with matplotlib's Agg canvas (no display needed).

Three figures, each skipped when the run has no data for it:

- `memory_vs_vocab.png`: params and measured peak memory against vocab size,
  log-log, one line per strategy; rows with `projected` true are dashed. The
  train panels have a line per strategy and optimizer (a marker per
  optimizer); the others, the same for every optimizer, the default's.
- `mse_vs_memory.png`: val MSE against parameter memory, one panel per
  dataset and optimizer, the Pareto front joined and ringed.
- `lookup_latency.png`: gather_ratio bars per strategy (one bar per dataset and
  size), for the lookup suite and the train_step suite per optimizer; where
  records carry `floor_ratio` (case / np.take on the same table and ids), the
  np.take floor is drawn as a line at gather_ratio / floor_ratio.

Strategies are told apart by colour and, where points stand alone, by marker
(`strategy_styles`): 10 strong colours, then their light shades, so that 12 or
more strategies never share both.

Axis labels and scales are the fields' report labels in `analysis.schema`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator

from analysis import schema
from analysis.frames import GROUP_COLUMNS, accuracy_loss, ok_rows, pareto_front

# (column, label, scale) of each memory panel: the parameter count, then every measured peak.
MEMORY_PANELS = tuple(
    (name, schema.FIELD[name].label, schema.FIELD[name].scale) for name in ("params", *schema.PEAK_FIELDS)
)
# The suites whose gather_ratio gets a panel of bars: the paired ones that cover every strategy.
RATIO_SUITES = tuple(name for name in schema.PAIRED_SUITES if schema.SUITES[name].covers_strategies)
PARAM_SCALE = schema.FIELD["param_bytes"].scale
DPI = 110
# Panels whose values the optimizer changes; the others are drawn from the default optimizer's cases.
TRAIN_PANELS = ("peak_alloc_bytes_train", "peak_rss_bytes_train")
# A marker per optimizer (membed.optim.NAMES), in the memory plot's train panels.
OPTIMIZER_MARKERS = {"adam": "o", "lazy_adam": "^", "adagrad": "v", "rowwise_adagrad": "s", "sgd": "D"}


def optimizer_of(rows: pd.DataFrame) -> pd.Series:
    """Each row's optimizer, the default one where a row has none (a suite without the axis, an older file)."""
    column = rows["optimizer"] if "optimizer" in rows else pd.Series(None, index=rows.index, dtype=object)
    return column.fillna(schema.DEFAULT_OPTIMIZER)


# tab20 holds 10 hues in a strong and a light shade; the strong ones first keep the first 10 strategies apart.
PALETTE = tuple(colormaps["tab20"](i) for i in (*range(0, 20, 2), *range(1, 20, 2)))
# Markers for points that stand alone (the MSE scatter), cycled with a period prime to the palette's.
STRATEGY_MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def strategy_styles(strategies: list[str]) -> dict[str, tuple[tuple, str]]:
    """{strategy: (colour, marker)}, stable by name order; no two of the first 140 strategies share both.

    Example:
        >>> len({strategy_styles([f"s{i}" for i in range(14)])[f"s{i}"] for i in range(14)})
        14
    """
    names = sorted(strategies)
    return {
        name: (PALETTE[i % len(PALETTE)], STRATEGY_MARKERS[i % len(STRATEGY_MARKERS)]) for i, name in enumerate(names)
    }


def strategy_colors(strategies: list[str]) -> dict[str, tuple]:
    """One stable colour per strategy name, the same in every figure (`strategy_styles`' colours)."""
    return {name: color for name, (color, _) in strategy_styles(strategies).items()}


def _save(figure: Figure, path: Path) -> Path:
    FigureCanvasAgg(figure)
    # Constrained layout already fits the labels; bbox_inches="tight" would draw everything a second time.
    figure.savefig(path, dpi=DPI)
    return path


def _log_axes(axis, x: bool = True, y: bool = True) -> None:
    """Log scales with minor ticks at 2 and 5 only: the full set of eight per decade crowds the axes
    and dominates the drawing time, while 2 and 5 still label a range shorter than a decade."""
    for enabled, scale, target in ((x, axis.set_xscale, axis.xaxis), (y, axis.set_yscale, axis.yaxis)):
        if enabled:
            scale("log")
            target.set_minor_locator(LogLocator(subs=(2.0, 5.0)))


def _grid(count: int, cell: tuple[float, float] = (5.0, 3.8)) -> tuple[Figure, list]:
    columns = min(3, count)
    rows = math.ceil(count / columns)
    figure = Figure(figsize=(cell[0] * columns, cell[1] * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel().tolist()
    for extra in axes[count:]:
        extra.set_visible(False)
    return figure, axes[:count]


def plot_memory_vs_vocab(frame: pd.DataFrame, path: Path) -> Path | None:
    """Params and peak memory vs vocab size, log-log; returns the path, or None without data."""
    memory = frame[frame["suite"] == "memory"]
    rows = memory[(memory["status"] == "ok") | memory["projected"]].dropna(subset=["vocab_size"])
    if rows.empty:
        return None
    # One line per strategy: the dataset measured at the most sizes (the synthetic sweep).
    sizes_per_dataset = rows.groupby("dataset")["vocab_size"].nunique()
    sweep = sizes_per_dataset.idxmax()
    rows = rows[rows["dataset"] == sweep]
    panels = [p for p in MEMORY_PANELS if rows[p[0]].notna().any()]
    if not panels:
        return None
    colors = strategy_colors(list(rows["strategy"].dropna().unique()))
    rows = rows.assign(optimizer=optimizer_of(rows))
    figure, axes = _grid(len(panels))
    for axis, (column, label, scale) in zip(axes, panels, strict=True):
        shown = rows if column in TRAIN_PANELS else rows[rows["optimizer"] == schema.DEFAULT_OPTIMIZER]
        for (strategy, optimizer), group in shown.groupby(["strategy", "optimizer"], sort=True):
            group = group.dropna(subset=[column]).sort_values("vocab_size")
            if group.empty:
                continue
            name = strategy if optimizer == schema.DEFAULT_OPTIMIZER else f"{strategy}, {optimizer}"
            marker = OPTIMIZER_MARKERS.get(optimizer, "x")
            measured, projected = group[~group["projected"]], group[group["projected"]]
            x, y = measured["vocab_size"], measured[column] * scale
            axis.plot(x, y, "-" + marker, color=colors[strategy], label=name, markersize=4)
            if len(projected):
                # Join the last measured point to the projections so the dashed part reads as a continuation.
                bridge = pd.concat([measured.tail(1), projected])
                axis.plot(
                    bridge["vocab_size"],
                    bridge[column] * scale,
                    "--" + marker,
                    color=colors[strategy],
                    markersize=4,
                    markerfacecolor="none",
                    label=None if len(measured) else f"{name} (projected)",
                )
        _log_axes(axis)
        axis.set_xlabel("vocab size")
        axis.set_ylabel(label)
        axis.set_title(f"{label} vs vocab size ({sweep})")
        axis.grid(True, which="major", alpha=0.3)
    # Every panel's lines, once: the train panels hold every optimizer's, the others a layer without a train step.
    legend: dict[str, object] = {}
    for axis in axes:
        for handle, name in zip(*axis.get_legend_handles_labels()):
            legend.setdefault(name, handle)
    names = sorted(legend)
    figure.legend([legend[name] for name in names], names, loc="outside right upper", fontsize="small")
    if rows["projected"].any():
        figure.suptitle("dashed, hollow markers: projected from cost formulas, not measured", fontsize="small")
    return _save(figure, path)


def plot_mse_vs_memory(frame: pd.DataFrame, path: Path) -> Path | None:
    """Test loss (± its 95% CI over seeds) vs parameter memory per dataset, Pareto front marked; None without data."""
    rows = accuracy_loss(ok_rows(frame[frame["suite"] == "accuracy"])).dropna(subset=["param_bytes", "loss"])
    if rows.empty:
        return None
    styles = strategy_styles(list(rows["strategy"].dropna().unique()))
    rows = rows.assign(optimizer=optimizer_of(rows))
    by = [*GROUP_COLUMNS, "optimizer"]
    groups = list(rows.groupby(by, sort=True))
    figure, axes = _grid(len(groups))
    front = pareto_front(rows, value="loss", by=by)
    several = rows["optimizer"].nunique() > 1
    for axis, ((dataset, vocab_size, optimizer), group) in zip(axes, groups, strict=True):
        for strategy, points in group.groupby("strategy", sort=True):
            x = points["param_bytes"] * PARAM_SCALE
            color, marker = styles[strategy]
            axis.errorbar(x, points["loss"], yerr=points["loss_ci95"].fillna(0.0), fmt=marker, color=color,
                          label=strategy, markersize=4, elinewidth=0.8, capsize=2)
        best = front[(front["dataset"] == dataset) & (front["vocab_size"] == vocab_size)
                     & (front["optimizer"] == optimizer)].sort_values("param_bytes")
        front_x = best["param_bytes"] * PARAM_SCALE
        axis.step(front_x, best["loss"], where="post", color="black", linewidth=1, alpha=0.6)
        axis.scatter(
            front_x,
            best["loss"],
            facecolors="none",
            edgecolors="black",
            s=90,
            label="Pareto front",
        )
        for _, point in best.iterrows():
            text = point["strategy"] + (f" {point['preset']}" if isinstance(point["preset"], str) else "")
            axis.annotate(
                text,
                (point["param_bytes"] * PARAM_SCALE, point["loss"]),
                fontsize="x-small",
                xytext=(4, 4),
                textcoords="offset points",
            )
        _log_axes(axis, y=False)
        axis.set_xlabel(schema.FIELD["param_bytes"].label)
        axis.set_ylabel("test log loss" if dataset == "synthetic-ctr" else "test MSE (± 95% CI over seeds)")
        axis.set_title(f"{dataset} ({int(vocab_size):,} ids)" + (f", {optimizer}" if several else ""))
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize="x-small")
    return _save(figure, path)


def plot_lookup_latency(frame: pd.DataFrame, path: Path) -> Path | None:
    """gather_ratio bars per strategy, one bar per dataset and size, per latency suite; None without data."""
    ratios = ok_rows(frame[frame["suite"].isin(RATIO_SUITES)]).dropna(subset=["gather_ratio"])
    ratios = ratios.assign(optimizer=optimizer_of(ratios))
    # A panel per suite, and per optimizer where a suite has several.
    panels = [(suite, optimizer) for suite in RATIO_SUITES
              for optimizer in ratios.loc[ratios["suite"] == suite, "optimizer"].unique()]
    if not panels:
        return None
    figure, axes = _grid(len(panels), cell=(7.0, 4.0))
    for axis, (suite, optimizer) in zip(axes, panels, strict=True):
        rows = ratios[(ratios["suite"] == suite) & (ratios["optimizer"] == optimizer)]
        several = ratios.loc[ratios["suite"] == suite, "optimizer"].nunique() > 1
        table = rows.pivot_table(
            index="strategy", columns=list(GROUP_COLUMNS), values="gather_ratio", aggfunc="median"
        )
        positions = np.arange(len(table.index))
        width = 0.8 / max(1, len(table.columns))
        for i, (dataset, vocab_size) in enumerate(table.columns):
            axis.bar(
                positions + i * width - 0.4 + width / 2,
                table[(dataset, vocab_size)].to_numpy(),
                width,
                label=f"{dataset} {int(vocab_size):,}",
            )
        axis.axhline(1.0, color="black", linestyle=":", linewidth=1)
        floor = take_floor(rows)
        if floor is not None:
            axis.axhline(floor, color="tab:red", linestyle="--", linewidth=1, label=f"np.take floor ({floor:.2g})")
        axis.set_xticks(positions, table.index, rotation=30, ha="right")
        axis.set_ylabel("median / bare tf.gather median")
        axis.set_title(f"{suite}{f' ({optimizer})' if several else ''}: gather_ratio (1 = bare gather)")
        axis.legend(fontsize="x-small")
        axis.grid(True, axis="y", alpha=0.3)
    return _save(figure, path)


def take_floor(rows: pd.DataFrame) -> float | None:
    """np.take's time in units of the bare gather: the median of gather_ratio / floor_ratio; None without them.

    Both ratios share the case's median as numerator, so their quotient is np.take / tf.gather in the same round.

    Example:
        >>> take_floor(pd.DataFrame({"gather_ratio": [1.2, 2.4], "floor_ratio": [10.0, 20.0]}))
        0.12
    """
    if "floor_ratio" not in rows or "gather_ratio" not in rows:
        return None
    quotient = rows["gather_ratio"].astype("float64") / rows["floor_ratio"].astype("float64")
    quotient = quotient[np.isfinite(quotient) & (quotient > 0)]
    return float(quotient.median()) if len(quotient) else None


def write_plots(frame: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """Writes every plot that has data into `out_dir`; returns the paths written.

    Args:
        frame: the tidy frame of `analysis.load.load_results`.
        out_dir: folder for the PNGs (created if needed).

    Example:
        >>> [p.name for p in write_plots(frame, "out")]  # doctest: +SKIP
        ['memory_vs_vocab.png', 'mse_vs_memory.png', 'lookup_latency.png']
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [
        plot_memory_vs_vocab(frame, out_dir / "memory_vs_vocab.png"),
        plot_mse_vs_memory(frame, out_dir / "mse_vs_memory.png"),
        plot_lookup_latency(frame, out_dir / "lookup_latency.png"),
    ]
    return [p for p in written if p is not None]
