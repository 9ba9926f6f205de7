"""TensorFlow imported without its start-up log lines, for the command line.

Importing TensorFlow and running its first op write native log lines to the
process's stderr (absl's "All log messages before absl::InitializeLog()"
notice, twice, and oneDNN's notice) that `TF_CPP_MIN_LOG_LEVEL` does not
silence: they are written before TensorFlow reads it. `import_tensorflow`
points file descriptor 2 at a temporary file while TensorFlow starts, then
restores it; what was captured is shown only when asked for (`verbose`) or
when the import fails, so a real error is never lost.

It also keeps JAX out of TensorFlow's import (`jax_hidden`): TensorFlow's
TFLite utilities import JAX whenever it is installed (membed's `jax` extra),
to convert JAX models, which membed never does. That was 137 MiB of RSS in
every process (TensorFlow 2.21 with JAX 0.10: 792 MiB after the import, 655
without JAX), which a training step's peak RSS carries.

Example:
    >>> tf = import_tensorflow(verbose=False)  # nothing printed
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from typing import Iterator

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@contextlib.contextmanager
def native_stderr_captured(show: bool = False) -> Iterator[None]:
    """Runs the block with file descriptor 2 captured; replays it when `show` or when the block raises."""
    if show:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    failed = False
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if failed:
                sink.seek(0)
                sys.stderr.write(sink.read().decode(errors="replace"))


@contextlib.contextmanager
def jax_hidden() -> Iterator[None]:
    """Runs the block with `import jax` failing, unless JAX is imported already or is Keras's backend.

    After the block JAX imports as before; only what the block imported saw it missing.
    """
    if "jax" in sys.modules or os.environ.get("KERAS_BACKEND") == "jax":
        yield
        return
    sys.modules["jax"] = None  # the import system's mark of a module that cannot be imported
    try:
        yield
    finally:
        if "jax" in sys.modules and sys.modules["jax"] is None:
            del sys.modules["jax"]


def import_tensorflow(verbose: bool = False):
    """TensorFlow, imported and started (one op run) with its native start-up lines hidden unless `verbose`, and
    without JAX (`jax_hidden`)."""
    with native_stderr_captured(show=verbose), jax_hidden():
        import tensorflow as tf

        tf.constant(0) + 0  # the first op prints the second half of the notices
    return tf
