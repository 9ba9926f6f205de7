"""bench/README.md's "Adding a strategy" and "Adding a suite", done as written: nothing else is edited.

A toy strategy (one class, registered by the test plugin of `bench_runs`)
and a toy suite (one test file outside bench/, declaring itself) each reach
the result JSON, `python -m analysis.report` and the gate: a baseline made
from the run with `--update-baseline` holds their cases, and `--check`
against it passes.
"""

import json
import os
import textwrap

from analysis.report import main as report_main
from bench_runs import run_bench

TOY_SUITE = textwrap.dedent('''
    """A toy suite: each registered strategy's lookup at 8 dims on 1,000 Zipf ids, against the bare gather."""
    from bench import axes, grid, rules, steps

    TOY = grid.Suite(
        "toy_lookup", "paired",
        axes=(axes.registered, axes.fixed(dataset="synthetic-zipf", vocab_size=1000, dim=8)),
        rules=rules.SIZE_RULES, covers_strategies=True,
        description="a lookup at 8 dims (tests/test_adding.py)",
    )


    @TOY.test
    def test_toy_lookup(benchmark, case, harness, record):
        source = harness.source(case)
        harness.admit(case, record, source.vocab_size)
        layer = harness.build_layer(case, source, record)
        record["gather_ratio"] = harness.time_against_gather(
            benchmark, steps.compiled_lookup(layer), harness.batches(source, case.batch_size), source, case.dim)
''')


def gate(result, tmp_path, capsys) -> tuple[str, dict]:
    """Renders the report of `result`, makes a baseline from it and checks the result against that baseline."""
    assert report_main([str(result), "--format", "markdown"]) == 0
    report = capsys.readouterr().out
    baseline = tmp_path / "baseline.json"
    assert report_main([str(result), "--update-baseline", str(baseline)]) == 0
    assert report_main([str(result), "--check", str(baseline)]) == 0
    return report, json.loads(baseline.read_text())


def test_a_new_strategy_reaches_every_suite_the_json_the_report_and_the_gate(tmp_path, capsys):
    out = tmp_path / "toy.json"
    completed = run_bench(tmp_path, "--benchmark-only", "--strategies", "toy", "--vocab-sizes", "1000",
                          "--datasets", "synthetic-zipf", "-k", "memory or lookup or train_step",
                          "--benchmark-json", str(out))
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    cases = {entry["extra_info"]["case"]: entry["extra_info"] for entry in json.loads(out.read_text())["benchmarks"]}
    toy = {case for case in cases if "/toy/" in case}
    assert toy == {f"{suite}/toy/synthetic-zipf/1000/64" for suite in ("memory", "lookup", "train_step")} | {
        f"{suite}/toy/synthetic-zipf/1000/64/rowwise_adagrad" for suite in ("memory", "train_step")}
    assert all(cases[case]["status"] == "ok" and cases[case]["params"] == 64_000 for case in toy)
    report, baseline = gate(out, tmp_path, capsys)
    assert "|toy|" in report
    assert toy <= set(baseline["cases"])


def test_a_new_suite_declared_in_its_own_file_reaches_the_json_the_report_and_the_gate(tmp_path, capsys):
    folder = tmp_path / "toy_suite"
    folder.mkdir()
    (folder / "test_toy_lookup.py").write_text(TOY_SUITE)
    out = tmp_path / "toy_suite.json"
    completed = run_bench(tmp_path, "-p", "bench.conftest", "--benchmark-only", "--strategies", "full,qr",
                          "--benchmark-json", str(out), paths=(str(folder),))
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    result = json.loads(out.read_text())
    cases = {entry["extra_info"]["case"]: entry["extra_info"] for entry in result["benchmarks"]}
    assert set(cases) == {"toy_lookup/full/synthetic-zipf/1000/8", "toy_lookup/qr/synthetic-zipf/1000/8"}
    assert all(info["suite"] == "toy_lookup" and info["gather_ratio"] > 0 for info in cases.values())
    assert all(entry["fullname"] in result["membed"]["selected"] for entry in result["benchmarks"])
    # How TensorFlow ran: one thread (the default --tf-threads), oneDNN as the environment set it.
    assert result["membed"]["tf_threads"] == 1
    assert result["membed"]["onednn_opts"] == os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    report, baseline = gate(out, tmp_path, capsys)
    assert "toy_lookup" in report
    assert set(cases) <= set(baseline["cases"])

