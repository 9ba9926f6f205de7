"""The benchmark grid, declared once: profiles, vocabularies, sizes, and the rules that skip a case.

Every suite takes its cases from `cases(suite, selection)`: registered
strategies x vocabularies x sizes x dims. The strategy axis is
`membed.strategies.names()` read at collection time, so a new strategy file
shows up in every suite with no edit here. A combination that cannot run
(an option the strategy rejects at that size, memory that grows with V at a
size meant for sublinear strategies, too little memory, a dataset that is
not there) is still a case: it skips at run time with the reason, and the
run's `not_run` list keeps it.

Vocabularies:
    synthetic-zipf, synthetic-uniform: id streams of any size
        (`membed.data.zipf_ids`, `uniform_ids`), used at every size of the
        profile by the memory, lookup and train_step suites.
    synthetic-planted: ratings from a planted low-rank model
        (`membed.data.planted_ratings`), for the accuracy suite, where the
        noise floor is known.
    ml-100k, ml-1m, ...: MovieLens; the memory, lookup and train_step suites
        take its users and its items as two vocabularies, the accuracy suite
        trains the rating model on it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable

from membed import measure, strategies
from membed.data import MOVIELENS

SCHEMA_VERSION = 1
SUITES = ("memory", "gather", "lookup", "train_step", "accuracy", "blocks", "pipeline")
# Suites that must hold a case for every selected strategy (gather is the bare-op reference).
STRATEGY_SUITES = ("memory", "lookup", "train_step", "accuracy")
SYNTHETIC_STREAMS = measure.SYNTHETIC_VOCABS
PLANTED = "synthetic-planted"
VOCABS = (*SYNTHETIC_STREAMS, PLANTED, *MOVIELENS)
SIDES = measure.SIDES
# Above this size only strategies whose bytes grow at most like sqrt(V) run.
LINEAR_MAX_VOCAB = 10**7
# Sublinear: bytes(SUBLINEAR_LARGE) <= SUBLINEAR_MAX_RATIO * bytes(SUBLINEAR_SMALL) by the cost formula.
# Over the decade 1e7 -> 1e8 a table that grows with V grows 10x (mixed_dim 9.8x), qr 3.2x
# (sqrt(V)), a capped hash table about 1x; 5x (growth like V**0.7) splits the two.
SUBLINEAR_SMALL, SUBLINEAR_LARGE, SUBLINEAR_MAX_RATIO = 10**7, 10**8, 5.0
# The example's recipe.
ACCURACY_BATCH_SIZE = 128
ACCURACY_LEARNING_RATE = 1e-3
ACCURACY_DIM = 64
TRAIN_FRACTION = 0.85
SEED = 42
# The blocks suite: mixed_dim against the example's masked layer as blocks are added,
# on the example's 3,706 movies.
BLOCK_COUNTS = (3, 8, 16)
BLOCKS_VOCAB_SIZE = 3706
BLOCK_STRATEGIES = ("mixed_dim", "example_md")
# The pipeline suite: one epoch of the example's memory-efficient model, three ways.
PIPELINES = ("example-pipeline", "example_qr+example_md", "qr+mixed_dim")


@dataclasses.dataclass(frozen=True)
class Profile:
    """One benchmark profile: which sizes and vocabularies, and how long to time.

    Attributes:
        vocab_sizes: synthetic vocabulary sizes, every strategy.
        sublinear_vocab_sizes: more sizes, for strategies whose memory is sublinear in V.
        dims: base dimensions of the memory, lookup and train_step suites.
        vocabs: vocabularies (see the module docstring).
        suite_vocabs: narrower vocabularies for some suites. Quick keeps the
            memory and train_step suites to synthetic-zipf and MovieLens (the
            id distribution hardly moves memory, and the lookup suite shows
            what it does to speed) and trains the accuracy suite on ml-100k
            only (a fit costs seconds of fixed overhead). `--datasets`
            replaces both `vocabs` and these.
        batch_size: ids per lookup and per training step.
        rounds: timed rounds per case, each on a fresh batch.
        min_rounds: the fewest rounds a slow case is cut down to.
        round_budget_s: seconds of timed rounds a case aims at (slow steps get fewer rounds).
        warmup_rounds: untimed rounds first (the first call traces the tf.function).
        accuracy_epochs: epochs of the rating model.
        accuracy_presets: presets trained per strategy, by name (None: every preset of
            `membed.presets`); a strategy with none of them trains its first preset.
        planted: `planted_ratings` arguments of the synthetic-planted vocabulary.
        pipeline_rounds: fits per case of the pipeline suite (the median is compared).
    """

    name: str
    vocab_sizes: tuple[int, ...]
    sublinear_vocab_sizes: tuple[int, ...]
    dims: tuple[int, ...]
    vocabs: tuple[str, ...]
    suite_vocabs: dict[str, tuple[str, ...]]
    batch_size: int
    rounds: int
    min_rounds: int
    round_budget_s: float
    warmup_rounds: int
    accuracy_epochs: int
    accuracy_presets: tuple[str, ...] | None
    planted: dict[str, int]
    pipeline_rounds: int = 3


PROFILES: dict[str, Profile] = {
    # What CI runs: about 5 minutes on 2 cores.
    "quick": Profile(
        name="quick",
        vocab_sizes=(10**3, 10**5, 10**6),
        sublinear_vocab_sizes=(),
        dims=(64,),
        vocabs=(*SYNTHETIC_STREAMS, PLANTED, "ml-100k"),
        suite_vocabs={"memory": ("synthetic-zipf", "ml-100k"), "train_step": ("synthetic-zipf", "ml-100k"),
                      "accuracy": ("ml-100k",)},
        batch_size=4096,
        rounds=20,
        min_rounds=3,
        round_budget_s=0.5,
        warmup_rounds=1,
        accuracy_epochs=1,
        accuracy_presets=("baseline", "example", "20x"),
        planted={"num_users": 2000, "num_items": 1000, "num_ratings": 20_000},
        pipeline_rounds=2,
    ),
    # The whole grid.
    "full": Profile(
        name="full",
        vocab_sizes=(10**3, 10**4, 10**5, 10**6, 10**7),
        sublinear_vocab_sizes=(10**8,),
        dims=(64,),
        vocabs=(*SYNTHETIC_STREAMS, PLANTED, *MOVIELENS),
        suite_vocabs={},
        batch_size=4096,
        rounds=50,
        min_rounds=3,
        round_budget_s=3.0,
        warmup_rounds=2,
        accuracy_epochs=3,
        accuracy_presets=None,
        planted={"num_users": 6040, "num_items": 3706, "num_ratings": 100_000},
    ),
}


@dataclasses.dataclass(frozen=True)
class Selection:
    """What one run covers: a profile narrowed by the command-line options."""

    profile: Profile
    strategies: tuple[str, ...]
    vocab_sizes: tuple[int, ...]
    vocabs: tuple[str, ...]
    allow_download: bool = False
    measure_timeout_s: float = measure.DEFAULT_TIMEOUT_S
    suite_vocabs: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)

    def vocabs_of(self, suite: str) -> tuple[str, ...]:
        return self.suite_vocabs.get(suite, self.vocabs)


@dataclasses.dataclass(frozen=True)
class Case:
    """One point of the grid.

    `vocab_size` is None for MovieLens until its data is loaded (the size is
    the data's). Accuracy cases name a (user, item) pair and a preset.
    """

    suite: str
    strategy: str
    vocab: str
    vocab_size: int | None
    dim: int
    batch_size: int
    side: str | None = None
    preset: str | None = None
    user_strategy: str | None = None
    item_strategy: str | None = None

    @property
    def covers(self) -> tuple[str, ...]:
        """The registered strategies this case exercises."""
        if self.suite == "accuracy":
            return tuple(dict.fromkeys((self.user_strategy, self.item_strategy)))
        return () if self.suite == "gather" else (self.strategy,)

    @property
    def test_id(self) -> str:
        if self.suite in ("accuracy", "pipeline"):
            return f"{self.strategy}-{self.vocab}-{self.preset}"
        size = self.side if self.vocab_size is None else str(self.vocab_size)
        variant = f"-{self.preset}" if self.preset else ""
        return f"{self.strategy}-{self.vocab}-{size}-{self.dim}{variant}"

    def case_id(self, vocab_size: int | None = None) -> str:
        """The schema's stable id: `suite/strategy/vocab/vocab_size/dim[/variant]`, `accuracy/pair/vocab/preset`."""
        if self.suite in ("accuracy", "pipeline"):
            return f"{self.suite}/{self.strategy}/{self.vocab}/{self.preset}"
        size = vocab_size if vocab_size is not None else self.vocab_size
        variant = f"/{self.preset}" if self.preset else ""
        return (f"{self.suite}/{self.strategy}/{self.vocab}/{size if size is not None else self.side}/"
                f"{self.dim}{variant}")

    def with_size(self, vocab_size: int) -> "Case":
        return dataclasses.replace(self, vocab_size=int(vocab_size))


# ----- extra_info ---------------------------------------------------------------
# Every key of benchmark.extra_info (and of a not_run entry), in bench/README.md's order.
EXTRA_INFO_KEYS = (
    "schema_version", "case", "suite", "status", "reason", "strategy", "options", "preset", "vocab",
    "vocab_size", "dim", "batch_size", "params", "param_bytes", "index_bytes", "train_state_bytes",
    "compression", "peak_alloc_bytes_lookup", "peak_rss_bytes_lookup", "peak_alloc_bytes_train",
    "peak_rss_bytes_train", "gather_ratio", "val_mse", "val_mae", "val_rmse", "val_mse_per_epoch",
    "val_mae_per_epoch", "val_rmse_per_epoch", "train_mse_per_epoch", "epochs", "noise_floor_mse",
    "excess_mse", "fit_seconds",
)


def base_record(case: Case) -> dict[str, Any]:
    """The case's extra_info with what is known before running it; every other key None."""
    record: dict[str, Any] = dict.fromkeys(EXTRA_INFO_KEYS)
    record.update(
        schema_version=SCHEMA_VERSION,
        case=case.case_id(),
        suite=case.suite,
        status="ok",
        strategy=case.strategy,
        preset=case.preset,
        vocab=case.vocab,
        vocab_size=case.vocab_size,
        dim=case.dim,
        batch_size=case.batch_size,
    )
    return record


# ----- rules --------------------------------------------------------------------
def growth_ratio(strategy: str, dim: int) -> float | None:
    """bytes (parameters + index, default options) at 1e8 ids over bytes at 1e7 ids; None when invalid."""
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


def size_skip_reason(strategy: str, vocab_size: int, dim: int) -> str | None:
    """Why `strategy` does not run at `vocab_size` ids (memory that grows with V, above 1e7), or None."""
    if vocab_size <= LINEAR_MAX_VOCAB or is_sublinear(strategy, dim):
        return None
    ratio = growth_ratio(strategy, dim)
    growth = "cannot be costed at 1e7 or 1e8 ids" if ratio is None else (
        f"bytes at 1e8 ids / bytes at 1e7 ids = {ratio:.3g} > {SUBLINEAR_MAX_RATIO:g} with default options")
    return (
        f"{strategy} is not sublinear in V ({growth}); sizes above {LINEAR_MAX_VOCAB:.0e} run only for "
        "strategies whose memory is sublinear in V"
    )


def gather_rows(vocab_size: int, dim: int) -> int:
    """Rows of the bare-gather reference table: V, or the largest power of ten below it that fits in memory."""
    rows = int(vocab_size)
    while rows > 1 and measure.memory_shortfall(int(measure.SAFETY_FACTOR * 4 * rows * dim)) is not None:
        rows = 10 ** (math.ceil(math.log10(rows)) - 1)
    return rows


# ----- cases ---------------------------------------------------------------------
def _vocab_axis(selection: Selection, suite: str) -> list[tuple[str, int | None, str | None]]:
    """(vocab, vocab_size, side) of the memory, gather, lookup and train_step suites."""
    axis: list[tuple[str, int | None, str | None]] = []
    for vocab in selection.vocabs_of(suite):
        if vocab in SYNTHETIC_STREAMS:
            axis += [(vocab, size, None) for size in selection.vocab_sizes]
        elif vocab in MOVIELENS:
            axis += [(vocab, None, side) for side in SIDES]
    return axis


def accuracy_pairs(strategy: str, selection: Selection):
    """The (user, item) pairs the accuracy suite trains for `strategy` (from `membed.presets`).

    A profile with `accuracy_presets` keeps the strategy's presets of those
    names, or its first preset when it has none of them, so every strategy
    trains at least once.
    """
    from membed import presets

    planted = selection.profile.planted
    # Only the preset names and strategies are used here; the options are
    # computed again from the real data when the case runs.
    pairs = presets.accuracy_pairs(strategy, planted["num_users"], planted["num_items"], ACCURACY_DIM)
    wanted = selection.profile.accuracy_presets
    if wanted is None:
        return pairs
    return [pair for pair in pairs if pair.preset in wanted] or pairs[:1]


def cases(suite: str, selection: Selection) -> list[Case]:
    """Every case of `suite` in this selection, in run order."""
    profile = selection.profile
    if suite not in SUITES:
        raise ValueError(f"Unknown suite {suite!r}. Use one of: {', '.join(SUITES)}.")
    if suite == "accuracy":
        names = list(selection.strategies)
        # The example's pair and the full baseline run whatever the strategy selection.
        names += [n for n in ("full", "example_qr") if n in strategies.names() and n not in names]
        out: dict[str, Case] = {}
        for vocab in selection.vocabs_of(suite):
            if vocab != PLANTED and vocab not in MOVIELENS:
                continue
            for name in names:
                for pair in accuracy_pairs(name, selection):
                    case = Case("accuracy", pair.strategy, vocab, None, ACCURACY_DIM, ACCURACY_BATCH_SIZE,
                                preset=pair.preset, user_strategy=pair.user, item_strategy=pair.item)
                    out.setdefault(case.case_id(), case)
        return list(out.values())
    if suite == "blocks":
        return [Case("blocks", name, "synthetic-zipf", BLOCKS_VOCAB_SIZE, ACCURACY_DIM, profile.batch_size,
                     preset=f"{count}-blocks")
                for count in BLOCK_COUNTS for name in BLOCK_STRATEGIES
                if name in strategies.names() and name in selection.strategies]
    if suite == "pipeline":
        vocabs = [v for v in selection.vocabs_of("accuracy") if v in MOVIELENS]
        return [Case("pipeline", pipeline, vocab, None, ACCURACY_DIM, ACCURACY_BATCH_SIZE, preset="1-epoch")
                for vocab in vocabs for pipeline in PIPELINES]
    if suite == "gather":
        # The reference of every vocabulary a lookup or train_step case uses.
        axis = list(dict.fromkeys(_vocab_axis(selection, "lookup") + _vocab_axis(selection, "train_step")))
        return [Case("gather", "gather", vocab, size, dim, profile.batch_size, side)
                for vocab, size, side in axis for dim in profile.dims]
    axis = _vocab_axis(selection, suite)
    return [
        Case(suite, name, vocab, size, dim, profile.batch_size, side)
        for name in selection.strategies
        for vocab, size, side in axis
        for dim in profile.dims
    ]


def uncovered(suite: str, suite_cases: Iterable[Case], selection: Selection) -> list[str]:
    """Selected strategies with no case in `suite` (empty when the suite has no vocabulary selected)."""
    suite_cases = list(suite_cases)
    if suite not in STRATEGY_SUITES or not suite_cases:
        return []
    covered = {name for case in suite_cases for name in case.covers}
    return [name for name in selection.strategies if name not in covered]


# ----- parsing the command line -----------------------------------------------------
class GridError(ValueError):
    """A command-line value the grid cannot use; the message lists the valid values."""


def parse_list(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [piece.strip() for piece in text.split(",") if piece.strip()]


def parse_vocab_sizes(text: str) -> tuple[int, ...]:
    """'1000,1e5,1_000_000' -> (1000, 100000, 1000000); GridError on anything else."""
    sizes = []
    for piece in parse_list(text) or []:
        try:
            value = float(piece.replace("_", "")) if "e" in piece.lower() else int(piece.replace("_", ""))
        except ValueError:
            value = None
        if value is None or value != int(value) or int(value) < 1:
            raise GridError(
                f"malformed --vocab-sizes {text!r}: {piece!r} is not an integer >= 1. "
                "Use comma-separated sizes, e.g. --vocab-sizes 1000,100000,1e6."
            )
        sizes.append(int(value))
    if not sizes:
        raise GridError(f"malformed --vocab-sizes {text!r}: no size given. Use e.g. --vocab-sizes 1000,100000,1e6.")
    return tuple(dict.fromkeys(sizes))


def _checked_names(text: str | None, kind: str, option: str, valid) -> list[str] | None:
    """The comma-separated names of `option`, each one of `valid`; GridError lists the valid ones."""
    names = parse_list(text)
    if names is None:
        return None
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise GridError(f"unknown {kind} {unknown[0]!r} in {option}. Use one of: {', '.join(valid)}.")
    if not names:
        raise GridError(f"{option} is empty. Use one or more of: {', '.join(valid)}.")
    return names


def selection_from_options(profile: str, strategy_list: str | None, vocab_sizes: str | None,
                           datasets: str | None, allow_download: bool = False,
                           measure_timeout_s: float = measure.DEFAULT_TIMEOUT_S) -> Selection:
    """Builds the run's Selection from the command-line strings; GridError lists valid values."""
    if profile not in PROFILES:
        raise GridError(f"unknown --profile {profile!r}. Use one of: {', '.join(PROFILES)}.")
    chosen = PROFILES[profile]
    registered = strategies.names()
    names = _checked_names(strategy_list, "strategy", "--strategies", registered)
    vocabs = _checked_names(datasets, "dataset", "--datasets", VOCABS)
    if not (measure_timeout_s > 0):
        raise GridError(f"invalid --measure-timeout {measure_timeout_s!r}: it must be a number of seconds > 0.")
    sizes = (parse_vocab_sizes(vocab_sizes) if vocab_sizes is not None
             else chosen.vocab_sizes + chosen.sublinear_vocab_sizes)
    return Selection(
        profile=chosen,
        strategies=tuple(dict.fromkeys(names)) if names is not None else tuple(registered),
        vocab_sizes=sizes,
        vocabs=tuple(dict.fromkeys(vocabs)) if vocabs is not None else chosen.vocabs,
        suite_vocabs={} if vocabs is not None else dict(chosen.suite_vocabs),
        allow_download=allow_download,
        measure_timeout_s=measure_timeout_s,
    )
