"""Lookup latency of every strategy on an accelerator, under Keras's JAX backend.

The CPU suites run on TensorFlow; accelerator machines here carry JAX but no
TensorFlow, and every strategy is written with `keras.ops`, so this script
runs the lookup suite's measurement there:

    KERAS_BACKEND=jax python -m bench.gpu_lookup --out results.json

For each strategy and vocabulary size it times a jitted forward pass over a
Zipf batch (the layer's `stateless_call`, weights passed as arguments) and a
bare `jnp.take` from a full-size table of the same output shape, and records
the median of each and their ratio (`gather_ratio`), as the CPU lookup suite
does. Under JAX, `mixed_dim` has no dynamic partition and falls back to
masking every block (k gathers per id): its numbers here show that fallback.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
# The seeded hashes use 64-bit integer arithmetic, which JAX disables by default.
os.environ.setdefault("JAX_ENABLE_X64", "true")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402

from membed import strategies  # noqa: E402
from membed.data.synthetic import zipf_expected_counts, zipf_ids  # noqa: E402

FULL_TABLE_LIMIT = 10**7  # rows of the reference table (2.5 GB at dim 64)
PARAM_LIMIT = 4 * 10**8  # cases whose default configuration holds more are skipped (1.6 GB)


def _median_seconds(fn, batches, repeats: int) -> float:
    jax.block_until_ready(fn(batches[0]))  # compile
    times = []
    for i in range(repeats):
        ids = batches[i % len(batches)]
        start = time.perf_counter()
        jax.block_until_ready(fn(ids))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(name: str, vocab_size: int, dim: int, batch_size: int, repeats: int, reference: float) -> dict:
    row = {"strategy": name, "vocab_size": vocab_size, "dim": dim, "batch_size": batch_size}
    cls = strategies.get(name)
    try:
        counts = zipf_expected_counts(vocab_size, 10 * vocab_size) if cls.needs_counts else None
        layer = strategies.build(name, vocab_size, dim, counts=counts)
        row["params"] = int(layer.count_params())
        trainable = [v.value for v in layer.trainable_variables]
        frozen = [v.value for v in layer.non_trainable_variables]
        lookup = jax.jit(lambda t, f, ids: layer.stateless_call(t, f, ids)[0])
        batches = [jnp.asarray(zipf_ids(vocab_size, batch_size, seed=s), dtype=jnp.int32) for s in range(8)]
        median = _median_seconds(lambda ids: lookup(trainable, frozen, ids), batches, repeats)
        row.update(status="ok", median_s=median, gather_ratio=median / reference)
    except Exception as error:  # one case failing must not stop the run
        row.update(status="failed", reason=f"{type(error).__name__}: {error}".splitlines()[0][:300])
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab-sizes", default="1000000,10000000,100000000")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--strategies", default=",".join(strategies.names()))
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    names = [n for n in args.strategies.split(",") if n]
    for name in names:
        strategies.get(name)
    rows = []
    device = str(jax.devices()[0])
    for vocab_size in (int(float(v)) for v in args.vocab_sizes.split(",")):
        table_rows = min(vocab_size, FULL_TABLE_LIMIT)
        table = jax.random.uniform(jax.random.PRNGKey(0), (table_rows, args.dim), jnp.float32, -0.05, 0.05)
        gather = jax.jit(lambda ids: jnp.take(table, ids, axis=0))
        batches = [jnp.asarray(zipf_ids(table_rows, args.batch_size, seed=s), dtype=jnp.int32) for s in range(8)]
        reference = _median_seconds(gather, batches, args.repeats)
        rows.append({"strategy": "gather", "vocab_size": vocab_size, "table_rows": table_rows, "dim": args.dim,
                     "batch_size": args.batch_size, "status": "ok", "median_s": reference, "gather_ratio": 1.0})
        for name in names:
            params = strategies.get(name).cost(vocab_size, args.dim).params
            if params > PARAM_LIMIT:
                rows.append({"strategy": name, "vocab_size": vocab_size, "status": "skipped",
                             "reason": f"default configuration holds {params:.2e} parameters (> {PARAM_LIMIT:.0e})"})
                continue
            rows.append(measure(name, vocab_size, args.dim, args.batch_size, args.repeats, reference))
            print(json.dumps(rows[-1]), flush=True)
    result = {"device": device, "backend": keras.backend.backend(), "jax": jax.__version__, "rows": rows}
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(result, handle, indent=1)
    print(f"\n{device}: median lookup time / bare jnp.take, batch {args.batch_size}, dim {args.dim}")
    for row in rows:
        if row.get("status") == "ok":
            print(f"{row['strategy']:>12} V={row['vocab_size']:>11,} {row['median_s'] * 1e6:9.1f} us "
                  f"x{row['gather_ratio']:.2f}")
        else:
            print(f"{row['strategy']:>12} V={row['vocab_size']:>11,} {row['status']}: {row.get('reason')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
