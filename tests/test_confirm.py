"""`--check ... --confirm N`: speed regressions re-timed before they fail (`analysis.confirm`).

The re-runs are faked (a runner that writes a chosen result file where pytest
would have written its JSON), so these tests time nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from analysis import confirm, gate
from analysis.calibrate import baseline_of, slowed
from analysis.load import ResultError, frame_of, load_results, rows_of
from analysis.report import main

FIXTURE = Path(__file__).parent / "fixtures" / "result_small.json"
LOOKUP = "lookup/qr/synthetic-zipf/100000/32"
SMALL = "memory/qr/synthetic-zipf/1000/32"
GROUP = "lookup/qr/*"


class FakePytest:
    """Stands in for `subprocess.run`: writes `documents` in turn to the command's --benchmark-json."""

    def __init__(self, *documents: dict | None) -> None:
        self.documents = list(documents)
        self.commands: list[list[str]] = []
        self.folders: list[Path | None] = []

    def __call__(self, command, cwd=None, **_: object) -> subprocess.CompletedProcess:
        self.commands.append(command)
        self.folders.append(cwd)
        document = self.documents[len(self.commands) - 1]
        if document is not None:
            Path(command[command.index("--benchmark-json") + 1]).write_text(json.dumps(document))
        return subprocess.CompletedProcess(command, 0 if document else 4, "collected 0 items", "ERROR: not found")


def fixture_document() -> dict:
    return json.loads(FIXTURE.read_text())


def slower_copy(tmp_path: Path, fraction: float = 0.8) -> Path:
    path = tmp_path / "slower.json"
    path.write_text(json.dumps(slowed(fixture_document(), LOOKUP, fraction)))
    return path


def gate_again_with(baseline: pd.DataFrame):
    def gate_again(frame: pd.DataFrame, base: pd.DataFrame | None) -> pd.DataFrame:
        against = baseline if base is None else confirm.sitting_baseline(baseline, base)
        found = gate.compare(frame, against, gate.GateRules())
        return found[found["kind"] == "regression"]
    return gate_again


@pytest.fixture()
def flagged(tmp_path):
    """(the slower result's frame, its regressions: the lookup case's speed and one planted parameter, baseline)."""
    baseline = gate.baseline_frame(load_results([FIXTURE]))
    document = slowed(fixture_document(), LOOKUP, 0.8)
    for entry in document["benchmarks"]:
        if entry["extra_info"]["case"] == SMALL:
            entry["extra_info"]["params"] += 1
    path = tmp_path / "slower.json"
    path.write_text(json.dumps(document))
    frame = load_results([path])
    regressions = gate.check(frame, baseline, gate.GateRules()).regressions
    assert set(regressions["case"]) == {LOOKUP, GROUP, SMALL}
    return frame, regressions, baseline, path


def test_only_ratio_findings_count_as_speed(flagged):
    _, regressions, _, _ = flagged
    assert set(regressions.loc[confirm.speed(regressions), "case"]) == {LOOKUP, GROUP}
    assert set(regressions.loc[~confirm.speed(regressions), "field"]) == {"params"}


def test_nodes_behind_a_case_are_its_own_and_behind_a_group_its_cases(flagged):
    frame, regressions, _, _ = flagged
    node = frame.set_index("case")["fullname"]
    assert confirm.nodes_behind(regressions[regressions["case"] == LOOKUP], frame) == [node[LOOKUP]]
    group = [node[case] for case in frame["case"] if case.startswith("lookup/qr/")]
    assert len(group) == 3 and confirm.nodes_behind(regressions[regressions["case"] == GROUP], frame) == sorted(group)


def test_a_speed_regression_the_re_run_does_not_repeat_is_excused(flagged):
    frame, regressions, baseline, path = flagged
    runner = FakePytest(fixture_document())
    standing, excused = confirm.confirm(regressions, frame, 2, ["--profile", "quick"], path,
                                        gate_again_with(baseline), runner=runner, say=lambda _: None)
    assert list(standing["case"]) == [SMALL]  # a parameter is never re-run
    assert set(excused["case"]) == {LOOKUP, GROUP} and set(excused["re-run"]) == {1}
    original = frame.set_index("case")
    single = excused[excused["case"] == LOOKUP]
    for field, value in zip(single["field"], single["re-run result"], strict=True):
        assert value == pytest.approx(original.at[LOOKUP, field] / 1.8)
    assert len(runner.commands) == 1  # nothing left to confirm after the first re-run
    command = runner.commands[0]
    assert command[:3] == [sys.executable, "-m", "pytest"]
    assert original.at[LOOKUP, "fullname"] in command and "--profile" in command
    assert command[command.index("--benchmark-json") + 1] == str(path.with_suffix(".confirm1.json"))


def test_a_speed_regression_every_re_run_repeats_stands(flagged):
    frame, regressions, baseline, path = flagged
    slower = slowed(fixture_document(), LOOKUP, 0.8)
    runner = FakePytest(slower, slower)
    standing, excused = confirm.confirm(regressions, frame, 2, [], path, gate_again_with(baseline),
                                        runner=runner, say=lambda _: None)
    assert standing.equals(regressions) and excused.empty
    assert len(runner.commands) == 2


def test_a_re_run_that_writes_nothing_is_a_one_line_error(flagged):
    frame, regressions, baseline, path = flagged
    with pytest.raises(ResultError, match=r"re-timing exited 4 without writing .*confirm1.json: "
                                          r"collected 0 items \| ERROR: not found"):
        confirm.confirm(regressions, frame, 1, [], path, gate_again_with(baseline), runner=FakePytest(None),
                        say=lambda _: None)


def test_run_settings_come_from_the_result(tmp_path):
    document = fixture_document()
    document["membed"]["tf_threads"] = 1
    path = tmp_path / "r.json"
    path.write_text(json.dumps(document))
    assert confirm.run_settings(path) == ["--profile", document["membed"]["profile"], "--tf-threads", "1"]
    del document["membed"]["profile"]
    path.write_text(json.dumps(document))
    with pytest.raises(ResultError, match="needs the run's profile"):
        confirm.run_settings(path)


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_check_confirm_passes_when_the_re_run_is_in_line(tmp_path, capsys, monkeypatch):
    baseline = tmp_path / "baseline.json"
    assert run(capsys, FIXTURE, "--update-baseline", baseline)[0] == 0
    slower = slower_copy(tmp_path)
    code, out, _ = run(capsys, slower, "--check", baseline, "--format", "markdown")
    assert code == 1 and LOOKUP in out

    runner = FakePytest(fixture_document())
    monkeypatch.setattr(confirm.subprocess, "run", runner)
    code, out, err = run(capsys, slower, "--check", baseline, "--format", "markdown", "--confirm", "1")
    assert code == 0, out
    assert "gate passed: 0 regressions" in out and "not repeated when their cases were timed again" in out
    assert "Speed regressions a re-run did not repeat" in out and LOOKUP in out
    assert "--confirm 1/1: timing again the 3 cases behind 2 speed regressions" in err


def test_check_confirm_fails_when_the_re_run_repeats_it(tmp_path, capsys, monkeypatch):
    baseline = tmp_path / "baseline.json"
    run(capsys, FIXTURE, "--update-baseline", baseline)
    slower = slower_copy(tmp_path)
    monkeypatch.setattr(confirm.subprocess, "run", FakePytest(json.loads(slower.read_text())))
    code, out, _ = run(capsys, slower, "--check", baseline, "--format", "markdown", "--confirm", "1")
    assert code == 1 and "gate FAILED" in out and LOOKUP in out
    assert "did not repeat" not in out


def test_check_confirm_outside_the_project_root_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    baseline = tmp_path / "baseline.json"
    run(capsys, FIXTURE, "--update-baseline", baseline)
    slower = slower_copy(tmp_path)
    config = Path("pyproject.toml").resolve()
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, slower, "--check", baseline, "--confirm", "1", "--gate-config", config)
    assert code == 2 and out == ""
    assert err.startswith("error: --confirm re-runs cases with pytest from the project's root") and err.count("\n") == 1


@pytest.mark.parametrize("argv, message", [
    (["--confirm", "1"], "use it with --check"),
    (["--check", "b.json", "--confirm", "-1"], "--confirm must be a count of re-runs >= 0, got -1"),
])
def test_bad_confirm_flags(capsys, argv, message):
    code, _, err = run(capsys, FIXTURE, *argv)
    assert code == 2 and message in err


# --- --same-sitting: the baseline's code timed in the same sitting ---------------------------------


def test_the_sitting_baseline_takes_the_ratios_the_base_run_timed_and_keeps_the_rest():
    stored = baseline_of(fixture_document(), str(FIXTURE))  # with the ratios' noise, as a baseline file holds
    assert stored.set_index("case").at[LOOKUP, "gather_ratio_noise"] > 0
    document = slowed(fixture_document(), LOOKUP, 0.5)
    document["benchmarks"] = [e for e in document["benchmarks"] if e["extra_info"]["case"] == LOOKUP]
    base = frame_of(rows_of(document, "base.json"))
    sitting = confirm.sitting_baseline(stored, base).set_index("case")
    before = stored.set_index("case")
    assert sitting.at[LOOKUP, "gather_ratio"] == pytest.approx(1.5 * before.at[LOOKUP, "gather_ratio"])
    assert sitting.at[LOOKUP, "gather_ratio_noise"] == before.at[LOOKUP, "gather_ratio_noise"]
    others = sitting.index != LOOKUP
    assert sitting.loc[others, "gather_ratio"].equals(before.loc[others, "gather_ratio"])


def test_a_regression_the_baseline_code_shares_in_the_same_sitting_is_excused(flagged, tmp_path):
    frame, regressions, baseline, path = flagged
    slower = slowed(fixture_document(), LOOKUP, 0.8)
    runner = FakePytest(slower, slower)  # the machine slows the baseline's code as much as this one
    standing, excused = confirm.confirm(regressions, frame, 1, [], path, gate_again_with(baseline), runner=runner,
                                        say=lambda _: None, base=tmp_path)
    assert list(standing["case"]) == [SMALL] and set(excused["case"]) == {LOOKUP, GROUP}
    assert excused["re-run baseline code"].tolist() == pytest.approx(excused["re-run result"].tolist())
    assert runner.folders == [tmp_path, None]  # the baseline's code first, in its own folder
    assert runner.commands[0][runner.commands[0].index("--benchmark-json") + 1].endswith("slower.confirm1-base.json")


def test_a_regression_against_the_baseline_code_of_the_same_sitting_stands(flagged, tmp_path):
    frame, regressions, baseline, path = flagged
    runner = FakePytest(fixture_document(), slowed(fixture_document(), LOOKUP, 0.8))
    standing, excused = confirm.confirm(regressions, frame, 1, [], path, gate_again_with(baseline), runner=runner,
                                        say=lambda _: None, base=tmp_path)
    assert standing.equals(regressions) and excused.empty


def test_a_base_run_that_fails_leaves_the_stored_baseline_in_force(flagged, tmp_path):
    frame, regressions, baseline, path = flagged
    said = []
    runner = FakePytest(None, fixture_document())
    standing, excused = confirm.confirm(regressions, frame, 1, [], path, gate_again_with(baseline), runner=runner,
                                        say=said.append, base=tmp_path)
    assert set(excused["case"]) == {LOOKUP, GROUP}
    assert any("could not be timed, so the stored baseline stands in" in line for line in said)


def test_the_baseline_revision_is_the_last_commit_of_the_baseline_file_and_exports(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = ["-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q"], check=True)
    Path("baseline.json").write_text("{}")
    Path("code.py").write_text("old = 1\n")
    subprocess.run(["git", *env, "add", "."], check=True)
    subprocess.run(["git", *env, "commit", "-qm", "baseline"], check=True)
    first = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    Path("code.py").write_text("new = 2\n")
    subprocess.run(["git", *env, "commit", "-qam", "change"], check=True)
    assert confirm.baseline_revision("baseline.json") == first
    folder = tmp_path / "base"
    folder.mkdir()
    assert (confirm.export_revision(first, folder) / "code.py").read_text() == "old = 1\n"
    with pytest.raises(ResultError, match=r"--same-sitting: nowhere.json is in no commit"):
        confirm.baseline_revision("nowhere.json")
    with pytest.raises(ResultError, match=r"--same-sitting: `git archive .* no-such-rev` failed"):
        confirm.export_revision("no-such-rev", folder)


def test_same_sitting_needs_confirm(capsys):
    code, _, err = run(capsys, FIXTURE, "--check", FIXTURE, "--same-sitting")
    assert code == 2 and "add --confirm N" in err


def test_same_sitting_without_the_baseline_in_git_times_again_against_the_stored_baseline(tmp_path, capsys,
                                                                                          monkeypatch):
    baseline = tmp_path / "baseline.json"  # outside any repository: no commit wrote it
    run(capsys, FIXTURE, "--update-baseline", baseline)
    slower = slower_copy(tmp_path)
    runner = FakePytest(fixture_document())
    monkeypatch.setattr(confirm.subprocess, "run", runner)
    monkeypatch.setattr(confirm, "git", lambda *args, **kwargs: "")  # git answers, but knows no such file
    code, out, err = run(capsys, slower, "--check", baseline, "--confirm", "1", "--same-sitting", "--format",
                         "markdown")
    assert code == 0 and "gate passed" in out
    assert "is in no commit of this checkout" in err and "Timing again against the stored baseline instead." in err
    assert runner.folders == [None]
