"""`python -m analysis.report`: tables, plots, run-to-run comparison and the regression gate.

Loads the result files once into a tidy frame (`analysis.load`, columns from
`analysis.schema`), derives the tables (`analysis.frames`, deltas in
`analysis.compare`), gates (`analysis.gate`) and hands the tables to one
renderer (`analysis.render`).
Exit codes: 0 fine, 1 the gate found a regression, 2 unusable input (one line
on stderr).

Example:
    python -m analysis.report                                   # newest run under .benchmarks/
    python -m analysis.report out.json --format markdown --out reports/latest
    python -m analysis.report --compare old.json new.json
    python -m analysis.report out.json --check reports/baseline.json
    python -m analysis.report out.json --check reports/baseline.json --confirm 2 --same-sitting  # re-time speed regressions
    python -m analysis.report out.json --format markdown --summary-only >> "$GITHUB_STEP_SUMMARY"
    python -m analysis.report out.json --check base.json --gate-config path/to/pyproject.toml
    python -m analysis.report out.json --update-baseline        # rewrites reports/baseline.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from analysis import compare, confirm, frames, gate, render, sharded
from analysis.frames import Table
from analysis.load import ResultError, latest_run, load_results, load_run

# `--same-sitting` without a revision: the commit that last changed the baseline file.
BASELINE_COMMIT = "baseline-commit"
# No defaults in the help: the limits in force are the gate table's, which --help cannot know.
GATE_FLAGS = {
    "params_growth": "parameters a case may gain",
    "bytes_growth": "bytes param_bytes / index_bytes may gain",
    "peak_mem_rel": "relative peak-memory growth that fails, with --peak-mem-abs-mib",
    "peak_mem_abs_mib": "absolute allocator-peak growth in MiB that fails, with --peak-mem-rel",
    "peak_rss_abs_mib": "absolute peak-RSS growth in MiB that fails, with --peak-mem-rel",
    "gather_ratio_rel": "relative gather_ratio growth that fails",
    "val_mse_abs": "absolute final val MSE growth that fails",
}


def build_parser() -> argparse.ArgumentParser:
    """The command line; gate flags default to None so that the gate table's values show through."""
    parser = argparse.ArgumentParser(
        prog="python -m analysis.report",
        description="Report, compare and gate membed benchmark results (pytest-benchmark JSON).",
    )
    parser.add_argument(
        "results", nargs="*", metavar="RESULT.json", help="result files (default: newest run under --storage)"
    )
    parser.add_argument("--storage", default=".benchmarks", metavar="DIR", help="pytest-benchmark storage folder")
    parser.add_argument("--format", choices=render.FORMATS, default="rich", help="output format on stdout")
    parser.add_argument("--out", metavar="DIR", help="also write DIR/report.md and PNG plots")
    parser.add_argument(
        "--summary-only",
        action="store_true",
        help="print only the first screen: the report's summary (best strategy per compression level), "
        "or with --check the verdict and its regressions; --out still writes the whole report",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--compare", nargs=2, metavar=("OLD.json", "NEW.json"), help="tables of deltas, old vs new")
    mode.add_argument("--check", metavar="BASELINE.json", help="gate the result against a baseline or result file")
    mode.add_argument(
        "--update-baseline",
        nargs="?",
        const=str(gate.DEFAULT_BASELINE),
        metavar="PATH",
        help=f"rewrite the baseline from the result (default {gate.DEFAULT_BASELINE}); put RESULT.json first",
    )
    rules = parser.add_argument_group(
        "gate rules",
        f"The limits come from the {gate.GATE_TABLE} table of a pyproject.toml: --gate-config, else the first "
        "one holding the table from the baseline's folder upward, then from the working directory upward. "
        "Each flag below overrides one limit.",
    )
    rules.add_argument(
        "--gate-config", metavar="PYPROJECT.toml", help=f"the file whose {gate.GATE_TABLE} table holds the limits"
    )
    for name, text in GATE_FLAGS.items():
        rules.add_argument(f"--{name.replace('_', '-')}", dest=name, type=float, default=None, help=text)
    rules.add_argument(
        "--missing-fails",
        dest="missing_fails",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="whether a selected baseline case missing or failed in the result fails",
    )
    parser.add_argument(
        "--confirm",
        type=int,
        default=0,
        metavar="N",
        help="with --check: time the cases behind speed regressions again, N times (pytest, from the project's "
        "root), and fail only on those every re-run flags too; other regressions are never re-run",
    )
    parser.add_argument(
        "--same-sitting",
        nargs="?",
        const=BASELINE_COMMIT,
        metavar="REVISION",
        help="with --confirm: each re-run times the cases with REVISION's code first (default: the commit that "
        "last changed the baseline file) and gates against those times, so the machine's day is not held "
        "against the change",
    )
    return parser


def gate_config(args: argparse.Namespace) -> Path:
    """The pyproject.toml holding the gate's limits: --gate-config, else found from the baseline, then cwd."""
    if args.gate_config:
        path = Path(args.gate_config)
        if gate.read_gate_table(path) is None:
            where = "no such file" if not path.is_file() else f"no {gate.GATE_TABLE} table"
            raise ResultError(f"--gate-config {path}: {where}.")
        return path
    starts = list(dict.fromkeys([Path(args.check).resolve().parent, Path.cwd().resolve()]))
    found = gate.find_gate_config(starts)
    if found is None:
        raise ResultError(
            f"no gate limits: no pyproject.toml with a {gate.GATE_TABLE} table in "
            f"{' or '.join(map(str, starts))} or a folder above; pass --gate-config PATH."
        )
    return found


def gate_rules(args: argparse.Namespace) -> tuple[gate.GateRules, str]:
    """The gate table of `gate_config`, then the flags given; and one line saying where the limits came from."""
    path = gate_config(args)
    rules = gate.rules_from_pyproject(path)
    flags = {name: getattr(args, name) for name in (*GATE_FLAGS, "missing_fails") if getattr(args, name) is not None}
    source = f"limits: {gate.GATE_TABLE} of {path.resolve()}"
    if flags:
        source += ", overridden by " + ", ".join(f"--{name.replace('_', '-')}" for name in flags)
    return gate.GateRules.from_mapping(flags, "command line", rules), source


def load_inputs(args: argparse.Namespace) -> tuple[pd.DataFrame, list[str], frozenset[str] | None]:
    """The result frame, the files it came from (the newest saved run when none are named), and their selection."""
    paths = list(args.results) or [str(latest_run(args.storage))]
    frame, selected = load_run(paths)
    return frame, paths, selected


def prepare_out(out_dir: str) -> None:
    """Creates `out_dir` and proves it writable before any work, so that a bad --out fails first, in one line."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        raise ResultError(f"--out {out}: cannot write there ({err.strerror or err}).") from None


def write_out(out_dir: str, frame: pd.DataFrame, tables: Sequence[Table], title: str, summary: str = "") -> None:
    """Writes `out_dir`/report.md and the plots of `frame` next to it (`prepare_out` made the folder)."""
    from analysis.plots import write_plots  # matplotlib loads only when plots are asked for

    out = Path(out_dir)
    images = [p.name for p in write_plots(frame, out)]
    (out / "report.md").write_text(render.render_markdown(tables, title, summary, images), encoding="utf-8")


def run_report(args: argparse.Namespace) -> int:
    frame, paths, _ = load_inputs(args)
    tables = [*frames.report_tables(frame), *sharded.sharded_tables(frame)]
    summary = f"{len(frame)} cases from {', '.join(paths)}; " + ", ".join(
        f"{count} {status}" for status, count in frame["status"].value_counts().sort_index().items()
    )
    full = frames.derived(frame)
    line = frames.estimate_line(full)
    summary += f"\n{line}" if line else ""
    # The first screen says where the rest is; the file itself need not.
    shown = summary + (f"\nThe whole report, with its plots: {Path(args.out) / 'report.md'}" if args.out else "")
    if args.summary_only:
        lead = [t for t in tables if t.lead]
        flat = lead[0].frame if lead else full.iloc[0:0]
        render.render(args.format, lead, flat, sys.stdout, summary=shown)
    else:
        render.render(args.format, tables, full, sys.stdout, summary=shown)
    if args.out:
        write_out(args.out, frame, tables, "membed benchmark report", summary)
    return 0


def run_compare(args: argparse.Namespace) -> int:
    if args.results:
        raise ResultError("--compare takes exactly its two files; drop the other RESULT.json arguments.")
    old_path, new_path = args.compare
    old, new = load_results([old_path]), load_results([new_path])
    long = compare.compare_frame(old, new)
    changed = compare.changed_rows(long)
    tables = compare.compare_tables(changed)
    counts = compare.compare_counts(long)
    summary = (
        f"old: {old_path} ({len(old)} cases); new: {new_path} ({len(new)} cases)\n"
        f"{counts['compared']} cases compared, {counts['changed']} changed, "
        f"{counts['only_old']} only in old, {counts['only_new']} only in new"
        + (": nothing changed." if changed.empty else "; only changed rows are shown.")
    )
    title = "membed benchmark comparison"
    render.render(args.format, tables, changed, sys.stdout, title, summary)
    if args.out:
        write_out(args.out, new, tables, title, summary + "\nPlots show the new run.")
    return 0


def gate_tables(outcome: gate.GateOutcome, rules: gate.GateRules) -> list[Table]:
    """The regression, missing and improvement tables of a gate outcome (empty ones left out).

    Missing or failed cases come grouped by why, one row per reason: a slice or
    a broken dataset can leave hundreds of them, all for one reason.
    """
    limits = rules.describe()
    metric = outcome.regressions[outcome.regressions["rule"] != "missing_fails"]
    tables = []
    if len(metric):
        tables.append(Table(f"Regressions ({len(metric)})", metric.reset_index(drop=True), f"rules: {limits}"))
    if len(outcome.missing):
        verdict = "each fails the gate" if rules.missing_fails else "allowed by missing_fails=false"
        groups = frames.case_groups(outcome.missing, ["limit"]).rename(columns={"limit": "why"})
        tables.append(Table(f"Missing or failed in the result ({len(outcome.missing)}), {verdict}", groups))
    if len(outcome.excused):
        tables.append(Table(f"Speed regressions a re-run did not repeat ({len(outcome.excused)}), not failing",
                            outcome.excused))
    if len(outcome.improvements):
        tables.append(Table(f"Improvements ({len(outcome.improvements)})", outcome.improvements))
    return tables


def gate_summary(outcome: gate.GateOutcome, paths: Sequence[str], baseline: str, limits: str) -> str:
    """The verdict, what was compared, what was left out and why, and where the limits came from."""
    verdict = "passed" if outcome.passed else "FAILED"
    lines = [
        f"gate {verdict}: {len(outcome.regressions)} regressions, {len(outcome.improvements)} improvements; "
        f"{outcome.compared} cases of {', '.join(paths)} compared with {baseline}"
        + (f"; {len(outcome.new_cases)} cases not in the baseline" if outcome.new_cases else "")
        + "."
    ]
    if len(outcome.excused):
        lines.append(f"{len(outcome.excused)} speed regressions of the result were not repeated when their cases "
                     "were timed again (--confirm), so they do not fail the gate.")
    if outcome.not_selected:
        lines.append(
            f"{len(outcome.not_selected)} baseline cases not in this run's selection, not gated; "
            "run the profile whole (no -k, --strategies, --vocab-sizes or --datasets) to gate them."
        )
    if outcome.unplaced:
        lines.append(
            f"{len(outcome.unplaced)} absent baseline cases have no node id in {baseline}, so this run's selection "
            "cannot excuse them; rewrite the baseline with --update-baseline to gate slices."
        )
    lines.append(limits)
    return "\n".join(lines)


def confirmed(
    outcome: gate.GateOutcome, frame: pd.DataFrame, baseline: pd.DataFrame, rules: gate.GateRules,
    args: argparse.Namespace, path: str,
) -> gate.GateOutcome:
    """`outcome` with its speed regressions re-timed `args.confirm` times (`analysis.confirm`), with
    `--same-sitting` against the baseline's code timed alongside: those not repeated move to `excused`."""

    def gate_again(retimed: pd.DataFrame, base: pd.DataFrame | None) -> pd.DataFrame:
        found = gate.compare(retimed, baseline if base is None else confirm.sitting_baseline(baseline, base), rules)
        return found[found["kind"] == "regression"]

    def say(line: str) -> None:
        print(line, file=sys.stderr)

    settings = confirm.run_settings(path)
    with tempfile.TemporaryDirectory(prefix="membed-baseline-code-") as folder:
        base = None
        if args.same_sitting is not None:
            try:
                revision = (confirm.baseline_revision(args.check) if args.same_sitting == BASELINE_COMMIT
                            else args.same_sitting)
                base = confirm.export_revision(revision, Path(folder))
                say(f"--same-sitting: the baseline's code is {revision}, in {base}")
            except ResultError as error:  # no git, no history: the re-runs still time this code
                say(f"{error} Timing again against the stored baseline instead.")
        regressions, excused = confirm.confirm(outcome.regressions, frame, args.confirm, settings, path, gate_again,
                                               say=say, base=base)
    return dataclasses.replace(outcome, regressions=regressions.reset_index(drop=True), excused=excused)


def run_check(args: argparse.Namespace) -> int:
    baseline = gate.load_baseline(args.check)
    rules, limits = gate_rules(args)
    frame, paths, selected = load_inputs(args)
    outcome = gate.check(frame, baseline, rules, args.check, selected)
    if args.confirm and confirm.speed(outcome.regressions).any():
        outcome = confirmed(outcome, frame, baseline, rules, args, paths[0])
    summary = gate_summary(outcome, paths, args.check, limits)
    tables = gate_tables(outcome, rules)
    findings = pd.concat(
        [outcome.regressions.assign(kind="regression"), outcome.improvements.assign(kind="improvement")],
        ignore_index=True,
    )
    shown = [t for t in tables if not t.title.startswith("Improvements")] if args.summary_only else tables
    render.render(args.format, shown, findings, sys.stdout, "membed regression gate", summary)
    if args.out:
        write_out(args.out, frame, [*tables, *frames.report_tables(frame)], "membed benchmark report", summary)
    return 0 if outcome.passed else 1


def run_update_baseline(args: argparse.Namespace) -> int:
    target = Path(args.update_baseline)
    # `--update-baseline out.json` parses out.json as the baseline PATH; never overwrite a result file.
    if target.is_file():
        try:
            existing = json.loads(target.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            existing = None
        if isinstance(existing, dict) and "benchmarks" in existing:
            raise ResultError(
                f"{target} is a benchmark result, not a baseline; write `RESULT.json --update-baseline [PATH]`."
            )
    frame, paths, _ = load_inputs(args)
    left_out = int((frame["status"] != "ok").sum())
    if left_out == len(frame):
        raise ResultError(f"{', '.join(paths)}: no ok case to write into a baseline.")
    count = gate.write_baseline(frame, args.update_baseline)
    print(f"Wrote {args.update_baseline}: {count} cases from {', '.join(paths)} ({left_out} not-ok cases left out).")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit code instead of exiting, so tests can call it.

    Args:
        argv: arguments without the program name (default: sys.argv[1:]).

    Example:
        >>> main(["tests/fixtures/result_small.json", "--format", "markdown"])  # doctest: +SKIP
        0
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse has already printed its one-line usage error
        return int(exit_.code or 0)
    try:
        if args.confirm and not args.check:
            raise ResultError(f"--confirm {args.confirm} re-times a gate's speed regressions; use it with --check.")
        if args.same_sitting is not None and not args.confirm:
            raise ResultError("--same-sitting times the baseline's code beside --confirm's re-runs; add --confirm N.")
        if args.confirm < 0:
            raise ResultError(f"--confirm must be a count of re-runs >= 0, got {args.confirm}.")
        if args.out:
            prepare_out(args.out)
        if args.compare:
            return run_compare(args)
        if args.check:
            return run_check(args)
        if args.update_baseline:
            return run_update_baseline(args)
        return run_report(args)
    except ResultError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
