"""The rules that skip a case of the grid, and the size of the bare-gather reference table.

A suite declares the rules its cases pass (`grid.Suite.rules`); `admit`
applies them to a case at its size. First the strategy must accept its
options at that size (else `invalid combination: ...`); then each rule may
give a reason to skip. A case skipped by a rule keeps its sizes from the
cost formulas, marked as a projection, so the report can draw the analytic
line beyond what fits.

Rules are small objects with one method, `reason(case, vocab_size, sizes)`:

    SublinearAbove(limit): above `limit` ids only strategies whose bytes grow
        clearly slower than V run (read from the cost formula, see `growth_ratio`).
    FitsInMemory(): the estimated peak must fit in the memory available now.
    Trains(): a case of an optimizer other than the default needs trainable
        weights (an int8 table has none, so nothing differs from its default case).

TensorFlow-free (strategies are costed from their formulas, nothing is
built), so `bench/gpu_lookup.py` applies the same rules under JAX.

Example:
    >>> from bench import grid
    >>> case = grid.Case("lookup", "full", "synthetic-zipf", 10**8, 64, 4096)
    >>> admit(case, 10**8, rules=SIZE_RULES).reason.startswith("full is not sublinear in V")
    True
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any, Protocol

from membed import measure, strategies
from membed.plan.constants import DEFAULT_OPTIMIZER
from membed.plan.layout import Layout

if TYPE_CHECKING:
    from bench.grid import Case

# Above this size only strategies whose bytes grow at most like sqrt(V) run.
LINEAR_MAX_VOCAB = 10**7
# Sublinear: bytes(SUBLINEAR_LARGE) <= SUBLINEAR_MAX_RATIO * bytes(SUBLINEAR_SMALL) by the cost formula.
# Over the decade 1e7 -> 1e8 a table that grows with V grows 10x (mixed_dim 9.8x), qr 3.2x
# (sqrt(V)), a capped hash table about 1x; 5x (growth like V**0.7) splits the two.
SUBLINEAR_SMALL, SUBLINEAR_LARGE, SUBLINEAR_MAX_RATIO = 10**7, 10**8, 5.0


def growth_ratio(strategy: str, dim: int) -> float | None:
    """bytes (parameters + index, default options) at 1e8 ids over bytes at 1e7 ids; None when invalid.

    Example:
        >>> round(growth_ratio("qr", 64), 2)
        3.16
    """
    try:
        small = strategies.cost(strategy, SUBLINEAR_SMALL, dim)
        large = strategies.cost(strategy, SUBLINEAR_LARGE, dim)
    except ValueError:
        return None
    return (large.param_bytes + large.index_bytes) / max(1, small.param_bytes + small.index_bytes)


def is_sublinear(strategy: str, dim: int) -> bool:
    """Whether the strategy's memory grows clearly slower than V at the top of the range.

    Decided from the cost formula with default options: bytes at 1e8 ids at
    most 5 x the bytes at 1e7 ids (a table that grows with V grows 10 x).
    """
    ratio = growth_ratio(strategy, dim)
    return ratio is not None and ratio <= SUBLINEAR_MAX_RATIO


def size_skip_reason(strategy: str, vocab_size: int, dim: int, limit: int = LINEAR_MAX_VOCAB) -> str | None:
    """Why `strategy` does not run at `vocab_size` ids (memory that grows with V, above `limit`), or None."""
    if vocab_size <= limit or is_sublinear(strategy, dim):
        return None
    ratio = growth_ratio(strategy, dim)
    growth = "cannot be costed at 1e7 or 1e8 ids" if ratio is None else (
        f"bytes at 1e8 ids / bytes at 1e7 ids = {ratio:.3g} > {SUBLINEAR_MAX_RATIO:g} with default options")
    return (
        f"{strategy} is not sublinear in V ({growth}); sizes above {limit:.0e} run only for "
        "strategies whose memory is sublinear in V"
    )


def gather_rows(vocab_size: int, dim: int) -> int:
    """Rows of the bare-gather reference table: V, or the largest power of ten below it that fits in memory."""
    rows = int(vocab_size)
    while rows > 1 and measure.memory_shortfall(int(measure.SAFETY_FACTOR * 4 * rows * dim)) is not None:
        rows = 10 ** (math.ceil(math.log10(rows)) - 1)
    return rows


class Rule(Protocol):
    """A reason a case does not run at its size, given its sizes from the cost formula; None: it runs."""

    def reason(self, case: Case, vocab_size: int, sizes: measure.CaseSizes) -> str | None: ...


@dataclasses.dataclass(frozen=True)
class SublinearAbove:
    """Above `limit` ids, only strategies whose memory is sublinear in V run (`size_skip_reason`)."""

    limit: int = LINEAR_MAX_VOCAB

    def reason(self, case: Case, vocab_size: int, sizes: measure.CaseSizes) -> str | None:
        return size_skip_reason(case.strategy, vocab_size, case.dim, self.limit)


@dataclasses.dataclass(frozen=True)
class FitsInMemory:
    """The estimated peak (training state and activations, `measure.estimated_peak_bytes`) fits in free memory."""

    def reason(self, case: Case, vocab_size: int, sizes: measure.CaseSizes) -> str | None:
        shortfall = measure.memory_shortfall(
            measure.estimated_peak_bytes(sizes.train_state_bytes, case.batch_size, case.dim))
        return None if shortfall is None else f"too big for this machine: {shortfall}"


@dataclasses.dataclass(frozen=True)
class Trains:
    """A case of an optimizer other than the default runs only where the layer has trainable weights.

    The optimizer changes the train phase alone, and a layer without trainable
    weights (int8 tables) has none: its default-optimizer case already
    measures what there is. Read from the cost formula at default options
    (`membed.plan.Layout.from_cost`). Its skip is no projection: nothing about
    the case's size stopped it.
    """

    projects = False

    def reason(self, case: Case, vocab_size: int, sizes: measure.CaseSizes) -> str | None:
        if case.optimizer in (None, DEFAULT_OPTIMIZER):
            return None
        try:
            cost = strategies.cost(case.strategy, vocab_size, case.dim)
        except ValueError:
            return None  # the strategy's own rejection is `admit`'s reason
        if any(weight.trainable for weight in Layout.from_cost(cost, vocab_size, case.dim).weights):
            return None
        return (f"invalid combination: {case.strategy} has no trainable weights ({cost.storage} tables): "
                f"no train step for {case.optimizer} to take")


# The rules of the suites that build one strategy layer at a size of the grid.
SIZE_RULES: tuple[Rule, ...] = (SublinearAbove(), FitsInMemory())
# ... and train it with the case's optimizer.
TRAIN_RULES: tuple[Rule, ...] = (*SIZE_RULES, Trains())


@dataclasses.dataclass(frozen=True)
class Admission:
    """What the rules decided about a case at its size.

    Attributes:
        options: the strategy's resolved options (JSON values), None when it rejects them.
        sizes: sizes from the cost formula, None when the strategy rejects its options.
        reason: why the case skips, or None when it runs.
        projected: the case skips for its size but its sizes are known (from the formulas).
        projects: whether the rule that skipped it says something about its size
            (a rule's `projects`, true unless it says otherwise).
    """

    options: dict[str, Any] | None
    sizes: measure.CaseSizes | None
    reason: str | None
    projects: bool = True

    @property
    def projected(self) -> bool:
        return self.reason is not None and self.sizes is not None and self.projects


def admit(case: Case, vocab_size: int, options: dict | None = None, rules: tuple[Rule, ...] = SIZE_RULES
          ) -> Admission:
    """Costs `case` at `vocab_size` ids with `options` and applies `rules` in order.

    Args:
        case: the grid's case (its strategy, dim and batch size are read).
        vocab_size: the number of ids (a MovieLens case's is known once its data is loaded).
        options: constructor options beyond the strategy's defaults.
        rules: the suite's rules (`grid.Suite.rules`).
    """
    try:
        resolved = strategies.registry.resolve_options(case.strategy, options or {})
        sizes = measure.case_sizes(case.strategy, vocab_size, case.dim, resolved)
    except ValueError as error:
        return Admission(None, None, f"invalid combination: {error}")
    for rule in rules:
        reason = rule.reason(case, vocab_size, sizes)
        if reason is not None:
            return Admission(measure.jsonable(resolved), sizes, reason, getattr(rule, "projects", True))
    return Admission(measure.jsonable(resolved), sizes, None)
