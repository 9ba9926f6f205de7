"""`python -m membed.plan`: what training each strategy takes at a size, and how many hosts it needs.

For every strategy (or those named) at its default options and at each of its
presets (`accuracy_presets`: 5x / 20x / 100x, or quantized's storages), it
prints the weights, the optimizer's state, the index and the training peak on
one host (the estimator's, with the host reservation: runtime + margin),
whether that fits `--host-memory`, and otherwise how many hosts the layer
needs with its tables sharded row-wise. Errors are one line on stderr and
exit code 2. Arguments are checked before TensorFlow is imported.

Example:
    python -m membed.plan --vocab-size 1e9 --dim 128 --optimizer rowwise_adagrad --host-memory 24GiB
    python -m membed.plan --vocab-size 1e7 --dim 64 --optimizer adam --host-memory 16GB --strategies full,qr --json
    python -m membed.plan --vocab-size 1e9 --dim 128 --optimizer rowwise_adagrad --devices 8 --device-memory 80GiB

With `--devices N --device-memory X` it also prints what each of N devices
holds with the tables sharded row-wise (`devices.py`: weights, optimizer
state and index per device, the training peak, whether it fits X) and how
many such devices each strategy needs at V = 1e8, 1e9 and 1e10; without
`--host-memory` a host is one device.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import signal
import sys
import threading
import time
from typing import Any, Callable, Sequence

from membed.plan.constants import DEFAULT_OPTIMIZER, HOST, OPTIMIZER_NAMES

EXIT_USAGE = 2
DEFAULT_BATCH_SIZE = 4096
DEFAULT_PROG = "python -m membed.plan"
# A strategy's presets that take longer than this to compute are reported as an error row
# (qr's search walks bucket counts one by one: minutes at V = 1e9).
PRESET_TIME_LIMIT_S = 20.0

SIZE_UNITS = {
    "": 1, "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*$")


class PlanError(ValueError):
    """A user-facing error: printed as one line, exit code 2."""


# ----- argument values ----------------------------------------------------------
def parse_size(text: str, flag: str = "size") -> int:
    """Bytes from '24GiB', '512MB', '1e9' or '4096'; PlanError saying what is valid otherwise.

    Example:
        >>> parse_size("24GiB"), parse_size("512MB"), parse_size("1e9")
        (25769803776, 512000000, 1000000000)
    """
    match = _SIZE.match(str(text))
    unit = match.group(2).lower() if match else None
    if match is None or unit not in SIZE_UNITS:
        raise PlanError(
            f"{flag}: cannot read {text!r} as a size. Use a number with an optional unit, one of "
            "B, KB, MB, GB, TB, KiB, MiB, GiB, TiB (e.g. 24GiB, 512MB, 1e9)."
        )
    value = float(match.group(1)) * SIZE_UNITS[unit]
    if not math.isfinite(value) or value < 1:
        raise PlanError(f"{flag}: invalid size {text!r}. It must be at least 1 byte.")
    return int(round(value))


def parse_count(text: str, flag: str) -> int:
    """A whole number >= 1 from '1e9', '4096' or '1_000_000'; PlanError otherwise.

    Example:
        >>> parse_count("1e9", "--vocab-size")
        1000000000
    """
    try:
        value = float(str(text).replace("_", ""))
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 1 or value != int(value):
        raise PlanError(f"{flag}: invalid value {text!r}. It must be a whole number >= 1 (e.g. 4096, 1e9).")
    return int(value)


def format_bytes(count: int | None) -> str:
    """'1.5 GiB', '244.1 MiB', '512 B': binary units, for the table.

    Example:
        >>> format_bytes(3 * 2**29)
        '1.5 GiB'
    """
    if count is None:
        return "-"
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} B"


# ----- the rows ------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class PlanRow:
    """One strategy at one option set: its estimate and its placement, or why there is none."""

    strategy: str
    preset: str
    options: dict
    estimate: Any = None
    placement: Any = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        row: dict[str, Any] = {"strategy": self.strategy, "preset": self.preset, "options": _jsonable(self.options),
                               "error": self.error}
        if self.estimate is not None:
            e, p = self.estimate, self.placement
            row.update(
                weights_bytes=e.weights.total,
                optimizer_state_bytes=e.optimizer_state.total,
                index_bytes=e.index,
                activations_bytes=e.activations,
                step_bytes=e.step,
                reservation_bytes=e.reservation.bytes_for(e.modelled_train_bytes),
                total_bytes=e.train_peak_bytes(),
                trainable=e.trains,
                fits=p.fits_one_host,
                hosts=p.hosts,
                per_host_bytes=p.per_host_bytes,
            )
        return row


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value.tolist() if hasattr(value, "tolist") else value


def _time_limited(function: Callable[[], Any], seconds: float, what: str) -> Any:
    """`function()`, raising TimeoutError after `seconds` (only in the main thread, where signals work)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        return function()

    def expire(signum, frame):
        raise TimeoutError(f"{what} took longer than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return function()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def option_sets(strategy: str, vocab_size: int, dim: int) -> list[tuple[str, dict | Exception]]:
    """('default', {}) then the strategy's presets; a preset it cannot reach maps to the error saying why."""
    from membed import strategies

    sets: list[tuple[str, dict | Exception]] = [("default", {})]
    try:
        presets = _time_limited(lambda: strategies.get(strategy).accuracy_presets(vocab_size, dim),
                                PRESET_TIME_LIMIT_S, f"{strategy}: presets")
    except (ValueError, TimeoutError) as error:
        return sets + [("presets", error)]
    return sets + list(presets.items())


def plan_rows(names: Sequence[str], vocab_size: int, dim: int, optimizer: str, batch_size: int,
              host_memory_bytes: int) -> list[PlanRow]:
    """Every strategy in `names` at its default options and presets, estimated and placed.

    A preset that gives the default's layout (quantized's `int8`) is folded
    into the default's row; presets that fail alike share one row.
    """
    from membed.plan.estimator import estimate_layout
    from membed.plan.layout import Layout
    from membed.plan.sharding import row_wise_hosts

    rows: list[PlanRow] = []
    for name in names:
        layouts: dict[Layout, int] = {}
        for preset, options in option_sets(name, vocab_size, dim):
            try:
                if isinstance(options, Exception):
                    raise options
                layout = Layout.of(name, vocab_size, dim, options)
            except (ValueError, TimeoutError) as error:
                message = _one_line(error)
                previous = rows[-1] if rows and rows[-1].strategy == name else None
                if previous is not None and previous.error == message:
                    rows[-1] = dataclasses.replace(previous, preset=f"{previous.preset},{preset}")
                else:
                    rows.append(PlanRow(name, preset, {} if isinstance(options, Exception) else options,
                                        error=message))
                continue
            if layout in layouts:  # the same weights as an earlier row of this strategy
                same = layouts[layout]
                rows[same] = dataclasses.replace(rows[same], preset=f"{rows[same].preset}={preset}")
                continue
            layouts[layout] = len(rows)
            rows.append(PlanRow(name, preset, options,
                                estimate_layout(layout, optimizer, batch_size, HOST),
                                row_wise_hosts(layout, optimizer, batch_size, host_memory_bytes)))
    return rows


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


# ----- output ----------------------------------------------------------------------
def _options_text(options: dict, width: int = 40) -> str:
    text = ",".join(f"{k}={','.join(map(str, v)) if isinstance(v, (list, tuple)) else v}"
                    for k, v in options.items()) or "-"
    return text if len(text) <= width else text[: width - 1] + "…"


def render_table(rows: list[PlanRow], header: dict[str, Any], console=None) -> None:
    """The rows as a rich table, with a title line saying the case."""
    from rich.console import Console
    from rich.table import Table

    if console is None:
        console = Console()
        if not console.is_terminal:  # piped: wide enough that numbers do not wrap
            console = Console(width=160)
    title = (f"V={header['vocab_size']:,}  dim={header['dim']}  optimizer={header['optimizer']}  "
             f"batch={header['batch_size']}  host={format_bytes(header['host_memory_bytes'])}")
    table = Table(title=title, title_justify="left")
    for column, justify in (("strategy", "left"), ("preset", "left"), ("options", "left"), ("weights", "right"),
                            ("opt. state", "right"), ("index", "right"), ("train total", "right"),
                            ("fits", "center"), ("hosts", "right"), ("per host", "right")):
        table.add_column(column, justify=justify, no_wrap=column != "options", overflow="fold")
    for row in rows:
        if row.error:
            table.add_row(row.strategy, row.preset, f"[dim]{row.error}[/dim]", *["-"] * 7)
            continue
        e, p = row.estimate, row.placement
        hosts = "1" if p.fits_one_host else (f"{p.hosts:,}" if p.hosts else "never")
        state = format_bytes(e.optimizer_state.total) if e.trains else "frozen"
        table.add_row(row.strategy, row.preset, _options_text(row.options), format_bytes(e.weights.total),
                      state, format_bytes(e.index),
                      format_bytes(e.train_peak_bytes()), "yes" if p.fits_one_host else "no", hosts,
                      format_bytes(p.per_host_bytes))
    console.print(table)
    console.print(
        f"train total: weights + optimizer state + index + batch tensors + step temporaries, plus "
        f"{HOST.share:.0%} and {format_bytes(HOST.fixed_bytes)} of runtime (membed.plan.constants.HOST). "
        "hosts: each holds ceil(rows / hosts) rows of every table with their state; dense weights replicated. "
        "frozen: int8 tables are not trained; their total is the lookup's."
    )


# ----- the command -----------------------------------------------------------------
def build_parser(prog: str = DEFAULT_PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="What training each strategy takes at a size, and how many hosts it needs.")
    parser.add_argument("--vocab-size", required=True, help="ids in the table, e.g. 1e9")
    parser.add_argument("--dim", required=True, help="embedding dimension, e.g. 128")
    parser.add_argument("--optimizer", default=DEFAULT_OPTIMIZER,
                        help=f"one of {', '.join(OPTIMIZER_NAMES)} (default: %(default)s)")
    parser.add_argument("--host-memory", default=None,
                        help="memory of one host, e.g. 24GiB, 512MB, 1e9 (required unless --device-memory is given)")
    parser.add_argument("--devices", default=None,
                        help="devices the tables are sharded over (row-wise): per-device bytes and whether they fit, "
                             "and the devices each strategy needs at V = 1e8, 1e9, 1e10; needs --device-memory")
    parser.add_argument("--device-memory", default=None, help="memory of one device, e.g. 80GiB (with --devices)")
    parser.add_argument("--strategies", default=None, help="comma-separated names (default: every registered one)")
    parser.add_argument("--batch-size", default=str(DEFAULT_BATCH_SIZE),
                        help="ids per step on each host (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--verbose", action="store_true", help="show TensorFlow's start-up log lines")
    return parser


@dataclasses.dataclass(frozen=True)
class PlanArgs:
    vocab_size: int
    dim: int
    optimizer: str
    host_memory_bytes: int
    batch_size: int
    strategies: tuple[str, ...] | None
    json: bool
    devices: int | None = None
    device_memory_bytes: int | None = None


def check_args(args: argparse.Namespace) -> PlanArgs:
    """Every argument parsed and checked; PlanError on the first bad one. Imports nothing heavy."""
    if args.optimizer not in OPTIMIZER_NAMES:
        valid = ", ".join(OPTIMIZER_NAMES)
        raise PlanError(f"--optimizer: unknown optimizer {args.optimizer!r}. Use one of: {valid}.")
    names = None
    if args.strategies is not None:
        names = tuple(n.strip() for n in args.strategies.split(",") if n.strip())
        if not names:
            raise PlanError(f"--strategies: no strategy named in {args.strategies!r}; give comma-separated names.")
    if (args.devices is None) != (args.device_memory is None):
        raise PlanError("--devices and --device-memory go together: give both (e.g. --devices 8 --device-memory "
                        "80GiB), or neither.")
    device_memory = parse_size(args.device_memory, "--device-memory") if args.device_memory is not None else None
    if args.host_memory is None and device_memory is None:
        raise PlanError("--host-memory is required (e.g. --host-memory 24GiB), unless --devices and "
                        "--device-memory are given.")
    return PlanArgs(
        vocab_size=parse_count(args.vocab_size, "--vocab-size"),
        dim=parse_count(args.dim, "--dim"),
        optimizer=args.optimizer,
        # Without a host's memory, a host is one device: the `hosts` column is the devices this size needs.
        host_memory_bytes=parse_size(args.host_memory, "--host-memory") if args.host_memory is not None
        else device_memory,
        batch_size=parse_count(args.batch_size, "--batch-size"),
        strategies=names,
        json=bool(args.json),
        devices=parse_count(args.devices, "--devices") if args.devices is not None else None,
        device_memory_bytes=device_memory,
    )


def main(argv: Sequence[str] | None = None, prog: str = DEFAULT_PROG) -> int:
    """Runs the command; returns the exit code (0, or 2 for a bad argument), so tests can call it.

    Args:
        argv: arguments without the program name (default: sys.argv[1:]).
        prog: the name usage lines show (`python -m membed plan` when hooked there).

    Example:
        >>> main(["--vocab-size", "1e6", "--dim", "64", "--host-memory", "8GiB", "--strategies", "full", "--json"])
        0
    """
    parser = build_parser(prog)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse has printed its usage error
        return int(exit_.code or 0)
    try:
        plan = check_args(args)
        started = time.perf_counter()
        from membed.quiet import import_tensorflow

        import_tensorflow(verbose=args.verbose)  # only once the arguments are good; its log lines hidden
        from membed import strategies

        names = plan.strategies or tuple(strategies.names())
        unknown = [n for n in names if n not in strategies.names()]
        if unknown:
            valid = ", ".join(strategies.names())
            raise PlanError(f"--strategies: unknown strategy {unknown[0]!r}. Use one of: {valid}.")
        rows = plan_rows(names, plan.vocab_size, plan.dim, plan.optimizer, plan.batch_size, plan.host_memory_bytes)
        on_devices = None
        if plan.devices is not None:
            from membed.plan import devices

            on_devices = {
                "devices": plan.devices, "device_memory_bytes": plan.device_memory_bytes,
                "rows": devices.device_rows(rows, plan.devices, plan.optimizer, plan.device_memory_bytes,
                                            plan.batch_size),
                "devices_needed": devices.scale_rows(names, plan.dim, plan.optimizer, plan.device_memory_bytes,
                                                     plan.batch_size),
            }
    except PlanError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    header = {"vocab_size": plan.vocab_size, "dim": plan.dim, "optimizer": plan.optimizer,
              "batch_size": plan.batch_size, "host_memory_bytes": plan.host_memory_bytes}
    if plan.json:
        extra = {"on_devices": on_devices} if on_devices is not None else {}
        print(json.dumps({**header, "reservation": dataclasses.asdict(HOST),
                          "rows": [row.as_dict() for row in rows], **extra,
                          "seconds": round(time.perf_counter() - started, 3)}))
    else:
        render_table(rows, header)
        if on_devices is not None:
            from membed.plan.devices import render_devices

            render_devices(on_devices["rows"], on_devices["devices_needed"],
                           {**header, "devices": plan.devices, "device_memory_bytes": plan.device_memory_bytes})
    return 0
