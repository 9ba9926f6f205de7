"""`python -m bench.rss_phases`: a training step's process RSS, phase by phase, as other tools report it.

The memory suite reports allocator peaks and RSS above the process's baseline.
Tools such as PyTorch are usually compared by the whole process's peak RSS;
this prints that, after each phase of one strategy's training step (imports,
ids, build, lookup, optimizer slots, two steps), in a process of its own, on
one TensorFlow thread. Run it once with and once without
`TF_ENABLE_ONEDNN_OPTS=0` to see what oneDNN holds (reports/README.md, issue 11).

Example:
    TF_ENABLE_ONEDNN_OPTS=0 python -m bench.rss_phases --strategy full --vocab-size 1e7 --optimizer lazy_adam
"""

from __future__ import annotations

import argparse
import resource
import sys
from collections.abc import Sequence

import psutil

MIB = 2**20


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.rss_phases", description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", default="full", help="a registered strategy (default full)")
    parser.add_argument("--vocab-size", default="1e7", help="ids in the table (default 1e7)")
    parser.add_argument("--dim", type=int, default=64, help="embedding dimension (default 64)")
    parser.add_argument("--batch-size", type=int, default=4096, help="ids per step (default 4096)")
    parser.add_argument("--optimizer", default="rowwise_adagrad",
                        help="a name of membed.optim (default rowwise_adagrad)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    process = psutil.Process()

    def report(phase: str) -> None:
        print(f"{phase:24s} RSS {process.memory_info().rss / MIB:9.1f} MiB", flush=True)

    report("start")
    from membed.quiet import import_tensorflow, native_stderr_captured

    with native_stderr_captured():  # TensorFlow's start-up log lines, hidden (bench imports it)
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
    print(f"{'peak (ru_maxrss)':24s} RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:9.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
