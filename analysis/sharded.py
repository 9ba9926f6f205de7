"""The sharded suite's tables: bytes per device, measured against planned, and devices needed at scale.

`per_device_table(frame)`: one row per ok `sharded` case: what a device
holds of weights and optimizer state (measured from the JAX arrays' shards),
what `membed.plan.devices` planned for it, their ratios, whether both are
within `PLAN_TOLERANCE`, the collective KiB of a lookup and of a train step,
and whether the sharded lookup matched the unsharded one.
`devices_needed_table(strategies)`: the fewest devices of `DEVICE_MEMORY`
each strategy (default options) needs at V = 1e8, 1e9 and 1e10
(`membed.plan.devices.scale_rows`; imports the strategies, so Keras).
`sharded_tables(frame)` gives both when the frame holds sharded cases.

Example:
    >>> import pandas as pd
    >>> sharded_tables(pd.DataFrame({"suite": ["lookup"], "status": ["ok"]}))
    []
"""

from __future__ import annotations

import pandas as pd

from analysis.frames import Table

SUITE = "sharded"
PLAN_TOLERANCE = 0.05  # the target: measured within 5% of planned
DEVICE_MEMORY = 80 * 2**30  # one 80 GiB accelerator
SCALE_DIM = 128
SCALE_OPTIMIZER = "rowwise_adagrad"
KIB = 1024


def _ratio(measured: pd.Series, planned: pd.Series) -> pd.Series:
    planned = planned.astype("float64")
    return (measured.astype("float64") / planned.where(planned > 0)).round(4)


def per_device_table(frame: pd.DataFrame) -> Table:
    """Measured vs planned bytes per device, collectives and agreement, per ok sharded case."""
    rows = frame[(frame["suite"] == SUITE) & (frame["status"] == "ok")]
    param_ratio = _ratio(rows["per_device_param_bytes"], rows["planned_per_device_param_bytes"])
    state_ratio = _ratio(rows["per_device_state_bytes"], rows["planned_per_device_state_bytes"])
    within = ((param_ratio - 1).abs() <= PLAN_TOLERANCE) & (
        state_ratio.isna() | ((state_ratio - 1).abs() <= PLAN_TOLERANCE))
    table = pd.DataFrame({
        "strategy": rows["strategy"],
        "dim": rows["dim"].astype("Int64"),
        "layout": rows["layout"],
        "devices": rows["devices"].astype("Int64"),
        "param KiB / device": rows["per_device_param_bytes"] / KIB,
        "planned param KiB": rows["planned_per_device_param_bytes"] / KIB,
        "param ratio": param_ratio,
        "opt. state KiB / device": rows["per_device_state_bytes"] / KIB,
        "planned state KiB": rows["planned_per_device_state_bytes"] / KIB,
        "state ratio": state_ratio,
        "within 5%": within,
        "collective KiB / lookup": rows["collective_bytes_per_lookup"] / KIB,
        "collective KiB / step": rows["collective_bytes_per_step"] / KIB,
        "device peak KiB": rows["device_peak_bytes"] / KIB,
        "matches unsharded": rows["sharded_matches"],
    }).sort_values(["strategy", "layout", "devices"], kind="stable").reset_index(drop=True)
    note = (f"{int(within.sum())} of {len(rows)} cases within {PLAN_TOLERANCE:.0%} of the plan "
            "(membed.plan.devices.per_device) for weights and optimizer state; "
            f"{int(rows['sharded_matches'].fillna(False).astype(bool).sum())} lookups equal to the unsharded "
            "layer's. Collectives: bytes delivered to a device, read from the compiled HLO; device peak: "
            "memory_stats(), empty where the platform reports none (CPU).")
    return Table("sharded: bytes per device, measured vs planned", table, note)


def devices_needed_table(strategies, dim: int = SCALE_DIM, device_memory_bytes: int = DEVICE_MEMORY,
                         optimizer: str = SCALE_OPTIMIZER) -> Table:
    """The fewest devices each strategy needs at V = 1e8, 1e9, 1e10, row-wise (`membed.plan.devices`)."""
    from membed.quiet import import_tensorflow

    import_tensorflow()  # the strategies' costs import Keras: TensorFlow starts without its log lines
    from membed.plan.devices import SCALE_VOCAB_SIZES, scale_rows

    records = []
    for row in scale_rows(list(strategies), dim, optimizer, device_memory_bytes):
        cells = {"strategy": row["strategy"]}
        for size in SCALE_VOCAB_SIZES:
            key = str(size)
            count = row["devices_needed"].get(key)
            cells[f"V={size:.0e}"] = "invalid" if key in row["errors"] else ("never" if count is None else count)
        records.append(cells)
    note = (f"devices of {device_memory_bytes / 2**30:.0f} GiB, dim {dim}, {optimizer}, default options, tables "
            "row-wise (training peak per device by membed.plan, with its host reservation); "
            f"`python -m membed plan --vocab-size V --dim {dim} --devices N --device-memory X` for another case.")
    return Table("sharded: devices needed at scale", pd.DataFrame(records), note)


def sharded_tables(frame: pd.DataFrame) -> list[Table]:
    """The sharded suite's tables when `frame` holds any of its cases, else none."""
    if "suite" not in frame or not (frame["suite"] == SUITE).any():
        return []
    tables = [per_device_table(frame)]
    names = sorted(frame.loc[frame["suite"] == SUITE, "strategy"].dropna().unique())
    if names:
        tables.append(devices_needed_table(names))
    return tables
