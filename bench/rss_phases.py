"""`python -m bench.rss_phases`: a training step's process RSS, phase by phase, as other tools report it.

The memory suite reports allocator peaks and RSS above the process's baseline.
Tools such as PyTorch are usually compared by the whole process's peak RSS;
this prints that, after each phase of one strategy's training step (imports,
ids, build, lookup, optimizer slots, two steps), in a process of its own, on
one TensorFlow thread. Run it once with and once without
`TF_ENABLE_ONEDNN_OPTS=0` to see what oneDNN holds (reports/README.md, issue 11).

`--peer torch` takes the same phases in PyTorch, the peer the issue measures
against: `nn.Embedding(sparse=True)` on the same ids and target, one thread,
with the optimizer PyTorch has for the name (`PEER_OPTIMIZERS`). PyTorch is
not a dependency of membed; install it to run the peer (`pip install torch`).

Example:
    TF_ENABLE_ONEDNN_OPTS=0 python -m bench.rss_phases --strategy full --vocab-size 1e7 --optimizer lazy_adam
    python -m bench.rss_phases --peer torch --vocab-size 1e7 --optimizer lazy_adam
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
from collections.abc import Callable, Sequence

import psutil

MIB = 2**20
# membed.optim's names -> PyTorch's optimizer of sparse gradients for the peer (none has row-wise AdaGrad;
# FBGEMM's is fused into its own embedding op).
PEER_OPTIMIZERS = {"sgd": "SGD", "adagrad": "Adagrad", "lazy_adam": "SparseAdam"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.rss_phases", description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", default="full", help="a registered strategy (default full)")
    parser.add_argument("--vocab-size", default="1e7", help="ids in the table (default 1e7)")
    parser.add_argument("--dim", type=int, default=64, help="embedding dimension (default 64)")
    parser.add_argument("--batch-size", type=int, default=4096, help="ids per step (default 4096)")
    parser.add_argument("--optimizer", default="rowwise_adagrad",
                        help="a name of membed.optim (default rowwise_adagrad)")
    parser.add_argument("--peer", choices=("torch",),
                        help="take the same phases in this framework instead (strategy full only; optimizers "
                             f"{', '.join(PEER_OPTIMIZERS)})")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    process = psutil.Process()

    def report(phase: str) -> None:
        print(f"{phase:24s} RSS {process.memory_info().rss / MIB:9.1f} MiB", flush=True)

    report("start")
    if args.peer:
        return torch_phases(args, report)
    from membed.quiet import import_tensorflow, jax_hidden, native_stderr_captured

    # TensorFlow's start-up log lines hidden, and JAX kept out of its import, as the membed CLI does (bench
    # imports TensorFlow).
    with native_stderr_captured(), jax_hidden():
        from bench.harness import use_tf_threads

        use_tf_threads(1)  # before TensorFlow's first op
        tf = import_tensorflow()
    from bench.options import GridError, parse_vocab_sizes
    from membed import optim, strategies

    try:
        sizes = parse_vocab_sizes(args.vocab_size)
        if len(sizes) != 1:
            raise ValueError(f"--vocab-size {args.vocab_size!r}: give one size, e.g. 1e7.")
        vocab_size = sizes[0]
        if args.strategy not in strategies.names():
            raise ValueError(f"unknown --strategy {args.strategy!r}; registered: {', '.join(strategies.names())}.")
        if args.optimizer not in optim.NAMES:
            raise ValueError(f"unknown --optimizer {args.optimizer!r}; one of {', '.join(optim.NAMES)}.")
    except (GridError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    from bench.steps import compiled_lookup, compiled_train_step, make_optimizer, make_target
    from membed.data import DatasetIds

    report("imports")
    source = DatasetIds.from_dict({"dataset": "synthetic-zipf", "vocab_size": vocab_size})
    ids = tf.constant(source.sample(args.batch_size, 1))
    target = tf.constant(make_target(args.batch_size, args.dim, 1))
    report("ids")
    counts = source.counts() if strategies.get(args.strategy).needs_counts else None
    layer = strategies.build(args.strategy, vocab_size, args.dim, counts=counts)
    if not layer.built:
        layer.build((args.batch_size,))
    report("built")
    compiled_lookup(layer, compile=False)(ids).numpy()
    report("lookup")
    optimizer = make_optimizer(args.optimizer, 1e-3)
    optimizer.build(layer.trainable_variables)
    report("optimizer slots")
    step = compiled_train_step(layer, compile=False, optimizer=optimizer)
    for number in (1, 2):
        step(ids, target).numpy()
        report(f"step {number}")
    report_peak()
    print(f"{'oneDNN':24s} {onednn_setting(os.environ.get('TF_ENABLE_ONEDNN_OPTS'))}")
    return 0


def onednn_setting(value: str | None) -> str:
    """What `TF_ENABLE_ONEDNN_OPTS` makes of oneDNN, which holds 1/32 of each allocator region (reports/README.md).

    Example:
        >>> onednn_setting("0")
        'off (TF_ENABLE_ONEDNN_OPTS=0)'
    """
    if value is None:
        return "on (TF_ENABLE_ONEDNN_OPTS unset: TensorFlow's default on x86 CPUs)"
    state = "off" if value.strip().lower() in ("0", "false") else "on"
    return f"{state} (TF_ENABLE_ONEDNN_OPTS={value})"


def report_peak() -> None:
    print(f"{'peak (ru_maxrss)':24s} RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:9.1f} MiB")


def one_size(text: str) -> int:
    """`--vocab-size` as an int (`1e7` allowed); ValueError unless it is one whole number >= 1.

    bench.options.parse_vocab_sizes says the same, but importing it imports TensorFlow.

    Example:
        >>> one_size("1e7")
        10000000
    """
    try:
        size = float(text)
    except ValueError:
        size = None
    if size is None or not size.is_integer() or size < 1:
        raise ValueError(f"--vocab-size {text!r}: give one whole number >= 1, e.g. 1e7.")
    return int(size)


def torch_phases(args: argparse.Namespace, report: Callable[[str], None]) -> int:
    """The phases of `main` in PyTorch: `nn.Embedding(sparse=True)`, one thread, the optimizer PyTorch has.

    TensorFlow is never imported here (bench.options and bench.steps import it), so the peak is PyTorch's own.
    """
    try:
        if args.strategy != "full":
            raise ValueError(f"--peer torch: a plain table only; use --strategy full, not {args.strategy!r}.")
        if args.optimizer not in PEER_OPTIMIZERS:
            raise ValueError(f"--peer torch: no PyTorch optimizer for {args.optimizer!r}; one of "
                             f"{', '.join(PEER_OPTIMIZERS)}.")
        vocab_size = one_size(args.vocab_size)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        import torch
    except ImportError:
        print("error: --peer torch needs PyTorch, which membed does not install: pip install torch.", file=sys.stderr)
        return 2
    import numpy as np

    from membed.data import DatasetIds

    torch.set_num_threads(1)
    report("imports")
    source = DatasetIds.from_dict({"dataset": "synthetic-zipf", "vocab_size": vocab_size})
    ids = torch.from_numpy(source.sample(args.batch_size, 1))
    # bench.steps.make_target's target, seed 1, as main's.
    target = np.random.default_rng(1).normal(0.0, 0.05, (args.batch_size, args.dim)).astype(np.float32)
    target = torch.from_numpy(target)
    report("ids")
    table = torch.nn.Embedding(vocab_size, args.dim, sparse=True)
    report("built")
    with torch.no_grad():
        table(ids)
    report("lookup")
    optimizer = getattr(torch.optim, PEER_OPTIMIZERS[args.optimizer])(table.parameters(), lr=1e-3)
    report("optimizer slots")  # Adagrad makes its sums here, SparseAdam its moments in the first step
    for number in (1, 2):
        optimizer.zero_grad()
        torch.mean(torch.square(table(ids) - target)).backward()
        optimizer.step()
        report(f"step {number}")
    report_peak()
    return 0


if __name__ == "__main__":
    sys.exit(main())
