"""`python -m membed`: list strategies, reproduce the Keras example, train any pair, plan memory.

Errors are one line on stderr and exit code 2. Arguments that need no
TensorFlow (the dataset's name, the numbers) are checked before it is
imported, and TensorFlow's start-up log lines are hidden unless `--verbose`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

EXIT_USAGE = 2
PLAN_PROG = "python -m membed plan"
RATING_DIM, RATING_BATCH_SIZE = 64, 128
# membed.ctr's DEFAULT_DIM and fit_ctr's batch size, repeated so that --help needs no TensorFlow.
CTR_DATASET, CTR_DIM, CTR_BATCH_SIZE = "synthetic-ctr", 16, 1024


class CliError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


def _add_option(group, flag: str, kind: type, default, help: str) -> None:
    """An option taking a value, its help ending in the default (flags and required options have none to show)."""
    group.add_argument(flag, type=kind, default=default, help=f"{help} (default: %(default)s)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m membed", description=__doc__.splitlines()[0])
    parser.add_argument("--verbose", action="store_true", help="show TensorFlow's start-up log lines")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("plan", add_help=False,
                        help=f"training memory per strategy and hosts needed (`{PLAN_PROG} --help`)")

    listing = commands.add_parser("strategies", help="every registered strategy and its options")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")

    def data_args(sub):
        sub.add_argument("--dataset", required=True,
                         help="ml-100k, ml-1m, ml-latest-small, ml-20m, ml-25m (train also: synthetic, synthetic-ctr)")
        _add_option(sub, "--epochs", int, 3, "training epochs; for synthetic-ctr, the budget of early stopping")
        sub.add_argument("--dim", type=int, default=None,
                         help=f"embedding dimension, {CTR_DIM} for synthetic-ctr (default: {RATING_DIM})")
        sub.add_argument("--batch-size", type=int, default=None,
                         help=f"rows per training step, {CTR_BATCH_SIZE} for synthetic-ctr "
                              f"(default: {RATING_BATCH_SIZE})")
        _add_option(sub, "--seed", int, 42, "seed of the split, the initial weights and synthetic data")
        sub.add_argument("--data-dir", default=None,
                         help="folder holding extracted ml-* folders, searched before $MEMBED_DATA_DIR and the cache")
        sub.add_argument("--no-download", action="store_true", help="never download a missing dataset")
        sub.add_argument("--optimizer", default="adam",
                         help="adam (the example's), lazy_adam, adagrad, rowwise_adagrad or sgd (default: adam)")
        sub.add_argument("--learning-rate", type=float, default=None,
                         help="step size (default: the optimizer's in membed.train.RATING_LEARNING_RATES; "
                              "adam's is the example's 1e-3)")
        sub.add_argument("--jit", action="store_true", help="compile the train step with XLA")
        sub.add_argument("--json", action="store_true", help="print one JSON object")
        sub.add_argument("--dry-run", action="store_true", help="build the models and print parameters only")

    reproduce = commands.add_parser("reproduce", help="the Keras example's experiment on a MovieLens variant")
    data_args(reproduce)

    train = commands.add_parser("train", help="train the rating model with any pair of strategies "
                                              "(or the click-through model on synthetic-ctr)")
    data_args(train)
    train.add_argument("--user", help="STRATEGY[:key=value,...] for users (rating datasets; required there)")
    train.add_argument("--item", help="STRATEGY[:key=value,...] for items (rating datasets; required there)")
    synthetic = train.add_argument_group("synthetic dataset")
    _add_option(synthetic, "--num-users", int, 10_000, "user vocabulary size")
    _add_option(synthetic, "--num-items", int, 5_000, "item vocabulary size")
    _add_option(synthetic, "--num-ratings", int, 200_000, "number of ratings")
    _add_option(synthetic, "--rank", int, 8, "rank of the planted model")
    _add_option(synthetic, "--noise-sigma", float, 0.3, "noise standard deviation; its square is the best MSE")
    ctr = train.add_argument_group("synthetic-ctr dataset (DLRM-style click-through model, membed.ctr)")
    ctr.add_argument("--strategy", help="the strategy on every field of more than 1,000 ids (required there)")
    _add_option(ctr, "--preset", str, "20x", "the strategy's preset: 5x, 20x, 100x, ... (full: baseline)")
    _add_option(ctr, "--num-rows", int, 100_000, "rows (80%% train, 10%% validation, 10%% test)")
    _add_option(ctr, "--patience", int, 1, "early stopping: epochs without a better validation log loss")
    return parser


def _load(args):
    from membed import data

    if args.dataset == "synthetic" and args.command == "train":
        return data.planted_ratings(args.num_users, args.num_items, args.num_ratings, rank=args.rank,
                                    noise_sigma=args.noise_sigma, seed=args.seed)
    # Messages name this command's flags, not load_movielens' arguments.
    hints = data.SourceHints(data_dir="--data-dir", allow_download="drop --no-download")
    return data.load_movielens(args.dataset, data_dir=args.data_dir, download=not args.no_download, hints=hints)


def _strategies_command(args) -> int:
    from membed import strategies

    # Everything about the options comes from each strategy's config dataclass.
    rows = [
        {
            "name": name,
            "description": strategies.get(name).summary,
            "needs_counts": config.uses_counts,
            "options": {key: {"default": opt.default, "help": opt.help} for key, opt in config.options().items()},
        }
        for name in strategies.names()
        for config in [strategies.get(name).config_class]
    ]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="membed strategies")
    table.add_column("name", style="bold")
    table.add_column("description")
    table.add_column("options (default)")
    for row in rows:
        options = ", ".join(f"{k}={v['default']}" for k, v in row["options"].items())
        table.add_row(row["name"], row["description"], options or "-")
    Console().print(table)
    return 0


def _run_pairs(args, pairs) -> dict:
    """Builds (and unless --dry-run, trains) each (label, Pair) on the dataset."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from membed import data as data_module
    from membed.model import pair_model
    from membed.presets import fit_pair
    from membed.train import RATING_LEARNING_RATES, set_seed

    if args.optimizer not in RATING_LEARNING_RATES:
        raise CliError(f"Unknown --optimizer {args.optimizer!r}. Use one of: {', '.join(RATING_LEARNING_RATES)}.")
    learning_rate = args.learning_rate or RATING_LEARNING_RATES[args.optimizer]
    ratings = _load(args)
    train_idx, val_idx = data_module.random_split(len(ratings), 0.85, seed=args.seed)
    models = []
    console = Console(stderr=True, quiet=args.json)
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("epoch {task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console, disable=args.dry_run or args.json) as progress:
        for label, pair in pairs:
            if args.dry_run:
                set_seed(args.seed)
                model = pair_model(ratings, pair.user, pair.item, dim=args.dim,
                                   user_options=pair.user_options, item_options=pair.item_options)
            else:
                model, result = fit_pair(pair, ratings, train_idx, val_idx, dim=args.dim, epochs=args.epochs,
                                         batch_size=args.batch_size, seed=args.seed, jit_compile=args.jit,
                                         progress=progress, optimizer=args.optimizer, learning_rate=learning_rate)
            entry = {"name": label, "user": pair.user, "item": pair.item, "params": int(model.count_params())}
            if not args.dry_run:
                entry.update(val_mse=result.val_mse, val_mae=result.val_mae, val_rmse=result.val_rmse,
                             train_mse=result.train_mse, fit_seconds=round(result.fit_seconds, 3))
            models.append(entry)
    return {"dataset": ratings.name, "optimizer": args.optimizer, "learning_rate": learning_rate, "num_users": ratings.num_users, "num_items": ratings.num_items,
            "num_ratings": len(ratings), "epochs": None if args.dry_run else args.epochs, "models": models}


def _print_result(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{result['dataset']}: {result['num_users']} users, {result['num_items']} items, "
                        f"{result['num_ratings']} ratings")
    for column in ("model", "users", "items", "params", "val MSE per epoch", "val MAE (last)", "fit s"):
        table.add_column(column)
    for m in result["models"]:
        per_epoch = " ".join(f"{v:.4f}" for v in m.get("val_mse", [])) or "-"
        mae = f"{m['val_mae'][-1]:.4f}" if m.get("val_mae") else "-"
        table.add_row(m["name"], m["user"], m["item"], f"{m['params']:,}", per_epoch, mae,
                      str(m.get("fit_seconds", "-")))
    Console().print(table)


def _reproduce_command(args) -> int:
    from membed.presets import BASELINE, EXAMPLE

    result = _run_pairs(args, [("baseline", BASELINE), ("memory_efficient", EXAMPLE)])
    _print_result(result, args.json)
    return 0


def _train_ctr_command(args) -> int:
    """`train --dataset synthetic-ctr`: one preset of one strategy on every large field, fit with early stopping."""
    from membed import ctr, data

    ctr_data = data.synthetic_ctr(args.num_rows, seed=args.seed)
    presets = {p.preset: p for p in ctr.ctr_presets(args.strategy, ctr_data, args.dim)}
    if args.strategy == "full":
        args.preset = "baseline"
    if args.preset not in presets:
        raise CliError(f"Unknown --preset {args.preset!r} for {args.strategy}. Use one of: {', '.join(presets)}.")
    preset = presets[args.preset]
    if preset.error:
        raise CliError(f"{args.strategy} preset {args.preset} cannot be built here: {preset.error}")
    result = {"dataset": ctr_data.name, "strategy": args.strategy, "preset": args.preset, "num_rows": len(ctr_data),
              "cardinalities": list(ctr_data.cardinalities), "dim": args.dim, "optimizer": args.optimizer,
              "learning_rate": args.learning_rate or ctr.CTR_LEARNING_RATES.get(args.optimizer)}
    if args.dry_run:
        from membed.train import set_seed

        set_seed(args.seed)
        result["params"] = int(ctr.build_ctr_model(ctr_data, preset, args.dim).count_params())
    else:
        train_idx, val_idx, test_idx = data.train_val_test_split(len(ctr_data), seed=args.seed)
        fit = ctr.fit_ctr(ctr_data, preset, train_idx, val_idx, test_idx, dim=args.dim, max_epochs=args.epochs,
                          patience=args.patience, batch_size=args.batch_size, learning_rate=args.learning_rate,
                          optimizer=args.optimizer, seed=args.seed)
        result.update(fit.as_dict(), fit_seconds=round(fit.fit_seconds, 3))
    if args.json:
        print(json.dumps(result))
        return 0
    from rich.console import Console
    from rich.table import Table

    fields = ", ".join(map(str, ctr_data.cardinalities))
    table = Table(title=f"{ctr_data.name}: {len(ctr_data):,} rows, fields of {fields} ids")
    columns = ("model", "params", "val log loss per epoch", "test AUC", "test log loss", "Bayes log loss",
               "excess log loss", "fit s")
    for column in columns:
        table.add_column(column)
    if args.dry_run:
        table.add_row(f"{args.strategy} {args.preset}", f"{result['params']:,}", *["-"] * 6)
    else:
        table.add_row(f"{args.strategy} {args.preset}", f"{result['params']:,}",
                      " ".join(f"{v:.4f}" for v in result["val_logloss"]) + f" (best {result['best_epoch']})",
                      f"{result['test_auc']:.4f}", f"{result['test_logloss']:.4f}", f"{result['planted_logloss']:.4f}",
                      f"{result['excess_logloss']:.4f}", str(result["fit_seconds"]))
    Console().print(table)
    return 0


def _train_command(args) -> int:
    from membed import strategies
    from membed.presets import Pair

    if args.dataset == CTR_DATASET:
        return _train_ctr_command(args)
    user, user_options = strategies.parse_spec(args.user)
    item, item_options = strategies.parse_spec(args.item)
    pair = Pair("custom", user, item, strategies.registry.resolve_options(user, user_options),
                strategies.registry.resolve_options(item, item_options))
    result = _run_pairs(args, [(pair.strategy, pair)])
    _print_result(result, args.json)
    return 0


COMMANDS = {"strategies": _strategies_command, "reproduce": _reproduce_command, "train": _train_command}


def _check_early(args) -> None:
    """What can be checked before TensorFlow is imported (a usage error then answers at once)."""
    from membed import data

    if getattr(args, "epochs", 1) < 1:
        raise CliError(f"invalid --epochs: {args.epochs}. It must be >= 1.")
    dataset = getattr(args, "dataset", None)
    valid = (*data.MOVIELENS, "synthetic", CTR_DATASET) if args.command == "train" else data.MOVIELENS
    if dataset is not None and dataset not in valid:
        raise CliError(f"Unknown dataset {dataset!r}. Use one of: {', '.join(valid)}.")
    if dataset is None:
        return
    ctr = dataset == CTR_DATASET
    if args.dim is None:
        args.dim = CTR_DIM if ctr else RATING_DIM
    if args.batch_size is None:
        args.batch_size = CTR_BATCH_SIZE if ctr else RATING_BATCH_SIZE
    if args.command != "train":
        return
    if ctr and not args.strategy:
        raise CliError(f"--dataset {CTR_DATASET} needs --strategy (one per model; --user and --item are for ratings).")
    if not ctr and not (args.user and args.item):
        raise CliError(f"--dataset {dataset} needs --user and --item (--strategy is for {CTR_DATASET}).")
    for option, value, low in (("--num-rows", args.num_rows, 10), ("--patience", args.patience, 1)):
        if ctr and value < low:
            raise CliError(f"invalid {option}: {value}. It must be >= {low}.")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["plan"]:
        from membed.plan.cli import main as plan_main

        return plan_main(argv[1:], prog=PLAN_PROG)
    args = _parser().parse_args(argv)
    from membed.data import DataError, DatasetUnavailable
    from membed.quiet import import_tensorflow

    try:
        _check_early(args)
        import_tensorflow(verbose=args.verbose)
        return COMMANDS[args.command](args)
    except (CliError, ValueError, DataError, DatasetUnavailable) as error:
        message = " ".join(str(error).split())
        print(f"error: {message}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
