"""The lookup suite on an accelerator, under Keras's JAX backend, written as the suites' JSON.

The CPU suites run on TensorFlow; accelerator machines here carry JAX but no
TensorFlow, and every strategy is written with `keras.ops`, so this script
runs the lookup suite's measurement there:

    KERAS_BACKEND=jax python -m bench.gpu_lookup --vocab-sizes 1e6,1e7,1e8 --out results.json
    python -m analysis.report results.json

Its cases are the lookup suite's and the gather reference's
(`bench/test_lookup.py`: their axes, on synthetic-zipf ids) at the given
sizes, and a case skips by the lookup suite's rules (`bench/rules.py`: not
sublinear above 1e7 ids, more than the machine holds; TensorFlow-free). It
times each case as the CPU harness does: a fresh batch per round
(`membed.data.DatasetIds`, seeded by the round), the bare `jnp.take` from a
full float32 table (`rules.gather_rows` rows) timed on that round's ids just
before the layer's jitted forward pass (its `stateless_call`), the number of
rounds from the profile's budget (`--profile`, default full). `gather_ratio`
is the ratio of the two medians. The JSON has pytest-benchmark's shape and
the `membed` block (`bench/results.py`), so `python -m analysis.report`
reads it; each entry's `fullname` is `bench/gpu_lookup.py::<suite>[<id>]`
and `machine_info` names the device and backend. Under JAX, `mixed_dim` has
no dynamic partition and falls back to masking every block (k gathers per
id): its numbers here show that fallback.
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    # Before keras is imported (by membed.strategies, through bench.grid).
    os.environ.setdefault("KERAS_BACKEND", "jax")
    # The seeded hashes use 64-bit integer arithmetic, which JAX disables by default.
    os.environ.setdefault("JAX_ENABLE_X64", "true")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import Any, Callable  # noqa: E402

from bench import grid, options, results, rules  # noqa: E402
from bench.test_lookup import GATHER, LOOKUP  # noqa: E402
from membed import strategies  # noqa: E402
from membed.data import DatasetIds  # noqa: E402
from membed.measure import LayerSizes, error_reason, layer_options, layer_sizes  # noqa: E402

DATASET = "synthetic-zipf"
SCRIPT = "bench/gpu_lookup.py"


def fullname(case: grid.Case) -> str:
    """The entry's node-id-like name: `bench/gpu_lookup.py::lookup[full-synthetic-zipf-1000000-64]`."""
    return f"{SCRIPT}::{case.suite}[{case.test_id}]"


def gpu_cases(selection: grid.Selection, batch_size: int | None = None) -> list[grid.Case]:
    """The gather reference and the lookup cases of `selection`, size by size (one reference table at a time)."""
    cases = grid.cases(GATHER, selection) + grid.cases(LOOKUP, selection)
    if batch_size is not None:
        cases = [dataclasses.replace(case, batch_size=batch_size) for case in cases]
    order = {size: index for index, size in enumerate(selection.vocab_sizes)}
    return sorted(cases, key=lambda case: (order[case.vocab_size], case.kind != "reference"))


def time_paired(function: Callable, draw: Callable[[], Any], profile: grid.Profile,
                reference: Callable | None = None) -> tuple[list[float], list[float]]:
    """Seconds per round of `function`, and of `reference` just before it, both on each round's fresh batch.

    The first call compiles; one warm call chooses the number of rounds
    (`Profile.rounds_for`) and counts as the first warm-up round. Each
    function must block until its result is ready.

    Returns:
        (function's rounds, reference's rounds, empty without one), the warm-up rounds left out.
    """
    for compiled in (reference, function):
        if compiled is not None:
            compiled(draw())
    ids = draw()
    start = time.perf_counter()
    function(ids)
    rounds = profile.rounds_for(time.perf_counter() - start)
    timed: list[float] = []
    against: list[float] = []
    for _ in range(max(0, profile.warmup_rounds - 1) + rounds):
        ids = draw()
        if reference is not None:
            start = time.perf_counter()
            reference(ids)
            against.append(time.perf_counter() - start)
        start = time.perf_counter()
        function(ids)
        timed.append(time.perf_counter() - start)
    return timed[-rounds:], against[-rounds:]


class JaxDevice:
    """The JAX side: jitted functions on the first device, each call blocking until its result is ready."""

    def __init__(self):
        import jax
        import jax.numpy as jnp

        self.jax, self.jnp = jax, jnp
        self.device = jax.devices()[0]

    def machine_info(self) -> dict[str, Any]:
        import keras

        return {"node": platform.node(), "machine": platform.machine(), "system": platform.system(),
                "python_version": platform.python_version(), "device": str(self.device),
                "backend": keras.backend.backend(), "jax": self.jax.__version__, "keras": keras.__version__}

    def ids(self, source: DatasetIds, batch_size: int) -> Callable[[], Any]:
        """Draws a fresh seeded batch per call, on the device (int32: every size here is below 2**31)."""
        seeds = iter(range(1, 1 << 62))
        return lambda: self.jax.device_put(self.jnp.asarray(source.sample(batch_size, next(seeds)), self.jnp.int32))

    def gather(self, rows: int, dim: int, vocab_size: int) -> Callable:
        """A bare `jnp.take` from a float32 table of `rows` rows; ids beyond it are folded in."""
        table = self.jax.random.uniform(self.jax.random.PRNGKey(grid.SEED), (rows, dim), self.jnp.float32)
        # The table is an argument, not a constant of the compiled function (it may hold gigabytes).
        take = self.jax.jit(lambda values, ids: self.jnp.take(values, ids % rows if rows < vocab_size else ids, axis=0))
        return lambda ids: self.jax.block_until_ready(take(table, ids))

    def lookup(self, layer) -> Callable:
        """The layer's forward pass, jitted, its weights passed as arguments."""
        trainable = [v.value for v in layer.trainable_variables]
        frozen = [v.value for v in layer.non_trainable_variables]
        forward = self.jax.jit(lambda t, f, ids: layer.stateless_call(t, f, ids)[0])
        return lambda ids: self.jax.block_until_ready(forward(trainable, frozen, ids))


def measure_case(case: grid.Case, device: JaxDevice, profile: grid.Profile, reference: dict) -> dict[str, Any]:
    """Runs one case: `{"kind": "benchmark" | "not_run", "entry": ...}`.

    A gather case replaces `reference["gather"]`, the bare gather the lookup
    cases after it (of its size) are paired with.
    """
    import keras

    source = DatasetIds(case.dataset, case.vocab_size)
    record = results.Record(case)
    draw = device.ids(source, case.batch_size)
    if case.kind == "reference":
        rows = rules.gather_rows(case.vocab_size, case.dim)
        reference.clear()  # frees the last size's table first
        record.update(options={"table_rows": rows},
                      **LayerSizes.float32(rows * case.dim).as_case(case.vocab_size, case.dim).as_dict())
        try:
            gather = device.gather(rows, case.dim, case.vocab_size)
            timed, _ = time_paired(gather, draw, profile)
        except Exception as error:
            reference["failed"] = f"its bare gather failed: {error_reason(error)}"
            return {"kind": "not_run", "entry": results.not_run_entry(case, record, "failed", error_reason(error),
                                                                     fullname(case))}
        reference["gather"] = gather
        return {"kind": "benchmark", "entry": results.benchmark_entry(case, record, results.stats_of(timed),
                                                                     fullname(case))}
    admission = rules.admit(case, case.vocab_size, None, LOOKUP.rules)
    if admission.sizes is not None:
        record.update(options=admission.options, **admission.sizes.as_dict())
    if admission.projected:
        record["projected"] = True
    if admission.reason is not None:
        return {"kind": "not_run", "entry": results.not_run_entry(case, record, "skipped", admission.reason,
                                                                 fullname(case))}
    try:
        if "gather" not in reference:
            raise RuntimeError(reference.get("failed", "no bare gather was timed at this size"))
        keras.utils.set_random_seed(grid.SEED)
        counts = source.counts() if strategies.get(case.strategy).needs_counts else None
        layer = strategies.build(case.strategy, case.vocab_size, case.dim, counts=counts)
        if not layer.built:
            layer.build((case.batch_size,))
        record.update(options=layer_options(layer),
                      **layer_sizes(layer).as_case(case.vocab_size, case.dim).as_dict())
        timed, against = time_paired(device.lookup(layer), draw, profile, reference["gather"])
    except Exception as error:  # one case failing must not stop the run
        return {"kind": "not_run", "entry": results.not_run_entry(case, record, "failed", error_reason(error),
                                                                 fullname(case))}
    stats = results.stats_of(timed)
    record["gather_ratio"] = stats["median"] / results.stats_of(against)["median"]
    return {"kind": "benchmark", "entry": results.benchmark_entry(case, record, stats, fullname(case))}


def document(benchmarks: list[dict], not_run: list[dict], selected: list[str], profile: str | None,
             machine_info: dict[str, Any]) -> dict[str, Any]:
    """The result file: pytest-benchmark's top-level keys and the `membed` block, in run order."""
    return {
        "machine_info": machine_info,
        "commit_info": {},
        "benchmarks": results.in_run_order(benchmarks, selected),
        "datetime": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "version": SCRIPT,
        "membed": results.membed_block(profile, selected, results.in_run_order(not_run, selected)),
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_lookup", description=__doc__.splitlines()[0])
    parser.add_argument("--vocab-sizes", default="1e6,1e7,1e8", help="comma-separated sizes (default 1e6,1e7,1e8)")
    parser.add_argument("--strategies", default=None, help="comma-separated registered strategies (default: all)")
    parser.add_argument("--profile", default="full", help=f"rounds and budget of: {' | '.join(grid.PROFILES)}")
    parser.add_argument("--batch-size", type=int, default=None, help="ids per lookup (default: the profile's)")
    parser.add_argument("--out", default=None, help="write the result JSON here")
    return parser


def run(selection: grid.Selection, device, batch_size: int | None = None,
        echo: Callable[[str], Any] = print) -> dict[str, Any]:
    """Measures every case of `selection` on `device` (a `JaxDevice`) and returns the result document."""
    cases = gpu_cases(selection, batch_size)
    found: dict[str, list[dict]] = {"benchmark": [], "not_run": []}
    reference: dict = {}
    for case in cases:
        outcome = measure_case(case, device, selection.profile, reference)
        entry = outcome["entry"]
        found[outcome["kind"]].append(entry)
        if outcome["kind"] == "benchmark":
            ratio = entry["extra_info"]["gather_ratio"]
            echo(f"{case.case_id()}: {entry['stats']['median'] * 1e6:.1f} us"
                 + (f", x{ratio:.2f} the bare gather" if ratio is not None else ""))
        else:
            echo(f"{case.case_id()}: {entry['status']}: {entry['reason']}")
    return document(found["benchmark"], found["not_run"], [fullname(case) for case in cases],
                    selection.profile.name, device.machine_info())


def main(argv: list[str] | None = None) -> int:
    """Runs the cases and writes the JSON; exit code 2 with a one-line error on a bad option."""
    args = build_parser().parse_args(argv)
    try:
        selection = options.selection_from_options(args.profile, args.strategies, args.vocab_sizes, DATASET)
        if args.batch_size is not None and args.batch_size < 1:
            raise options.GridError(f"invalid --batch-size {args.batch_size}: it must be an integer >= 1.")
    except options.GridError as error:
        print(f"bench.gpu_lookup: {error}", file=sys.stderr)
        return 2
    result = run(selection, JaxDevice(), args.batch_size)
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(result, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
