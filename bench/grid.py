"""The benchmark grid as data: datasets, profiles, what a run selects, and the cases each suite declares.

A suite declares itself in its test file, asv-style: a `Suite` names its
measurement kind (`analysis.schema.SUITE_KINDS`), its axes and its skip
rules (`bench/rules.py`), and decorates its test function:

    LOOKUP = grid.Suite("lookup", "paired", axes=(axes.id_datasets, axes.dims, axes.registered),
                        rules=rules.SIZE_RULES)

    @LOOKUP.test
    def test_lookup(benchmark, case, harness, record): ...

`cases(suite, selection)` is the product of the suite's axes, in the order
declared (the first axis outermost). An axis is a function of the run's
`Selection` and the case fields chosen so far that returns the values it
takes, each a dict of `Case` fields (`bench/axes.py` holds the common
ones; a suite's own axes live in its test file). The strategy axis reads
the selection, which is `membed.strategies.names()` unless narrowed, so a
new strategy file shows up in every suite with no edit here. A combination
that cannot run (an option the strategy rejects at that size, memory that
grows with V at a size meant for sublinear strategies, too little memory, a
dataset that is not there) is still a case: it skips at run time with the
reason, and the run's `not_run` list keeps it. The suites that train
(train_step, memory, accuracy) end with the optimizer axis (`axes.optimizers`,
the profile's `optimizers`); `DEFAULT_OPTIMIZER`'s cases keep the ids they had
before that axis, the others' ids end in `/<optimizer>`.

Datasets:
    synthetic-zipf, synthetic-uniform: id streams of any size
        (`membed.data.DatasetIds`), used at every size of the profile by the
        memory, lookup and train_step suites.
    synthetic-planted: ratings from a planted low-rank model
        (`membed.data.planted_ratings`), for the accuracy suite, where the
        noise floor is known.
    synthetic-ctr: click-through rows of several categorical fields with
        labels from a planted logistic model (`membed.data.synthetic_ctr`),
        for the accuracy suite's DLRM-style model (`membed.ctr`), where the
        Bayes-optimal log loss is known.
    ml-100k, ml-1m, ...: MovieLens; the memory, lookup and train_step suites
        take its users and its items as two id datasets, the accuracy suite
        trains the rating model on it.
"""

from __future__ import annotations

import dataclasses
import glob
import importlib
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from analysis import schema
from bench import rules as skip_rules
from membed import measure
from membed.data import MOVIELENS, SYNTHETIC_DATASETS
from membed.plan.constants import OPTIMIZER_NAMES  # membed.optim.NAMES, without importing TensorFlow here
from membed.strategies.storage import STORAGES

PLANTED = "synthetic-planted"
CTR = "synthetic-ctr"
DATASETS = (*SYNTHETIC_DATASETS, PLANTED, CTR, *MOVIELENS)
# The example's recipe: the accuracy, blocks and pipeline suites use it.
ACCURACY_BATCH_SIZE = 128
ACCURACY_LEARNING_RATE = 1e-3
ACCURACY_DIM = 64
# The optimizer axis of the train_step, memory and accuracy suites. `adam` is the
# suites' step from before the axis (Keras's Adam; the accuracy suite: the example's
# FusedAdam): its cases keep their ids, the others' ids end in `/<optimizer>`.
OPTIMIZERS = OPTIMIZER_NAMES
DEFAULT_OPTIMIZER = schema.DEFAULT_OPTIMIZER
# The train_step and memory suites' step size: it moves no time or byte they record.
TRAIN_LEARNING_RATE = 1e-3
TRAIN_FRACTION = 0.85
# The accuracy suite's optimizers per model family: the example's Adam for the rating model;
# lazy Adam (rows a batch touches only) for the CTR model, whose 1e6-id field makes a dense
# Adam step rewrite 18M parameters: the same test log loss (0.4675 vs 0.4680 on 1e6 rows) in a
# tenth of the time (15.5 s vs 166 s), as click-through models are trained at scale.
ACCURACY_OPTIMIZERS = {"rating": ("adam",), "ctr": ("lazy_adam",)}
SEED = 42


@dataclasses.dataclass(frozen=True)
class Profile:
    """One benchmark profile: which sizes and datasets, and how long to time.

    Attributes:
        vocab_sizes: synthetic vocabulary sizes, every strategy.
        sublinear_vocab_sizes: more sizes, for strategies whose memory is sublinear in V.
        dims: base dimensions of the memory, lookup and train_step suites.
        datasets: datasets (see the module docstring).
        suite_datasets: narrower datasets for some suites. Quick keeps the
            memory and train_step suites to synthetic-zipf (the id distribution
            hardly moves memory, and ml-100k's 943 and 1,682 ids are tables of
            under 0.5 MiB; the lookup suite shows what the distribution and
            MovieLens's ids do to speed), and trains the accuracy suite on
            ml-100k and synthetic-ctr (a fit costs seconds). `--datasets`
            replaces both `datasets` and these.
        batch_size: ids per lookup and per training step.
        rounds: timed rounds per case, each on a fresh batch.
        min_rounds: the fewest rounds a slow case is cut down to.
        round_budget_s: seconds of timed rounds a case aims at (slow steps get fewer rounds).
        warmup_rounds: untimed rounds first (the first call traces the tf.function).
        accuracy_max_epochs: the accuracy suite's epoch budget; a fit stops earlier once
            validation loss has not improved for `accuracy_patience` epochs (best weights kept).
        accuracy_patience: early stopping's patience, in epochs.
        accuracy_seeds: the seeds each accuracy case trains with (split, initialisation,
            shuffling); records carry each seed's values, their mean and a 95% interval.
        accuracy_batch_size: the accuracy suite's batch size (`membed reproduce` keeps the
            example's 128; 512 with a tuned step size converges as far in a quarter of the steps).
        accuracy_presets: presets trained per strategy, by name (None: every preset of
            `membed.presets`); a strategy with none of them trains its first preset.
        planted: `planted_ratings` arguments of the synthetic-planted dataset.
        pipeline_rounds: fits per case of the pipeline suite (the median is compared).
        optimizers: the optimizer axis of the train_step, memory (train phase) and
            accuracy suites, names of `membed.optim.NAMES`; `--optimizers` narrows it.
        train_step_max_vocab: optimizer -> the largest vocabulary the train_step suite
            times it at (an optimizer not named: every size). The memory suite keeps
            every size: this only saves the minutes of timing big tables twice more.
        dataset_vocab_sizes: synthetic dataset -> the sizes of `vocab_sizes` and
            `sublinear_vocab_sizes` it runs at (a dataset not named: all of them);
            `--vocab-sizes` replaces both.
        accuracy_storages: storages each trained pair is evaluated in again
            (`membed.presets.evaluate_by_storage`), float32 first.
        accuracy_optimizers: the accuracy suite's optimizers per model family: `rating`
            (MovieLens, synthetic-planted) and `ctr` (synthetic-ctr). `--optimizers` narrows them.
        ctr: `membed.data.synthetic_ctr` arguments of the synthetic-ctr dataset.
        ctr_strategies: the strategies the accuracy suite trains on synthetic-ctr (None: all
            selected). Quick keeps three: `mixed_dim` (which cannot compress ml-100k's few
            users and items at all), the baseline and `qr`.
        suites: the suites this profile runs (None: all); the others' cases are deselected.
        tune_learning_rates: the tune profile's grid, optimizer -> step sizes: each accuracy
            case trains once per step size (one seed) and `python -m bench.tuning` stores the
            best on validation (`bench/tuning.py`). None: cases train at the stored step sizes.
    """

    name: str
    vocab_sizes: tuple[int, ...]
    sublinear_vocab_sizes: tuple[int, ...]
    dims: tuple[int, ...]
    datasets: tuple[str, ...]
    suite_datasets: dict[str, tuple[str, ...]]
    batch_size: int
    rounds: int
    min_rounds: int
    round_budget_s: float
    warmup_rounds: int
    accuracy_max_epochs: int
    accuracy_presets: tuple[str, ...] | None
    planted: dict[str, int]
    pipeline_rounds: int = 3
    optimizers: tuple[str, ...] = (DEFAULT_OPTIMIZER,)
    train_step_max_vocab: dict[str, int] = dataclasses.field(default_factory=dict)
    dataset_vocab_sizes: dict[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)
    accuracy_storages: tuple[str, ...] = ("float32",)
    accuracy_patience: int = 2
    accuracy_seeds: tuple[int, ...] = (1, 2)
    accuracy_batch_size: int = 512
    accuracy_optimizers: dict[str, tuple[str, ...]] = dataclasses.field(
        default_factory=lambda: dict(ACCURACY_OPTIMIZERS))
    ctr: dict[str, int] = dataclasses.field(default_factory=lambda: {"num_rows": 200_000})
    ctr_strategies: tuple[str, ...] | None = None
    suites: tuple[str, ...] | None = None
    tune_learning_rates: dict[str, tuple[float, ...]] | None = None

    def rounds_for(self, call_seconds: float) -> int:
        """Timed rounds for a case whose warm call takes `call_seconds`: the budget's worth, within the bounds.

        Example:
            >>> PROFILES["quick"].rounds_for(0.1), PROFILES["quick"].rounds_for(1e-4)
            (5, 20)
        """
        wanted = int(self.round_budget_s / max(call_seconds, 1e-9))
        return max(self.min_rounds, min(self.rounds, wanted))


# The tune profile's step sizes per optimizer: around each optimizer's default
# (membed.train.RATING_LEARNING_RATES), a factor of about 3 apart.
TUNE_LEARNING_RATES = {"adam": (1e-3, 3e-3, 1e-2), "lazy_adam": (1e-3, 3e-3, 1e-2), "adagrad": (0.1, 0.3, 1.0),
                       "rowwise_adagrad": (0.03, 0.1, 0.3), "sgd": (0.5, 2.0, 8.0)}
# The planted set of the claims and tune profiles: dense enough (600 ratings per item, 300 per
# user on average) that the full baseline's test MSE comes within 25% of the noise floor (0.099
# against 0.09 at 20 epochs, reports/accuracy/).
DENSE_PLANTED = {"num_users": 1000, "num_items": 500, "num_ratings": 300_000}
# The full profile's, two thirds of that to fit its hour: the baseline's test MSE 0.107 against
# 0.09 (18% over, still falling at 20 epochs), 8.5 min of fits instead of 12.3 (2026-12-02).
FULL_PLANTED = {**DENSE_PLANTED, "num_ratings": 200_000}

FULL = Profile(
    name="full",
    vocab_sizes=(10**3, 10**4, 10**5, 10**6, 10**7),
    sublinear_vocab_sizes=(10**8,),
    dims=(64,),
    datasets=(*SYNTHETIC_DATASETS, PLANTED, CTR, *MOVIELENS),
    # Memory and step time on the Zipf ids (a vocabulary's traffic; MovieLens tables are under
    # 1 MB, and uniform ids change no byte); the accuracy suite on one real and two planted tasks.
    suite_datasets={"memory": ("synthetic-zipf",), "train_step": ("synthetic-zipf",),
                    "accuracy": ("ml-100k", PLANTED, CTR)},
    batch_size=4096,
    rounds=50,
    min_rounds=3,
    round_budget_s=1.0,
    warmup_rounds=2,
    accuracy_max_epochs=20,
    accuracy_presets=("baseline", "example", "20x"),
    planted=FULL_PLANTED,
    # The dense reference, the production table optimizer and the sparse Adam.
    optimizers=("adam", "rowwise_adagrad", "lazy_adam"),
    # lazy_adam's step is timed up to 1e6 (its 1e7 and 1e8 steps took 4.5 of the profile's 71
    # minutes on 2026-12-01); its training peaks are still measured at every size (memory suite).
    train_step_max_vocab={"lazy_adam": 10**6},
    # Uniform ids, whose cache misses Zipf's hot ids hide, at the sizes in and out of the
    # last-level cache (1e3-1e5) and at 1e7; 1e6 and 1e8 took 4.1 of the 71 minutes on
    # 2026-12-02. The Zipf ids keep every size.
    dataset_vocab_sizes={"synthetic-uniform": (10**3, 10**4, 10**5, 10**7)},
    accuracy_storages=STORAGES,
    accuracy_seeds=(1, 2, 3, 4, 5),
    # On synthetic-ctr, the strategies of reports/README.md's claims (dhe takes 60-300 s a fit there).
    ctr_strategies=("full", "mixed_dim", "qr", "hash", "tt", "robe", "freq_hash"),
)

PROFILES: dict[str, Profile] = {
    # What CI runs: about 5 minutes on 2 cores.
    "quick": Profile(
        name="quick",
        # 1e6 left to the full profile: its cases (a 256 MB table built, timed against a 256 MB
        # bare gather, trained with Adam) took 6-10 s each, a minute of CI's five; a table copy or
        # a dense update is caught at 1e5 too (25 MB, over the gate's 4% and 6 MiB).
        vocab_sizes=(10**3, 10**5),
        sublinear_vocab_sizes=(),
        dims=(64,),
        datasets=(*SYNTHETIC_DATASETS, PLANTED, CTR, "ml-100k"),
        suite_datasets={"memory": ("synthetic-zipf",), "train_step": ("synthetic-zipf",),
                        "accuracy": ("ml-100k", CTR)},
        batch_size=4096,
        rounds=20,
        min_rounds=3,
        round_budget_s=0.5,
        warmup_rounds=1,
        # A budget, not convergence (the full profile's 20 is): CI's five minutes hold two seeds of
        # 15 cases; at the tuned step sizes most ml-100k fits are still improving after 4 epochs.
        accuracy_max_epochs=4,
        accuracy_presets=("baseline", "example", "20x"),
        planted={"num_users": 2000, "num_items": 1000, "num_ratings": 20_000},
        pipeline_rounds=2,
        optimizers=("adam", "rowwise_adagrad"),
        accuracy_storages=("float32", "int8"),
        accuracy_seeds=(1, 2),
        ctr_strategies=("full", "mixed_dim", "qr"),
    ),
    # The broad grid, in under an hour on 2 cores (53.5 min on 2026-12-02; bench/README.md, "Measured wall time"):
    # every strategy and size, three optimizers, one compression level per strategy in the
    # accuracy suite. `claims` trains every preset; sgd and adagrad are an `--optimizers` away.
    "full": FULL,
    # The accuracy grid that reports/README.md's claims are judged on: every preset of every
    # strategy on ml-100k, synthetic-planted and synthetic-ctr, 5 seeds; about 80 min of fits
    # on 2 cores, meant for `-n` (bench/README.md, "Spreading the fit cases").
    "claims": dataclasses.replace(FULL, name="claims", vocab_sizes=(), sublinear_vocab_sizes=(),
                                  accuracy_presets=None, planted=DENSE_PLANTED, suites=("accuracy",)),
    # The step size per strategy, preset and optimizer, chosen on validation: one seed per
    # step size of TUNE_LEARNING_RATES; `python -m bench.tuning RESULT.json` stores the best.
    "tune": Profile(
        name="tune",
        vocab_sizes=(),
        sublinear_vocab_sizes=(),
        dims=(64,),
        datasets=(CTR, "ml-100k"),
        suite_datasets={},
        batch_size=4096,
        rounds=1,
        min_rounds=1,
        round_budget_s=0.0,
        warmup_rounds=0,
        accuracy_max_epochs=20,
        accuracy_presets=None,
        planted=DENSE_PLANTED,
        optimizers=("adam",),
        accuracy_seeds=(1,),
        # On synthetic-ctr, the strategies of reports/README.md's claims and of the quick profile,
        # but dhe (60-300 s a fit there: its encoder MLP runs per id of 5 fields).
        ctr_strategies=("full", "mixed_dim", "qr", "hash", "tt", "robe", "freq_hash"),
        suites=("accuracy",),
        tune_learning_rates=TUNE_LEARNING_RATES,
    ),
}


@dataclasses.dataclass(frozen=True)
class Selection:
    """What one run covers: a profile narrowed by the command-line options (`bench.options`)."""

    profile: Profile
    strategies: tuple[str, ...]
    vocab_sizes: tuple[int, ...]
    datasets: tuple[str, ...]
    allow_download: bool = False
    measure_timeout_s: float = measure.DEFAULT_TIMEOUT_S
    suite_datasets: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    optimizers: tuple[str, ...] = (DEFAULT_OPTIMIZER,)
    dataset_vocab_sizes: dict[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)

    def datasets_of(self, suite: str) -> tuple[str, ...]:
        return self.suite_datasets.get(suite, self.datasets)

    def vocab_sizes_of(self, dataset: str) -> tuple[int, ...]:
        """The synthetic sizes `dataset` runs at: `vocab_sizes`, narrowed by `dataset_vocab_sizes`."""
        if dataset not in self.dataset_vocab_sizes:
            return self.vocab_sizes
        return tuple(size for size in self.vocab_sizes if size in self.dataset_vocab_sizes[dataset])


@dataclasses.dataclass(frozen=True)
class Case:
    """One point of the grid.

    `vocab_size` is None for MovieLens until its data is loaded (the size is
    the data's). Accuracy cases name a (user, item) pair and a preset. The
    suites that train name their optimizer; any but `DEFAULT_OPTIMIZER` is a
    variant of the case, after its preset.
    """

    suite: str
    strategy: str
    dataset: str
    vocab_size: int | None
    dim: int
    batch_size: int
    side: str | None = None
    preset: str | None = None
    user_strategy: str | None = None
    item_strategy: str | None = None
    optimizer: str | None = None
    learning_rate: float | None = None

    @property
    def variants(self) -> tuple[str, ...]:
        """The ids' last parts (after size and dim; a fit's, after its dataset): preset, a non-default
        optimizer, a tune profile's step size (`lr0.003`)."""
        optimizer = self.optimizer if self.optimizer not in (None, DEFAULT_OPTIMIZER) else None
        rate = f"lr{self.learning_rate:g}" if self.learning_rate is not None else None
        return tuple(part for part in (self.preset, optimizer, rate) if part)

    @property
    def kind(self) -> str:
        """The suite's measurement kind, from `analysis.schema.SUITES`."""
        try:
            return schema.SUITES[self.suite].kind
        except KeyError:
            raise ValueError(f"Case of suite {self.suite!r}: the suite is not in analysis.schema.SUITES "
                             f"({', '.join(schema.SUITES)}); declare it with grid.Suite.") from None

    @property
    def covers(self) -> tuple[str, ...]:
        """The registered strategies this case exercises."""
        if self.kind == "reference":
            return ()
        pair = tuple(dict.fromkeys(name for name in (self.user_strategy, self.item_strategy) if name))
        return pair or (self.strategy,)

    @property
    def test_id(self) -> str:
        """The pytest id: `strategy-dataset-size-dim[-preset][-optimizer]` (a fit: `strategy-dataset-preset[-...]`).

        Example:
            >>> Case("train_step", "qr", "synthetic-zipf", 1000, 64, 4096, optimizer="sgd").test_id
            'qr-synthetic-zipf-1000-64-sgd'
        """
        if self.kind == "fit":
            head = [self.strategy, self.dataset]
        else:
            head = [self.strategy, self.dataset, self.side if self.vocab_size is None else str(self.vocab_size),
                    str(self.dim)]
        return "-".join([*head, *self.variants])

    def case_id(self, vocab_size: int | None = None) -> str:
        """The stable case id: `suite/strategy/dataset/vocab_size/dim[/preset][/optimizer]` (a fit:
        `suite/pair/dataset/preset[/optimizer]`); the default optimizer adds nothing.

        Args:
            vocab_size: the size once known (a MovieLens side's, from its data); the case's own by default.

        Example:
            >>> Case("memory", "qr", "synthetic-zipf", 1000, 64, 4096, optimizer="rowwise_adagrad").case_id()
            'memory/qr/synthetic-zipf/1000/64/rowwise_adagrad'
        """
        if self.kind == "fit":
            head = [self.suite, self.strategy, self.dataset]
        else:
            size = vocab_size if vocab_size is not None else self.vocab_size
            head = [self.suite, self.strategy, self.dataset, str(size if size is not None else self.side),
                    str(self.dim)]
        return "/".join([*head, *self.variants])

    def with_size(self, vocab_size: int) -> Case:
        return dataclasses.replace(self, vocab_size=int(vocab_size))


# An axis (bench/axes.py): (selection, the case fields chosen so far) -> the values it takes, each a dict of
# Case fields.
Axis = Callable[[Selection, Mapping[str, Any]], Iterable[Mapping[str, Any]]]


# ----- suites --------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Suite:
    """A benchmark suite as its test file declares it: measurement kind, axes, skip rules.

    Args:
        name: the `suite` field of its records and its name in `analysis.schema.SUITES`.
        kind: one of `analysis.schema.SUITE_KINDS`; it must match the schema's entry
            for `name` where there is one.
        axes: functions giving the values of the grid's axes (see the module
            docstring); the cases are their product, the first axis outermost.
            `batch_size` defaults to the profile's.
        rules: the skip rules its cases pass at their size (`bench.rules`).
        latency, covers_strategies, description: the schema entry's, for a suite
            the schema does not hold yet (declared into it with the test); where
            the schema holds the suite, None (the default) means "as there".
        expected_seconds: optional, (case, profile) -> the seconds a case is expected to
            take on a 2-core machine; the run prints the sum before it starts.

    Example:
        >>> from bench import axes
        >>> TOY = Suite("toy", "fit", axes=(axes.registered, axes.fixed(dataset="ml-100k", dim=8, preset="one")))
        >>> TOY.entry.latency, TOY.entry.covers_strategies
        (False, False)
    """

    name: str
    kind: str
    axes: tuple[Axis, ...]
    rules: tuple[skip_rules.Rule, ...] = ()
    latency: bool | None = None
    covers_strategies: bool | None = None
    description: str = ""
    expected_seconds: Callable[[Case, Profile], float] | None = None

    def __post_init__(self) -> None:
        if self.kind not in schema.SUITE_KINDS:
            raise ValueError(f"Suite {self.name!r}: invalid `kind` {self.kind!r}. "
                             f"Use one of: {', '.join(schema.SUITE_KINDS)}.")
        if not self.axes:
            raise ValueError(f"Suite {self.name!r}: no `axes`; declare at least one, e.g. (axes.registered,).")
        known = schema.SUITES.get(self.name)
        if known is not None:
            declared = {"kind": self.kind, "latency": self.latency, "covers_strategies": self.covers_strategies}
            wrong = [key for key, value in declared.items() if value is not None and value != getattr(known, key)]
            if wrong:
                raise ValueError(
                    f"Suite {self.name!r}: `{wrong[0]}` {declared[wrong[0]]!r} differs from analysis/schema.py's "
                    f"{getattr(known, wrong[0])!r}; declare the suite the same in both.")

    @property
    def entry(self) -> schema.Suite:
        """The suite as `analysis.schema` holds it (or will, once its test is declared)."""
        known = schema.SUITES.get(self.name)
        if known is not None:
            return known
        latency = self.kind in ("paired", "reference") if self.latency is None else self.latency
        return schema.Suite(self.name, self.kind, latency, bool(self.covers_strategies), self.description)

    def test(self, function: Callable) -> Callable:
        """Decorator: `function` measures this suite's cases; declares the suite here and in the schema."""
        declare(self, function.__module__)
        function.membed_suite = self
        return function


_DECLARED: dict[str, tuple[Suite, str]] = {}  # name -> (declaration, module of its test)


def declare(suite: Suite, module: str) -> Suite:
    """Registers `suite` (declared by `module`) and its schema entry; `Suite.test` calls it.

    Raises:
        ValueError: another module already declares a suite of that name.
    """
    known = _DECLARED.get(suite.name)
    if known is not None and known[1] != module:
        raise ValueError(f"Suite {suite.name!r} is declared twice: in {known[1]} and in {module}.")
    schema.declare_suite(suite.entry)
    _DECLARED[suite.name] = (suite, module)
    return suite


def declared() -> dict[str, Suite]:
    """Every suite declared by bench/test_*.py (imported here when needed), by name."""
    for path in sorted(glob.glob(str(Path(__file__).with_name("test_*.py")))):
        importlib.import_module(f"bench.{Path(path).stem}")
    return {name: suite for name, (suite, _) in _DECLARED.items()}


def declaration(name: str) -> Suite:
    """The declared suite called `name`; ValueError lists the declared ones."""
    if name not in _DECLARED:
        declared()
    if name not in _DECLARED:
        raise ValueError(f"Unknown suite {name!r}. Use one of: {', '.join(_DECLARED)}.")
    return _DECLARED[name][0]


def cases(suite: Suite | str, selection: Selection) -> list[Case]:
    """Every case of `suite` in this selection, in run order: the product of its axes, each case once."""
    suite = declaration(suite) if isinstance(suite, str) else suite
    if suite.name not in schema.SUITES:
        raise ValueError(f"Suite {suite.name!r} is not declared: decorate its test with `@{suite.name.upper()}.test` "
                         "(or call grid.declare) before asking for its cases.")
    rows: list[dict[str, Any]] = [{"suite": suite.name, "batch_size": selection.profile.batch_size}]
    for axis in suite.axes:
        rows = [{**row, **value} for row in rows for value in axis(selection, row)]
    out: dict[str, Case] = {}
    for row in rows:
        try:
            case = Case(**{"vocab_size": None, **row})
        except TypeError as error:
            raise ValueError(f"Suite {suite.name!r}: its axes give no case ({error}); each case needs "
                             "strategy, dataset and dim.") from None
        out.setdefault(case.case_id(), case)
    return list(out.values())


def uncovered(suite: str, suite_cases: Iterable[Case], selection: Selection) -> list[str]:
    """Selected strategies with no case in `suite` (empty when the suite has no dataset selected)."""
    suite_cases = list(suite_cases)
    if suite not in schema.STRATEGY_SUITES or not suite_cases:
        return []
    covered = {name for case in suite_cases for name in case.covers}
    return [name for name in selection.strategies if name not in covered]


# ----- extra_info ---------------------------------------------------------------------
def base_record(case: Case) -> dict[str, Any]:
    """The case's extra_info with what is known before running it; every other schema field None."""
    record: dict[str, Any] = dict.fromkeys(schema.EXTRA_INFO_KEYS)
    record.update(
        schema_version=schema.SCHEMA_VERSION,
        case=case.case_id(),
        suite=case.suite,
        status="ok",
        strategy=case.strategy,
        preset=case.preset,
        optimizer=case.optimizer,
        dataset=case.dataset,
        vocab_size=case.vocab_size,
        dim=case.dim,
        batch_size=case.batch_size,
    )
    return record
