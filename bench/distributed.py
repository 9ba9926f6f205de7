"""Fit cases spread over pytest-xdist workers: `-n auto` on one host, `--tx` gateways over several.

Each accuracy case (several seeds of a training run) is independent of the
others, so a run of the fit suites can use every core, or several hosts:

    pytest bench --benchmark-only --profile full -k accuracy -n auto --benchmark-json out/fit.json
    pytest bench --benchmark-only ... -d --tx ssh=user@host1//python=python3 --tx ssh=user@host2 --rsyncdir .

pytest-benchmark switches itself off under xdist (it cannot time reliably
next to other work), so here a worker times the fit cases itself (each
seed's fit, `Rounds`) and sends each case's entry, in pytest-benchmark's
shape (`bench.results.benchmark_entry`), to the controller in its test
report's `user_properties`; the controller writes `--benchmark-json` and
the journal from them, as a serial run would. The other suites (timing,
memory, and the pipeline suite's speeds) skip under xdist with a one-line
reason: concurrent work would move their numbers, so they run in a serial
invocation (`pytest bench --benchmark-only -k "not accuracy"`).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable

import pytest

# The suites whose cases run on workers: they time their rounds with `Rounds`. Every other
# suite (the timing and memory suites, and the pipeline suite, whose numbers are speeds) runs serially.
SUITES = ("accuracy",)
ENTRY = "membed_entry"  # a worker's benchmark entry, in report.user_properties
NOT_RUN = "membed_not_run"  # a worker's not_run entry
SERIAL_REASON = ("timing and memory suites run serially: under pytest-xdist (-n / --tx) only accuracy cases "
                 "run; run this suite in a separate invocation without -n")


def is_worker(config: pytest.Config) -> bool:
    """Whether this process is a pytest-xdist worker."""
    return hasattr(config, "workerinput")


def is_controller(config: pytest.Config) -> bool:
    """Whether this process runs a pytest-xdist session's controller (it collects and runs nothing)."""
    return not is_worker(config) and getattr(getattr(config, "option", None), "dist", "no") != "no"


def is_distributed(config: pytest.Config) -> bool:
    return is_worker(config) or is_controller(config)


def benchmarks_run(config: pytest.Config) -> bool:
    """Whether this run times its benchmarks: `--benchmark-only`, or no `--benchmark-skip` (which the ini
    file sets, so that a plain `pytest` runs the unit tests only)."""
    return config.getoption("benchmark_only") or not config.getoption("benchmark_skip")


def prepare(config: pytest.Config) -> None:
    """Before pytest-benchmark configures itself: let the fit cases run although it disables timing under xdist.

    Under xdist pytest-benchmark is disabled and refuses `--benchmark-only`
    (and `--benchmark-skip` would skip every case), so both are lifted here;
    the cases are selected and timed by this module instead. A unit-test run
    on workers (`pytest -n 2`: `--benchmark-skip` from the ini file, no
    `--benchmark-only`) keeps its benchmarks skipped.
    """
    if is_distributed(config) and benchmarks_run(config):
        config.option.benchmark_only = False
        config.option.benchmark_skip = False
        # Its fixture is left unused where this module times the rounds.
        config.addinivalue_line("filterwarnings", "ignore:Benchmark fixture was not used")


class Rounds:
    """Times rounds where pytest-benchmark does not (a worker); else leaves them to `benchmark.pedantic`."""

    def __init__(self, benchmark):
        self.benchmark = benchmark
        self.samples: list[float] = []

    def run(self, function: Callable[[Any], Any], arguments: Iterable[Any]) -> list:
        """`function(argument)` once per argument, each a timed round; returns the results in order."""
        arguments = list(arguments)
        results = []
        if not getattr(self.benchmark, "disabled", False):
            remaining = iter(arguments)
            self.benchmark.pedantic(lambda argument: results.append(function(argument)),
                                    setup=lambda: ((next(remaining),), {}), rounds=len(arguments), iterations=1)
            return results
        for argument in arguments:
            start = time.perf_counter()
            results.append(function(argument))
            self.samples.append(time.perf_counter() - start)
        return results


def send(item: pytest.Item, report, kind: str, entry: dict[str, Any]) -> None:
    """Attaches an entry to a worker's report (the controller gets it with the report)."""
    report.user_properties.append((kind, entry))


def received(report) -> list[tuple[str, dict[str, Any]]]:
    """The (kind, entry) pairs a worker attached to `report`."""
    return [(kind, entry) for kind, entry in getattr(report, "user_properties", ()) if kind in (ENTRY, NOT_RUN)]
