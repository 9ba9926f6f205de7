"""The gate's limits and its rules: one small rule object per gated field, applied to a deltas frame.

`GateRules` holds the limits (the `[tool.membed.gate]` table of a pyproject.toml,
see `analysis.gate`). `rules_for(limits)` turns them into rule objects, one per
field that `analysis.schema` gives a gate treatment:

- `exact`: `DifferenceRule` on params (`params_growth`) or on bytes (`bytes_growth`);
- `peak`, `peak_rss`: `PeakRule`, growth past `peak_mem_rel` AND past
  `peak_mem_abs_mib` (allocator peaks) or `peak_rss_abs_mib` (peak RSS);
- `ratio`: `NoiseRule`, growth past max(`ratio_floor_rel`, `ratio_noise_k` x the
  case's noise) of the baseline, the noise being the one `analysis.baseline`
  stored with the case (a relative 95% half-width of its median ratio); a
  baseline case without noise (a file written before noise was stored) falls
  back to `gather_ratio_rel`;
- `accuracy`: `DifferenceRule` past `val_mse_abs`.

With `quietest_ratio`, a case's speed is gated by one ratio, per case and in
its group: of its amortised ratios, the one the baseline stored the least
noise for (`quietest_ratios`). A change to the case's code moves its amortised
ratios alike; their yardsticks (the bare gather, a dense MLP) move apart with
the host's load. Its per-call ratio, mostly TensorFlow's call floor, is gated
only where there is no amortised one.

And one `GroupRule` per `ratio` field: a strategy's cases of one suite (and
optimizer) taken together. Their ratios' geometric mean fails past
max(`group_floor_rel`, `group_noise_k` x the group's noise): its cases' noise
over the square root of their count (independent cases average theirs down),
or, where the baseline was written from several runs, the group's own spread
across them if larger (a run's drift moves all its cases). A change to a
strategy's code moves every one of its cases; one case of a busy machine's
run moves alone.

A rule reads the long frame of `analysis.compare.deltas` (case, field,
baseline, result, delta, delta %) and returns its findings: growth past the
allowed change is a regression, the mirror image an improvement.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis import schema
from analysis.load import ResultError

FINDING_COLUMNS = ["case", "rule", "field", "baseline", "result", "delta", "delta %", "limit"]


@dataclass(frozen=True)
class GateRules:
    """The gate's limits; see the module docstring for what each one means.

    Args:
        params_growth: parameters a case may gain (absolute).
        bytes_growth: bytes param_bytes or index_bytes may gain (absolute).
        peak_mem_rel: relative growth of a peak that, together with the
            absolute one, fails.
        peak_mem_abs_mib: absolute growth of an allocator peak, in MiB.
        peak_rss_abs_mib: absolute growth of a peak RSS, in MiB.
        gather_ratio_rel: relative growth of a ratio that fails where the
            baseline stored no noise for the case.
        ratio_floor_rel: the least relative growth of a ratio that fails, however
            quiet the case.
        ratio_noise_k: a ratio fails past this many times its case's stored noise
            (above the floor).
        group_floor_rel: the least relative growth of a group's geometric mean
            ratio (`GroupRule`) that fails.
        group_noise_k: a group's geometric mean fails past this many times the
            group's noise (above its floor).
        val_mse_abs: absolute growth of the final val MSE that fails.
        missing_fails: whether a baseline case missing or failed in the result fails.
        quietest_ratio: gate each case's speed only by its quietest amortised ratio (`quietest_ratios`), not by
            every one.
        suites: suite name -> the limits of that suite's ratios, where they differ (a sub-table
            `[tool.membed.gate.lookup]` of the `SUITE_KEYS`); `for_suite` reads them.

    Example:
        >>> GateRules.from_mapping({"val_mse_abs": 0.02}, "flags").val_mse_abs
        0.02
        >>> rules = GateRules.from_mapping({"ratio_floor_rel": 0.4, "lookup": {"ratio_floor_rel": 0.2}}, "flags")
        >>> rules.for_suite("lookup").ratio_floor_rel, rules.for_suite("train_step").ratio_floor_rel
        (0.2, 0.4)
    """

    params_growth: float = 0.0
    bytes_growth: float = 0.0
    peak_mem_rel: float = 0.10
    peak_mem_abs_mib: float = 1.0
    peak_rss_abs_mib: float = 1.0
    gather_ratio_rel: float = 0.30
    ratio_floor_rel: float = 0.10
    ratio_noise_k: float = 3.0
    group_floor_rel: float = 0.10
    group_noise_k: float = 3.0
    val_mse_abs: float = 0.01
    missing_fails: bool = True
    quietest_ratio: bool = False
    suites: Mapping[str, GateRules] = dataclasses.field(default_factory=dict)

    def for_suite(self, suite: str) -> GateRules:
        """The limits of `suite`'s cases: its own where `suites` names it, else these."""
        return self.suites.get(suite, self)

    def describe(self) -> str:
        """The limits as `key=value` pairs, then each suite's own (`lookup: ratio_floor_rel=0.2, ...`).

        Example:
            >>> GateRules(suites={"lookup": GateRules(ratio_floor_rel=0.2)}).describe().split("; ")[1]
            'lookup: ratio_floor_rel=0.2'
        """
        def pair(key: str, value: Any) -> str:
            return f"{key}={str(value).lower()}" if isinstance(value, bool) else f"{key}={value:g}"

        text = ", ".join(pair(f.name, getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "suites")
        for suite, own in self.suites.items():
            changed = [pair(key, getattr(own, key)) for key in SUITE_KEYS if getattr(own, key) != getattr(self, key)]
            text += f"; {suite}: {', '.join(changed) or 'as above'}"
        return text

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], where: str, base: GateRules | None = None) -> GateRules:
        """`base` (default: the defaults) with `values` applied; one-line `ResultError` on a bad key or value.

        A value that is a table, under a suite's name, holds that suite's own `SUITE_KEYS`; the
        suite takes every other limit from the top-level keys.
        """
        base = base or cls()
        fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "suites"}
        updates: dict[str, Any] = {}
        tables = {key: value for key, value in values.items() if isinstance(value, Mapping)}
        for key, value in values.items():
            if key in tables:
                continue
            if key not in fields:
                raise ResultError(f"{where}: unknown gate key {key!r}. Valid keys: {', '.join(fields)}, "
                                  f"or a table of a suite ({', '.join(schema.SUITES)}).")
            if key in BOOL_KEYS:
                if not isinstance(value, bool):
                    raise ResultError(f"{where}: `{key}` must be true or false, got {value!r}.")
            elif isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ResultError(f"{where}: `{key}` must be a number >= 0, got {value!r}.")
            else:
                value = float(value)
            updates[key] = value
        rules = dataclasses.replace(base, **updates)
        suites = dict(rules.suites)
        for suite, table in tables.items():
            if suite not in schema.SUITES:
                raise ResultError(f"{where}: unknown gate key {suite!r}: a table's name must be a suite's "
                                  f"({', '.join(schema.SUITES)}).")
            wrong = sorted(set(table) - set(SUITE_KEYS))
            if wrong:
                raise ResultError(f"{where}: [{suite}]: unknown key {wrong[0]!r}; a suite's table holds "
                                  f"{', '.join(SUITE_KEYS)}.")
            own = dataclasses.replace(rules, suites={})
            suites[suite] = cls.from_mapping(table, f"{where} [{suite}]", own)
        return dataclasses.replace(rules, suites=suites)


# The limits a suite's table (`[tool.membed.gate.lookup]`) may set for its own ratios.
SUITE_KEYS = ("gather_ratio_rel", "ratio_floor_rel", "ratio_noise_k", "group_floor_rel", "group_noise_k",
              "quietest_ratio")
BOOL_KEYS = ("missing_fails", "quietest_ratio")
RATIO_FIELDS = tuple(field.name for field in schema.FIELDS if field.gate == "ratio")
# Ratios of one call: TensorFlow's per-call floor is most of the time they divide, so a change in the work
# moves them by a fraction of itself (bench/README.md). `quietest_ratios` keeps them for a case without an
# amortised ratio only.
PER_CALL_RATIOS = ("gather_ratio",)


@dataclass(frozen=True)
class Rule:
    """A limit on how much one field may grow from the baseline; subclasses say how much.

    Args:
        name: the limit's key in `GateRules`, shown in a finding's `rule` column.
        field: the gated field.
    """

    name: str
    field: str

    def allowed(self, baseline: pd.Series) -> pd.Series:
        """The growth allowed at each baseline value."""
        raise NotImplementedError

    @property
    def limit(self) -> str:
        """How a regression's limit reads, e.g. `> +10% and > +16 MiB`."""
        raise NotImplementedError

    def row_limits(self, rows: pd.DataFrame) -> tuple[pd.Series, pd.Series, pd.Series]:
        """(allowed growth, limit text, rule name) for each row of `rows`; one limit for all by default.

        A rule whose limit differs case by case (`NoiseRule`) overrides this.
        """
        allowed = self.allowed(rows["baseline"])
        return allowed, pd.Series(self.limit, index=rows.index), pd.Series(self.name, index=rows.index)

    def findings(self, deltas: pd.DataFrame) -> pd.DataFrame:
        """The rows of `deltas` (of any field) where this rule's field moved past the limit, with `kind`.

        A change past the limit upward is a `regression`, downward an
        `improvement`; a row missing either side is neither.
        """
        rows = deltas[deltas["field"] == self.field]
        allowed, limits, names = self.row_limits(rows)
        parts = []
        for kind, hit in (("regression", rows["delta"] > allowed), ("improvement", -rows["delta"] > allowed)):
            if hit.any():
                limit = limits[hit] if kind == "regression" else limits[hit].str.replace("> +", "< -", regex=False)
                parts.append(rows[hit].assign(rule=names[hit], limit=limit, kind=kind))
        if not parts:
            return pd.DataFrame(columns=[*FINDING_COLUMNS, "kind"])
        return pd.concat(parts).reindex(columns=[*FINDING_COLUMNS, "kind"])


@dataclass(frozen=True)
class DifferenceRule(Rule):
    """Fails past an absolute growth: `threshold` (in `unit`, named in the limit when given)."""

    threshold: float = 0.0
    unit: str = ""

    def allowed(self, baseline: pd.Series) -> pd.Series:
        return pd.Series(self.threshold, index=baseline.index)

    @property
    def limit(self) -> str:
        return f"> +{self.threshold:g}" + (f" {self.unit}" if self.unit else "")


@dataclass(frozen=True)
class PercentageRule(Rule):
    """Fails past a growth of `fraction` of the baseline's magnitude."""

    fraction: float = 0.0

    def allowed(self, baseline: pd.Series) -> pd.Series:
        return baseline.abs() * self.fraction

    @property
    def limit(self) -> str:
        return f"> +{self.fraction:.0%}"


@dataclass(frozen=True)
class NoiseRule(PercentageRule):
    """Fails past max(`floor`, `k` x noise) of the baseline, the noise being each case's own.

    The deltas frame's `noise` column holds the case's relative noise as the
    baseline stored it (`analysis.baseline.with_noise`); where it is missing
    (an older baseline, a case without rounds), `fraction` is the limit, as for
    a `PercentageRule`. A finding's `rule` says which limit was in force:
    `ratio_noise_k`, or this rule's `name`.

    Example:
        >>> rule = NoiseRule("gather_ratio_rel", "gather_ratio", fraction=1.0, floor=0.1, k=3.0)
        >>> rows = pd.DataFrame({"baseline": [2.0, 2.0], "noise": [0.05, float("nan")]})
        >>> [round(v, 6) for v in rule.row_limits(rows)[0]]
        [0.3, 2.0]
    """

    floor: float = 0.0
    k: float = 0.0
    noise_name: str = "ratio_noise_k"

    def row_limits(self, rows: pd.DataFrame) -> tuple[pd.Series, pd.Series, pd.Series]:
        fallback, limits, names = super().row_limits(rows)
        noise = rows["noise"] if "noise" in rows else pd.Series(np.nan, index=rows.index)
        noise = pd.to_numeric(noise, errors="coerce").astype("float64")
        has_noise = noise.notna()
        relative = np.maximum(self.floor, self.k * noise)
        allowed = fallback.where(~has_noise, rows["baseline"].abs() * relative)
        for index in rows.index[has_noise]:
            limits[index] = (
                f"> +{relative[index]:.1%} (max of {self.floor:.0%} and {self.k:g} x noise {noise[index]:.1%})"
            )
            names[index] = self.noise_name
        return allowed, limits, names


def group_of(case: str) -> str:
    """The group a case's speed is gated in: its suite, strategy and variants, any dataset and size.

    Example:
        >>> group_of("train_step/qr/synthetic-zipf/1000/64/rowwise_adagrad")
        'train_step/qr/*/rowwise_adagrad'
        >>> group_of("lookup/qr/ml-100k/943/64")
        'lookup/qr/*'
    """
    parts = case.split("/")
    return "/".join([*parts[:2], "*", *parts[5:]])


@dataclass(frozen=True)
class GroupRule(Rule):
    """Fails when a group's (`group_of`) cases together grew past max(`floor`, `k` x the group's noise).

    Over the cases of a group that hold the field on both sides (two at least),
    the finding compares the geometric means of the baseline's and the result's
    values. The group's noise is the root mean square of its cases' noise over
    the square root of their count, or the group's noise across the baseline's
    runs (the deltas' `group_noise`) where that is larger; where neither is
    known, `floor` is the limit.
    A finding's `case` is the group (`lookup/qr/*`), its rule `group_floor_rel`.
    """

    floor: float = 0.0
    k: float = 0.0

    def findings(self, deltas: pd.DataFrame) -> pd.DataFrame:
        rows = deltas[(deltas["field"] == self.field) & deltas["baseline"].notna() & deltas["result"].notna()]
        rows = rows[(rows["baseline"] > 0) & (rows["result"] > 0)]
        records = []
        for group, members in rows.groupby(rows["case"].map(group_of), sort=True):
            if len(members) < 2:
                continue
            noise = pd.to_numeric(members.get("noise", pd.Series(np.nan, index=members.index)), errors="coerce")
            noise = noise.dropna()
            spread = float(np.sqrt((noise**2).mean() / len(noise))) if len(noise) else 0.0
            across = pd.to_numeric(members.get("group_noise", pd.Series(np.nan, index=members.index)),
                                   errors="coerce").max()
            spread = max(spread, float(across)) if pd.notna(across) else spread
            limit = max(self.floor, self.k * spread)
            before = float(np.exp(np.log(members["baseline"].astype(float)).mean()))
            after = float(np.exp(np.log(members["result"].astype(float)).mean()))
            change = after / before - 1
            if abs(change) <= limit:
                continue
            records.append({
                "case": group, "rule": self.name, "field": self.field, "baseline": before, "result": after,
                "delta": after - before, "delta %": 100 * change,
                "limit": f"> +{limit:.1%} (geometric mean of {len(members)} cases; max of {self.floor:.0%} and "
                         f"{self.k:g} x group noise {spread:.1%})",
                "kind": "regression" if change > 0 else "improvement",
            })
        if not records:
            return pd.DataFrame(columns=[*FINDING_COLUMNS, "kind"])
        found = pd.DataFrame(records)
        improved = found["kind"] == "improvement"
        found.loc[improved, "limit"] = found.loc[improved, "limit"].str.replace("> +", "< -", regex=False)
        return found.reindex(columns=[*FINDING_COLUMNS, "kind"])


@dataclass(frozen=True)
class PeakRule(Rule):
    """Fails past both a relative growth (`fraction`) and an absolute one (`floor_mib` MiB).

    Allocator noise on tiny tables moves a peak by a large fraction of a few
    MiB; both limits must be passed, so the larger of the two is the one in force.
    """

    fraction: float = 0.0
    floor_mib: float = 0.0

    def allowed(self, baseline: pd.Series) -> pd.Series:
        return np.maximum(baseline.abs() * self.fraction, self.floor_mib * schema.MIB)

    @property
    def limit(self) -> str:
        return f"> +{self.fraction:.0%} and > +{self.floor_mib:g} MiB"


def rule_for(field: schema.Field, limits: GateRules) -> Rule:
    """The rule of one field with a gate treatment, under `limits`.

    Raises:
        ValueError: the field has no treatment, or an `exact` field counts neither params nor bytes.

    Example:
        >>> rule_for(schema.FIELD["params"], GateRules()).limit
        '> +0 params'
    """
    treatment = field.gate
    if treatment == "exact":
        growth = {"params": "params_growth", "bytes": "bytes_growth"}.get(field.unit)
        if growth is None:
            raise ValueError(f"field {field.name!r}: `exact` gates a unit of params or bytes, not {field.unit!r}.")
        return DifferenceRule(growth, field.name, threshold=getattr(limits, growth), unit=field.unit)
    if treatment == "peak":
        return PeakRule("peak_mem", field.name, fraction=limits.peak_mem_rel, floor_mib=limits.peak_mem_abs_mib)
    if treatment == "peak_rss":
        return PeakRule("peak_rss", field.name, fraction=limits.peak_mem_rel, floor_mib=limits.peak_rss_abs_mib)
    if treatment == "ratio":
        return NoiseRule(
            "gather_ratio_rel",
            field.name,
            fraction=limits.gather_ratio_rel,
            floor=limits.ratio_floor_rel,
            k=limits.ratio_noise_k,
        )
    if treatment == "accuracy":
        return DifferenceRule("val_mse_abs", field.name, threshold=limits.val_mse_abs)
    valid = ", ".join(schema.GATE_TREATMENTS)
    raise ValueError(f"field {field.name!r}: invalid gate treatment {treatment!r}. Use one of: {valid}.")


def rules_for(limits: GateRules, fields: Sequence[schema.Field] = schema.FIELDS) -> list[Rule]:
    """One rule per field of `fields` that has a gate treatment, in the fields' order; then a `GroupRule` per
    `ratio` field."""
    rules = [rule_for(field, limits) for field in fields if field.gate is not None]
    return rules + [GroupRule("group_floor_rel", field.name, floor=limits.group_floor_rel, k=limits.group_noise_k)
                    for field in fields if field.gate == "ratio"]


def suite_of(case: str) -> str:
    """The suite part of a case id or group (`lookup/qr/*` -> `lookup`)."""
    return case.split("/", 1)[0]


def apply_limits(deltas: pd.DataFrame, limits: GateRules) -> pd.DataFrame:
    """Every finding on `deltas` under `limits`, each suite's cases under `limits.for_suite` of it."""
    def apply(rows: pd.DataFrame, own: GateRules) -> pd.DataFrame:
        return apply_rules(quietest_ratios(rows) if own.quietest_ratio else rows, rules_for(own))

    if not limits.suites:
        return apply(deltas, limits)
    suites = deltas["case"].map(suite_of)
    return by_case(apply(deltas[suites == suite], limits.for_suite(suite)) for suite in suites.unique())


def quietest_ratios(deltas: pd.DataFrame) -> pd.DataFrame:
    """`deltas` with one ratio row per case: of its amortised ratios the one whose baseline noise is least.

    A per-call ratio (`PER_CALL_RATIOS`) is kept only for a case with no
    amortised ratio: it may store less noise, but a slower lookup moves it by
    only the share of the call that is the lookup's work. Rows of other fields
    stay. Of ratios with equal (or no) noise the later field of the schema's
    order is kept. The choice reads the baseline's noise only, never the result.

    Example:
        >>> long = pd.DataFrame({"case": ["c", "c", "c", "c"], "field": ["gather_ratio", "amortised_gather_ratio",
        ...                      "amortised_compute_ratio", "params"], "noise": [0.01, 0.05, 0.03, float("nan")]})
        >>> quietest_ratios(long)["field"].tolist()
        ['amortised_compute_ratio', 'params']
    """
    ratio = deltas["field"].isin(RATIO_FIELDS)
    if not ratio.any():
        return deltas
    ratios = deltas[ratio]
    noise = pd.to_numeric(ratios["noise"], errors="coerce") if "noise" in ratios else pd.Series(np.nan, ratios.index)
    order = ratios["field"].map(RATIO_FIELDS.index)
    ranked = pd.DataFrame({"case": ratios["case"], "per_call": ratios["field"].isin(PER_CALL_RATIOS),
                           "noise": noise.fillna(np.inf), "later": -order})
    keep = ranked.sort_values(["case", "per_call", "noise", "later"], kind="stable").groupby("case").head(1).index
    return deltas[~ratio | deltas.index.isin(keep)]


def apply_rules(deltas: pd.DataFrame, rules: Sequence[Rule]) -> pd.DataFrame:
    """Every rule's findings on `deltas`, by case (stable: within a case, in the rules' order), with `kind`."""
    return by_case(rule.findings(deltas) for rule in rules)


def by_case(parts: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """The findings of `parts` in one frame, by case (stable: within a case, in the parts' order)."""
    parts = [part for part in parts if len(part)]
    if not parts:
        return pd.DataFrame(columns=[*FINDING_COLUMNS, "kind"])
    return pd.concat(parts, ignore_index=True).sort_values(["case"], kind="stable").reset_index(drop=True)
