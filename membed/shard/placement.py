"""Where each weight of a strategy layer goes on a 1-D mesh of devices: the `LayoutMap`'s entries, from names.

A strategy names its tables (`layer.table_names`, `membed.strategies.storage`).
A table of rank 1 or 2 is split over the mesh's `AXIS`:

* `row`: along axis 0, `(AXIS, None)`, as TorchRec's row-wise sharding: each
  device holds `rows / devices` rows; a lookup gathers on every device and
  sums the partial rows (an all-reduce of the output);
* `column`: along axis 1, `(None, AXIS)`: each device holds every row's
  `dim / devices` values; a lookup gathers locally and all-gathers the columns.

Everything else is replicated on every device: projections, MLPs (DHE), TT
cores (rank-3 tables of a few KiB) and, in the column layout, an int8 table's
per-row scales (row layout: split like their table's rows). JAX shards a
dimension only when the devices divide it, so a table whose rows (or
columns) they do not divide makes the case `NotShardable`, as does a layer
with nothing to split; the reason is one line.

Example:
    >>> plan_weights([WeightInfo("l/embeddings", "embeddings", (1000, 16), True, True)], 4, "row")[0].axes
    ('model', None)
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

AXIS = "model"
LAYOUTS = ("row", "column")


class NotShardable(ValueError):
    """This layer cannot be sharded this way; the message is the one-line reason."""


@dataclasses.dataclass(frozen=True)
class WeightInfo:
    """What placement needs to know of one weight: its path, name, shape, trainable, and whether it is a table."""

    path: str
    name: str
    shape: tuple[int, ...]
    trainable: bool
    table: bool


@dataclasses.dataclass(frozen=True)
class Placement:
    """One weight's axes on the mesh: a mesh axis name or None per dimension (all None: replicated)."""

    weight: WeightInfo
    axes: tuple[str | None, ...]

    @property
    def sharded_dim(self) -> int | None:
        """The dimension split over the mesh, or None when replicated."""
        return next((i for i, axis in enumerate(self.axes) if axis is not None), None)


def weight_infos(layer: Any) -> list[WeightInfo]:
    """The built layer's weights as `WeightInfo`s (tables by `layer.table_names`)."""
    tables = set(getattr(layer, "table_names", ()))
    return [WeightInfo(str(w.path), str(w.name), tuple(int(d) for d in w.shape), bool(w.trainable),
                       str(w.name) in tables) for w in layer.weights]


def check_layout(layout: str) -> str:
    if layout not in LAYOUTS:
        raise ValueError(f"Invalid `layout`: {layout!r}. Use one of: {', '.join(LAYOUTS)}.")
    return layout


def plan_weights(weights: Sequence[WeightInfo], devices: int, layout: str) -> list[Placement]:
    """Each weight's axes for `layout` over `devices` devices.

    Args:
        weights: the layer's weights (`weight_infos`).
        devices: devices on the mesh's one axis, >= 1.
        layout: `row` or `column` (see the module docstring).

    Raises:
        NotShardable: a table the devices do not divide, a one-dimensional
            table in the column layout, or no table to split.
        ValueError: a bad `devices` or `layout`.
    """
    check_layout(layout)
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise ValueError(f"Invalid `devices`: {devices!r}. It must be an integer >= 1.")
    by_name = {w.name: w for w in weights}
    placements: list[Placement] = []
    for weight in weights:
        rank = len(weight.shape)
        replicated = (None,) * rank
        owner = by_name.get(weight.name.removesuffix("_scale")) if weight.name.endswith("_scale") else None
        if weight.table and rank in (1, 2):
            dim = 0 if layout == "row" else 1
            if dim >= rank:
                raise NotShardable(f"table '{weight.name}' {weight.shape} is one-dimensional: no column to split "
                                   "(use the row layout)")
            if weight.shape[dim] % devices:
                what = "rows" if dim == 0 else "columns"
                raise NotShardable(f"table '{weight.name}' has {weight.shape[dim]:,} {what}, not a multiple of "
                                   f"{devices} devices (JAX shards a dimension evenly only)")
            placements.append(Placement(weight, tuple(AXIS if i == dim else None for i in range(rank))))
        elif owner is not None and owner.table and not weight.trainable and layout == "row" and rank == 1 \
                and len(owner.shape) in (1, 2) and weight.shape[0] == owner.shape[0]:
            placements.append(Placement(weight, (AXIS,)))  # an int8 table's per-row scales go with its rows
        else:
            placements.append(Placement(weight, replicated))
    if not any(p.sharded_dim is not None for p in placements):
        kept = ", ".join(f"{w.name} {w.shape}" for w in weights) or "none"
        raise NotShardable(f"no table to split: its weights ({kept}) are dense or rank-3 TT cores, "
                           "replicated on every device")
    return placements


def plan_layouts(layer: Any, devices: int, layout: str) -> list[Placement]:
    """`plan_weights` of a built layer."""
    return plan_weights(weight_infos(layer), devices, layout)
