"""What each of N devices holds when a layer's tables are sharded over them, and how many devices it needs.

The layouts are those of `membed.shard` (Keras's `ModelParallel` on JAX):

* `row`: each device holds `ceil(rows / N)` rows of every table of rank 1
  or 2, with their optimizer state, an int8 table's per-row scales and
  `1/N` of the index;
* `column`: each device holds `ceil(columns / N)` columns of every rank-2
  table; the optimizer's per-row state (row-wise AdaGrad's accumulator) and
  int8 scales are replicated, as is the index.

Dense weights (projections, MLPs) and rank-3 TT cores are replicated in both.
A device's part is a `Layout`, so the estimator (`estimate_layout`) turns it
into bytes exactly as it does a whole layer: `per_device` gives its weights,
optimizer state, index and training peak. `devices_needed` is the fewest
devices whose row-wise part trains within the device's memory
(`sharding.row_wise_hosts` with the device's memory).

Example:
    >>> from membed.plan import Layout
    >>> part = per_device(Layout.of("full", 10**4, 16), 4, "rowwise_adagrad")
    >>> part.weights, part.optimizer_state
    (160000, 10000)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from membed.plan.constants import HOST, Reservation
from membed.plan.estimator import DEFAULT_BATCH_SIZE, estimate_layout
from membed.plan.layout import Layout
from membed.plan.sharding import row_wise_hosts

TABLE_LAYOUTS = ("row", "column")
# The sizes at which `python -m membed.plan --devices` says how many devices each strategy needs.
SCALE_VOCAB_SIZES = (10**8, 10**9, 10**10)


@dataclasses.dataclass(frozen=True)
class DeviceBytes:
    """One device's part of a sharded layer, in bytes.

    Attributes:
        devices: devices the layer is sharded over.
        table_layout: `row` or `column`.
        weights: the device's weights (its part of the tables, all replicated weights).
        optimizer_state: the optimizer's state of those weights.
        index: the device's part of the id-mapping index.
        train_peak: the estimator's training peak of that part (with the reservation).
    """

    devices: int
    table_layout: str
    weights: int
    optimizer_state: int
    index: int
    train_peak: int

    @property
    def state(self) -> int:
        """What training keeps on the device between steps: weights + optimizer state + index."""
        return self.weights + self.optimizer_state + self.index

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "state": self.state}


def _check(devices: int, table_layout: str) -> None:
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise ValueError(f"invalid `devices`: {devices!r}. It must be an integer >= 1.")
    if table_layout not in TABLE_LAYOUTS:
        raise ValueError(f"invalid `table_layout`: {table_layout!r}. Use one of: {', '.join(TABLE_LAYOUTS)}.")


def device_part(layout: Layout, devices: int, table_layout: str = "row") -> Layout:
    """One device's part of `layout` sharded over `devices` devices (see the module docstring).

    Example:
        >>> device_part(Layout.of("full", 10, 8), 4, "column").weights[0].shape
        (10, 2)
    """
    _check(devices, table_layout)
    tables = {w.rows for w in layout.weights if w.table and len(w.shape) in (1, 2)}
    parts = []
    for w in layout.weights:
        splits_rows = table_layout == "row" and len(w.shape) in (1, 2) and (
            w.table or (not w.trainable and len(w.shape) == 1 and w.rows in tables))  # tables, int8 scales
        if splits_rows:
            parts.append(dataclasses.replace(w, shape=(math.ceil(w.rows / devices), *w.shape[1:])))
        elif table_layout == "column" and w.table and len(w.shape) == 2:
            parts.append(dataclasses.replace(w, shape=(w.shape[0], math.ceil(w.shape[1] / devices))))
        else:
            parts.append(w)
    index = math.ceil(layout.index_bytes / devices) if table_layout == "row" else layout.index_bytes
    return dataclasses.replace(layout, weights=tuple(parts), index_bytes=index)


def per_device(layout: Layout, devices: int, optimizer: str, table_layout: str = "row",
               batch_size: int = DEFAULT_BATCH_SIZE, reservation: Reservation = HOST) -> DeviceBytes:
    """The bytes one of `devices` devices holds when `layout` is sharded `table_layout`-wise.

    Args:
        layout: what the whole layer holds (`Layout.of`, `Layout.from_layer`).
        devices: devices the tables are split over, >= 1.
        optimizer: an optimizer name (`constants.OPTIMIZER_NAMES`).
        table_layout: `row` or `column`.
        batch_size: ids per step on each device (the training peak's batch tensors).
        reservation: held back on each device (default: the host's runtime + margin).
    """
    estimate = estimate_layout(device_part(layout, devices, table_layout), optimizer, batch_size, reservation)
    return DeviceBytes(devices, table_layout, estimate.weights.total,
                       estimate.optimizer_state.total if estimate.trains else 0, estimate.index,
                       estimate.train_peak_bytes())


def devices_needed(layout: Layout, optimizer: str, device_memory_bytes: int,
                   batch_size: int = DEFAULT_BATCH_SIZE) -> int | None:
    """The fewest devices whose row-wise part trains within `device_memory_bytes`; None: never (too big replicated).

    Example:
        >>> devices_needed(Layout.of("full", 10**9, 128), "rowwise_adagrad", 80 * 2**30)
        7
    """
    return row_wise_hosts(layout, optimizer, batch_size, device_memory_bytes).hosts


def scale_rows(names, dim: int, optimizer: str, device_memory_bytes: int, batch_size: int = DEFAULT_BATCH_SIZE,
               vocab_sizes=SCALE_VOCAB_SIZES) -> list[dict[str, Any]]:
    """For each strategy (default options): devices needed at each of `vocab_sizes` ids, or the reason there is none.

    Returns:
        `[{"strategy": name, "devices_needed": {"100000000": n | None, ...}, "errors": {size: reason}}]`;
        None means even its replicated part does not fit one device.
    """
    rows = []
    for name in names:
        needed: dict[str, int | None] = {}
        errors: dict[str, str] = {}
        for size in vocab_sizes:
            try:
                needed[str(size)] = devices_needed(Layout.of(name, size, dim), optimizer, device_memory_bytes,
                                                   batch_size)
            except ValueError as error:
                errors[str(size)] = " ".join(str(error).split())
        rows.append({"strategy": name, "devices_needed": needed, "errors": errors})
    return rows


# ----- `python -m membed.plan --devices N --device-memory X` -----------------------------
def device_rows(plan_rows, devices: int, optimizer: str, device_memory_bytes: int,
                batch_size: int = DEFAULT_BATCH_SIZE) -> list[dict[str, Any]]:
    """Each estimated row of `cli.plan_rows` on `devices` devices, row-wise: per-device bytes and whether they fit."""
    out = []
    for row in plan_rows:
        if row.estimate is None:
            continue
        part = per_device(row.estimate.layout, devices, optimizer, "row", batch_size)
        out.append({"strategy": row.strategy, "preset": row.preset, **part.as_dict(),
                    "fits": part.train_peak <= device_memory_bytes})
    return out


def render_devices(rows: list[dict[str, Any]], scale: list[dict[str, Any]], header: dict[str, Any],
                   console=None) -> None:
    """The per-device table and the devices-needed table, with rich."""
    from rich.console import Console
    from rich.table import Table

    from membed.plan.cli import format_bytes

    console = console or Console(width=160)
    devices, memory = header["devices"], header["device_memory_bytes"]
    table = Table(title=f"on {devices} devices of {format_bytes(memory)}, tables sharded row-wise "
                        f"(optimizer={header['optimizer']}, batch={header['batch_size']} per device)",
                  title_justify="left")
    for column in ("strategy", "preset", "weights / device", "opt. state / device", "index / device",
                   "train peak / device", "fits"):
        table.add_column(column, justify="left" if column in ("strategy", "preset") else "right", no_wrap=True)
    for row in rows:
        table.add_row(row["strategy"], row["preset"], format_bytes(row["weights"]),
                      format_bytes(row["optimizer_state"]), format_bytes(row["index"]),
                      format_bytes(row["train_peak"]), "yes" if row["fits"] else "no")
    console.print(table)
    needed = Table(title=f"devices of {format_bytes(memory)} needed (default options, dim={header['dim']})",
                   title_justify="left")
    needed.add_column("strategy", no_wrap=True)
    sizes = list(scale[0]["devices_needed"]) + [s for s in scale[0]["errors"]] if scale else []
    sizes = sorted(set(sizes), key=int)
    for size in sizes:
        needed.add_column(f"V={int(size):.0e}", justify="right")
    for row in scale:
        cells = []
        for size in sizes:
            if size in row["errors"]:
                cells.append(f"[dim]{row['errors'][size][:40]}[/dim]")
            else:
                count = row["devices_needed"][size]
                cells.append("never" if count is None else f"{count:,}")
        needed.add_row(row["strategy"], *cells)
    console.print(needed)
    console.print("Per device: ceil(rows / devices) rows of every table with their optimizer state, 1/devices of "
                  "the index; dense weights and TT cores replicated. train peak: the estimator's, with "
                  "membed.plan.constants.HOST's reservation. never: the replicated part alone does not fit.")
