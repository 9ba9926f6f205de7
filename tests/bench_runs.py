"""Real `pytest bench` runs in a child process, with plugins that register misbehaving strategies."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from bench.isolation import child_environment

ROOT = Path(__file__).resolve().parents[1]

PLUGIN = textwrap.dedent('''
    """Registers strategies whose lookup raises, takes about 0.2 s a call, or kills its own process, and a toy one."""
    import os
    import signal

    import tensorflow as tf

    from membed.strategies import register
    from membed.strategies.full import FullEmbedding


    @register
    class BrokenEmbedding(FullEmbedding):
        strategy_name = "broken"

        def lookup(self, ids):
            raise RuntimeError("broken on purpose")


    @register
    class SlowEmbedding(FullEmbedding):
        strategy_name = "slow"

        def lookup(self, ids):
            # Slow at every call, traced or not: a case long enough to be interrupted. In TensorFlow's
            # own ops, as in every real strategy: a Python callback on TensorFlow's threads
            # (`tf.numpy_function` sleeping 0.2 s) once kept a Ctrl-C'd run alive past 60 s in CI.
            # The work depends on the ids' values, so that graph optimisation cannot fold it away.
            work = tf.fill([1536, 1536], tf.cast(tf.reduce_sum(ids) % 2, tf.float32) + 1e-3)
            for _ in range(5):  # 5 x 7.2 GFLOP: about 0.2 s on one core of this machine
                work = tf.linalg.matmul(work, work) * 1e-3
            return super().lookup(ids) + 0.0 * work[0, 0]


    @register
    class SelfKillingEmbedding(FullEmbedding):
        strategy_name = "selfkill"

        def lookup(self, ids):
            os.kill(os.getpid(), signal.SIGKILL)  # as the out-of-memory killer would


    @register
    class ToyEmbedding(FullEmbedding):
        """A strategy added as bench/README.md's "Adding a strategy" says: one class, registered."""

        strategy_name = "toy"
        summary = "A full table under another name (tests/test_adding.py)."
''')


def bench_command(tmp_path: Path, *arguments: str, paths: tuple[str, ...] = ("bench",)
                  ) -> tuple[list[str], dict[str, str]]:
    """The argv and environment of `pytest PATHS ARGUMENTS` (PATHS: bench/) with the plugin above loaded."""
    (tmp_path / "membed_test_plugin.py").write_text(PLUGIN)
    environment = {
        **child_environment(),  # a run of its own, also when this test runs on an xdist worker
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
        # ml-1m is nowhere: it must skip, not download.
        "MEMBED_DATA_DIR": str(tmp_path),
        "MEMBED_CACHE_DIR": str(tmp_path / "cache"),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    return [sys.executable, "-m", "pytest", *paths, "-p", "membed_test_plugin", *arguments], environment


def run_bench(tmp_path: Path, *arguments: str, timeout: float = 300, paths: tuple[str, ...] = ("bench",)
              ) -> subprocess.CompletedProcess:
    argv, environment = bench_command(tmp_path, *arguments, paths=paths)
    return subprocess.run(argv, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=timeout)
