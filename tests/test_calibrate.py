"""The gate's calibration (analysis.calibrate): planted changes on a small result, and the command line."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from analysis import calibrate, gate
from analysis.calibrate import main, slowed
from analysis.gate import GateRules
from analysis.load import ResultError, read_result

FIXTURE = Path(__file__).parent / "fixtures" / "result_small.json"
LOOKUP = "lookup/qr/synthetic-zipf/100000/32"
# The fixture's ratios have IQR / median = 0.1 over 20 rounds: noise 4.1%, so 3 x noise = 12.2%.
RULES = GateRules(gather_ratio_rel=1.0, ratio_floor_rel=0.10, ratio_noise_k=3.0, peak_mem_rel=0.04,
                  peak_mem_abs_mib=7.0)


@pytest.fixture(scope="module")
def document() -> dict:
    return read_result(FIXTURE)


def entry_of(document: dict, case: str) -> dict:
    return next(e for e in document["benchmarks"] if e["extra_info"]["case"] == case)


def test_slowed_scales_every_round_the_stats_and_the_ratios_of_one_case_only(document):
    before = copy.deepcopy(document)
    original = entry_of(document, LOOKUP)
    rich = copy.deepcopy(document)
    entry_of(rich, LOOKUP)["stats"]["data"] = [1.0, 2.0]
    entry_of(rich, LOOKUP)["extra_info"]["gather_ratio_rounds"] = [2.0, 4.0]
    out = slowed(rich, LOOKUP, 0.25)
    changed = entry_of(out, LOOKUP)
    assert changed["stats"]["median"] == pytest.approx(original["stats"]["median"] * 1.25)
    assert changed["stats"]["iqr"] == pytest.approx(original["stats"]["iqr"] * 1.25)
    assert changed["stats"]["ops"] == pytest.approx(original["stats"]["ops"] / 1.25)
    assert changed["stats"]["data"] == [1.25, 2.5] and changed["extra_info"]["gather_ratio_rounds"] == [2.5, 5.0]
    assert changed["extra_info"]["gather_ratio"] == pytest.approx(original["extra_info"]["gather_ratio"] * 1.25)
    # Every other case is the same, and the input is untouched.
    others = [e for e in out["benchmarks"] if e["extra_info"]["case"] != LOOKUP]
    assert others == [e for e in document["benchmarks"] if e["extra_info"]["case"] != LOOKUP]
    assert document == before
    with pytest.raises(ResultError, match="no benchmark entry for case 'lookup/none'"):
        slowed(document, "lookup/none", 0.2)


def test_identical_copies_raise_no_alarm_and_planted_changes_are_caught(document):
    baseline = calibrate.baseline_of(document, str(FIXTURE))
    rows, per_case = calibrate.calibrate(document, str(FIXTURE), baseline, RULES, others=[(document, "again.json")])
    by_planted = {row.planted: row for row in rows}
    identical = [row for row in rows if row.trial == "identical code"]
    assert [(row.comparisons, row.flagged, row.elsewhere) for row in identical] == [(1, 0, 0), (2, 0, 0)]
    # 10% is under every case's 12.2% limit; 20% and more is past it. The planted copies are of
    # "again.json", the other run.
    assert by_planted["+10% on one lookup case, in another run"].flagged == 0
    for fraction in ("+20%", "+25%", "+50%"):
        row = by_planted[f"{fraction} on one lookup case, in another run"]
        assert (row.flagged, row.comparisons, row.elsewhere) == (10, 10, 0)
    # And a whole strategy slower, through the group rule (its 10% floor) as well as case by case.
    for fraction in ("+20%", "+25%", "+50%"):
        row = by_planted[f"{fraction} on one strategy's lookup cases, in another run"]
        assert (row.flagged, row.comparisons, row.elsewhere) == (4, 4, 0)  # the fixture's 4 strategies
    memory = by_planted["+5% peak_alloc_bytes_train, at least 8 MiB"]
    assert (memory.flagged, memory.comparisons) == (10, 10)
    accuracy = next(row for row in rows if row.trial == "worse accuracy")
    assert (accuracy.flagged, accuracy.comparisons, accuracy.elsewhere) == (10, 10, 0)
    params = by_planted["+1 param on one memory case"]
    assert params.flagged == params.comparisons == 10
    assert per_case["limit %"].round(1).tolist() == [12.2] * 10
    assert per_case["+10%"].tolist() == ["-"] * 10 and per_case["+25%"].tolist() == ["flagged"] * 10


def test_a_loose_gate_is_shown_missing_the_slowdown(document):
    baseline = calibrate.baseline_of(document, str(FIXTURE))
    loose = GateRules(ratio_floor_rel=1.0, group_floor_rel=1.0, peak_mem_rel=0.10)
    rows, _ = calibrate.calibrate(document, str(FIXTURE), baseline, loose)
    by_planted = {row.planted: row for row in rows}
    assert by_planted["+50% on one lookup case, in the baseline's run"].flagged == 0
    assert by_planted["+50% on one strategy's lookup cases, in the baseline's run"].flagged == 0
    # 5% of the 1e6 tables' peaks is under a 10% limit: only the small cases' 8 MiB is past it.
    memory = by_planted["+5% peak_alloc_bytes_train, at least 8 MiB"]
    assert 0 < memory.flagged < memory.comparisons


def test_the_draw_is_seeded_and_takes_all_cases_when_there_are_few():
    cases = [f"c{i}" for i in range(30)]
    assert calibrate.draw(cases, 10, 1) == calibrate.draw(cases, 10, 1) != calibrate.draw(cases, 10, 2)
    assert calibrate.draw(cases[:4], 10, 1) == cases[:4]


def test_main_prints_and_writes_the_table(tmp_path, capsys):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text("[tool.membed.gate]\nratio_floor_rel = 0.10\nratio_noise_k = 3\n")
    out = tmp_path / "reports" / "calibration.md"
    code = main([str(FIXTURE), "--gate-config", str(pyproject), "--out", str(out), "--cases", "5"])
    printed = capsys.readouterr().out
    assert code == 0
    text = out.read_text()
    assert text in printed and f"Wrote {out}." in printed
    assert "| slower lookup | +20% on one lookup case, in the baseline's run | 5/5 | 0 | >= 9/10 flagged |" in text
    assert "| identical code | an unchanged copy of the result | 0/1 | 0 | 0 flagged |" in text


@pytest.mark.parametrize(
    "argv, message",
    [
        (["missing.json"], "missing.json: no such file."),
        ([str(FIXTURE), "--cases", "0"], "--cases must be >= 1, got 0."),
        ([str(FIXTURE), "--gate-config", "nowhere.toml"], "--gate-config nowhere.toml: no such file or no"),
    ],
)
def test_unusable_input_is_one_line_and_exit_2(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_a_25_percent_slower_copy_fails_the_gate_naming_the_case(tmp_path, document):
    """The issue's check, on the gate API: the slowed copy fails on that case alone; the copy passes."""
    baseline_path = tmp_path / "baseline.json"
    gate.write_baseline(calibrate.frame_of_document(document, str(FIXTURE)), baseline_path)
    assert "gather_ratio_noise" in json.loads(baseline_path.read_text())["cases"][LOOKUP]
    baseline = gate.load_baseline(baseline_path)
    slower = calibrate.frame_of_document(slowed(document, LOOKUP, 0.25), "slower.json")
    outcome = gate.check(slower, baseline, RULES)
    assert outcome.regressions[["case", "field"]].values.tolist() == [[LOOKUP, "gather_ratio"]]
    assert gate.check(calibrate.frame_of_document(document, "same.json"), baseline, RULES).passed


def test_leave_one_out_gates_each_run_against_the_baseline_of_the_others(document):
    # Three runs of the same code; the third's lookup case drifted 50% up. Left out, it is flagged
    # against the two others; in the baselines of the other two, its spread widens their limits.
    drifted = slowed(document, LOOKUP, 0.5)
    runs = [(document, "a.json"), (copy.deepcopy(document), "b.json"), (drifted, "c.json")]
    rows, per_case = calibrate.leave_one_out(runs, RULES, cases=3)
    identical = next(row for row in rows if row.trial == "identical code")
    assert (identical.planted, identical.comparisons, identical.flagged) == (
        "each run against the baseline of the other runs", 3, 1)
    assert sorted(set(per_case["run"])) == ["a.json", "b.json", "c.json"] and list(per_case.columns)[0] == "run"
    # Each planted change went into each left-out run: the row counts 3 runs x its cases.
    memory = next(row for row in rows if row.trial == "more memory")
    assert memory.comparisons % 3 == 0 and memory.flagged == memory.comparisons
    assert all(calibrate.LEFT_OUT in row.planted for row in rows if row.trial == "slower lookup")
    with pytest.raises(ResultError, match="needs at least 3 runs"):
        calibrate.leave_one_out(runs[:2], RULES)


def test_main_leave_one_out_takes_no_baseline(tmp_path, capsys):
    assert main([str(FIXTURE), "--against", str(FIXTURE), "--leave-one-out", "--baseline", str(FIXTURE)]) == 2
    assert "drop --baseline" in capsys.readouterr().err


def test_a_judge_with_a_re_run_drops_the_speed_regressions_it_does_not_repeat(document):
    baseline = calibrate.baseline_of(document, "a.json")
    memory = "memory/qr/synthetic-zipf/1000/32"

    def more_params(doc: dict) -> dict:
        return calibrate.grown(doc, memory, "params", lambda v: v + 1)

    def slower_and_more_params(doc: dict) -> dict:
        return more_params(slowed(doc, LOOKUP, 0.5))

    re_run = (document, "b.json")
    # A slowdown planted in the run and its re-run alike (a change to the code) stands.
    planted = calibrate.Judge(baseline, RULES, [re_run])(document, "a.json", slower_and_more_params)
    assert {LOOKUP, memory} <= set(planted["case"])
    # A drift of the run alone is excused; the parameter is never re-run, so it stands.
    drift = calibrate.Judge(baseline, RULES, [re_run])(slowed(document, LOOKUP, 0.5), "a.json", more_params)
    assert list(drift["case"]) == [memory]
    assert LOOKUP in set(calibrate.Judge(baseline, RULES)(slowed(document, LOOKUP, 0.5), "a.json")["case"])


def test_leave_one_out_confirmed_excuses_a_drift_the_next_run_does_not_repeat(document):
    drifted = slowed(document, LOOKUP, 0.5)
    runs = [(document, "a.json"), (copy.deepcopy(document), "b.json"), (drifted, "c.json"),
            (copy.deepcopy(document), "d.json")]
    rows, _ = calibrate.leave_one_out(runs, RULES, cases=3, confirms=1)
    identical = next(row for row in rows if row.trial == "identical code")
    assert identical.planted.endswith(", confirmed by the next")
    assert (identical.comparisons, identical.flagged) == (4, 0)
    unconfirmed, _ = calibrate.leave_one_out(runs, RULES, cases=3)
    assert next(row for row in unconfirmed if row.trial == "identical code").flagged == 1
    # A planted change goes into the run and its re-run alike, so it is still caught.
    memory = next(row for row in rows if row.trial == "more memory")
    assert memory.flagged == memory.comparisons
    with pytest.raises(ResultError, match="needs at least 4 runs"):
        calibrate.leave_one_out(runs[:3], RULES, confirms=1)


def test_a_same_sitting_judge_gates_the_run_again_against_the_baseline_codes_ratios(document):
    baseline = calibrate.baseline_of(document, "a.json")
    drifted = slowed(document, LOOKUP, 0.5)  # the machine's day: both codes alike in this sitting
    # Against the stored baseline the drift is a regression; beside the baseline code's run of the
    # same sitting, which drifted alike, it is excused.
    assert LOOKUP in set(calibrate.Judge(baseline, RULES)(drifted, "a.json")["case"])
    assert calibrate.Judge(baseline, RULES, [(drifted, "b.json")], sitting=True)(drifted, "a.json").empty
    # A change to the code slows this run and not the baseline code's: it stands.
    found = calibrate.Judge(baseline, RULES, [(document, "b.json")], sitting=True)(drifted, "a.json")
    assert LOOKUP in set(found["case"])


def test_main_same_sitting_needs_confirm(capsys):
    assert main([str(FIXTURE), "--against", str(FIXTURE), "--leave-one-out", "--same-sitting"]) == 2
    assert "--same-sitting models --confirm's re-run" in capsys.readouterr().err
    assert main([str(FIXTURE), "--against", str(FIXTURE), "--leave-one-out", "--confirm", "--sittings", "2"]) == 2
    assert "add --same-sitting" in capsys.readouterr().err


def test_the_same_sitting_re_run_stays_within_the_left_out_runs_sitting(document, monkeypatch):
    # Sittings a, b, c | d, e: each run's re-run is the next of its own sitting, the first after the last.
    drifted = slowed(document, LOOKUP, 0.5)  # the machine's day of the second sitting
    runs = [(document, "a.json"), (copy.deepcopy(document), "b.json"), (copy.deepcopy(document), "c.json"),
            (drifted, "d.json"), (copy.deepcopy(drifted), "e.json")]
    rows, _ = calibrate.leave_one_out(runs, RULES, cases=3, confirms=1, sitting=True, sittings=(3, 2))
    identical = next(row for row in rows if row.trial == "identical code")
    assert identical.planted.endswith("confirmed beside the next (same sitting)")
    assert (identical.comparisons, identical.flagged) == (5, 0)
    partners = []
    real = calibrate.calibrate
    monkeypatch.setattr(calibrate, "calibrate", lambda document, source, *args, re_runs=(), **kwargs: (
        partners.append((source, *(name for _, name in re_runs))),
        real(document, source, *args, re_runs=re_runs, **kwargs))[1])
    calibrate.leave_one_out(runs, RULES, cases=1, confirms=1, sitting=True, sittings=(3, 2))
    assert partners == [("a.json", "b.json"), ("b.json", "c.json"), ("c.json", "a.json"), ("d.json", "e.json"),
                        ("e.json", "d.json")]
    with pytest.raises(ResultError, match="of at least 2 runs each where"):
        calibrate.leave_one_out(runs, RULES, confirms=1, sitting=True, sittings=(4, 2))
    # --confirm 2: the next two of the run's sitting; --hold-out 3: only the last three runs are left out.
    partners.clear()
    calibrate.leave_one_out(runs + [(copy.deepcopy(drifted), "f.json")], RULES, cases=1, confirms=2, sitting=True,
                            sittings=(3, 3), held_out=3)
    assert partners == [("d.json", "e.json", "f.json"), ("e.json", "f.json", "d.json"), ("f.json", "d.json", "e.json")]
    with pytest.raises(ResultError, match="of at least 3 runs each where"):
        calibrate.leave_one_out(runs, RULES, confirms=2, sitting=True, sittings=(3, 2))


def test_confirm_2_excuses_what_either_re_run_does_not_repeat(document):
    baseline = calibrate.baseline_of(document, "a.json")
    drifted = slowed(document, LOOKUP, 0.5)
    # Beside two runs of the baseline code: a drift both re-runs share is excused; a change that
    # only one of them would excuse is excused too, since each re-run must flag it again.
    assert calibrate.Judge(baseline, RULES, [(drifted, "b.json"), (drifted, "c.json")], sitting=True)(
        drifted, "a.json").empty
    assert calibrate.Judge(baseline, RULES, [(document, "b.json"), (drifted, "c.json")], sitting=True)(
        drifted, "a.json").empty
    found = calibrate.Judge(baseline, RULES, [(document, "b.json"), (document, "c.json")], sitting=True)(
        drifted, "a.json")
    assert LOOKUP in set(found["case"])


def test_main_hold_out_needs_leave_one_out(capsys):
    assert main([str(FIXTURE), "--against", str(FIXTURE), "--hold-out", "1"]) == 2
    assert "--hold-out says which runs --leave-one-out leaves out" in capsys.readouterr().err


def test_main_confirm_needs_leave_one_out(capsys):
    assert main([str(FIXTURE), "--confirm"]) == 2
    assert "--confirm needs --leave-one-out" in capsys.readouterr().err
