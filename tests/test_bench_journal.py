"""Long runs lose nothing: the journal, a clean Ctrl-C, resume, a torn last line, cases in their own process."""

import json
import signal
import subprocess
import time

import pytest

from analysis import journal
from analysis.load import load_run
from analysis.report import main as report_main
from bench_runs import ROOT, bench_command, run_bench

# The gather row, `full` and then the slow strategy, whose lookup case takes several seconds.
SELECTION = ("--benchmark-only", "--strategies", "full,slow", "--vocab-sizes", "1000",
             "--datasets", "synthetic-zipf", "-k", "lookup or gather")


def finished_cases(path) -> int:
    lines = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return sum(line["kind"] in ("benchmark", "not_run") for line in lines)


def cases_of(result: dict) -> list[str]:
    return sorted([entry["fullname"] for entry in result["benchmarks"]]
                  + [entry["fullname"] for entry in result["membed"]["not_run"]])


def test_an_interrupted_run_keeps_its_finished_cases_and_a_resumed_run_completes_it(tmp_path):
    out = tmp_path / "out" / "run.json"
    argv, environment = bench_command(tmp_path, *SELECTION, "--benchmark-json", str(out))
    # Ctrl-C restored: a shell's background job (`cmd &`, as `nohup ... &` runs these tests) starts with
    # SIGINT ignored, and the child would inherit that and run on. faulthandler: a run that hangs after
    # Ctrl-C anyway is aborted and prints where each of its threads stood.
    process = subprocess.Popen(argv, cwd=ROOT, env={**environment, "PYTHONFAULTHANDLER": "1"},
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    path = journal.journal_path(out)
    deadline = time.monotonic() + 120
    # The gather row and `full`: the slow case is running now.
    while finished_cases(path) < 2 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert process.poll() is None, "the run ended before it could be interrupted"
    interrupted_at = time.monotonic()
    process.send_signal(signal.SIGINT)
    try:
        output, _ = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)
        output, _ = process.communicate(timeout=60)
        dump = output[output.rfind("Fatal Python error"):]
        pytest.fail("the run did not end within 60 s of Ctrl-C; its threads:\n" + dump[:20000])
    assert time.monotonic() - interrupted_at < 15, "Ctrl-C took too long to stop the run"
    assert process.returncode != 0
    assert "Traceback" not in output and "min() arg is an empty sequence" not in output

    partial = json.loads(out.read_text())
    assert partial["membed"]["interrupted"] is True
    finished = {entry["fullname"] for entry in partial["benchmarks"]}
    assert any("gather" in name for name in finished) and any("lookup[full-" in name for name in finished)
    (slow,) = [entry for entry in partial["membed"]["not_run"] if "slow" in entry["fullname"]]
    assert slow["status"] == "interrupted"
    # The report reads the journal of a run that never finished.
    assert journal.read(path).finished == finished
    frame, selected = load_run([path])
    assert set(frame.loc[frame["status"] == "ok", "fullname"]) == finished
    assert set(frame["status"]) == {"ok", "interrupted"} and selected == set(partial["membed"]["selected"])
    assert report_main([str(path), "--format", "markdown"]) == 0

    resumed = run_bench(tmp_path, *SELECTION, "--benchmark-json", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "2 deselected" in resumed.stdout or "deselected" in resumed.stdout
    whole = json.loads(out.read_text())
    assert whole["membed"]["interrupted"] is False
    assert cases_of(whole) == sorted(whole["membed"]["selected"])
    assert [entry["fullname"] for entry in whole["benchmarks"]] == whole["membed"]["selected"]
    assert all(entry["extra_info"]["status"] == "ok" for entry in whole["benchmarks"])


def test_resume_refuses_a_journal_of_another_selection(tmp_path):
    out = tmp_path / "run.json"
    first = run_bench(tmp_path, "--benchmark-only", "--strategies", "full", "--vocab-sizes", "1000",
                      "--datasets", "synthetic-zipf", "-k", "gather", "--benchmark-json", str(out))
    assert first.returncode == 0, first.stdout[-3000:]
    # Resuming a run that had finished runs nothing, and succeeds with the same result.
    again = run_bench(tmp_path, "--benchmark-only", "--strategies", "full", "--vocab-sizes", "1000",
                      "--datasets", "synthetic-zipf", "-k", "gather", "--benchmark-json", str(out), "--resume")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert [entry["extra_info"]["case"] for entry in json.loads(out.read_text())["benchmarks"]] == [
        "gather/gather/synthetic-zipf/1000/64"]
    other = run_bench(tmp_path, "--benchmark-only", "--strategies", "qr", "--vocab-sizes", "1000",
                      "--datasets", "synthetic-zipf", "-k", "gather", "--benchmark-json", str(out), "--resume")
    assert other.returncode != 0
    assert "cannot resume" in other.stderr and "another strategies" in other.stderr
    nothing = run_bench(tmp_path, "--benchmark-only", "--benchmark-json", str(tmp_path / "none.json"), "--resume")
    assert nothing.returncode != 0 and "cannot resume: no journal" in nothing.stderr


def test_a_torn_last_line_is_ignored_with_a_warning(tmp_path):
    path = tmp_path / "run.jsonl"
    writer = journal.Writer(path, {"profile": "quick"})
    writer.write("not_run", {"fullname": "bench/test_memory.py::test_memory[a]", "status": "skipped"})
    writer.close()
    with open(path, "a") as stream:
        stream.write('{"kind": "benchmark", "entry": {"fullna')  # the process died mid-write
    with pytest.warns(UserWarning, match="torn last line"):
        contents = journal.read(path)
    assert contents.run == {"profile": "quick"}
    assert contents.finished == {"bench/test_memory.py::test_memory[a]"} and contents.benchmarks == []


def test_a_damaged_journal_is_an_error_not_a_guess(tmp_path):
    path = tmp_path / "run.jsonl"
    path.write_text('{"kind": "run", "run": {}}\nnot json\n{"kind": "not_run", "entry": {}}\n')
    with pytest.raises(ValueError, match="line 2: not JSON"):
        journal.read(path)
    (tmp_path / "other.jsonl").write_text('{"kind": "benchmark"}\n')
    with pytest.raises(ValueError, match="not a membed journal"):
        journal.read(tmp_path / "other.jsonl")


def test_a_case_killed_in_its_own_process_is_recorded_as_failed_and_the_run_goes_on(tmp_path):
    out = tmp_path / "run.json"
    # --isolate-above 0: every case of known size runs in a process of its own.
    completed = run_bench(tmp_path, "--benchmark-only", "--strategies", "selfkill,full", "--vocab-sizes", "1000",
                          "--datasets", "synthetic-zipf", "-k", "lookup or train_step", "--isolate-above", "0",
                          "--benchmark-json", str(out))
    assert completed.returncode == 1, completed.stdout[-3000:] + completed.stderr[-3000:]
    result = json.loads(out.read_text())
    ok = {entry["extra_info"]["case"] for entry in result["benchmarks"] if entry["extra_info"]["status"] == "ok"}
    # The cases after the killed one ran, and came back from their own processes with their timings
    # (a case of another optimizer too: its node id has the optimizer's variant).
    assert ok == {"gather/gather/synthetic-zipf/1000/64", "lookup/full/synthetic-zipf/1000/64",
                  "train_step/full/synthetic-zipf/1000/64", "train_step/full/synthetic-zipf/1000/64/rowwise_adagrad"}
    assert all(entry["stats"]["rounds"] >= 5 for entry in result["benchmarks"])
    killed = {entry["case"]: entry for entry in result["membed"]["not_run"]}
    assert set(killed) == {"lookup/selfkill/synthetic-zipf/1000/64", "train_step/selfkill/synthetic-zipf/1000/64",
                           "train_step/selfkill/synthetic-zipf/1000/64/rowwise_adagrad"}
    for entry in killed.values():
        assert entry["status"] == "failed"
        assert "killed by SIGKILL" in entry["reason"] and "last RSS" in entry["reason"]
    assert "[in its own process]" in completed.stdout
    assert [line for line in journal.journal_path(out).read_text().splitlines() if '"kind": "benchmark"' in line]


def test_only_a_case_that_could_exhaust_the_machine_leaves_the_pytest_process():
    from bench import isolation

    gib, small = 1 << 30, isolation.SMALL_CASE_BYTES
    rule = isolation.Isolation(3 * gib, case_of=lambda item: None, record=lambda item, outcome: None)
    assert not rule.isolates(rss=1 * gib, estimate=1 * gib)
    assert rule.isolates(rss=1 * gib, estimate=2 * gib + 1)
    # Over the limit already (a process's RSS is its high-water mark): a small case stays, a big one leaves.
    assert not rule.isolates(rss=5 * gib, estimate=small)
    assert rule.isolates(rss=5 * gib, estimate=small + 1)
    every = isolation.Isolation(0, case_of=lambda item: None, record=lambda item, outcome: None)
    assert every.isolates(rss=0, estimate=1)  # --isolate-above 0: every case of known size


def test_a_child_run_does_not_inherit_an_xdist_workers_variables(monkeypatch):
    from bench import isolation

    # On a worker, pytest-benchmark in a child run that kept these would refuse --benchmark-only.
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    monkeypatch.setenv("MEMBED_DATA_DIR", "/data")
    environment = isolation.child_environment(MEMBED_BENCH_CHILD="1")
    assert not set(isolation.XDIST_VARIABLES) & set(environment)
    assert environment["MEMBED_DATA_DIR"] == "/data" and environment["MEMBED_BENCH_CHILD"] == "1"
