"""Confirming the gate's speed regressions by timing the flagged cases again (`--check ... --confirm N`).

A change to a strategy's code slows it on every run; a busy minute of a
shared machine slows one run. So with `--confirm N`, a speed regression (a
finding on a `ratio` field: one case's, or a group's of
`analysis.rules.GroupRule`) fails the gate only when each of N fresh pytest
runs of the cases behind it, gated against the same baseline, flags it again.
Parameters, bytes, peaks and accuracy are never re-run: a re-run cannot
excuse them.

The re-run is `python -m pytest` (this interpreter) with the node ids of the
flagged cases, the result's profile and TensorFlow threads, from the current
directory, which must be the project's root (it holds `bench/conftest.py`).
Its result goes beside the first result file, as `<name>.confirm<i>.json`.

A re-run on the same machine repeats what the machine's day does to a case:
on 2026-12-02 two quick runs of unchanged code had `qr`'s six lookup cases
21-23% above the baseline taken the day before, and one of them 37-51% (the
CI run it failed). With `--same-sitting [REVISION]` each re-run first times
the same cases with the baseline's code (by default the commit that last
changed the baseline file, exported with `git archive` into a temporary
folder), then with this one, and gates this one's ratios against that one's,
the stored noise setting the limits: what the machine does to both is not
held against the change (that CI run's case: +3.7% in the same sitting).
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import schema
from analysis.baseline import baseline_frame
from analysis.load import ResultError, load_run, read_result
from analysis.rules import group_of

SPEED_FIELDS = frozenset(field.name for field in schema.FIELDS if field.gate == "ratio")
BENCH_ROOT = Path("bench") / "conftest.py"
Runner = Callable[..., subprocess.CompletedProcess]
# Lines of a failed re-run's output that its one-line error quotes.
TAIL_LINES = 3


def speed(regressions: pd.DataFrame) -> pd.Series:
    """Which of the gate's regressions are on a timing ratio, the only ones a re-run can confirm or excuse."""
    return regressions["field"].isin(SPEED_FIELDS)


def nodes_behind(findings: pd.DataFrame, result: pd.DataFrame) -> list[str]:
    """The pytest node ids of the result's cases behind `findings`: a case's own, every case of a group's.

    Example:
        >>> result = pd.DataFrame({"case": ["lookup/qr/a/1/64", "lookup/qr/b/1/64", "lookup/hash/a/1/64"],
        ...                        "fullname": ["t[qr-a]", "t[qr-b]", "t[hash-a]"], "status": ["ok"] * 3})
        >>> nodes_behind(pd.DataFrame({"case": ["lookup/qr/*"]}), result)
        ['t[qr-a]', 't[qr-b]']
    """
    flagged = set(findings["case"])
    ok = result[(result["status"] == "ok") & result["fullname"].map(lambda node: isinstance(node, str))]
    behind = ok["case"].isin(flagged) | ok["case"].map(group_of).isin(flagged)
    return sorted(set(ok.loc[behind, "fullname"]))


def run_settings(path: str | Path) -> list[str]:
    """The pytest options that make a re-run time cases as the run in `path` did: its profile and threads."""
    membed = read_result(path).get("membed") or {}
    profile = membed.get("profile")
    if not isinstance(profile, str):
        raise ResultError(f"{path}: --confirm needs the run's profile (membed.profile), and this result has none.")
    options = ["--profile", profile]
    if isinstance(membed.get("tf_threads"), int):
        options += ["--tf-threads", str(membed["tf_threads"])]
    return options


def retime_command(nodes: Sequence[str], settings: Sequence[str], out: str | Path) -> list[str]:
    """The pytest command that times `nodes` again into the result file `out`."""
    return [sys.executable, "-m", "pytest", *nodes, "--benchmark-only", "--benchmark-quiet", "-q", "-p",
            "no:cacheprovider", *settings, "--benchmark-json", str(out)]


def retime(command: Sequence[str], out: str | Path, runner: Runner | None = None,
           cwd: str | Path | None = None) -> pd.DataFrame:
    """Runs `command` (a `retime_command`; with `runner`, default `subprocess.run`) in `cwd` and loads what it
    wrote to `out`; one-line `ResultError` if nothing."""
    Path(out).unlink(missing_ok=True)
    done = (runner or subprocess.run)(list(command), capture_output=True, text=True, check=False, cwd=cwd)
    if not Path(out).is_file():
        tail = " | ".join(f"{done.stdout}\n{done.stderr}".strip().splitlines()[-TAIL_LINES:])
        raise ResultError(f"--confirm: re-timing exited {done.returncode} without writing {out}: {tail}")
    return load_run([out])[0]


def still_flagged(first: pd.DataFrame, again: pd.DataFrame) -> pd.Series:
    """Which rows of `first` (findings) `again` (findings of a re-run) flags too: same case or group, same field."""
    keys = set(zip(again["case"], again["field"]))
    return pd.Series([key in keys for key in zip(first["case"], first["field"])], index=first.index, dtype=bool)


def value_of(frame: pd.DataFrame, case: str, field: str) -> float:
    """`field` of `case` in a result frame; of a group (`lookup/qr/*`), its cases' geometric mean, as the gate takes.

    Example:
        >>> frame = pd.DataFrame({"case": ["lookup/qr/a/1/64", "lookup/qr/b/1/64"], "r": [1.0, 4.0]})
        >>> value_of(frame, "lookup/qr/*", "r")
        2.0
    """
    members = frame["case"].map(group_of) == case if "*" in case else frame["case"] == case
    values = pd.to_numeric(frame.loc[members, field] if field in frame else pd.Series(dtype=float), errors="coerce")
    values = values[values > 0]
    return float(np.exp(np.log(values).mean())) if len(values) else float("nan")


def git(*args: str, runner: Runner | None = None) -> str:
    """`git ARGS` in the current directory, its stdout stripped; one-line `ResultError` when git fails."""
    try:
        done = (runner or subprocess.run)(["git", *args], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise ResultError("--same-sitting needs git, and there is no git on PATH.") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ResultError(f"--same-sitting: `git {' '.join(args)}` failed: {last}")
    return done.stdout.strip()


def baseline_revision(baseline: str | Path, runner: Runner | None = None) -> str:
    """The commit that last changed the baseline file: the code the baseline was taken with."""
    revision = git("log", "-1", "--format=%H", "--", str(baseline), runner=runner)
    if not revision:
        raise ResultError(f"--same-sitting: {baseline} is in no commit of this checkout; name the baseline's "
                          "code as --same-sitting REVISION.")
    return revision


def export_revision(revision: str, into: Path, runner: Runner | None = None) -> Path:
    """The files of `revision` (`git archive`) extracted into `into`, which is returned."""
    archive = into / "revision.tar"
    git("archive", "--format=tar", "-o", str(archive), revision, runner=runner)
    with tarfile.open(archive) as tar:
        tar.extractall(into, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    archive.unlink()
    return into


def sitting_baseline(baseline: pd.DataFrame, base: pd.DataFrame) -> pd.DataFrame:
    """`baseline` with the ratios of the cases that `base` (the baseline's code timed in this sitting) holds
    taken from it; its noise, and every case `base` lacks, as stored."""
    timed = baseline_frame(base).set_index("case")
    out = baseline.set_index("case").copy()
    for field in SPEED_FIELDS & set(timed.columns) & set(out.columns):
        values = timed[field].dropna()
        out.loc[out.index.intersection(values.index), field] = values
    return out.reset_index()


def confirm(
    regressions: pd.DataFrame, result: pd.DataFrame, rounds: int, settings: Sequence[str], out_stem: str | Path,
    gate_again: Callable[[pd.DataFrame, pd.DataFrame | None], pd.DataFrame],
    runner: Runner | None = None,
    say: Callable[[str], None] = print,
    base: Path | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(regressions that stand, speed regressions the re-runs did not repeat, with each re-run's value).

    Args:
        regressions: the gate's regressions on the result.
        result: the result frame (node ids of the flagged cases).
        rounds: re-runs; a speed regression stands only when every one flags it.
        settings: `run_settings` of the result.
        out_stem: the first result file; re-run i writes `<stem>.confirm<i>.json` beside it (and
            `<stem>.confirm<i>-base.json`, with `base`).
        gate_again: (a re-run's frame, the base code's frame of the same sitting or None) -> the re-run's
            regressions under the same rules, against the baseline (`sitting_baseline` of it, with a base frame).
        runner: runs a command (default `subprocess.run`; tests pass a fake).
        say: where the progress lines go.
        base: a checkout of the baseline's code (`export_revision`): each re-run times its cases there first,
            then here, and gates here against there; a base run that fails leaves the stored baseline in force.
    """
    fast = ~speed(regressions)
    standing = regressions[speed(regressions)]
    if len(standing) and not BENCH_ROOT.is_file():
        raise ResultError(f"--confirm re-runs cases with pytest from the project's root, and {BENCH_ROOT} is not "
                          f"in {Path.cwd()}; run the gate from the folder that holds bench/.")
    excused = []
    for index in range(1, rounds + 1):
        if standing.empty:
            break
        nodes = nodes_behind(standing, result)
        out = Path(out_stem).with_suffix(f".confirm{index}.json")
        say(f"--confirm {index}/{rounds}: timing again the {len(nodes)} cases behind {len(standing)} speed "
            f"regressions, into {out}" + (f", after the baseline's code in {base}" if base else ""))
        base_frame = None
        if base is not None:
            base_out = Path(out_stem).with_suffix(f".confirm{index}-base.json").resolve()
            try:
                base_frame = retime(retime_command(nodes, settings, base_out), base_out, runner, cwd=base)
            except ResultError as error:
                say(f"--confirm {index}/{rounds}: the baseline's code could not be timed, so the stored baseline "
                    f"stands in: {error}")
        frame = retime(retime_command(nodes, settings, out), out, runner)
        repeated = still_flagged(standing, gate_again(frame, base_frame))
        dropped = standing[~repeated]
        pairs = list(zip(dropped["case"], dropped["field"]))
        columns = {"re-run": index, "re-run result": [value_of(frame, case, field) for case, field in pairs]}
        if base_frame is not None:
            columns["re-run baseline code"] = [value_of(base_frame, case, field) for case, field in pairs]
        excused.append(dropped.assign(**columns))
        standing = standing[repeated]
    excused_frame = pd.concat(excused, ignore_index=True) if excused else regressions.iloc[0:0]
    return pd.concat([regressions[fast], standing]).sort_index(), excused_frame
