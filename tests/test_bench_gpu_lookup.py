"""bench/gpu_lookup.py: the lookup suite's cases and rules, timed on a device, written as the suites' JSON.

JAX is not installed here: `run` is driven by a NumPy stand-in for `JaxDevice`
(same four methods), which exercises everything but the jitted functions.
"""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from analysis.load import load_run
from analysis.report import main as report_main
from bench import gpu_lookup, grid, options, rules

ROOT = Path(__file__).resolve().parents[1]
GPU_RESULTS = sorted((ROOT / "reports" / "gpu").glob("*.json"))


class NumpyDevice:
    """`JaxDevice`'s interface on NumPy and Keras's eager calls."""

    def __init__(self):
        self.gathered = []

    def machine_info(self):
        return {"device": "cpu", "backend": "numpy"}

    def ids(self, source, batch_size):
        seeds = iter(range(1, 1 << 62))
        return lambda: source.sample(batch_size, next(seeds))

    def gather(self, rows, dim, vocab_size):
        table = np.zeros((rows, dim), np.float32)

        def take(ids):
            self.gathered.append(ids)
            return table[ids % rows]

        return take

    def lookup(self, layer):
        return lambda ids: np.asarray(layer(ids))


def selection(sizes="1000,1e8", names="full,qr", profile="quick") -> grid.Selection:
    return options.selection_from_options(profile, names, sizes, gpu_lookup.DATASET)


def test_the_cases_are_the_lookup_suites_size_by_size_each_after_its_reference():
    cases = gpu_lookup.gpu_cases(selection(), batch_size=65536)
    assert [case.case_id() for case in cases] == [
        "gather/gather/synthetic-zipf/1000/64", "lookup/full/synthetic-zipf/1000/64",
        "lookup/qr/synthetic-zipf/1000/64",
        "gather/gather/synthetic-zipf/100000000/64", "lookup/full/synthetic-zipf/100000000/64",
        "lookup/qr/synthetic-zipf/100000000/64",
    ]
    assert {case.batch_size for case in cases} == {65536}
    assert gpu_lookup.fullname(cases[1]) == "bench/gpu_lookup.py::lookup[full-synthetic-zipf-1000-64]"


def test_a_case_skips_by_the_lookup_suites_rules():
    device = NumpyDevice()
    case = grid.Case("lookup", "full", "synthetic-zipf", 10**8, 64, 4096)
    outcome = gpu_lookup.measure_case(case, device, grid.PROFILES["quick"], {})
    assert outcome["kind"] == "not_run"
    entry = outcome["entry"]
    assert entry["status"] == "skipped" and entry["reason"] == rules.admit(case, 10**8).reason
    assert entry["projected"] is True and entry["params"] == 64 * 10**8  # the formula's sizes, as the CPU suite
    assert entry["fullname"] == "bench/gpu_lookup.py::lookup[full-synthetic-zipf-100000000-64]"


def test_time_paired_times_the_reference_just_before_each_round_on_the_same_ids():
    calls = []
    draws = iter(range(1000))
    profile = grid.PROFILES["quick"]
    timed, against = gpu_lookup.time_paired(lambda ids: calls.append(("case", ids)), lambda: next(draws), profile,
                                            reference=lambda ids: calls.append(("gather", ids)))
    assert len(timed) == len(against) == profile.rounds  # an instant call gets the profile's most rounds
    paired = calls[3:]  # after compiling both and the one warm call
    assert paired[0::2] == [("gather", ids) for _, ids in paired[1::2]]
    alone, none = gpu_lookup.time_paired(lambda ids: None, lambda: 0, profile)
    assert len(alone) == profile.rounds and none == []


def test_a_run_writes_what_the_report_and_the_gate_read(tmp_path, capsys):
    device = NumpyDevice()
    result = gpu_lookup.run(selection("1000", "full,qr"), device, echo=lambda line: None)
    assert result["membed"]["schema_version"] == 2 and result["membed"]["not_run"] == []
    entries = {entry["extra_info"]["case"]: entry for entry in result["benchmarks"]}
    assert list(entries) == ["gather/gather/synthetic-zipf/1000/64", "lookup/full/synthetic-zipf/1000/64",
                             "lookup/qr/synthetic-zipf/1000/64"]
    qr = entries["lookup/qr/synthetic-zipf/1000/64"]
    assert qr["extra_info"]["params"] == 4096 and qr["extra_info"]["options"]["num_buckets"] == 32
    assert qr["extra_info"]["gather_ratio"] > 0 and qr["stats"]["rounds"] == len(qr["stats"]["data"]) >= 3
    assert entries["gather/gather/synthetic-zipf/1000/64"]["extra_info"]["options"] == {"table_rows": 1000}
    assert [entry["fullname"] for entry in result["benchmarks"]] == result["membed"]["selected"]
    path = tmp_path / "gpu.json"
    path.write_text(json.dumps(result))
    frame, selected = load_run([path])
    assert set(frame["suite"]) == {"gather", "lookup"} and selected == set(result["membed"]["selected"])
    assert report_main([str(path), "--format", "markdown"]) == 0
    rendered = capsys.readouterr().out
    assert "suite: lookup" in rendered and "|qr|" in rendered
    baseline = tmp_path / "baseline.json"
    assert report_main([str(path), "--update-baseline", str(baseline)]) == 0
    assert report_main([str(path), "--check", str(baseline)]) == 0


def test_a_failing_case_is_recorded_and_the_run_goes_on():
    class Failing(NumpyDevice):
        def gather(self, rows, dim, vocab_size):
            if vocab_size > 1000:
                raise MemoryError("out of device memory")
            return super().gather(rows, dim, vocab_size)

        def lookup(self, layer):
            if layer.strategy_name == "full":
                raise RuntimeError("no kernel")
            return super().lookup(layer)

    result = gpu_lookup.run(selection("1000,10000"), Failing(), echo=lambda line: None)
    ok = [entry["extra_info"]["case"] for entry in result["benchmarks"]]
    assert ok == ["gather/gather/synthetic-zipf/1000/64", "lookup/qr/synthetic-zipf/1000/64"]
    failed = {entry["case"]: entry["reason"] for entry in result["membed"]["not_run"]}
    assert failed["lookup/full/synthetic-zipf/1000/64"] == "RuntimeError: no kernel"
    assert failed["gather/gather/synthetic-zipf/10000/64"] == "MemoryError: out of device memory"
    assert failed["lookup/qr/synthetic-zipf/10000/64"].endswith(
        "its bare gather failed: MemoryError: out of device memory")
    assert len(result["membed"]["selected"]) == 6


def test_a_bad_option_is_one_line_and_exit_code_2_before_any_device_is_touched(capsys):
    assert gpu_lookup.main(["--strategies", "full,nope"]) == 2
    assert capsys.readouterr().err.strip().startswith("bench.gpu_lookup: unknown strategy 'nope' in --strategies")
    assert gpu_lookup.main(["--batch-size", "0"]) == 2


def test_it_imports_no_tensorflow_of_its_own():
    # Keras imports TensorFlow here (its backend); under JAX nothing else may.
    watch = textwrap.dedent("""
        import sys, traceback
        offenders = []
        class Watch:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "tensorflow":
                    for frame, _ in traceback.walk_stack(sys._getframe(1)):
                        filename = frame.f_code.co_filename
                        if "importlib" in filename or filename.startswith("<frozen"):
                            continue
                        if "/keras/" not in filename and "/tensorflow/" not in filename:
                            offenders.append(filename)
                        break
        sys.meta_path.insert(0, Watch())
        import bench.gpu_lookup
        print(offenders)
    """)
    completed = subprocess.run([sys.executable, "-c", watch], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("path", GPU_RESULTS, ids=[path.name for path in GPU_RESULTS])
def test_the_stored_gpu_results_load_and_render(path, capsys):
    frame, _ = load_run([path])
    assert set(frame["suite"]) == {"gather", "lookup"}
    assert frame.loc[frame["status"] == "ok", "median_s"].notna().all()
    assert report_main([str(path), "--format", "markdown"]) == 0
    assert "suite: lookup" in capsys.readouterr().out
