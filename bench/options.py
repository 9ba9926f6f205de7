"""The run's command-line options (`--profile`, `--strategies`, `--datasets`, `--optimizers`, ...) as a `Selection`.

A bad value is a `GridError` whose message names it and lists the valid
values; bench/conftest.py turns it into a usage error before anything is
collected.

Example:
    >>> selection = selection_from_options("quick", "full,qr", "1000,1e5", "synthetic-zipf")
    >>> selection.strategies, selection.vocab_sizes, selection.datasets
    (('full', 'qr'), (1000, 100000), ('synthetic-zipf',))
"""

from __future__ import annotations

import dataclasses

from bench.grid import DATASETS, OPTIMIZERS, PROFILES, Selection
from membed import measure, strategies


class GridError(ValueError):
    """A command-line value the grid cannot use; the message lists the valid values."""


def parse_list(text: str | None) -> list[str] | None:
    """'a, b,,c' -> ['a', 'b', 'c']; None stays None (the option was not given)."""
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
                           measure_timeout_s: float = measure.DEFAULT_TIMEOUT_S,
                           optimizer_list: str | None = None, seed_list: str | None = None) -> Selection:
    """Builds the run's Selection from the command-line strings; GridError lists valid values.

    Args:
        profile: a name of `grid.PROFILES`.
        strategy_list: comma-separated registered strategies (None: all).
        vocab_sizes: comma-separated synthetic sizes, for every synthetic dataset (None: the
            profile's, narrowed per dataset by its `dataset_vocab_sizes`).
        datasets: comma-separated names of `grid.DATASETS` (None: the profile's,
            with its narrower per-suite datasets).
        allow_download: let MovieLens variants that are not found be downloaded.
        measure_timeout_s: seconds before a measuring process is killed.
        optimizer_list: comma-separated names of `grid.OPTIMIZERS` (`membed.optim.NAMES`)
            for the suites that train (None: the profile's).
        seed_list: comma-separated seeds (integers >= 0) of the accuracy suite (None: the profile's
            `accuracy_seeds`).
    """
    if profile not in PROFILES:
        raise GridError(f"unknown --profile {profile!r}. Use one of: {', '.join(PROFILES)}.")
    chosen = PROFILES[profile]
    registered = strategies.names()
    names = _checked_names(strategy_list, "strategy", "--strategies", registered)
    wanted = _checked_names(datasets, "dataset", "--datasets", DATASETS)
    optimizers = _checked_names(optimizer_list, "optimizer", "--optimizers", OPTIMIZERS)
    if not (measure_timeout_s > 0):
        raise GridError(f"invalid --measure-timeout {measure_timeout_s!r}: it must be a number of seconds > 0.")
    if seed_list is not None:
        seeds = parse_list(seed_list) or []
        if not seeds or not all(seed.isdigit() for seed in seeds):
            raise GridError(f"invalid --seeds {seed_list!r}: comma-separated integers >= 0, e.g. 1,2,3.")
        chosen = dataclasses.replace(chosen, accuracy_seeds=tuple(dict.fromkeys(int(seed) for seed in seeds)))
    sizes = (parse_vocab_sizes(vocab_sizes) if vocab_sizes is not None
             else chosen.vocab_sizes + chosen.sublinear_vocab_sizes)
    return Selection(
        profile=chosen,
        strategies=tuple(dict.fromkeys(names)) if names is not None else tuple(registered),
        vocab_sizes=sizes,
        datasets=tuple(dict.fromkeys(wanted)) if wanted is not None else chosen.datasets,
        suite_datasets={} if wanted is not None else dict(chosen.suite_datasets),
        allow_download=allow_download,
        measure_timeout_s=measure_timeout_s,
        optimizers=tuple(dict.fromkeys(optimizers)) if optimizers is not None else chosen.optimizers,
        dataset_vocab_sizes={} if vocab_sizes is not None else dict(chosen.dataset_vocab_sizes),
    )
