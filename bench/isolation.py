"""Cases too big to share the pytest process run in a pytest process of their own.

A case runs as `python -m pytest NODE_ID`, with the run's options, in a child
process when the pytest process's RSS plus the case's estimated peak memory
would be above `--isolate-above` (a share of the machine's memory, default
0.125); its entry comes back through the child's JSON. The pytest process's
RSS counts because TensorFlow keeps what it freed: the RSS of one process is
the high-water mark of every case it ran, not of the largest one. A case whose
estimate is under `SMALL_CASE_BYTES` stays in the pytest process even when its
RSS is over the limit: it cannot exhaust the machine, and a process of its own
would cost it a few seconds of start-up. An out-of-memory kill or a crash then
takes down that case only: it is recorded as failed with the signal and the child's last RSS, and the run
goes on; the pytest process itself never holds the big tables. The child
times the case exactly as the parent would (same harness, same rounds); only
its start-up (a few seconds) is added to the run's wall time.

The memory suite is left out: it already measures in a process of its own.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import psutil
import pytest

from bench import distributed, grid, rules
from membed import measure

CHILD_ENV = "MEMBED_BENCH_CHILD"  # set in the child: it runs its one case in-process
# The largest case of the full profile (the 1e7 x 64 full table's train step, in its own
# process) peaks near 20 GB of this machine's 25 GB: with 0.25 the pytest process held
# 4.4 GiB and that case was killed for memory; with 0.125 it held 2.6 GiB and it ran.
DEFAULT_SHARE = 0.125
POLL_SECONDS = 0.2
# Cases estimated under this stay in the pytest process (unless `--isolate-above 0`). Once the
# accuracy suite's fits had taken that process's RSS over its 3 GiB limit, every later case ran in
# a process of its own: 4.6 s of start-up each, where a 1e3-id lookup case takes 0.5 s. The full
# profile's lookup and train_step suites took 50 min so, 40 min with this (2026-12-01).
SMALL_CASE_BYTES = 256 << 20
# What pytest-xdist sets in a worker's environment. A pytest run started from a worker that inherits
# them takes itself for a worker: pytest-benchmark then turns timing off and refuses --benchmark-only.
XDIST_VARIABLES = ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID")
# The run's own options, passed on to the child so that it parametrizes the same grid.
PASSED_OPTIONS = ("profile", "strategies", "vocab_sizes", "datasets", "optimizers", "seeds", "measure_timeout")


def estimated_peak_bytes(case: grid.Case) -> int | None:
    """The case's estimated peak bytes (tables, training state, the paired gather table), or None.

    None where the pytest process is the right place anyway: MovieLens cases
    (their size is known only once loaded; the largest is small), the memory
    suite (it measures in processes of its own), and cases that the grid's
    rules skip at once (invalid, not sublinear above 1e7 ids, more than the
    machine has).
    """
    if case.vocab_size is None or case.kind == "isolated-memory":
        return None
    gather_bytes = measure.FLOAT32_BYTES * rules.gather_rows(case.vocab_size, case.dim) * case.dim
    if case.kind == "reference":
        return measure.estimated_peak_bytes(gather_bytes, case.batch_size, case.dim)
    admission = rules.admit(case, case.vocab_size, {}, grid.declaration(case.suite).rules)
    if admission.reason is not None:
        return None
    peak = measure.estimated_peak_bytes(admission.sizes.train_state_bytes, case.batch_size, case.dim)
    return peak + (gather_bytes if case.kind == "paired" else 0)


def child_environment(**extra: str) -> dict[str, str]:
    """This process's environment less pytest-xdist's worker variables, with `extra` set: for a child pytest
    run of its own (a case in its own process; a unit test's `pytest bench` run on an xdist worker)."""
    inherited = {name: value for name, value in os.environ.items() if name not in XDIST_VARIABLES}
    return {**inherited, **extra}


@dataclasses.dataclass
class ChildOutcome:
    """What the child brought back: a benchmark entry, or a not_run entry (skipped or failed)."""

    outcome: str  # pytest's: passed, skipped or failed
    benchmark: dict[str, Any] | None
    not_run: dict[str, Any] | None
    reason: str
    seconds: float


def _rss(process: psutil.Process) -> int:
    """RSS of `process` and its children (memory_profiler and fork-based probes run below it)."""
    try:
        tree = [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for member in tree:
        try:
            total += member.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def run_child(item: pytest.Item, case: grid.Case, arguments: list[str], timeout_s: float) -> ChildOutcome:
    """Runs `item` alone in `python -m pytest`, watches its RSS, and reads back its entry."""
    config = item.config
    with tempfile.TemporaryDirectory(prefix="membed-case-") as folder:
        out = Path(folder) / "case.json"
        log = Path(folder) / "case.log"
        argv = [sys.executable, "-m", "pytest", item.nodeid, "--benchmark-only", "-q", "-p", "no:cacheprovider",
                "--benchmark-json", str(out), *arguments]
        start = time.monotonic()
        with open(log, "w") as stream:
            child = subprocess.Popen(argv, cwd=config.invocation_params.dir, stdout=stream,
                                     stderr=subprocess.STDOUT, env=child_environment(**{CHILD_ENV: "1"}))
        watched, last_rss = psutil.Process(child.pid), 0
        try:
            while child.poll() is None:
                if time.monotonic() - start > timeout_s:
                    child.kill()
                    child.wait()
                    return _failed(case, item, f"timed out after {timeout_s:g} s", start)
                last_rss = _rss(watched) or last_rss
                time.sleep(POLL_SECONDS)
        except BaseException:
            child.kill()  # interrupted (Ctrl-C): the case is abandoned, not waited for
            child.wait()
            raise
        if child.returncode < 0:
            reason = measure.death_reason(child.returncode, "the case's own process")
            return _failed(case, item, f"{reason}; its last RSS was {last_rss / 2**30:.2f} GiB", start)
        try:
            result = json.loads(out.read_text())
        except (OSError, ValueError):
            tail = (log.read_text(errors="replace").strip().splitlines() or [""])[-1]
            return _failed(case, item, f"the case's own process exited with code {child.returncode} "
                                       f"and no result: {tail}", start)
    seconds = time.monotonic() - start
    for entry in result["benchmarks"]:
        if entry["fullname"] == item.nodeid:
            status = entry["extra_info"].get("status")
            reason = entry["extra_info"].get("reason") or ""
            return ChildOutcome("passed" if status == "ok" else "failed", entry, None, reason, seconds)
    for entry in result["membed"]["not_run"]:
        if entry["fullname"] == item.nodeid:
            outcome = "skipped" if entry["status"] == "skipped" else "failed"
            return ChildOutcome(outcome, None, entry, entry["reason"], seconds)
    return _failed(case, item, f"the case's own process (exit code {child.returncode}) wrote no entry for it", start)


def _failed(case: grid.Case, item: pytest.Item, reason: str, start: float) -> ChildOutcome:
    entry = {**grid.base_record(case), "status": "failed", "reason": reason, "fullname": item.nodeid}
    return ChildOutcome("failed", None, entry, reason, time.monotonic() - start)


def child_arguments(config: pytest.Config) -> list[str]:
    """The run's grid options and `-p` plugins, for a child that must parametrize the same cases."""
    arguments = []
    for name in PASSED_OPTIONS:
        value = config.getoption(name)
        if value is not None:
            arguments += [f"--{name.replace('_', '-')}", str(value)]
    if config.getoption("allow_download"):
        arguments.append("--allow-download")
    given = list(config.invocation_params.args)
    for flag, value in zip(given, given[1:]):
        if flag == "-p":
            arguments += ["-p", value]
    return arguments


def report(item: pytest.Item, outcome: ChildOutcome) -> None:
    """Tells pytest's reporters how the case ended, as if it had run here."""
    location = item.location
    hook = item.ihook
    hook.pytest_runtest_logstart(nodeid=item.nodeid, location=location)
    for when in ("setup", "call", "teardown"):
        result = outcome.outcome if when == "call" else "passed"
        if result == "skipped":
            longrepr: Any = (str(location[0]), (location[1] or 0) + 1, f"Skipped: {outcome.reason}")
        elif result == "failed":
            longrepr = f"[in its own process] {outcome.reason}"
        else:
            longrepr = None
        duration = outcome.seconds if when == "call" else 0.0
        hook.pytest_runtest_logreport(report=pytest.TestReport(
            item.nodeid, location, {}, result, longrepr, when, duration=duration))
    hook.pytest_runtest_logfinish(nodeid=item.nodeid, location=location)


class Isolation:
    """The pytest plugin: runs a case through `run_child` when this process could not hold it under a limit.

    Args:
        limit_bytes: what this process's RSS plus a case's estimated peak may reach.
        case_of: the item's grid case, or None for other tests.
        record: receives each isolated case's item and outcome (its entry).
    """

    def __init__(self, limit_bytes: float, case_of: Callable[[pytest.Item], grid.Case | None],
                 record: Callable[[pytest.Item, ChildOutcome], None]):
        self.limit_bytes = limit_bytes
        self.case_of = case_of
        self.record = record
        self.process = psutil.Process()

    def isolates(self, rss: int, estimate: int) -> bool:
        """Whether a case estimated at `estimate` bytes runs in its own process, this one holding `rss`."""
        if self.limit_bytes == 0:  # --isolate-above 0: every case of known size
            return True
        return estimate > SMALL_CASE_BYTES and rss + estimate > self.limit_bytes

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem) -> bool | None:
        case = self.case_of(item)
        config = item.config
        if case is None or os.environ.get(CHILD_ENV) or not distributed.benchmarks_run(config):
            return None
        estimate = estimated_peak_bytes(case)
        if estimate is None or not self.isolates(self.process.memory_info().rss, estimate):
            return None
        outcome = run_child(item, case, child_arguments(config), config.getoption("measure_timeout"))
        self.record(item, outcome)
        report(item, outcome)
        return True
