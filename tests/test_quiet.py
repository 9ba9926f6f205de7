"""The command line hides TensorFlow's start-up lines, and answers a usage error before importing it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

NOTICE = "absl::InitializeLog"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([sys.executable, "-m", "membed", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_a_command_prints_no_tensorflow_start_up_lines():
    done = run_cli("strategies", "--json")
    assert done.returncode == 0, done.stderr
    assert NOTICE not in done.stderr and "oneDNN" not in done.stderr
    assert done.stdout.lstrip().startswith("[")


def test_verbose_shows_them():
    done = run_cli("--verbose", "strategies", "--json")
    assert done.returncode == 0, done.stderr
    assert NOTICE in done.stderr or "oneDNN" in done.stderr


@pytest.mark.parametrize("argv, message", [
    (["train", "--dataset", "nope", "--user", "full", "--item", "full"], "Unknown dataset 'nope'"),
    (["reproduce", "--dataset", "ml-100k", "--epochs", "0"], "invalid --epochs: 0"),
])
def test_a_usage_error_is_answered_before_tensorflow_is_imported(argv, message):
    code = ("import sys; from membed.__main__ import main; rc = main(%r); "
            "print(rc, 'tensorflow' in sys.modules)" % (argv,))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["2", "False"], done.stderr
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_a_failing_import_replays_what_was_captured(capfd):
    from membed.quiet import native_stderr_captured

    with pytest.raises(RuntimeError):
        with native_stderr_captured():
            os.write(2, b"native line\n")
            raise RuntimeError("boom")
    assert "native line" in capfd.readouterr().err


def test_captured_lines_are_dropped_when_all_went_well(capfd):
    from membed.quiet import native_stderr_captured

    with native_stderr_captured():
        os.write(2, b"native line\n")
    assert "native line" not in capfd.readouterr().err


def test_tensorflow_is_imported_without_jax_which_imports_as_before_afterwards():
    pytest.importorskip("jax")
    code = ("import sys; from membed.quiet import import_tensorflow; import_tensorflow(); "
            "print('jax' in sys.modules); import jax; print(jax.numpy.add(1, 2))")
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False", "3"]


def test_jax_stays_importable_where_it_is_imported_already_or_is_keras_backend(monkeypatch):
    from membed.quiet import jax_hidden

    monkeypatch.setitem(sys.modules, "jax", sys.modules.get("jax") or object())
    with jax_hidden():
        assert sys.modules["jax"] is not None
    monkeypatch.delitem(sys.modules, "jax")
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    with jax_hidden():
        assert "jax" not in sys.modules
    monkeypatch.delenv("KERAS_BACKEND")
    with jax_hidden():
        with pytest.raises(ImportError):
            import jax  # noqa: F401
    assert "jax" not in sys.modules
