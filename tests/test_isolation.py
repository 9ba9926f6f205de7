"""membed.measure.isolation: a function run in a fresh process, its dict back or why there is none."""

import io
import json
import os
import signal
import textwrap

import pytest

from membed.measure import isolation

TARGETS = '''
import os
import signal
import sys
import time


def echo(payload):
    return {"payload": payload, "pid": os.getpid(), "cwd": os.getcwd(),
            "variable": os.environ.get("MEMBED_ISOLATION_TEST"), "bfc": os.environ.get("TF_CPU_ALLOCATOR_USE_BFC"),
            "membed": sys.modules["membed.measure.isolation"].__file__}


def noisy(payload):
    print("{\\"not\\": \\"the result\\"}")  # a JSON-looking line on stdout is not taken for the result
    return {"ok": True}


def raises(payload):
    raise ValueError(f"bad payload: {payload!r}")


def killed(payload):
    os.kill(os.getpid(), signal.SIGKILL)


def exits(payload):
    os._exit(3)


def hangs(payload):
    time.sleep(600)


def returns_a_list(payload):
    return [payload]
'''


@pytest.fixture()
def targets(tmp_path, monkeypatch):
    """A module importable only through this process's sys.path (and from tmp_path as the working directory)."""
    folder = tmp_path / "targets"
    folder.mkdir()
    name = f"isolation_targets_{os.getpid()}_{tmp_path.name}".replace("-", "_")
    (folder / f"{name}.py").write_text(textwrap.dedent(TARGETS))
    monkeypatch.syspath_prepend(str(folder))
    return name


@pytest.mark.parametrize("method", isolation.METHODS)
def test_a_target_runs_in_another_process_with_the_callers_path_directory_and_environment(
        targets, method, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    payload = {"numbers": [1, 2.5], "text": "é", "none": None}
    for value in ("first", "second"):  # the second after the fork server started
        monkeypatch.setenv("MEMBED_ISOLATION_TEST", f"{value} ({method})")
        result = isolation.run_isolated(f"{targets}:echo", payload, timeout_s=120, method=method)
        assert result["payload"] == payload
        assert result["pid"] != os.getpid()
        assert result["cwd"] == str(tmp_path)
        assert result["variable"] == f"{value} ({method})"
        # The fork server imported membed from where this process did, though started in another directory.
        assert result["membed"] == isolation.__file__
        # TensorFlow in the child uses the allocator that keeps statistics.
        assert result["bfc"] == "true"


@pytest.mark.parametrize("method", isolation.METHODS)
def test_an_exception_in_the_target_comes_back_as_a_failed_result(targets, method):
    result = isolation.run_isolated(f"{targets}:raises", 7, timeout_s=120, method=method)
    assert result["status"] == "failed"
    assert result["reason"] == "ValueError: bad payload: 7"
    assert "raise ValueError" in result["traceback"]


def test_a_killed_child_is_reported_with_its_signal(targets):
    result = isolation.run_isolated(f"{targets}:killed", None, timeout_s=120)
    assert result == {"status": "failed",
                      "reason": "the measuring process was killed by SIGKILL (likely the out-of-memory killer)"}


@pytest.mark.parametrize("method", isolation.METHODS)
def test_a_child_that_exits_without_a_result_is_reported(targets, method):
    result = isolation.run_isolated(f"{targets}:exits", None, timeout_s=120, method=method)
    assert result["status"] == "failed"
    assert "code 3" in result["reason"]


def test_a_child_that_hangs_is_killed_at_the_timeout_and_the_next_one_runs(targets):
    result = isolation.run_isolated(f"{targets}:hangs", None, timeout_s=0.5)
    assert result == {"status": "failed", "reason": "timed out after 0.5 s"}
    assert isolation.run_isolated(f"{targets}:echo", 1, timeout_s=120)["payload"] == 1


def test_the_exec_child_takes_only_the_marked_line_for_its_result(targets):
    assert isolation.run_isolated(f"{targets}:noisy", None, timeout_s=120, method="exec") == {"ok": True}


def test_a_target_must_return_a_dict(targets):
    result = isolation.run_isolated(f"{targets}:returns_a_list", 1, timeout_s=120)
    assert result["status"] == "failed"
    assert "returned list, not a dict" in result["reason"]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: isolation.run_isolated("no_colon", {}), "use 'package.module:function'"),
        (lambda: isolation.run_isolated("membed.nowhere_to_be_found:f", {}), "no module 'membed.nowhere_to_be_found'"),
        (lambda: isolation.run_isolated("json:loads", {}, method="spawn"), "invalid `method`: 'spawn'"),
        (lambda: isolation.run_isolated("json:loads", {}, timeout_s=0), "invalid `timeout_s`: 0"),
        (lambda: isolation.run_isolated("json:loads", {"x": object()}), "payload is not JSON-able"),
    ],
)
def test_bad_arguments_raise_before_anything_starts(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_call_target_runs_here_and_names_a_missing_function():
    assert isolation.call_target("json:loads", '{"a": 1}') == {"a": 1}
    with pytest.raises(ValueError, match="has no function 'nope'"):
        isolation.call_target("json:nope", None)


def test_child_main_rejects_a_malformed_request(capsys):
    assert isolation.child_main(stdin=io.StringIO("{not json")) == 2
    assert "malformed request" in capsys.readouterr().err


def test_child_main_prints_one_marked_result_line():
    request = {"target": "json:loads", "payload": '{"a": 1}', "sys_path": [], "cwd": os.getcwd()}
    out = io.StringIO()
    assert isolation.child_main(stdin=io.StringIO(json.dumps(request)), stdout=out) == 0
    assert out.getvalue() == isolation.RESULT_PREFIX + '{"a": 1}\n'


def test_death_reason_names_the_signal_or_the_exit_code():
    assert isolation.death_reason(-signal.SIGKILL, "the case's own process") == (
        "the case's own process was killed by SIGKILL (likely the out-of-memory killer)")
    assert isolation.death_reason(-signal.SIGSEGV) == "the measuring process was killed by SIGSEGV"
    assert isolation.death_reason(3) == "the measuring process exited with code 3 without a result"


def test_error_reason_keeps_the_message_keras_wraps():
    wrapped = RuntimeError("Exception encountered when calling QREmbedding.call().\n\x1b[1mids out of range\x1b[0m")
    assert isolation.error_reason(wrapped) == "RuntimeError: ids out of range (in QREmbedding.call)"
    assert isolation.error_reason(KeyError()) == "KeyError"
