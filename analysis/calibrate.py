"""`python -m analysis.calibrate`: how often the gate cries wolf, and how often it catches a planted change.

Trials, each one `analysis.gate.check` of a doctored copy of a result against a
baseline (by default the baseline `--update-baseline` would write from that
result, noise included; `--baseline FILE` to use another):

- identical code: the result itself, and each `--against` run of the same code,
  in both directions; every regression is a false alarm;
- a planted slowdown: a copy in which ONE lookup case is X% slower (every round,
  its stats, its ratios: `slowed`), for X in `SLOWDOWNS`, over `--cases` lookup
  cases drawn with `--seed`; a trial counts as caught when the gate names that
  case's ratio. And one strategy's lookup X% slower (all its lookup cases, as a
  change to its code would make it), over `--cases` strategies; caught when the
  gate names any of them. With `--against`, each trial plants the change in the
  next of those runs, not in the baseline's own: the gate must see it through a
  second run's noise;
- a planted +5% peak memory (at least 8 MiB more) and +1 parameter on memory cases;
- a planted accuracy loss just beyond the seeds' 95% interval: an accuracy
  case's gated loss (`val_mse`, `val_logloss`) grown by `ACCURACY_BEYOND` x
  the larger of its `<field>_ci95` and the gate's `val_mse_abs`. Where the
  interval is the smaller, a loss beyond it but under `val_mse_abs` passes:
  the row says on how many cases that was so.

With `--against`, a sweep follows: the same false alarms and the share of
lookup cases each slowdown would be flagged on, under other floors and k.

`--leave-one-out` makes every comparison independent: each of the runs
(RESULT and the `--against` runs) is gated in turn against the baseline
written from all the others (as `--update-baseline` writes one from several
runs), unchanged and with each planted change; the rows sum over the runs.
Without it, a baseline holds the run it is checked against (`--baseline`
written from it), which hides how far a new run of the same code moves.
With `--confirm N` too, each run's speed regressions stand only when each of
the next N runs, with the same change planted, repeats them, as the gate's
`--confirm N` has N fresh pytest runs repeat them; those runs are left out of
the baseline too. `--hold-out K` leaves out only the last K runs: with runs
taken after the limits were chosen, an out-of-sample test of them.

Missing cases are left out of the count (`missing_fails` off): two runs that
hold different cases measure the gate's rules, not their coverage.

Example:
    python -m analysis.calibrate out/quick.json --out reports/calibration.md
    python -m analysis.calibrate out/quick.json --against /tmp/quick_again.json
    python -m analysis.calibrate q1.json --against q2.json --against q3.json --leave-one-out
    python -m analysis.calibrate q1.json --against q2.json --against q3.json --against q4.json --leave-one-out --confirm
    python -m analysis.calibrate q1.json --against ... --against n3.json --leave-one-out --confirm 2 \
        --same-sitting --sittings 5,2,3 --hold-out 3
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis import confirm, gate, schema
from analysis.baseline import NOISE_SUFFIX, RATIO_FIELDS, ROUNDS_SUFFIX, with_noise
from analysis.load import ResultError, frame_of, read_result, rows_of
from analysis.rules import group_of, quietest_ratios, suite_of

SLOWDOWNS = (0.10, 0.20, 0.25, 0.50)
PEAK_GROWTH = 0.05
PEAK_MIN_BYTES = 8 * schema.MIB
PEAK_FIELD = "peak_alloc_bytes_train"
TRIAL_CASES = 10
ACCURACY_BEYOND = 1.05
ACCURACY_FIELDS = tuple(name for name in schema.GATED_FIELDS if schema.FIELD[name].gate == "accuracy")
SEED = 0
# pytest-benchmark stats that are times (scale with a slowdown); `ops` is their inverse.
TIME_STATS = ("min", "max", "mean", "median", "q1", "q3", "iqr", "stddev", "ld15iqr", "hd15iqr", "total")
# Per-case timings a suite may record besides its ratios; each scales with a slowdown where present.
TIME_RECORDS = ("floor_ratio", "ns_per_id", "amortised_ns_per_id")
LOOKUP_SUITE = "lookup"
LEFT_OUT = "in the left-out run"  # where --leave-one-out plants its changes


@dataclass
class TrialRow:
    """One line of the calibration table: what was planted, in how many comparisons, how many were flagged."""

    trial: str
    planted: str
    comparisons: int
    flagged: int
    elsewhere: int
    goal: str

    @property
    def rate(self) -> str:
        return f"{self.flagged}/{self.comparisons}"


def case_of(entry: dict[str, Any]) -> str:
    return (entry.get("extra_info") or {}).get("case") or entry.get("name")


def _replaced(document: dict[str, Any], case: str, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """A copy of `document` whose entry for `case` went through `change`; other entries are shared."""
    out = dict(document)
    out["benchmarks"] = list(document["benchmarks"])
    for index, entry in enumerate(out["benchmarks"]):
        if case_of(entry) == case:
            entry = copy.deepcopy(entry)
            change(entry)
            out["benchmarks"][index] = entry
            return out
    raise ResultError(f"no benchmark entry for case {case!r}; pass a case the result holds.")


def slowed(document: dict[str, Any], case: str, fraction: float) -> dict[str, Any]:
    """A copy of a result `document` in which `case` is `fraction` slower: every round, its stats, its ratios.

    Example:
        >>> doc = {"benchmarks": [{"extra_info": {"case": "c", "gather_ratio": 2.0}, "stats": {"median": 1.0}}]}
        >>> slowed(doc, "c", 0.25)["benchmarks"][0]["extra_info"]["gather_ratio"]
        2.5
    """
    if not fraction > -1:
        raise ValueError(f"slowed: fraction must be > -1, got {fraction!r}.")
    factor = 1 + fraction

    def change(entry: dict[str, Any]) -> None:
        stats = entry.setdefault("stats", {})
        for key in TIME_STATS:
            if isinstance(stats.get(key), (int, float)):
                stats[key] *= factor
        if isinstance(stats.get("data"), list):
            stats["data"] = [value * factor for value in stats["data"]]
        if isinstance(stats.get("ops"), (int, float)) and stats["ops"]:
            stats["ops"] /= factor
        info = entry.setdefault("extra_info", {})
        for key in (*RATIO_FIELDS, *TIME_RECORDS):
            if isinstance(info.get(key), (int, float)):
                info[key] *= factor
            rounds = info.get(f"{key}{ROUNDS_SUFFIX}")
            if isinstance(rounds, list):
                info[f"{key}{ROUNDS_SUFFIX}"] = [value * factor for value in rounds]

    return _replaced(document, case, change)


def grown(document: dict[str, Any], case: str, field: str, change: Callable[[float], float]) -> dict[str, Any]:
    """A copy of `document` with `extra_info[field]` of `case` replaced by change(old value)."""

    def apply(entry: dict[str, Any]) -> None:
        entry["extra_info"][field] = change(entry["extra_info"][field])

    return _replaced(document, case, apply)


def frame_of_document(document: dict[str, Any], source: str) -> pd.DataFrame:
    return frame_of(rows_of(document, source))


def stats_of(document: dict[str, Any], source: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {(source, case_of(entry)): entry.get("stats") or {} for entry in document["benchmarks"]}


def baseline_of(document: dict[str, Any], source: str) -> pd.DataFrame:
    """The baseline `--update-baseline` would write from `document`, noise included, in `baseline_frame` form."""
    return baseline_of_runs([(document, source)])


def baseline_of_runs(runs: Sequence[tuple[dict[str, Any], str]]) -> pd.DataFrame:
    """The baseline `--update-baseline` writes from several runs of the same code (`baseline_of` for one)."""
    frame = pd.concat([frame_of_document(document, source) for document, source in runs], ignore_index=True)
    stats: dict[tuple[str, str], dict[str, Any]] = {}
    for document, source in runs:
        stats.update(stats_of(document, source))
    return gate.baseline_frame(with_noise(frame, stats))


def regressions(frame: pd.DataFrame, baseline: pd.DataFrame, rules: gate.GateRules) -> pd.DataFrame:
    return gate.check(frame, baseline, dataclasses.replace(rules, missing_fails=False)).regressions


Document = dict[str, Any]


@dataclass
class Judge:
    """Gates a run, changed by a plant, against `baseline`; with `re_runs`, as `--check --confirm N` does.

    Each of `re_runs` is another run of the same code standing in for one of
    the gate's N re-runs: a speed regression (`analysis.confirm.speed`) stands
    only when every one of them, the same change planted, flags it too; other
    regressions are never re-run. With `sitting`, each is a run of the same
    sitting standing in for the baseline code's re-run of `--same-sitting`:
    the changed run is gated again against the baseline with that run's ratios
    (`analysis.confirm.sitting_baseline`).
    """

    baseline: pd.DataFrame
    rules: gate.GateRules
    re_runs: Sequence[tuple[Document, str]] = ()
    sitting: bool = False

    def __call__(self, document: Document, source: str,
                 plant: Callable[[Document], Document] | None = None) -> pd.DataFrame:
        plant = plant or (lambda doc: doc)
        changed = frame_of_document(plant(document), source)
        found = regressions(changed, self.baseline, self.rules)
        for re_run in self.re_runs:
            if not confirm.speed(found).any():
                break
            if self.sitting:
                base_code = confirm.sitting_baseline(self.baseline, frame_of_document(*re_run))
                again = regressions(changed, base_code, self.rules)
            else:
                repeat, repeat_source = re_run
                try:
                    repeat = plant(repeat)
                except ResultError:  # the planted case is not in the re-run; its speed regressions are its own
                    pass
                again = regressions(frame_of_document(repeat, repeat_source), self.baseline, self.rules)
            found = found[~confirm.speed(found) | confirm.still_flagged(found, again)].reset_index(drop=True)
        return found


def timed_lookup_cases(baseline: pd.DataFrame) -> list[str]:
    """Lookup cases of the baseline with a gated ratio, sorted."""
    ratios = baseline.reindex(columns=list(RATIO_FIELDS)).notna().any(axis=1)
    timed = baseline[baseline["case"].str.startswith(f"{LOOKUP_SUITE}/") & ratios]
    return sorted(timed["case"])


def strategy_of(case: str) -> str:
    """The strategy part of a case id (`lookup/qr/synthetic-zipf/1000/64` -> `qr`)."""
    return case.split("/")[1]


def gated_ratio(baseline: pd.DataFrame, case: str) -> str:
    """The ratio field that gates `case`'s speed: of its amortised ratios the one with the least stored noise (the
    gather ratio, or a compute-bound strategy's compute ratio), its per-call ratio where it has none; the one the
    gate's `quietest_ratio` gates (`analysis.rules.quietest_ratios`)."""
    row = baseline[baseline["case"] == case].iloc[0]
    present = [field for field in RATIO_FIELDS if pd.notna(row.get(field))] or [RATIO_FIELDS[0]]
    noise = [row.get(f"{field}{NOISE_SUFFIX}", np.nan) for field in present]
    return quietest_ratios(pd.DataFrame({"case": case, "field": present, "noise": noise}))["field"].iloc[0]


def draw(cases: Sequence[str], count: int, seed: int) -> list[str]:
    """`count` of `cases` (all of them when fewer), drawn without replacement by a seeded generator."""
    if len(cases) <= count:
        return list(cases)
    picked = np.random.default_rng(seed).choice(len(cases), size=count, replace=False)
    return [cases[i] for i in sorted(picked)]


def ratio_limit(baseline: pd.DataFrame, case: str, rules: gate.GateRules) -> float:
    """The relative growth of `case`'s tightest gated ratio (`gated_ratio`) that the gate allows against `baseline`."""
    row = baseline[baseline["case"] == case].iloc[0]
    noise = row.get(f"{gated_ratio(baseline, case)}{NOISE_SUFFIX}")
    rules = rules.for_suite(suite_of(case))
    if noise is None or not np.isfinite(noise):
        return rules.gather_ratio_rel
    return max(rules.ratio_floor_rel, rules.ratio_noise_k * float(noise))


def identical_trials(
    document: dict[str, Any], source: str, judge: Judge, others: Sequence[tuple[dict[str, Any], str]],
) -> list[TrialRow]:
    """False alarms: the result against its baseline, and each other run against it both ways."""
    baseline, rules = judge.baseline, judge.rules
    frame = frame_of_document(document, source)
    same = judge(document, source)
    rows = [TrialRow("identical code", "an unchanged copy of the result", 1, int(len(same) > 0), len(same),
                     "0 flagged")]
    for other, other_source in others:
        forward = regressions(frame_of_document(other, other_source), baseline, rules)
        backward = regressions(frame, baseline_of(other, other_source), rules)
        rows.append(TrialRow("identical code", f"{Path(other_source).name} vs the result, both ways", 2,
                             int(len(forward) > 0) + int(len(backward) > 0), len(forward) + len(backward),
                             "0 flagged"))
    return rows


def planted_trials(
    document: dict[str, Any], source: str, judge: Judge, cases: Sequence[str],
    plant: Callable[[dict[str, Any], str], dict[str, Any]], field: str,
) -> tuple[int, int]:
    """(caught, alarms on other cases) over one planted change per case of `cases`."""
    caught = elsewhere = 0
    for case in cases:
        found = judge(document, source, lambda doc, case=case: plant(doc, case))
        hit = (found["case"] == case) & (found["field"] == field)
        caught += int(hit.any())
        elsewhere += int((~hit).sum())
    return caught, elsewhere


def slowdown_trial(
    document: dict[str, Any], source: str, judge: Judge, cases: Sequence[str], fraction: float,
    groups: bool = False,
) -> tuple[bool, int]:
    """(whether the gate names a ratio of one of `cases`, or with `groups` one of their groups, regressions
    elsewhere) with `cases` of `document` made `fraction` slower."""

    def plant(doc: Document) -> Document:
        for case in cases:
            if any(case_of(entry) == case for entry in doc["benchmarks"]):
                doc = slowed(doc, case, fraction)
        return doc

    found = judge(document, source, plant)
    own_groups = {group_of(case) for case in cases}
    hit = found["case"].isin(set(cases) | (own_groups if groups else set())) & found["field"].isin(RATIO_FIELDS)
    # A single case's group flagged with it is no alarm elsewhere.
    elsewhere = ~found["case"].isin(set(cases) | own_groups)
    return bool(hit.any()), int(elsewhere.sum())


def calibrate(
    document: dict[str, Any], source: str, baseline: pd.DataFrame, rules: gate.GateRules,
    others: Sequence[tuple[dict[str, Any], str]] = (), cases: int = TRIAL_CASES, seed: int = SEED,
    where: str | None = None, re_runs: Sequence[tuple[Document, str]] = (), sitting: bool = False,
) -> tuple[list[TrialRow], pd.DataFrame]:
    """Every trial: (the table's rows, the planted lookup cases with their limit and per-X verdicts).

    Args:
        document: a parsed result file.
        source: its path (how the frame names it).
        baseline: the baseline to gate against, in `baseline_frame` form.
        rules: the gate's limits.
        others: other runs of the same code, parsed, with their paths.
        cases: how many cases each planted change is tried on.
        seed: seeds the draw of those cases.
        where: how the rows name the run the changes are planted in (default: from `others`).
        re_runs: other runs of the same code that each confirm every speed regression (`Judge`), the
            same change planted in them; with `sitting`, the baseline code's runs of the same sitting.
    """
    judge = Judge(baseline, rules, re_runs, sitting)
    rows = identical_trials(document, source, judge, others)
    timed = timed_lookup_cases(baseline)
    lookups = draw(timed, cases, seed)
    if not lookups:
        raise ResultError(f"{source}: no ok lookup case with a gather_ratio in the baseline; nothing to slow down.")
    # Where the planted changes go: the other runs in turn, else the baseline's own run.
    targets = list(others) or [(document, source)]
    where = where or ("in another run" if others else "in the baseline's run")
    per_case = pd.DataFrame({"case": lookups})
    per_case["limit %"] = [100 * ratio_limit(baseline, case, rules) for case in lookups]
    strategies = draw(sorted({strategy_of(case) for case in timed}), cases, seed)
    for fraction in SLOWDOWNS:
        goal = ">= 9/10 flagged" if fraction >= 0.20 else "(below the 20% target)"
        verdicts = [slowdown_trial(*targets[i % len(targets)], judge, [case], fraction)
                    for i, case in enumerate(lookups)]
        per_case[f"+{fraction:.0%}"] = ["flagged" if hit else "-" for hit, _ in verdicts]
        rows.append(TrialRow("slower lookup", f"+{fraction:.0%} on one lookup case, {where}", len(lookups),
                             sum(hit for hit, _ in verdicts), sum(n for _, n in verdicts), goal))
        verdicts = [slowdown_trial(*targets[i % len(targets)], judge,
                                   [case for case in timed if strategy_of(case) == name], fraction, groups=True)
                    for i, name in enumerate(strategies)]
        rows.append(TrialRow("slower strategy", f"+{fraction:.0%} on one strategy's lookup cases, {where}",
                             len(strategies), sum(hit for hit, _ in verdicts), sum(n for _, n in verdicts), goal))
    peak_cases = draw(sorted(baseline.loc[baseline[PEAK_FIELD] > 0, "case"]), cases, seed)
    if peak_cases:
        caught, elsewhere = planted_trials(
            document, source, judge, peak_cases,
            lambda doc, case: grown(doc, case, PEAK_FIELD, lambda v: v + max(PEAK_GROWTH * v, PEAK_MIN_BYTES)),
            PEAK_FIELD)
        rows.append(TrialRow("more memory", f"+{PEAK_GROWTH:.0%} {PEAK_FIELD}, at least 8 MiB", len(peak_cases),
                             caught, elsewhere, "all flagged"))
    param_cases = draw(sorted(baseline.loc[baseline["params"].notna() & baseline["case"].str.startswith("memory/"),
                                           "case"]), cases, seed)
    if param_cases:
        caught, elsewhere = planted_trials(
            document, source, judge, param_cases,
            lambda doc, case: grown(doc, case, "params", lambda v: v + 1), "params")
        rows.append(TrialRow("more parameters", "+1 param on one memory case", len(param_cases), caught, elsewhere,
                             "all flagged"))
    rows += accuracy_trials(document, source, judge, cases, seed)
    return rows, per_case


def leave_one_out(
    runs: Sequence[tuple[dict[str, Any], str]], rules: gate.GateRules, cases: int = TRIAL_CASES, seed: int = SEED,
    confirms: int = 0, sitting: bool = False, sittings: Sequence[int] | None = None, held_out: int | None = None,
) -> tuple[list[TrialRow], pd.DataFrame]:
    """`calibrate` once per run, against the baseline of the other runs; the rows summed over the runs.

    Every comparison is then of runs the baseline did not see: the identical-code
    row counts each run flagged against the others' baseline, and each planted
    change goes into the left-out run. The planted cases table gains a `run` column.
    With `confirms` (N of `--confirm N`), the next N runs (the first after the
    last) are left out too and stand in for the gate's re-runs (`Judge`), the change
    planted in them as well; with `sitting` too, for the baseline code's re-runs of
    `--same-sitting`. `sittings` (sizes, in the runs' order: `(5, 2)` for five runs
    of one sitting, then two of another) keeps those re-runs within the left-out
    run's sitting: the next of its sitting, the first after the last. `held_out`
    leaves out only the last `held_out` runs in turn (the others stay in every
    baseline): runs the limits were not chosen on.
    """
    least = confirms + 3
    if len(runs) < least:
        raise ResultError(f"--leave-one-out{f' --confirm {confirms}' if confirms else ''} needs at least {least} "
                          f"runs (RESULT and {least - 1} --against), got {len(runs)}: the baseline must hold two "
                          "runs to know their noise.")
    if held_out is not None and not 1 <= held_out <= len(runs):
        raise ResultError(f"--hold-out {held_out}: between 1 and the {len(runs)} runs.")
    left_out = range(len(runs) - (held_out or len(runs)), len(runs))
    sittings = list(sittings or [len(runs)])
    least_sitting = max(2, confirms + 1)
    wrong = ResultError(f"--sittings {','.join(map(str, sittings))}: sizes adding up to the {len(runs)} runs (RESULT "
                        f"and the --against runs, in order), of at least {least_sitting} runs each where a run is "
                        f"left out (it and its {confirms} re-runs).")
    if sum(sittings) != len(runs):
        raise wrong
    starts = np.cumsum([0, *sittings[:-1]])
    sitting_of = {index: (start, size) for start, size in zip(starts, sittings) for index in range(start, start + size)}
    if min(sitting_of[index][1] for index in left_out) < least_sitting:
        raise wrong
    totals: dict[tuple[str, str], TrialRow] = {}
    tables = []
    for index in left_out:
        document, source = runs[index]
        start, size = sitting_of[index]
        partners = [int(start + (index - start + step) % size) for step in range(1, confirms + 1)]
        baseline = baseline_of_runs([run for other, run in enumerate(runs) if other not in (index, *partners)])
        rows, per_case = calibrate(document, source, baseline, rules, cases=cases, seed=seed, where=LEFT_OUT,
                                   re_runs=[runs[other] for other in partners], sitting=sitting)
        for row in rows:
            if row.trial == "identical code":
                beside = "the next" if confirms == 1 else f"each of the next {confirms}"
                confirmed_by = (f", confirmed beside {beside} (same sitting)" if sitting and confirms
                                else f", confirmed by {beside}" if confirms else "")
                row = dataclasses.replace(row, planted="each run against the baseline of the other runs"
                                          + confirmed_by)
            key = (row.trial, row.planted)
            if key in totals:
                total = totals[key]
                totals[key] = dataclasses.replace(total, comparisons=total.comparisons + row.comparisons,
                                                  flagged=total.flagged + row.flagged,
                                                  elsewhere=total.elsewhere + row.elsewhere)
            else:
                totals[key] = row
        tables.append(per_case.assign(run=Path(source).name))
    per_case = pd.concat(tables, ignore_index=True)
    return list(totals.values()), per_case[["run", *[c for c in per_case.columns if c != "run"]]]


def accuracy_trials(
    document: dict[str, Any], source: str, judge: Judge, cases: int, seed: int,
) -> list[TrialRow]:
    """The planted accuracy losses (module docstring): one row, over up to `cases` accuracy cases."""
    baseline, rules = judge.baseline, judge.rules
    entries = {case_of(entry): entry.get("extra_info") or {} for entry in document["benchmarks"]}
    fields = {}
    for case in baseline["case"]:
        field = next((f for f in ACCURACY_FIELDS if f in baseline and pd.notna(
            baseline.loc[baseline["case"] == case, f].iloc[0])), None)
        if field is not None and case in entries and isinstance(entries[case].get(field), (int, float)):
            fields[case] = field
    picked = draw(sorted(fields), cases, seed)
    if not picked:
        return []
    caught = elsewhere = under_abs = 0
    for case in picked:
        field = fields[case]
        interval = entries[case].get(f"{field}_ci95")
        interval = float(interval) if isinstance(interval, (int, float)) and np.isfinite(interval) else 0.0
        under_abs += int(interval < rules.val_mse_abs)
        loss = ACCURACY_BEYOND * max(interval, rules.val_mse_abs)
        found = judge(document, source, lambda doc, case=case, field=field, loss=loss:
                      grown(doc, case, field, lambda v: v + loss))
        hit = (found["case"] == case) & (found["field"] == field)
        caught += int(hit.any())
        elsewhere += int((~hit).sum())
    planted = (f"loss + {ACCURACY_BEYOND:g} x max(its 95% interval, {rules.val_mse_abs:g}) on one accuracy case "
               f"({under_abs} of {len(picked)} with an interval under {rules.val_mse_abs:g})")
    return [TrialRow("worse accuracy", planted, len(picked), caught, elsewhere, "all flagged")]


SWEEP_FLOORS = (0.10, 0.15, 0.20, 0.30, 0.50, 1.00)
SWEEP_KS = (2.0, 3.0, 4.0, 6.0)


def sweep(
    document: dict[str, Any], source: str, baseline: pd.DataFrame, rules: gate.GateRules,
    others: Sequence[tuple[dict[str, Any], str]], floors: Sequence[float] = SWEEP_FLOORS,
    ks: Sequence[float] = SWEEP_KS,
) -> pd.DataFrame:
    """For each (floor, k): false alarms on the ratios over the identical-code comparisons, and the share of
    (other run, lookup case) pairs on which a slowdown of each size would be flagged: X% slower multiplies
    that run's ratio by 1 + X, and the gate flags it past the case's limit over the baseline.

    The comparisons are the result against each other run and back, as in `identical_trials`.
    """
    pairs = [(frame_of_document(other, path), baseline) for other, path in others]
    pairs += [(frame_of_document(document, source), baseline_of(other, path)) for other, path in others]
    lookups = baseline[baseline["case"].isin(timed_lookup_cases(baseline))].set_index("case")
    fields = {case: gated_ratio(baseline, case) for case in lookups.index}
    noise = pd.Series({case: lookups.at[case, f"{field}{NOISE_SUFFIX}"]
                       if f"{field}{NOISE_SUFFIX}" in lookups else np.nan for case, field in fields.items()},
                      dtype="float64")
    moved = []  # each other run's ratio / the baseline's, per lookup case both hold
    for other, path in others:
        frame = frame_of_document(other, path).drop_duplicates("case", keep="last").set_index("case")
        for case, field in fields.items():
            if case in frame.index and field in frame and pd.notna(frame.at[case, field]):
                moved.append((case, float(frame.at[case, field]) / float(lookups.at[case, field])))
    records = []
    for floor in floors:
        for k in ks:
            limits = dataclasses.replace(rules, ratio_floor_rel=floor, ratio_noise_k=k, suites={})  # every suite
            alarms = sum(
                int((found["field"].isin(RATIO_FIELDS)).sum())
                for found in (regressions(result, base, limits) for result, base in pairs)
            )
            limit = pd.Series(np.where(noise.notna(), np.maximum(floor, k * noise.fillna(0)), rules.gather_ratio_rel),
                              index=noise.index)
            record = {"floor": f"{floor:.0%}", "k": f"{k:g}", "false alarms": f"{alarms} in {len(pairs)}"}
            for x in SLOWDOWNS:
                flagged = [(1 + x) * ratio - 1 > limit[case] for case, ratio in moved]
                record[f"flags +{x:.0%}"] = f"{np.mean(flagged):.0%}" if flagged else "-"
            records.append(record)
    return pd.DataFrame(records)


def markdown_frame(frame: pd.DataFrame) -> list[str]:
    """`frame` as markdown table lines (floats to one decimal)."""
    columns = list(frame.columns)
    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    for record in frame.itertuples(index=False):
        lines.append("| " + " | ".join(f"{v:.1f}" if isinstance(v, float) else str(v) for v in record) + " |")
    return lines


def markdown(
    rows: Sequence[TrialRow], per_case: pd.DataFrame, header: Sequence[str], swept: pd.DataFrame | None = None
) -> str:
    """The calibration tables in markdown: the trials, then the planted lookup cases."""
    lines = [*header, "", "| trial | planted | flagged | alarms on other cases | goal |"]
    lines += ["| --- | --- | --- | --- | --- |"]
    lines += [f"| {r.trial} | {r.planted} | {r.rate} | {r.elsewhere} | {r.goal} |" for r in rows]
    lines += ["", "Planted lookup cases: the gate's limit for each, and its verdict at each slowdown.", ""]
    lines += markdown_frame(per_case)
    if swept is not None and len(swept):
        lines += ["", "Other limits on the same runs: ratio false alarms over the identical-code comparisons, and "
                  "the share of lookup cases a planted slowdown would be flagged on.", ""]
        lines += markdown_frame(swept)
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m analysis.calibrate",
        description="Measure the regression gate's false alarms and its power on planted changes.",
    )
    parser.add_argument("result", metavar="RESULT.json", help="a pytest-benchmark result of membed's suites")
    parser.add_argument("--against", metavar="OTHER.json", action="append", default=[],
                        help="another run of the same code, compared with RESULT both ways (repeatable)")
    parser.add_argument("--baseline", metavar="BASELINE.json",
                        help="gate against this baseline (default: the one --update-baseline writes from RESULT)")
    parser.add_argument("--gate-config", metavar="PYPROJECT.toml", default="pyproject.toml",
                        help=f"the file whose {gate.GATE_TABLE} table holds the limits (default pyproject.toml)")
    parser.add_argument("--leave-one-out", action="store_true",
                        help="gate each run (RESULT and the --against runs) against the baseline of the others")
    parser.add_argument("--confirm", metavar="N", type=int, nargs="?", const=1, default=0,
                        help="with --leave-one-out: as the gate's --confirm N (default 1), a speed regression stands "
                             "only when each of the next N runs, with the same change, repeats it (those runs left "
                             "out of the baseline too)")
    parser.add_argument("--same-sitting", action="store_true",
                        help="with --confirm: the next runs are the baseline code's re-runs of the same sitting, as "
                             "the gate's --same-sitting times it; the changed run is gated again against their ratios")
    parser.add_argument("--sittings", metavar="N,N,...",
                        help="with --same-sitting: the runs, in order, as sittings of these sizes; the re-runs are the "
                             "next runs of the left-out run's sitting (default: all one sitting)")
    parser.add_argument("--hold-out", metavar="K", type=int,
                        help="with --leave-one-out: leave out only the last K runs in turn (runs the limits were not "
                             "chosen on); the others stay in every baseline")
    parser.add_argument("--cases", type=int, default=TRIAL_CASES, help="cases per planted change (default 10)")
    parser.add_argument("--seed", type=int, default=SEED, help="seeds the draw of the planted cases (default 0)")
    parser.add_argument("--out", metavar="FILE.md", help="also write the tables to this markdown file")
    parser.add_argument("--note", default="", help="a line under the header: where the runs came from")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the trials and prints the table; 0 done, 2 unusable input (one line on stderr)."""
    args = build_parser().parse_args(argv)
    try:
        if args.cases < 1:
            raise ResultError(f"--cases must be >= 1, got {args.cases}.")
        if args.confirm < 0:
            raise ResultError(f"--confirm takes a count of re-runs >= 1 (0: none), got {args.confirm}.")
        if args.hold_out is not None and not args.leave_one_out:
            raise ResultError("--hold-out says which runs --leave-one-out leaves out; add --leave-one-out.")
        if gate.read_gate_table(args.gate_config) is None:
            raise ResultError(f"--gate-config {args.gate_config}: no such file or no {gate.GATE_TABLE} table.")
        rules = gate.rules_from_pyproject(args.gate_config)
        document = read_result(args.result)
        others = [(read_result(path), path) for path in args.against]
        if args.sittings is not None and not args.same_sitting:
            raise ResultError("--sittings says which runs share a sitting for --same-sitting; add --same-sitting.")
        sittings = None
        if args.sittings is not None:
            try:
                sittings = [int(size) for size in args.sittings.split(",")]
            except ValueError:
                raise ResultError(f"--sittings {args.sittings!r}: comma-separated run counts, e.g. 5,2.") from None
        if args.same_sitting and not args.confirm:
            raise ResultError("--same-sitting models --confirm's re-run beside the baseline's code; add --confirm.")
        if args.confirm and not args.leave_one_out:
            raise ResultError("--confirm needs --leave-one-out: the re-run is the next of the runs.")
        if args.leave_one_out and args.baseline:
            raise ResultError("--leave-one-out writes each baseline from the other runs; drop --baseline.")
        if args.leave_one_out:
            runs = [(document, args.result), *others]
            baseline = baseline_of_runs(runs)  # for the header's count only
            rows, per_case = leave_one_out(runs, rules, args.cases, args.seed, args.confirm, args.same_sitting,
                                           sittings, args.hold_out)
            swept = None
        else:
            baseline = gate.load_baseline(args.baseline) if args.baseline else baseline_of(document, args.result)
            rows, per_case = calibrate(document, args.result, baseline, rules, others, args.cases, args.seed)
            swept = sweep(document, args.result, baseline, rules, others) if others else None
    except ResultError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    ratios = [field for field in RATIO_FIELDS if field in baseline]
    with_noise_count = sum(int(baseline[f"{field}{NOISE_SUFFIX}"].notna().sum()) for field in ratios
                           if f"{field}{NOISE_SUFFIX}" in baseline)
    if args.leave_one_out:
        paths = [args.result, *args.against]
        names = ", ".join(f"`{Path(path).name}`" for path in paths)
        each = "each"
        if args.hold_out:
            each = f"the last {args.hold_out} ({', '.join(Path(path).name for path in paths[-args.hold_out:])}) each"
        inputs = f"Runs: {names}; {each} gated against the baseline of the others (leave one out)"
        next_runs = "the next one" if args.confirm == 1 else f"the next {args.confirm}"
        if args.confirm:
            inputs = (f"Runs: {names}; {each} gated against the baseline of the others but {next_runs}, which "
                      f"confirm its speed regressions as `--confirm {args.confirm}` would "
                      f"(leave {args.confirm + 1} out)")
        if args.same_sitting:
            inputs = (f"Runs: {names}; {each} gated against the baseline of the others but {next_runs} of its "
                      f"sitting{f' (sittings of {args.sittings} runs, in order)' if args.sittings else ''}; a speed "
                      f"regression stands when the run, gated again against the ratios of each of them (the "
                      f"baseline's code in the same sitting), repeats it, as `--confirm {args.confirm} "
                      f"--same-sitting` would (leave {args.confirm + 1} out)")
    else:
        inputs = f"Result: `{args.result}`; baseline: `{args.baseline or 'written from the result'}`"
    header = [
        "# Gate calibration",
        "",
        f"{inputs} "
        f"({with_noise_count} of {sum(int(baseline[field].notna().sum()) for field in ratios)} ratios with "
        f"stored noise); "
        f"limits: {gate.GATE_TABLE} of `{args.gate_config}` (ratio: max({rules.ratio_floor_rel:.0%}, "
        f"{rules.ratio_noise_k:g} x noise), {rules.gather_ratio_rel:.0%} without noise; a strategy's cases: "
        f"max({rules.group_floor_rel:.0%}, {rules.group_noise_k:g} x their noise)"
        + "".join(f"; {suite}: max({own.ratio_floor_rel:.0%}, {own.ratio_noise_k:g} x noise), a strategy's cases "
                  f"max({own.group_floor_rel:.0%}, {own.group_noise_k:g} x their noise)"
                  + (", each case by its quietest amortised ratio" if own.quietest_ratio else "")
                  for suite, own in rules.suites.items())
        + f"; peaks: > +{rules.peak_mem_rel:.0%} and > +{rules.peak_mem_abs_mib:g} MiB). Seed {args.seed}.",
    ]
    if args.note:
        header += ["", args.note]
    text = markdown(rows, per_case, header, swept)
    print(text, end="")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"Wrote {args.out}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
