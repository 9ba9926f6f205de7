"""Names `membed.measure` had before it was split, kept for one release; each says where it moved.

The id streams moved to `membed.data.ids` (one name for the concept:
dataset); the steps the suites time and the memory case moved beside the
suites, to the repository's `bench/steps.py`. Those are imported when first
used, so `membed.measure` imports without `bench/` on `sys.path` (an
installed membed), and only the moved step names need it.
"""

from __future__ import annotations

import importlib
import json
import sys
from typing import Any, Callable, Sequence

from membed.data import ids
from membed.measure import isolation, probes, sizes

STEPS_MODULE = "bench.steps"

# Moved to membed.data.ids; kept here for one release.
SYNTHETIC_VOCABS = ids.SYNTHETIC_DATASETS
SIDES = ids.SIDES
ZIPF_EXPONENT = ids.ZIPF_EXPONENT
DRAWS_PER_ID = ids.DRAWS_PER_ID
_load_ratings = ids.load_ratings
# Moved to membed.measure.probes; kept here for one release.
RESERVE_SHARE = probes.RESERVE_SHARE
MIN_RESERVE_BYTES = probes.MIN_RESERVE_BYTES
# Moved to membed.measure.isolation; kept here for one release.
_death_reason = isolation.death_reason
# Moved to bench.steps; kept here for one release.
DEFAULT_BATCH_SIZE = 4096


class IdSource(ids.DatasetIds):
    """Moved to `membed.data.DatasetIds` (field `dataset`, was `vocab`); kept here for one release.

    Example:
        >>> IdSource("synthetic-zipf", 10**6).vocab
        'synthetic-zipf'
    """

    @property
    def vocab(self) -> str:
        """The old name of `dataset`."""
        return self.dataset


def weight_bytes(layer) -> int:
    """Moved to `membed.measure.layer_sizes(layer).param_bytes`; kept here for one release."""
    return sizes.layer_sizes(layer).param_bytes


def _steps():
    """bench/steps.py, or an ImportError saying where to run from."""
    try:
        return importlib.import_module(STEPS_MODULE)
    except ModuleNotFoundError as error:
        if error.name not in ("bench", STEPS_MODULE):
            raise
        raise ImportError(
            "membed.measure: the steps and the memory case moved to the repository's bench/steps.py, which "
            "is not installed with membed; run from the repository root (or put it on PYTHONPATH)."
        ) from error


def compiled_lookup(layer, compile: bool = True) -> Callable:
    """Moved to `bench.steps.compiled_lookup`; kept here for one release."""
    return _steps().compiled_lookup(layer, compile)


def compiled_train_step(layer, learning_rate: float = 1e-3, compile: bool = True) -> Callable:
    """Moved to `bench.steps.compiled_train_step`; kept here for one release."""
    return _steps().compiled_train_step(layer, learning_rate, compile)


def make_target(batch_size: int, dim: int, seed: int = 0):
    """Moved to `bench.steps.make_target`; kept here for one release."""
    return _steps().make_target(batch_size, dim, seed)


def strategy_module(name: str) -> str:
    """Moved to `bench.steps.strategy_module`; kept here for one release."""
    return _steps().strategy_module(name)


def check_spec(spec: dict) -> dict:
    """Moved to `bench.steps.check_spec`; kept here for one release."""
    return _steps().check_spec(spec)


def measure_peaks(spec: dict) -> dict[str, Any]:
    """Moved to `bench.steps.memory_case`; kept here for one release."""
    return _steps().memory_case(spec)


def measure_isolated(spec: dict, timeout_s: float = isolation.DEFAULT_TIMEOUT_S,
                     method: str = "fork") -> dict[str, Any]:
    """Moved to `bench.steps.measure_memory` (`membed.measure.run_isolated` of `bench.steps:memory_case`).

    Kept here for one release, with the same spec and result.
    """
    return _steps().measure_memory(spec, timeout_s, method)


def failed(reason: str, **fields: Any) -> dict[str, Any]:
    """Moved to `bench.steps.failed` (a memory case's) and `membed.measure.isolation.failed`; kept for one release."""
    return _steps().failed(reason, **fields)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m membed.measure [SPEC_JSON]`: one memory case measured here, one JSON line printed.

    Kept for one release: the case is `bench.steps.memory_case` (run from the
    repository root), and `membed.measure.run_isolated` runs any function in
    a fresh process. The spec comes from the argument, else stdin. Prints
    `{"status": "ok", ...}` or `{"status": "failed", "reason": ...}`; exit
    code 0 either way, 2 for a malformed spec.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        spec = json.loads(argv[0] if argv else sys.stdin.read())
    except json.JSONDecodeError as error:
        print(f"membed.measure: the spec is not JSON ({error}).", file=sys.stderr)
        return 2
    try:
        steps = _steps()
        spec = steps.check_spec(spec)
    except (ValueError, ImportError) as error:
        print(error, file=sys.stderr)
        return 2
    try:
        result = steps.memory_case(spec)
    except Exception as error:
        result = steps.failed(isolation.error_reason(error))
    print(json.dumps(result), flush=True)
    return 0
