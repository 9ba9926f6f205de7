"""Peak memory of named phases: TensorFlow's allocator peak per phase, the process's peak RSS per span.

`Probe` measures what a piece of code holds at its worst:

* `with probe.phase("build"): ...` resets the allocator's statistics on
  entry and records its peak on exit, in `probe.alloc_peaks["build"]`;
* `probe.rss_span("lookup", function)` runs `function` while the process's
  RSS is sampled (memory_profiler, every `rss_interval_s`) and records its
  peak above the RSS at the first span, in `probe.rss_peaks["lookup"]`.
  Spans may hold several phases (build then lookup), and a later span's
  peak also holds the pages the earlier ones touched.

Run it in a process of its own (see `membed.measure.isolation`): RSS is the
whole process's, and the allocator can only be switched on before
TensorFlow runs its first op.

TensorFlow's allocator on CPU: in TF 2.21 the default CPU allocator keeps no
statistics (`tf.config.experimental.reset_memory_stats("CPU:0")` raises
`ValueError: Cannot reset memory stats for device 'CPU:0'`). With
`TF_CPU_ALLOCATOR_USE_BFC=true`, read when the first op runs, the CPU
allocator is a BFC allocator whose `get_memory_info("CPU:0")` reports real
`current` and `peak` bytes. BFC hands out chunks carved from regions that
grow in powers of two, so a 256 MB table shows as a 268 MB chunk; `Probe`
therefore first reserves one large region with an uninitialised tensor and
frees it, after which chunks are split to within 256 bytes of the request.
No page of the region is touched, but BFC writes one 8-byte handle per 256
bytes of it (1/32 of its size, in RSS from then on); that happens before the
RSS baseline. The region is at most `MAX_RESERVE_BYTES`: a case that needs
more grows the allocator by further regions, whose handles are in its RSS
peaks, as they are in a process that reserved nothing.

Example:
    >>> probe = Probe(reserve_bytes=1 << 30)
    >>> def build_and_use():
    ...     with probe.phase("build"):
    ...         table = tf.zeros((1000, 64))
    ...     with probe.phase("use"):
    ...         return float(tf.reduce_sum(table))
    >>> probe.rss_span("all", build_and_use)
    0.0
    >>> probe.alloc_peaks["build"] >= 4 * 1000 * 64
    True
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import Any, Callable, Iterator

import psutil

# The allocator-region reservation stays within this share of available memory.
RESERVE_SHARE = 0.8
MIN_RESERVE_BYTES = 256 << 20
DEFAULT_RSS_INTERVAL_S = 0.005
BFC_ENVIRONMENT = {"TF_CPU_ALLOCATOR_USE_BFC": "true"}
# `tf.raw_ops.Empty` takes an int32 shape: a larger reservation would be refused.
MAX_RESERVE_BYTES = 2**31 - 1


@dataclasses.dataclass
class Allocator:
    """The CPU allocator's statistics, or why there are none (`unavailable`)."""

    tf: Any
    unavailable: str | None = None

    def start(self, reserve_bytes: int) -> None:
        """Checks that statistics are kept and reserves one region of up to `reserve_bytes`."""
        try:
            self.tf.config.experimental.reset_memory_stats("CPU:0")
        except ValueError as error:
            self.unavailable = (
                f"TF allocator statistics unavailable ({error}); TF_CPU_ALLOCATOR_USE_BFC=true must be set "
                "before TensorFlow runs its first op"
            )
            return
        # One large region up front, uninitialised so no page is touched:
        # later allocations are split from it to their own size.
        reserve_bytes = min(reserve_bytes, MAX_RESERVE_BYTES)
        while reserve_bytes >= MIN_RESERVE_BYTES:
            try:
                # Allocated and at once dropped: the region stays with the allocator.
                self.tf.raw_ops.Empty(shape=[reserve_bytes], dtype=self.tf.uint8, init=False)
                return
            except Exception:  # the allocator refused; a smaller region still helps
                reserve_bytes //= 2

    def reset(self) -> None:
        if self.unavailable is None:
            self.tf.config.experimental.reset_memory_stats("CPU:0")

    def peak(self) -> int | None:
        if self.unavailable is not None:
            return None
        return int(self.tf.config.experimental.get_memory_info("CPU:0")["peak"])


def rss_peak(function: Callable[[], Any], baseline: int, interval: float) -> tuple[int, Any]:
    """(peak RSS bytes above `baseline` while `function()` runs, its return value), sampled every `interval` s."""
    from memory_profiler import memory_usage

    # max_iterations=1: memory_profiler would otherwise call a fast function again.
    peak_mib, value = memory_usage((function, (), {}), interval=interval, max_usage=True, retval=True,
                                   max_iterations=1, backend="psutil")
    return max(0, int(peak_mib * 2**20) - baseline), value


def default_reserve_bytes(estimate: int) -> int:
    """The region to reserve for a run estimated to peak at `estimate` bytes: at least `MIN_RESERVE_BYTES`, at
    most 80% of available memory (`Allocator.start` caps it at `MAX_RESERVE_BYTES`).

    A small case reserves the minimum too: without a region, the allocator
    hands a request a whole free chunk of up to twice its size, so the same
    small case peaked at 1.6 MiB in one run and 3.3 MiB in the next.
    """
    return min(max(int(estimate), MIN_RESERVE_BYTES), int(RESERVE_SHARE * psutil.virtual_memory().available))


class Probe:
    """Allocator peaks of named phases and RSS peaks of named spans, in this process.

    Creating it switches TensorFlow's CPU allocator to BFC (unless
    `TF_CPU_ALLOCATOR_USE_BFC` is set otherwise) and imports TensorFlow; when
    TensorFlow has already run an op without it, allocator peaks are None and
    `unavailable` says why.

    Args:
        reserve_bytes: the allocator region reserved up front (see the module
            docstring); `default_reserve_bytes(estimate)` sizes it.
        rss_interval_s: seconds between RSS samples.

    Example:
        >>> probe = Probe(reserve_bytes=1 << 30)
        >>> with probe.phase("zeros"):
        ...     _ = tf.zeros((1000, 64))
        >>> probe.alloc_peaks["zeros"] >= 256_000
        True
    """

    def __init__(self, reserve_bytes: int, rss_interval_s: float = DEFAULT_RSS_INTERVAL_S):
        # Read when TensorFlow runs its first op, which has not happened yet in a fresh process.
        for key, value in BFC_ENVIRONMENT.items():
            os.environ.setdefault(key, value)
        import tensorflow as tf

        if not (isinstance(rss_interval_s, (int, float)) and rss_interval_s > 0):
            raise ValueError(f"Probe: invalid `rss_interval_s`: {rss_interval_s!r}. It must be a number > 0.")
        self.rss_interval_s = float(rss_interval_s)
        self.allocator = Allocator(tf)
        self.allocator.start(int(reserve_bytes))
        self.alloc_peaks: dict[str, int | None] = {}
        self.rss_peaks: dict[str, int] = {}
        self.rss_baseline: int | None = None

    @property
    def unavailable(self) -> str | None:
        """Why allocator peaks are None, or None when they are measured."""
        return self.allocator.unavailable

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Records the allocator's peak over the block in `alloc_peaks[name]` (None when unavailable).

        The peak counts what was already held when the block began (the
        built weights, during a lookup) plus what the block allocated.
        """
        self.allocator.reset()
        yield
        self.alloc_peaks[name] = self.allocator.peak()

    def rss_span(self, name: str, function: Callable[[], Any]) -> Any:
        """Runs `function()`, records its peak RSS above the baseline in `rss_peaks[name]`, returns its value.

        The baseline is the process's RSS when the first span starts (or
        when `mark_rss_baseline` was last called).
        """
        if self.rss_baseline is None:
            self.mark_rss_baseline()
        self.rss_peaks[name], value = rss_peak(function, self.rss_baseline, self.rss_interval_s)
        return value

    def mark_rss_baseline(self) -> int:
        """Takes the process's RSS now as the baseline of later spans; returns it."""
        self.rss_baseline = psutil.Process().memory_info().rss
        return self.rss_baseline
