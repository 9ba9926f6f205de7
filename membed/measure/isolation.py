"""Run a function in a fresh process and get its dict back, or why there is none.

`run_isolated("package.module:function", payload)` calls `function(payload)`
in a process of its own and returns the dict it returned. A memory
measurement needs this: the process's RSS is then the function's alone, a
case cannot leave memory behind for the next one, and TensorFlow starts
uninitialised, so the allocator that keeps statistics can be chosen (see
`membed.measure.probes`). Whatever goes wrong comes back as a result, never
as an exception in the caller: an exception in the function, a crash, an
out-of-memory kill or a timeout each give `{"status": "failed", "reason":
...}`, and the next call starts a new process as usual.

Two ways to start the process:

* `fork` (default): forked from a server that imported TensorFlow once
  (importing it takes several seconds); the server runs no TensorFlow op, so
  each child starts with TensorFlow uninitialised.
* `exec`: a new Python interpreter (`sys.executable`), slower, sharing
  nothing with the caller.

Either way the child takes the caller's current `sys.path`, working
directory and environment, so a target the caller can import (`bench.steps`
under pytest, whose `pythonpath` puts the repository root on `sys.path`) is
importable there, and data paths resolve alike.

The payload must be JSON-able, and the function must return a dict
(JSON-able for `exec`). As with any multiprocessing start method but
`fork`, a script that calls `run_isolated` must do so under `if __name__ ==
"__main__":`, since the child imports the caller's main module again.

Example:
    >>> run_isolated("bench.steps:memory_case", {"strategy": "qr", "vocab_size": 1000, "dim": 64})["status"]
    'ok'
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import traceback
from typing import Any, Callable, Iterator

from membed.measure.probes import BFC_ENVIRONMENT

DEFAULT_TIMEOUT_S = 600.0
METHODS = ("fork", "exec")
# Imported once in the fork server, so that children start with them loaded.
PRELOAD = ("numpy", "psutil", "memory_profiler", "tensorflow", "keras", "membed.strategies", "membed.data",
           "membed.measure")
_TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def failed(reason: str, **fields: Any) -> dict[str, Any]:
    """A failed result: `{"status": "failed", "reason": reason, **fields}`."""
    return {"status": "failed", "reason": reason, **fields}


def error_reason(error: BaseException) -> str:
    """One line naming an exception: its type and message.

    Keras wraps what a layer raises in "Exception encountered when calling
    X.call()." with the original message on a later line; that line is kept.

    Example:
        >>> error_reason(ValueError("bad `dim`: 0.\\nmore detail"))
        'ValueError: bad `dim`: 0.'
    """
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))  # Keras bolds the message for terminals
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    message = lines[0] if lines else ""
    wrapped = re.match(r"Exception encountered when calling (\S+?)\.call\(", message)
    if wrapped and len(lines) > 1:
        message = f"{lines[1]} (in {wrapped.group(1)}.call)"
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def death_reason(exitcode: int | None, process: str = "the measuring process") -> str:
    """Why `process` ended without a result, from its exit code (negative: the signal that killed it).

    Example:
        >>> death_reason(-9)
        'the measuring process was killed by SIGKILL (likely the out-of-memory killer)'
    """
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        likely = " (likely the out-of-memory killer)" if -exitcode == signal.SIGKILL else ""
        return f"{process} was killed by {name}{likely}"
    return f"{process} exited with code {exitcode} without a result"


def resolve_target(target: str) -> Callable[[Any], dict]:
    """The function `target` ("package.module:function") names, imported."""
    module_name, _, function_name = check_target(target).partition(":")
    function = getattr(importlib.import_module(module_name), function_name, None)
    if not callable(function):
        raise ValueError(f"target {target!r}: module {module_name!r} has no function {function_name!r}.")
    return function


def call_target(target: str, payload: Any) -> dict[str, Any]:
    """`function(payload)` for `target`, here, in this process; raises what it raises.

    Raises TypeError when the function returns something other than a dict.
    """
    result = resolve_target(target)(payload)
    if not isinstance(result, dict):
        raise TypeError(f"target {target!r} returned {type(result).__name__}, not a dict.")
    return result


def check_target(target: str) -> str:
    """`target` when it has the form "package.module:function", else a ValueError saying so."""
    if not isinstance(target, str) or not _TARGET.match(target):
        raise ValueError(f"invalid target {target!r}: use 'package.module:function'.")
    return target


def _check_importable(target: str) -> None:
    module_name = target.partition(":")[0]
    try:
        found = importlib.util.find_spec(module_name)
    except ModuleNotFoundError:
        found = None
    if found is None:
        raise ValueError(f"target {target!r}: no module {module_name!r} on sys.path (working directory "
                         f"{os.getcwd()}).")


def _child_environment() -> dict[str, str]:
    """Variables a new interpreter starts with: TensorFlow's BFC allocator, and the caller's import path.

    `PYTHONPATH` carries the caller's `sys.path`, so the fork server (which
    Python 3.11 starts without it) and an exec child import membed and the
    target from where the caller does, whatever the working directory.
    """
    return {
        **BFC_ENVIRONMENT,
        "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
        "PYTHONPATH": os.pathsep.join(entry for entry in sys.path if entry),
    }


def _caller() -> dict[str, Any]:
    """What the child takes from the caller: its import path, working directory and environment."""
    return {"sys_path": list(sys.path), "cwd": os.getcwd(), "environ": {**os.environ, **_child_environment()}}


def _adopt(caller: dict[str, Any]) -> None:
    """Makes this (child) process import, resolve paths and read variables as the caller does.

    A forked child already gets the caller's `sys.path` and working directory
    from multiprocessing, but the environment of the server, taken when it
    started; an exec child gets the environment and must take the rest.
    """
    sys.path[:] = [*caller["sys_path"], *(entry for entry in sys.path if entry not in caller["sys_path"])]
    os.chdir(caller["cwd"])
    if "environ" in caller:
        os.environ.clear()
        os.environ.update(caller["environ"])


# ----- fork: from a server that imported TensorFlow once ----------------------
@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@functools.lru_cache(maxsize=1)
def _fork_context():
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(PRELOAD))
    # The server inherits the environment it is started with; TensorFlow in
    # its children then uses the BFC allocator that keeps statistics.
    from multiprocessing import forkserver

    with _environment(**_child_environment()):
        forkserver.ensure_running()
    return context


def _forked_child(target: str, payload: Any, caller: dict[str, Any], connection) -> None:
    try:
        _adopt(caller)
        result = call_target(target, payload)
    except BaseException as error:  # report anything, the parent decides
        result = failed(error_reason(error), traceback=traceback.format_exc(limit=8))
    try:
        connection.send(result)
    except Exception as error:  # an unpicklable result
        connection.send(failed(f"the result could not be sent back: {error_reason(error)}"))
    connection.close()


def _run_forked(target: str, payload: Any, timeout_s: float) -> dict[str, Any]:
    context = _fork_context()
    receiver, sender = context.Pipe(duplex=False)
    # Not a daemon: memory_profiler starts its RSS sampler as a child of the child.
    process = context.Process(target=_forked_child, args=(target, payload, _caller(), sender))
    process.start()
    sender.close()
    try:
        if not receiver.poll(timeout_s):
            process.kill()
            return failed(f"timed out after {timeout_s:g} s")
        try:
            return receiver.recv()
        except EOFError:
            process.join(10)
            return failed(death_reason(process.exitcode))
    except BaseException:
        process.kill()  # interrupted (Ctrl-C): the run is abandoned, not waited for
        raise
    finally:
        # After a result the child is only exiting; give it a moment, then make sure.
        process.join(10)
        if process.is_alive():
            process.kill()
            process.join()
        receiver.close()


# ----- exec: a new interpreter ----------------------------------------------------
# `-c`, not `-m membed.measure.isolation`: the package imports this module, and
# running it as __main__ as well would load it twice.
_EXEC_CHILD = "import sys; from membed.measure.isolation import child_main; sys.exit(child_main())"
# Marks the result line on the child's stdout, which the target may print to as well.
RESULT_PREFIX = "membed.measure.result: "


def child_main(stdin=None, stdout=None) -> int:
    """The exec child: a JSON request (target, payload, sys_path, cwd) on stdin, one marked result line out.

    Exit code 0 whenever a result line is printed (`failed` ones included),
    2 for a malformed request.
    """
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    try:
        request = json.loads(stdin.read())
        target, payload = request["target"], request["payload"]
        _adopt({"sys_path": request["sys_path"], "cwd": request["cwd"]})
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        print(f"membed.measure.isolation: malformed request ({error_reason(error)}).", file=sys.stderr)
        return 2
    try:
        line = json.dumps(call_target(target, payload))
    except Exception as error:
        line = json.dumps(failed(error_reason(error), traceback=traceback.format_exc(limit=8)))
    print(RESULT_PREFIX + line, file=stdout, flush=True)
    return 0


def _run_exec(target: str, payload: Any, timeout_s: float) -> dict[str, Any]:
    caller = _caller()
    environment = caller["environ"]  # with PYTHONPATH, so that the child finds membed as the caller does
    request = {"target": target, "payload": payload, "sys_path": caller["sys_path"], "cwd": caller["cwd"]}
    try:
        completed = subprocess.run(
            [sys.executable, "-c", _EXEC_CHILD], input=json.dumps(request), capture_output=True, text=True,
            timeout=timeout_s, env=environment, cwd=caller["cwd"],
        )
    except subprocess.TimeoutExpired:
        return failed(f"timed out after {timeout_s:g} s")
    lines = [line for line in completed.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if lines:
        return json.loads(lines[-1][len(RESULT_PREFIX):])
    if completed.returncode < 0:
        return failed(death_reason(completed.returncode))
    tail = completed.stderr.strip().splitlines()[-1:] or [""]
    return failed(f"the measuring process exited with code {completed.returncode}: {tail[0]}")


def run_isolated(target: str, payload: Any, timeout_s: float = DEFAULT_TIMEOUT_S,
                 method: str = "fork") -> dict[str, Any]:
    """Calls `target`'s function with `payload` in a fresh process; returns its dict, or a failed result.

    Never raises for what happens in the child: an exception there, a
    crash, a kill (out of memory) or a timeout come back as `{"status":
    "failed", "reason": ...}` (with `traceback` for an exception). Bad
    arguments raise ValueError before anything starts.

    Args:
        target: "package.module:function", importable here; the function
            takes the payload and returns a dict.
        payload: a JSON-able value handed to the function.
        timeout_s: seconds before the child is killed.
        method: `fork` (from a server that imported TensorFlow once; the
            default, fast) or `exec` (a new interpreter).

    Example:
        >>> run_isolated("json:loads", "[1]")["reason"]
        "TypeError: target 'json:loads' returned list, not a dict."
    """
    if method not in METHODS:
        raise ValueError(f"run_isolated: invalid `method`: {method!r}. Use one of: {', '.join(METHODS)}.")
    if isinstance(timeout_s, bool) or not (isinstance(timeout_s, (int, float)) and timeout_s > 0):
        raise ValueError(f"run_isolated: invalid `timeout_s`: {timeout_s!r}. It must be a number > 0.")
    _check_importable(check_target(target))
    try:
        json.dumps(payload)
    except (TypeError, ValueError) as error:
        raise ValueError(f"run_isolated: the payload is not JSON-able ({error}).") from None
    if method == "fork":
        return _run_forked(target, payload, timeout_s)
    return _run_exec(target, payload, timeout_s)

