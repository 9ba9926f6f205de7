"""membed.measure.probes: allocator peaks of named phases and RSS peaks of named spans.

A probe switches TensorFlow's allocator before its first op, so the probes
that run TensorFlow run in a fresh process (`run_isolated`), never in the
test process.
"""

import textwrap

import pytest

from membed.measure import isolation, probes

TARGETS = '''
import numpy as np
import tensorflow as tf

from membed.measure.probes import MAX_RESERVE_BYTES, Probe


def phases(payload):
    probe = Probe(reserve_bytes=payload["reserve"])

    def build_and_use():
        with probe.phase("build"):
            table = tf.random.uniform((payload["rows"], 64))
        with probe.phase("use"):
            total = float(tf.reduce_sum(tf.gather(table, tf.range(16))))
        with probe.phase("idle"):
            pass
        return total

    def touch():
        pages = np.ones(payload["touch_bytes"], dtype=np.uint8)
        return int(pages.sum())

    total = probe.rss_span("tf", build_and_use)
    touched = probe.rss_span("numpy", touch)
    return {"alloc": probe.alloc_peaks, "rss": probe.rss_peaks, "unavailable": probe.unavailable,
            "total_is_finite": bool(np.isfinite(total)), "touched": touched}


def reservations(payload):
    # Uninitialised and dropped at once: no page of either is touched.
    largest = MAX_RESERVE_BYTES
    granted = int(tf.raw_ops.Empty(shape=[largest], dtype=tf.uint8, init=False).shape[0])
    try:
        tf.raw_ops.Empty(shape=[largest + 1], dtype=tf.uint8, init=False)
        refused = ""
    except tf.errors.InvalidArgumentError as error:
        refused = str(error)
    return {"largest": granted, "one_more": refused}
'''


@pytest.fixture()
def targets(tmp_path, monkeypatch):
    (tmp_path / "probe_targets.py").write_text(textwrap.dedent(TARGETS))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "probe_targets"


def test_phases_and_spans_measure_what_they_hold(targets):
    rows, touch = 100_000, 96 << 20
    table_bytes = 4 * rows * 64
    result = isolation.run_isolated(f"{targets}:phases", {"rows": rows, "reserve": 1 << 30, "touch_bytes": touch},
                                    timeout_s=300)
    assert result.get("status") != "failed", result
    assert result["unavailable"] is None
    alloc = result["alloc"]
    # The reserved region makes chunks fit their request: the table, within a few KiB plus the RNG's temporaries.
    assert table_bytes <= alloc["build"] <= 2 * table_bytes + (1 << 20)
    # A later phase starts from what is held: the table, plus a small gather.
    assert table_bytes <= alloc["use"] <= table_bytes + (1 << 20)
    assert table_bytes <= alloc["idle"] <= alloc["use"]
    # RSS is above the first span's baseline, so the second span also holds the first one's pages.
    assert result["rss"]["tf"] >= 0.9 * table_bytes
    assert result["rss"]["numpy"] >= result["rss"]["tf"] + 0.9 * touch
    assert result["touched"] == touch


class _RefusingTF:
    """A stand-in for `tf` whose CPU allocator keeps no statistics (TF's default)."""

    class config:  # noqa: N801 - mirrors tf.config
        class experimental:  # noqa: N801
            @staticmethod
            def reset_memory_stats(device):
                raise ValueError(f"Cannot reset memory stats for device '{device}'")


class _HalvingTF:
    """A stand-in for `tf` whose allocator refuses regions above `largest` bytes."""

    uint8 = "uint8"

    def __init__(self, largest):
        self.largest, self.asked, self.peak = largest, [], 0
        tf = self

        class experimental:  # noqa: N801
            @staticmethod
            def reset_memory_stats(device):
                tf.peak = 0

            @staticmethod
            def get_memory_info(device):
                return {"current": 0, "peak": tf.peak}

        class config:  # noqa: N801
            pass

        config.experimental = experimental
        self.config = config

        class raw_ops:  # noqa: N801
            @staticmethod
            def Empty(shape, dtype, init):  # noqa: N802 - TF's op name
                tf.asked.append(shape[0])
                if shape[0] > tf.largest:
                    raise RuntimeError("OOM when allocating")

        self.raw_ops = raw_ops


def test_an_allocator_without_statistics_says_why_and_gives_no_peaks():
    allocator = probes.Allocator(_RefusingTF)
    allocator.start(1 << 30)
    assert "TF_CPU_ALLOCATOR_USE_BFC=true must be set" in allocator.unavailable
    assert "Cannot reset memory stats" in allocator.unavailable
    allocator.reset()  # a no-op, not an error
    assert allocator.peak() is None


def test_the_reserved_region_halves_until_the_allocator_grants_it():
    tf = _HalvingTF(largest=probes.MIN_RESERVE_BYTES * 2)
    allocator = probes.Allocator(tf)
    allocator.start(probes.MIN_RESERVE_BYTES * 4)
    assert tf.asked == [probes.MIN_RESERVE_BYTES * 4, probes.MIN_RESERVE_BYTES * 2]
    assert allocator.unavailable is None and allocator.peak() == 0
    small = _HalvingTF(largest=0)
    probes.Allocator(small).start(probes.MIN_RESERVE_BYTES * 2)
    # Below the minimum it stops asking: a small region would not help.
    assert small.asked == [probes.MIN_RESERVE_BYTES * 2, probes.MIN_RESERVE_BYTES]


def test_a_reservation_beyond_emptys_int32_shape_asks_for_the_cap_first():
    # Asked for 8 GiB, TensorFlow's Empty would be given a negative dimension and refuse; halving
    # from there reserved 1-2 GiB by accident. Now the cap is asked for, and granted, at once.
    tf = _HalvingTF(largest=probes.MAX_RESERVE_BYTES)
    probes.Allocator(tf).start(8 << 30)
    assert tf.asked == [probes.MAX_RESERVE_BYTES]


def test_tensorflows_empty_takes_the_largest_reservation_and_refuses_more(targets):
    result = isolation.run_isolated(f"{targets}:reservations", {}, timeout_s=300)
    assert result.get("status") != "failed", result
    assert result["largest"] == probes.MAX_RESERVE_BYTES
    assert "must be >= 0" in result["one_more"]


def test_default_reserve_is_the_estimate_within_available_memory():
    assert probes.default_reserve_bytes(1 << 20) == probes.MIN_RESERVE_BYTES
    assert probes.default_reserve_bytes(1 << 30) == 1 << 30
    assert probes.default_reserve_bytes(10**18) < 10**18
