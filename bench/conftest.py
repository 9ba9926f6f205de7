"""The pytest hooks and fixtures of the benchmark suites: options, parametrization, the result JSON, the journal.

Options (see bench/README.md): `--profile quick|full`, `--strategies a,b`,
`--vocab-sizes 1000,1e5`, `--datasets synthetic-zipf,ml-100k`, `--optimizers adam,sgd`,
`--measure-timeout SECONDS`, `--allow-download`, `--isolate-above SHARE`,
`--tf-threads N`, `--resume`. A bad value stops the run before anything is collected, with the
valid values listed (`bench/options.py`).

Every suite function is decorated by its suite's declaration
(`@LOOKUP.test`, `bench/grid.py`) and takes a `case` argument;
`pytest_generate_tests` parametrizes it from `grid.cases`. The collection
fails when a selected strategy has no case in a suite. Each test fills
`record` (the benchmark's `extra_info`, `bench/results.py`); cases that skip
or error before producing an entry go to the JSON's `membed.not_run` list
with their reason. Each finished case is also appended to the run's journal
(`analysis.journal`) as it finishes, which is what Ctrl-C and `--resume` rely
on; cases too big for this process run in their own (`bench/isolation.py`).
The suites' shared machinery (data, rules, layers, timing) is `bench/harness.py`.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import psutil  # noqa: E402
import pytest  # noqa: E402

from membed.quiet import native_stderr_captured  # noqa: E402

# The imports below start TensorFlow (through Keras). Under pytest-xdist nothing captures the controller's
# stderr then, and its native start-up lines printed after the run's summary; hidden here (no op is run,
# so --tf-threads still applies).
with native_stderr_captured():
    import keras  # noqa: E402, F401

from analysis import journal  # noqa: E402
from bench import distributed, grid, isolation, options, results  # noqa: E402
from bench.harness import DEFAULT_TF_THREADS, ROOT, Harness, release_memory, use_tf_threads  # noqa: E402
from membed import measure  # noqa: E402

SELECTION = pytest.StashKey[grid.Selection]()
NOT_RUN = pytest.StashKey[list]()
CASE = pytest.StashKey[grid.Case]()
SELECTED = pytest.StashKey[list]()  # node ids of the cases this run selected
JOURNAL = pytest.StashKey[journal.Writer]()
RESUMED = pytest.StashKey[journal.Contents]()  # what an interrupted run had finished
INTERRUPTED = pytest.StashKey[bool]()
ISOLATED = pytest.StashKey[list]()  # benchmark entries of the cases that ran in their own process
_LOGGED = pytest.StashKey[bool]()  # the item's not_run entry is written


# ----- options ---------------------------------------------------------------------
def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("membed", "membed benchmark grid (bench/README.md)")
    group.addoption("--profile", default="quick", help=f"grid profile: {' | '.join(grid.PROFILES)} (default quick)")
    group.addoption("--strategies", default=None, help="comma-separated registered strategies (default: all)")
    group.addoption("--vocab-sizes", default=None,
                    help="comma-separated synthetic vocabulary sizes, e.g. 1000,1e5 (default: the profile's)")
    group.addoption("--datasets", default=None,
                    help=f"comma-separated datasets: {', '.join(grid.DATASETS)} (default: the profile's)")
    group.addoption("--optimizers", default=None,
                    help=f"comma-separated optimizers of the train_step, memory and accuracy suites: "
                         f"{', '.join(grid.OPTIMIZERS)} (default: the profile's)")
    group.addoption("--seeds", default=None,
                    help="comma-separated seeds of the accuracy suite, e.g. 1,2,3 (default: the profile's)")
    group.addoption("--measure-timeout", type=float, default=measure.DEFAULT_TIMEOUT_S,
                    help="seconds before a memory-measuring process, or a case's own process, is killed "
                         "(default 600)")
    group.addoption("--allow-download", action="store_true",
                    help="download MovieLens variants that are not found locally")
    group.addoption("--isolate-above", type=float, default=isolation.DEFAULT_SHARE, metavar="SHARE",
                    help="run a case in its own process when this process's RSS plus the case's estimated "
                         f"peak would be above this share of the machine's memory (default "
                         f"{isolation.DEFAULT_SHARE}; 0: every case of known size)")
    group.addoption("--tf-threads", type=int, default=DEFAULT_TF_THREADS, metavar="N",
                    help=f"TensorFlow threads (intra- and inter-op) of the run and its child processes "
                         f"(default {DEFAULT_TF_THREADS}: steadier timings, per-core costs; 0: one per core)")
    group.addoption("--resume", action="store_true",
                    help="run only the cases missing from the journal beside --benchmark-json (an "
                         "interrupted run), then write the JSON of the whole run")


def pytest_configure(config: pytest.Config) -> None:
    distributed.prepare(config)  # before pytest-benchmark's own (trylast) configure
    try:
        use_tf_threads(config.getoption("tf_threads"))
    except (ValueError, RuntimeError) as error:
        raise pytest.UsageError(f"bench: {error}") from None
    try:
        selection = options.selection_from_options(
            config.getoption("profile"),
            config.getoption("strategies"),
            config.getoption("vocab_sizes"),
            config.getoption("datasets"),
            allow_download=config.getoption("allow_download"),
            measure_timeout_s=config.getoption("measure_timeout"),
            optimizer_list=config.getoption("optimizers"),
            seed_list=config.getoption("seeds"),
        )
    except options.GridError as error:
        raise pytest.UsageError(f"bench: {error}") from None
    config.stash[SELECTION] = selection
    config.stash[NOT_RUN] = []
    config.stash[SELECTED] = []
    config.stash[INTERRUPTED] = False
    config.stash[ISOLATED] = []
    share = config.getoption("isolate_above")
    if not share >= 0:
        raise pytest.UsageError(f"bench: invalid --isolate-above {share}: a share of memory >= 0, e.g. {isolation.DEFAULT_SHARE}.")
    config.pluginmanager.register(isolation.Isolation(
        share * psutil.virtual_memory().total, case_of=lambda item: item.stash.get(CASE, None),
        record=_record_isolated), "membed-isolation")
    if distributed.is_controller(config):
        config.pluginmanager.register(_Controller(config), "membed-xdist-controller")
    path = config.getoption("benchmark_json", None)
    if distributed.is_worker(config):
        pass  # a worker's entries go to the controller, which writes the JSON and the journal
    elif path is not None:
        _make_json_folder(path)
        _open_journal(config, journal.journal_path(path), selection)
    elif config.getoption("resume", False):
        raise pytest.UsageError("bench: --resume needs the --benchmark-json of the run to resume.")


def _record_isolated(item: pytest.Item, outcome: isolation.ChildOutcome) -> None:
    if outcome.benchmark is not None:
        item.config.stash[ISOLATED].append(outcome.benchmark)
    else:
        item.config.stash[NOT_RUN].append(outcome.not_run)


def _make_json_folder(path: Path) -> None:
    """Creates the folder of `--benchmark-json` now: pytest-benchmark opens the file only at the end of the run."""
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise pytest.UsageError(f"bench: cannot create the folder of --benchmark-json {path}: "
                                f"{error.strerror}.") from None


def _open_journal(config: pytest.Config, path: Path, selection: grid.Selection) -> None:
    """Starts the run's journal, or reopens the one to resume after checking that it is this run's."""
    run = results.journal_run(selection, config.getoption("keyword", ""), [str(arg) for arg in config.args],
                              journal.code_version(ROOT))
    if not config.getoption("resume", False):
        config.stash[JOURNAL] = journal.Writer(path, run)
        return
    if not path.is_file():
        raise pytest.UsageError(f"bench: cannot resume: no journal {path} (a run with the same --benchmark-json "
                                "writes it); run without --resume.")
    try:
        contents = journal.read(path)
    except (OSError, ValueError) as error:
        raise pytest.UsageError(f"bench: cannot resume from {path}: {error}") from None
    differing = [key for key in run if contents.run.get(key) != run[key]]
    if differing:
        key = differing[0]
        raise pytest.UsageError(
            f"bench: cannot resume {path}: it was made with another {key} "
            f"({contents.run.get(key)!r}, this run {run[key]!r}); rerun without --resume.")
    config.stash[RESUMED] = contents
    config.stash[JOURNAL] = journal.Writer(path)


def pytest_report_header(config: pytest.Config) -> list[str]:
    selection = config.stash.get(SELECTION, None)
    if selection is None:
        return []
    return [
        f"membed bench: profile={selection.profile.name} strategies={','.join(selection.strategies)}",
        f"  datasets={','.join(selection.datasets)} vocab_sizes={','.join(map(str, selection.vocab_sizes))}"
        f" optimizers={','.join(selection.optimizers)}",
    ]


# ----- the grid ----------------------------------------------------------------------
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    suite = getattr(metafunc.function, "membed_suite", None)
    if suite is None or "case" not in metafunc.fixturenames:
        return
    cases = grid.cases(suite, metafunc.config.stash[SELECTION])
    metafunc.parametrize("case", cases, ids=[case.test_id for case in cases])


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list) -> None:
    # Coverage is a property of the grid, not of one run's filter (-k, or a node id given on
    # the command line, which collects that case alone): checked over each collected suite's grid.
    selection = config.stash[SELECTION]
    suites: dict[str, grid.Suite] = {}
    for item in items:
        case, suite = _case_of(item), getattr(getattr(item, "function", None), "membed_suite", None)
        if case is not None and suite is not None:
            item.stash[CASE] = case
            suites[case.suite] = suite
    for name in sorted(suites):
        missing = grid.uncovered(name, grid.cases(suites[name], selection), selection)
        if missing:
            raise pytest.UsageError(
                f"bench: registered strategy {missing[0]!r} has no case in the {name} suite; "
                "every suite must be parametrized over the registry (bench.axes.registered)."
            )
    if selection.profile.suites is not None:
        # A profile of some suites only (tune): the others' cases are not part of the run.
        kept = [item for item in items if CASE not in item.stash or item.stash[CASE].suite in selection.profile.suites]
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
        items[:] = kept
    if distributed.is_worker(config) and distributed.benchmarks_run(config):
        serial = pytest.mark.skip(reason=distributed.SERIAL_REASON)
        for item in items:
            if CASE in item.stash and item.stash[CASE].suite not in distributed.SUITES:
                item.add_marker(serial)
    config.stash[SELECTED] = [item.nodeid for item in items if CASE in item.stash]  # narrowed by -k later
    resumed = config.stash.get(RESUMED, None)
    if resumed is not None:
        # The resumed journal was made with the same -k and paths, so its cases are in this selection.
        done = [item for item in items if item.nodeid in resumed.finished]
        items[:] = [item for item in items if item.nodeid not in resumed.finished]
        config.hook.pytest_deselected(items=done)


def pytest_collection_finish(session: pytest.Session) -> None:
    # After -k / path selection: what the gate may expect this run (with the run it resumes) to have measured.
    config = session.config
    kept = {item.nodeid for item in session.items}
    resumed = config.stash.get(RESUMED, None)
    kept |= resumed.finished if resumed is not None else set()
    config.stash[SELECTED] = [nodeid for nodeid in config.stash[SELECTED] if nodeid in kept]
    writer = config.stash.get(JOURNAL, None)
    if writer is not None:
        writer.write_selected(config.stash[SELECTED])


def pytest_report_collectionfinish(config: pytest.Config, start_path, items: list) -> list[str]:
    """Before the run starts: the expected time of the suites that declare one (the fits)."""
    profile = config.stash[SELECTION].profile
    expected: dict[str, list[float]] = {}
    for item in items:
        case, suite = item.stash.get(CASE, None), getattr(getattr(item, "function", None), "membed_suite", None)
        if case is not None and suite is not None and suite.expected_seconds is not None:
            expected.setdefault(case.suite, []).append(suite.expected_seconds(case, profile))
    return [f"membed: {name}: {len(seconds)} cases, expected about {sum(seconds) / 60:.0f} min on 2 cores "
            f"({profile.name} profile)" for name, seconds in expected.items()]


def _case_of(item) -> grid.Case | None:
    callspec = getattr(item, "callspec", None)
    case = callspec.params.get("case") if callspec is not None else None
    return case if isinstance(case, grid.Case) else None


# ----- results: failures and cases that did not run ------------------------------------
def _reason_of(report, call) -> str:
    if report.skipped:
        longrepr = report.longrepr
        text = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        return text.removeprefix("Skipped: ")
    if call.excinfo is not None:
        return measure.error_reason(call.excinfo.value)
    return str(report.longrepr).strip().splitlines()[-1]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    case = item.stash.get(CASE, None)
    if case is not None and report.when == "call" and report.passed and distributed.is_worker(item.config):
        record = item.funcargs["benchmark"].extra_info
        distributed.send(item, report, distributed.ENTRY, results.benchmark_entry(
            case, record, results.stats_of(record.rounds), item.nodeid))
    if case is None or not (report.skipped or report.failed):
        return
    if report.when == "teardown" and report.skipped:
        return
    benchmark = getattr(item, "funcargs", {}).get("benchmark")
    record = getattr(benchmark, "extra_info", None) or grid.base_record(case)
    reason = _reason_of(report, call)
    produced = benchmark is not None and getattr(benchmark, "stats", None) is not None and not benchmark.has_error
    if produced:
        # The entry exists: mark it failed rather than losing it.
        if report.failed and record.get("status") != "failed":
            record.update(status="failed", reason=reason)
        return
    if item.stash.get(_LOGGED, False):
        return
    item.stash[_LOGGED] = True
    entry = results.not_run_entry(case, record, "skipped" if report.skipped else "failed", reason, item.nodeid)
    item.config.stash[NOT_RUN].append(entry)
    if distributed.is_worker(item.config):
        distributed.send(item, report, distributed.NOT_RUN, entry)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem):
    """Journals the case once it has finished; an interrupted case is recorded as such, without its timings."""
    config = item.config
    writer = config.stash.get(JOURNAL, None)
    timed, not_run, isolated = config._benchmarksession.benchmarks, config.stash[NOT_RUN], config.stash[ISOLATED]
    timed_before, not_run_before, isolated_before = len(timed), len(not_run), len(isolated)
    outcome = yield
    if outcome.excinfo is not None and issubclass(outcome.excinfo[0], KeyboardInterrupt):
        del timed[timed_before:]  # its rounds stopped half way: no statistics to write
        case = item.stash.get(CASE, None)
        if case is not None:
            config.stash[INTERRUPTED] = True
            not_run.append(results.not_run_entry(
                case, None, "interrupted", "the run was interrupted (Ctrl-C) during this case", item.nodeid))
    if writer is None:
        return
    for metadata in timed[timed_before:]:
        if not metadata.has_error:
            writer.write("benchmark", metadata.as_dict(include_data=True))
    for entry in isolated[isolated_before:]:
        writer.write("benchmark", entry)
    for entry in not_run[not_run_before:]:
        writer.write("not_run", entry)


class _Controller:
    """The controller of an xdist run: keeps and journals the entries its workers send with their reports."""

    def __init__(self, config: pytest.Config):
        self.config = config

    def pytest_runtest_logreport(self, report) -> None:
        writer = self.config.stash.get(JOURNAL, None)
        for kind, entry in distributed.received(report):
            (self.config.stash[ISOLATED] if kind == distributed.ENTRY else self.config.stash[NOT_RUN]).append(entry)
            if writer is not None:
                writer.write("benchmark" if kind == distributed.ENTRY else "not_run", entry)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node, ids: list[str]) -> None:
        """The cases the workers selected (they collect; the controller does not)."""
        if not self.config.stash[SELECTED]:
            self.config.stash[SELECTED] = list(ids)
            writer = self.config.stash.get(JOURNAL, None)
            if writer is not None:
                writer.write_selected(self.config.stash[SELECTED])


def pytest_benchmark_update_json(config: pytest.Config, benchmarks, output_json: dict) -> None:
    selection = config.stash.get(SELECTION, None)
    selected = config.stash.get(SELECTED, [])
    not_run = config.stash.get(NOT_RUN, [])
    # Entries measured elsewhere: in a case's own process, or by the interrupted run this one resumes.
    measured = list(config.stash.get(ISOLATED, []))
    resumed = config.stash.get(RESUMED, None)
    if resumed is not None:
        measured += resumed.benchmarks
        # Its interrupted case ran again in this run.
        not_run = [entry for entry in resumed.not_run if entry["status"] != "interrupted"] + not_run
    # In the order one uninterrupted run in one process would have written them.
    output_json["benchmarks"] = results.in_run_order(measured + output_json["benchmarks"], selected)
    output_json["membed"] = results.membed_block(selection.profile.name if selection else None, selected,
                                                 results.in_run_order(not_run, selected),
                                                 config.stash.get(INTERRUPTED, False),
                                                 tf_threads=config.getoption("tf_threads"),
                                                 onednn_opts=os.environ.get("TF_ENABLE_ONEDNN_OPTS"))


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    writer = config.stash.get(JOURNAL, None)
    if writer is not None and config.stash.get(INTERRUPTED, False):
        terminalreporter.write_line(
            f"membed: the run was interrupted; its finished cases are in {config.getoption('benchmark_json')} "
            f"and {writer.path}. Run the same command with --resume to run only the rest.", yellow=True, bold=True)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_sessionfinish(session: pytest.Session):
    """Writes the JSON of a run in which no case produced a timing in this process, so nothing is lost.

    pytest-benchmark saves nothing when no benchmark ran here; a run whose
    every case skipped (no data, too big), ran in its own process, or was
    resumed from a journal is still a result the report must show. Its
    "Not saving anything" warning would then be wrong, so it is silenced.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Not saving anything")
        yield
    if RESUMED in session.config.stash and session.exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
        session.exitstatus = pytest.ExitCode.OK  # the resumed run had finished: nothing was left to run
    writer = session.config.stash.get(JOURNAL, None)
    if writer is not None:
        writer.close()
    benchmark_session = getattr(session.config, "_benchmarksession", None)
    if (benchmark_session is None or not benchmark_session.json or benchmark_session.benchmarks
            or distributed.is_worker(session.config)):
        return
    stash = session.config.stash
    if not (stash.get(NOT_RUN, []) or stash.get(ISOLATED, []) or RESUMED in stash):
        return
    hook = session.config.hook
    commit_info = hook.pytest_benchmark_generate_commit_info(config=session.config)
    output_json = hook.pytest_benchmark_generate_json(
        config=session.config, benchmarks=[], include_data=True,
        machine_info=benchmark_session.get_machine_info(), commit_info=commit_info)
    pytest_benchmark_update_json(session.config, [], output_json)
    benchmark_session.save_json(output_json)


# ----- fixtures ------------------------------------------------------------------------
@pytest.fixture(scope="session")
def harness(pytestconfig: pytest.Config) -> Harness:
    """Per-session helpers: data, rules, layers, timing, the gather reference."""
    return Harness(pytestconfig.stash[SELECTION])


@pytest.fixture
def record(benchmark, case: grid.Case, harness: Harness) -> results.Record:
    """The case's `benchmark.extra_info`: every schema field, pre-filled; the test completes it.

    Writing a key that `analysis.schema` does not declare raises ValueError.
    """
    if case.kind != "paired":
        harness.drop_reference()  # the last paired case's gather table (up to 2.5 GB)
    benchmark.extra_info = results.Record(case, benchmark.extra_info)
    yield benchmark.extra_info
    if case.kind != "isolated-memory":  # the memory suite builds nothing in this process
        release_memory(benchmark.extra_info.get("param_bytes"))
