"""The sharded suite's JAX process: runs `membed.shard` cases on a mesh of devices and writes one JSON line each.

One process cannot hold both Keras backends, and the benchmark run's is
TensorFlow; so the sharded cases run in a fresh `python -m bench.sharded`
with `KERAS_BACKEND=jax`, `JAX_ENABLE_X64=true` and, on CPU,
`XLA_FLAGS=--xla_force_host_platform_device_count=8` (one CPU presents 8
devices; real collectives, compiled by XLA). `run_in_child(specs)` starts it
from the TensorFlow side (it imports neither JAX nor Keras) and reads its
results back; `bench/test_sharded.py` calls it once per run for every
selected case.

By hand, on any machine with JAX (CPU, GPUs, TPUs):

    KERAS_BACKEND=jax JAX_ENABLE_X64=true XLA_FLAGS=--xla_force_host_platform_device_count=8 \\
        python -m bench.sharded --strategies full,qr --devices 2,4,8 --layouts row,column --vocab-size 1e4 --dim 16

and on several hosts, the same command on each with `--distributed`
(`jax.distributed.initialize()`, configured by its environment variables or
the cluster's); each process reports the shards it holds.

Output: a first line `{"kind": "child", "backend", "jax", "platform", "device_count", "tensorflow_loaded"}`,
then `{"kind": "case", "case": <id>, "status": ok|skipped|failed, "reason", ...membed.shard.run.run_case's fields}`
per case, flushed as each finishes.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
SIMULATED_DEVICES = 8
JAX_MISSING = "jax is not installed: pip install -e '.[jax]'"
DEFAULT_TIMEOUT_S = 600.0


def jax_missing() -> str | None:
    """The one-line reason the sharded cases cannot run here (no JAX), or None. Imports nothing."""
    return JAX_MISSING if importlib.util.find_spec("jax") is None else None


def child_env(devices: int = SIMULATED_DEVICES, base: dict[str, str] | None = None) -> dict[str, str]:
    """The JAX process's environment: the JAX backend, 64-bit integers, `devices` simulated CPU devices."""
    env = dict(os.environ if base is None else base)
    flag = f"--xla_force_host_platform_device_count={int(devices)}"
    flags = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith("--xla_force_host_platform_device_count")]
    env.update(KERAS_BACKEND="jax", JAX_ENABLE_X64="true", XLA_FLAGS=" ".join([*flags, flag]),
               TF_CPP_MIN_LOG_LEVEL=env.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    return env


def run_in_child(specs: list[dict[str, Any]], timeout_s: float = DEFAULT_TIMEOUT_S,
                 devices: int | None = None) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Runs `specs` (each with a `case` id, see `membed.shard.run.run_case`) in one fresh JAX process.

    A case the process did not get to (it crashed, or ran past `timeout_s`)
    comes back `failed` with the reason.

    Returns:
        (the child's header line, {case id: result}).
    """
    devices = max([SIMULATED_DEVICES, *(int(s["devices"]) for s in specs)]) if devices is None else devices
    with tempfile.TemporaryDirectory(prefix="membed-sharded-") as folder:
        spec_path, out_path = Path(folder, "specs.json"), Path(folder, "out.jsonl")
        spec_path.write_text(json.dumps(specs))
        command = [sys.executable, "-m", "bench.sharded", "--specs", str(spec_path), "--out", str(out_path)]
        why = None
        try:
            done = subprocess.run(command, cwd=ROOT, env=child_env(devices), capture_output=True, text=True,
                                  timeout=timeout_s)
            if done.returncode != 0:
                lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
                why = f"the JAX process exited with code {done.returncode}: {lines[-1] if lines else 'no output'}"
        except subprocess.TimeoutExpired:
            why = f"the JAX process ran past {timeout_s:g} s"
        lines = [json.loads(line) for line in out_path.read_text().splitlines() if line.strip()] \
            if out_path.exists() else []
    header = next((line for line in lines if line.get("kind") == "child"), {})
    found = {line["case"]: line for line in lines if line.get("kind") == "case"}
    for spec in specs:
        if spec["case"] not in found:
            found[spec["case"]] = {"kind": "case", "case": spec["case"], "status": "failed",
                                   "reason": f"{why or 'the JAX process did not report this case'} (before this case)"}
    return header, found


# ----- the child ----------------------------------------------------------------------------
def _header() -> dict[str, Any]:
    import jax
    import keras

    return {"kind": "child", "backend": keras.backend.backend(), "jax": jax.__version__, "keras": keras.__version__,
            "platform": jax.devices()[0].platform, "device_count": jax.device_count(),
            "process_count": jax.process_count(), "tensorflow_loaded": "tensorflow" in sys.modules}


def run_specs(specs: list[dict[str, Any]], write: Callable[[dict[str, Any]], None]) -> None:
    """Runs each spec in this (JAX) process; a case that raises is `failed` with its one-line reason."""
    from membed.shard.run import run_case

    write(_header())
    for spec in specs:
        started = time.perf_counter()
        try:
            result = run_case(spec)
        except Exception as error:  # one case failing must not stop the others
            reason = " ".join(f"{type(error).__name__}: {error}".split())
            result = {"status": "failed", "reason": reason[:500]}
        write({"kind": "case", "case": spec.get("case"), **result,
               "seconds": round(time.perf_counter() - started, 3)})


def _specs_from_args(args: argparse.Namespace) -> list[dict[str, Any]]:
    from membed import strategies

    names = args.strategies.split(",") if args.strategies else strategies.names()
    specs = []
    for name in names:
        for devices in (int(d) for d in args.devices.split(",")):
            for layout in args.layouts.split(","):
                vocab_size, dim = int(float(args.vocab_size)), int(args.dim)
                specs.append({"case": f"sharded/{name}/{args.dataset}/{vocab_size}/{dim}/{layout}-{devices}dev",
                              "strategy": name, "vocab_size": vocab_size, "dim": dim, "devices": devices,
                              "layout": layout, "optimizer": args.optimizer, "learning_rate": args.learning_rate,
                              "batch_size": args.batch_size, "seed": 42, "dataset": args.dataset})
    return specs


def check_args(args: argparse.Namespace) -> str | None:
    """What is wrong with the command line, in one line, or None. Imports neither JAX nor Keras."""
    from membed.shard.optimizers import OPTIMIZERS
    from membed.shard.placement import LAYOUTS

    if args.specs:
        return None if Path(args.specs).is_file() else f"--specs: no file {args.specs!r}."
    try:
        devices = [int(d) for d in args.devices.split(",")]
    except ValueError:
        devices = [0]
    if not devices or min(devices) < 1:
        return f"--devices: invalid {args.devices!r}. Give comma-separated integers >= 1, e.g. 2,4,8."
    wrong = [layout for layout in args.layouts.split(",") if layout not in LAYOUTS]
    if wrong:
        return f"--layouts: invalid layout {wrong[0]!r}. Use one of: {', '.join(LAYOUTS)}."
    if args.optimizer not in OPTIMIZERS:
        return f"--optimizer: unknown optimizer {args.optimizer!r}. Use one of: {', '.join(OPTIMIZERS)}."
    try:
        size, dim = float(args.vocab_size), int(args.dim)
    except ValueError:
        size, dim = 0.0, 0
    if size < 1 or size != int(size) or dim < 1:
        return f"--vocab-size {args.vocab_size!r} / --dim {args.dim!r}: give whole numbers >= 1 (e.g. 1e4 and 16)."
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.sharded", description=__doc__.splitlines()[0])
    parser.add_argument("--specs", default=None, help="a JSON file of case specs (what bench/test_sharded.py writes)")
    parser.add_argument("--out", default=None, help="append the JSON lines here (default: stdout)")
    parser.add_argument("--strategies", default=None, help="comma-separated strategies (default: all registered)")
    parser.add_argument("--devices", default="2,4,8", help="comma-separated device counts (default 2,4,8)")
    parser.add_argument("--layouts", default="row,column", help="row, column or both (default both)")
    parser.add_argument("--vocab-size", default="1e4", help="ids (default 1e4)")
    parser.add_argument("--dim", default="16", help="dimension (default 16)")
    parser.add_argument("--dataset", default="synthetic-zipf", help="ids of membed.data.DatasetIds")
    parser.add_argument("--optimizer", default="rowwise_adagrad", help="sgd, adagrad or rowwise_adagrad")
    parser.add_argument("--learning-rate", type=float, default=0.01)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--distributed", action="store_true",
                        help="call jax.distributed.initialize() first (one process per host)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the cases in this process, which must have the JAX backend; exit code 2 with one line otherwise."""
    args = build_parser().parse_args(argv)
    problem = check_args(args)
    if problem:
        print(f"bench.sharded: {problem}", file=sys.stderr)
        return 2
    if os.environ.get("KERAS_BACKEND") != "jax":
        print("bench.sharded: run with KERAS_BACKEND=jax JAX_ENABLE_X64=true (and on CPU "
              f"XLA_FLAGS=--xla_force_host_platform_device_count={SIMULATED_DEVICES}); "
              f"KERAS_BACKEND is {os.environ.get('KERAS_BACKEND')!r}.", file=sys.stderr)
        return 2
    if args.distributed:
        import jax

        jax.distributed.initialize()
    specs = json.loads(Path(args.specs).read_text()) if args.specs else _specs_from_args(args)
    handle = open(args.out, "a") if args.out else sys.stdout
    try:
        def write(line: dict[str, Any]) -> None:
            handle.write(json.dumps(line) + "\n")
            handle.flush()

        run_specs(specs, write)
    finally:
        if handle is not sys.stdout:
            handle.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
