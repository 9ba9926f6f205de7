"""bench/steps.py: the compiled lookup and Adam step the suites time, and the memory case run in a fresh process."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench import steps
from membed import strategies
from membed.measure import layer_sizes

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("compile", [True, False])
def test_the_lookup_is_the_layers_forward_pass(compile):
    layer = strategies.build("qr", 10_000, 16)
    ids = np.array([0, 7, 9999, 7])
    vectors = np.asarray(steps.compiled_lookup(layer, compile=compile)(ids))
    np.testing.assert_allclose(vectors, np.asarray(layer(ids)), rtol=1e-6)
    assert vectors.shape == (4, 16)


@pytest.mark.parametrize("compile", [True, False])
def test_the_train_step_moves_the_looked_up_rows_toward_the_target(compile):
    layer = strategies.build("full", 100, 8)
    step = steps.compiled_train_step(layer, learning_rate=0.05, compile=compile)
    ids = np.arange(16)
    target = steps.make_target(16, 8, seed=1)
    untouched = np.asarray(layer.weights[0])[50:].copy()
    losses = [float(step(ids, target)) for _ in range(20)]
    assert losses[-1] < 0.5 * losses[0]
    # Only the looked-up rows changed.
    np.testing.assert_array_equal(np.asarray(layer.weights[0])[50:], untouched)


def test_a_layer_with_nothing_to_train_has_no_step():
    with pytest.raises(ValueError, match="no trainable weights"):
        steps.compiled_train_step(strategies.build("quantized", 100, 8))


def test_the_target_is_seeded_float32():
    first = steps.make_target(32, 4, seed=5)
    assert first.shape == (32, 4) and first.dtype == np.float32
    np.testing.assert_array_equal(first, steps.make_target(32, 4, seed=5))
    assert not np.array_equal(first, steps.make_target(32, 4, seed=6))


def test_check_spec_fills_defaults_and_takes_the_old_ids_key():
    full = steps.check_spec({"strategy": "full", "vocab_size": 10, "dim": 4})
    assert full["ids"] == {"vocab_size": 10, "dataset": "synthetic-zipf"}
    assert (full["batch_size"], full["seed"], full["options"]) == (steps.DEFAULT_BATCH_SIZE, 0, {})
    old = steps.check_spec({"strategy": "full", "vocab_size": 10, "dim": 4, "ids": {"vocab": "synthetic-uniform"}})
    assert old["ids"] == {"vocab_size": 10, "vocab": "synthetic-uniform"}
    with pytest.raises(ValueError, match=r"`ids.vocab_size` \(11\) differs"):
        steps.check_spec({"strategy": "full", "vocab_size": 10, "dim": 4, "ids": {"vocab_size": 11}})
    assert steps.strategy_module("qr") == "membed.strategies.qr"


def test_a_memory_case_measures_the_layer_it_builds(tmp_path, monkeypatch):
    # From another working directory the child still imports bench (it takes this process's sys.path).
    monkeypatch.chdir(tmp_path)
    spec = {"strategy": "qr", "vocab_size": 10_000, "dim": 64, "batch_size": 512, "ids": {"vocab": "synthetic-uniform"}}
    result = steps.measure_memory(spec, timeout_s=300)
    assert result["status"] == "ok", result["reason"]
    assert list(result)[:2 + len(steps.RESULT_KEYS)] == ["status", "reason", *steps.RESULT_KEYS]
    layer = strategies.build("qr", 10_000, 64)
    assert {key: result[key] for key in ("params", "trainable_params", "param_bytes", "index_bytes")} == (
        layer_sizes(layer).as_dict())
    assert result["options"]["num_buckets"] == 100
    assert result["peak_alloc_bytes_build"] >= result["param_bytes"]
    # Looking up a batch holds the tables plus at least the batch's output vectors.
    assert result["peak_alloc_bytes_lookup"] >= result["param_bytes"] + 4 * 512 * 64
    assert result["peak_alloc_bytes_train"] >= result["peak_alloc_bytes_lookup"]
    assert result["peak_rss_bytes_train"] >= result["peak_rss_bytes_lookup"] > 0
    # The baseline the RSS peaks are above holds TensorFlow's runtime: hundreds of MiB.
    assert result["rss_baseline_bytes"] > 100 << 20


def test_a_failed_memory_case_has_every_measured_field_none():
    result = steps.measure_memory({"strategy": "full", "vocab_size": 10**6, "dim": 64}, timeout_s=0.05)
    assert result["status"] == "failed" and result["reason"] == "timed out after 0.05 s"
    assert all(result[key] is None for key in steps.RESULT_KEYS)
    assert result["seconds"] > 0


def test_a_memory_case_runs_in_a_new_interpreter_too():
    spec = {"strategy": "full", "vocab_size": np.int64(1000), "dim": 8, "batch_size": 64}  # NumPy sizes are fine
    result = steps.measure_memory(spec, timeout_s=300, method="exec")
    assert result["status"] == "ok", result["reason"]
    assert result["allocator"] is None
    assert result["params"] == 8000 and result["peak_alloc_bytes_lookup"] >= 4 * 8000


def test_python_m_membed_measure_still_measures_one_case():
    spec = {"strategy": "hash", "vocab_size": 1000, "dim": 8, "batch_size": 64, "ids": {"dataset": "synthetic-zipf"}}
    completed = subprocess.run([sys.executable, "-m", "membed.measure", json.dumps(spec)], cwd=ROOT,
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["status"] == "ok" and result["params"] == strategies.cost("hash", 1000, 8).params
    malformed = subprocess.run([sys.executable, "-m", "membed.measure", '{"strategy": "full"}'], cwd=ROOT,
                               capture_output=True, text=True, timeout=300)
    assert malformed.returncode == 2 and "missing key 'vocab_size'" in malformed.stderr


def rss_phases(*argv: str) -> subprocess.CompletedProcess:
    # A process of its own, as it is meant to run: it sets TensorFlow's threads before its first op.
    return subprocess.run([sys.executable, "-m", "bench.rss_phases", *argv], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], timeout=300)


def test_rss_phases_prints_the_process_rss_after_each_phase():
    completed = rss_phases("--vocab-size", "1e3", "--dim", "8", "--batch-size", "64", "--optimizer", "sgd")
    assert completed.returncode == 0 and completed.stderr == "", completed.stderr[-2000:]
    *lines, setting = completed.stdout.splitlines()
    assert [line[:24].strip() for line in lines] == ["start", "imports", "ids", "built", "lookup",
                                                      "optimizer slots", "step 1", "step 2", "peak (ru_maxrss)"]
    assert all(line.endswith(" MiB") for line in lines)
    # Which oneDNN setting the numbers are for: it moves peak RSS by 1/32 of the allocator's regions.
    assert setting.startswith("oneDNN ") and ("TF_ENABLE_ONEDNN_OPTS" in setting)


@pytest.mark.parametrize("value, said", [(None, "on (TF_ENABLE_ONEDNN_OPTS unset"),
                                         ("0", "off (TF_ENABLE_ONEDNN_OPTS=0)"),
                                         ("False", "off (TF_ENABLE_ONEDNN_OPTS=False)"),
                                         ("1", "on (TF_ENABLE_ONEDNN_OPTS=1)")])
def test_rss_phases_says_which_onednn_setting_it_ran_with(value, said):
    from bench.rss_phases import onednn_setting

    assert onednn_setting(value).startswith(said)


def test_rss_phases_bad_input_is_one_line_and_exit_2():
    completed = rss_phases("--strategy", "nope")
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines() == [
        "error: unknown --strategy 'nope'; registered: " + ", ".join(strategies.names()) + "."]


def test_rss_phases_takes_the_same_phases_in_the_pytorch_peer():
    pytest.importorskip("torch")
    completed = rss_phases("--peer", "torch", "--vocab-size", "1e3", "--dim", "8", "--batch-size", "64",
                           "--optimizer", "lazy_adam")
    assert completed.returncode == 0, completed.stderr[-2000:]
    lines = completed.stdout.splitlines()
    assert [line[:24].strip() for line in lines] == ["start", "imports", "ids", "built", "lookup",
                                                      "optimizer slots", "step 1", "step 2", "peak (ru_maxrss)"]
    assert "tensorflow" not in completed.stderr.lower()


@pytest.mark.parametrize("argv, message", [
    (["--strategy", "qr"], "error: --peer torch: a plain table only; use --strategy full, not 'qr'."),
    (["--optimizer", "rowwise_adagrad"],
     "error: --peer torch: no PyTorch optimizer for 'rowwise_adagrad'; one of sgd, adagrad, lazy_adam."),
    (["--optimizer", "sgd", "--vocab-size", "1.5"], "error: --vocab-size '1.5': give one whole number >= 1, e.g. 1e7."),
])
def test_rss_phases_peer_bad_input_is_one_line_and_exit_2(argv, message):
    completed = rss_phases("--peer", "torch", *argv)
    assert completed.returncode == 2 and completed.stderr.strip().splitlines() == [message]


def test_rss_phases_peer_without_pytorch_says_how_to_get_it():
    code = ("import sys; sys.modules['torch'] = None; from bench.rss_phases import main; "
            "sys.exit(main(['--peer', 'torch', '--optimizer', 'sgd', '--vocab-size', '10']))")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                               cwd=Path(__file__).resolve().parents[1])
    assert completed.returncode == 2
    assert completed.stderr.strip() == (
        "error: --peer torch needs PyTorch, which membed does not install: pip install torch.")
