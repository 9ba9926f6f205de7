"""Bytes per device of sharded arrays, and bytes a compiled XLA program moves through collectives.

Both read what JAX and XLA hold, not a model of them:

* `per_device_bytes(arrays)`: each device's bytes, summed over the arrays'
  `addressable_shards` (a replicated array counts in full on every device);
* `collective_bytes(hlo_text)`: the compiled program's collectives
  (`jax.jit(f).lower(...).compile().as_text()`): all-gather, all-reduce,
  reduce-scatter, all-to-all and collective-permute, and the bytes of what
  each one delivers to a device (its result's shape; an asynchronous pair
  counts once, at its `-done`). XLA's `cost_analysis()` reports no
  collective bytes on CPU, so the HLO is read.

Importing this module imports neither JAX nor Keras.

Example:
    >>> collective_bytes("  %all-reduce = f32[4096,16]{1,0} all-reduce(%x), channel_id=1")
    CollectiveBytes(total=262144, by_op={'all-reduce': 262144}, count=1)
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Iterable

COLLECTIVES = ("all-gather", "all-reduce", "reduce-scatter", "all-to-all", "collective-permute")
# Bytes per element of XLA's primitive types (sub-byte types rounded up).
ELEMENT_BYTES = {
    "pred": 1, "s4": 1, "u4": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2,
    "s32": 4, "u32": 4, "f32": 4, "s64": 8, "u64": 8, "f64": 8, "c64": 8, "c128": 16,
    "f8e4m3fn": 1, "f8e5m2": 1, "f8e4m3": 1, "f8e5m2fnuz": 1, "f8e4m3fnuz": 1, "f8e4m3b11fnuz": 1,
}
_OP = re.compile(r"=\s*(?P<type>.+?)\s+(?P<op>" + "|".join(COLLECTIVES) + r")(?P<suffix>-start|-done)?\(")
_SHAPE = re.compile(r"\b(?P<dtype>[a-z][a-z0-9]*)\[(?P<dims>[0-9,]*)\]")


@dataclasses.dataclass(frozen=True)
class CollectiveBytes:
    """Collective traffic of one compiled program, per device.

    Attributes:
        total: bytes every collective delivers to a device, summed.
        by_op: the same by kind of collective.
        count: how many collectives the program runs.
    """

    total: int
    by_op: dict[str, int]
    count: int


def shape_bytes(type_text: str) -> int:
    """Bytes of an HLO type: `f32[4096,16]{1,0}` or a tuple `(f32[2]{0}, s32[])`; unknown types raise ValueError.

    Example:
        >>> shape_bytes("(f32[4,16]{1,0}, bf16[8]{0})")
        272
    """
    total = 0
    for match in _SHAPE.finditer(type_text):
        dtype = match.group("dtype")
        if dtype not in ELEMENT_BYTES:
            raise ValueError(f"Unknown HLO element type {dtype!r} in {type_text!r}. Known: {', '.join(ELEMENT_BYTES)}.")
        dims = [int(d) for d in match.group("dims").split(",") if d]
        total += ELEMENT_BYTES[dtype] * math.prod(dims)
    return total


def collective_bytes(hlo_text: str) -> CollectiveBytes:
    """The collectives of a compiled program's HLO text and the bytes they deliver to each device.

    An asynchronous collective (`all-gather-start` / `all-gather-done`)
    counts once, at its `-done`, whose result is what it delivered.

    Args:
        hlo_text: `compiled.as_text()` of a `jax.jit(...).lower(...).compile()`.
    """
    by_op: dict[str, int] = {}
    count = 0
    for line in hlo_text.splitlines():
        match = _OP.search(line)
        if match is None or match.group("suffix") == "-start":
            continue
        op = match.group("op")
        by_op[op] = by_op.get(op, 0) + shape_bytes(match.group("type"))
        count += 1
    return CollectiveBytes(sum(by_op.values()), by_op, count)


def per_device_bytes(arrays: Iterable[Any]) -> dict[int, int]:
    """Bytes each device holds of `arrays` (JAX arrays), from their `addressable_shards`, by device id.

    Example:
        >>> per_device_bytes([])
        {}
    """
    held: dict[int, int] = {}
    for array in arrays:
        for shard in array.addressable_shards:
            held[shard.device.id] = held.get(shard.device.id, 0) + int(shard.data.nbytes)
    return held


def device_peak_bytes(devices: Iterable[Any]) -> int | None:
    """The largest `peak_bytes_in_use` the devices' `memory_stats()` report; None where they report none (CPU)."""
    peaks = []
    for device in devices:
        try:
            stats = device.memory_stats()
        except Exception:  # some platforms raise instead of returning None
            stats = None
        if stats and "peak_bytes_in_use" in stats:
            peaks.append(int(stats["peak_bytes_in_use"]))
    return max(peaks) if peaks else None
