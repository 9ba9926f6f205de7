"""bench.distributed: fit cases over pytest-xdist workers (local popen gateways), timing suites left serial."""

import json
import subprocess
import sys

import pytest

from bench.isolation import child_environment
from tests.bench_runs import ROOT

pytest.importorskip("xdist")


def test_fit_cases_run_on_two_popen_gateways_and_land_in_one_json(tmp_path):
    out = tmp_path / "fit.json"
    command = [sys.executable, "-m", "pytest", "bench", "--benchmark-only", "--profile", "quick",
               "--datasets", "synthetic-planted,synthetic-zipf", "--vocab-sizes", "1000", "--strategies", "full,hash", "--seeds", "1,2",
               "-k", "accuracy or (lookup and full)", "-d", "--tx", "2*popen", "-p", "no:cacheprovider", "-q",
               "--benchmark-json", str(out)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env=child_environment(TF_CPP_MIN_LOG_LEVEL="2"))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(out.read_text())
    fits = {entry["name"]: entry for entry in result["benchmarks"]}
    # The baseline, the example's pair and hash's 20x: each timed once per seed by its worker.
    assert set(fits) == {"test_accuracy[full-synthetic-planted-baseline]",
                         "test_accuracy[example_qr+example_md-synthetic-planted-example]",
                         "test_accuracy[hash-synthetic-planted-20x]"}
    for entry in fits.values():
        assert entry["stats"]["rounds"] == 2 and entry["extra_info"]["seeds"] == [1, 2]
        assert len(entry["extra_info"]["test_mse_per_seed"]) == 2
    # The lookup cases are not timed next to the fits: skipped with the reason, still in the result.
    skipped = [entry for entry in result["membed"]["not_run"] if entry["suite"] == "lookup"]
    assert skipped and all("run serially" in entry["reason"] for entry in skipped)
    assert set(result["membed"]["selected"]) >= {entry["fullname"] for entry in result["benchmarks"]}
    journal = [json.loads(line)["kind"] for line in out.with_suffix(".jsonl").read_text().splitlines()]
    assert journal.count("benchmark") == 3 and "selected" in journal


def test_a_unit_test_run_on_workers_keeps_the_benchmarks_skipped(tmp_path):
    # `pytest -n 2` (the README's unit tests): --benchmark-skip from the ini file holds on the workers too.
    command = [sys.executable, "-m", "pytest", "bench", "-n", "2", "-q", "-p", "no:cacheprovider",
               "-k", "accuracy and ml-100k and (full or hash)"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=child_environment(TF_CPP_MIN_LOG_LEVEL="2"))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "passed" not in done.stdout and "skipped" in done.stdout
    assert "--benchmark-skip active" in done.stdout and "run serially" not in done.stdout
    assert "oneDNN" not in done.stdout + done.stderr  # TensorFlow's start-up lines stay hidden
