"""How many hosts a layer needs when its tables are sharded row-wise, as TorchRec places them.

With row-wise sharding each of `h` hosts holds `ceil(rows / h)` rows of every
table with their optimizer state, and the index of its own ids; dense weights
(projections, MLPs) and their state are replicated, and every host runs its
own batch, so the per-batch tensors and the reservation are paid on each.
The per-host bytes are the estimator's training peak of that host's part
(`Layout.sharded`), so they shrink with `h` until only the replicated part
is left; `row_wise_hosts` finds the fewest hosts whose part fits.

Example:
    >>> from membed.plan import Layout, row_wise_hosts
    >>> placement = row_wise_hosts(Layout.of("full", 10**9, 128), "rowwise_adagrad", 4096, 24 * 2**30)
    >>> placement.hosts, placement.fits_one_host
    (23, False)
"""

from __future__ import annotations

import dataclasses

from membed.plan.constants import HOST, Reservation
from membed.plan.estimator import estimate_layout
from membed.plan.layout import Layout


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where a layer's training fits.

    Attributes:
        hosts: the fewest hosts whose row-wise part fits (1 when it fits one
            host); None when even the replicated part does not fit one host.
        per_host_bytes: the training peak on each of those hosts (at the
            largest useful host count when `hosts` is None).
        single_host_bytes: the training peak of the whole layer on one host.
        host_memory_bytes: the memory of one host.
    """

    hosts: int | None
    per_host_bytes: int
    single_host_bytes: int
    host_memory_bytes: int

    @property
    def fits_one_host(self) -> bool:
        return self.single_host_bytes <= self.host_memory_bytes


def per_host_bytes(layout: Layout, hosts: int, optimizer: str, batch_size: int,
                   reservation: Reservation = HOST) -> int:
    """The training peak on one of `hosts` hosts holding `layout` sharded row-wise."""
    return estimate_layout(layout.sharded(hosts), optimizer, batch_size, reservation).train_peak_bytes()


def row_wise_hosts(layout: Layout, optimizer: str, batch_size: int, host_memory_bytes: int,
                   reservation: Reservation = HOST) -> Placement:
    """The fewest hosts that train `layout` with its tables sharded row-wise.

    Args:
        layout: what the layer holds (`Layout.of` or `Layout.from_layer`).
        optimizer: an optimizer name (`constants.OPTIMIZER_NAMES`).
        batch_size: ids per step on each host.
        host_memory_bytes: memory of one host.
        reservation: held back on each host (default `constants.HOST`:
            the runtime plus a margin).

    Example:
        >>> row_wise_hosts(Layout.of("full", 10**6, 64), "sgd", 4096, 2**40).hosts
        1
    """
    if isinstance(host_memory_bytes, bool) or not isinstance(host_memory_bytes, int) or host_memory_bytes < 1:
        raise ValueError(
            f"row_wise_hosts: invalid `host_memory_bytes`: {host_memory_bytes!r}. It must be an integer >= 1."
        )

    def bytes_at(hosts: int) -> int:
        return per_host_bytes(layout, hosts, optimizer, batch_size, reservation)

    single = bytes_at(1)
    if single <= host_memory_bytes:
        return Placement(1, single, single, host_memory_bytes)
    # Past the largest table's row count every host holds one row: nothing more to gain.
    most = max([w.rows for w in layout.weights if w.table] + [1])
    if bytes_at(most) > host_memory_bytes:
        return Placement(None, bytes_at(most), single, host_memory_bytes)
    low, high = 1, most  # bytes_at(low) does not fit, bytes_at(high) does; bytes_at never grows with hosts
    while high - low > 1:
        middle = (low + high) // 2
        if bytes_at(middle) <= host_memory_bytes:
            high = middle
        else:
            low = middle
    return Placement(high, bytes_at(high), single, host_memory_bytes)
