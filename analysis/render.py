"""Renderers: each turns the same `Table`s (or the flat frame) into one output format.

rich for the terminal, markdown pipe tables written without padding (a padded
column is as wide as its longest cell on every row), CSV of the flat per-case
frame, JSON of both. All of them format numbers the same way
(`format_cell`), so the terminal and report.md agree digit for digit.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from typing import Any, TextIO

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table as RichTable

from analysis import schema
from analysis.frames import Table, epochs_text

FORMATS = ("rich", "markdown", "csv", "json")
# Columns whose numbers are changes, shown with a sign.
SIGNED_COLUMNS = ("delta", schema.FIELD["mse_vs_full"].label)
STATUS_STYLES = {"failed": "red", "skipped": "yellow", "missing": "red"}


def is_missing(value: Any) -> bool:
    """True for None and float NaN (and pandas' NA), the cells shown empty."""
    if value is None or value is pd.NA:
        return True
    return isinstance(value, float) and math.isnan(value)


def format_number(value: float, signed: bool = False) -> str:
    """Integers with thousands separators, other numbers to 4 significant digits.

    Example:
        >>> format_number(32000000.0), format_number(0.123456), format_number(-3.0, signed=True)
        ('32,000,000', '0.1235', '-3')
    """
    sign = "+" if signed else ""
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):{sign},}"
    if abs(value) >= 1e4:
        return f"{value:{sign},.0f}"
    return f"{value:{sign}.4g}"


def format_cell(column: str, value: Any) -> str:
    """The text of one cell; the column name picks percent, signed or plain formatting."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return epochs_text(value)
    if is_missing(value):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else ""
    if isinstance(value, (int, float, np.integer, np.floating)):
        if column.endswith("%"):
            return f"{float(value):+.1f}%"
        return format_number(float(value), signed=column in SIGNED_COLUMNS)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def formatted(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of `frame` with every cell formatted as text."""
    return pd.DataFrame(
        {column: [format_cell(str(column), v) for v in frame[column]] for column in frame.columns},
        columns=frame.columns,
    )


def _is_numeric(frame: pd.DataFrame, column: str) -> bool:
    return pd.api.types.is_numeric_dtype(frame[column]) and not pd.api.types.is_bool_dtype(frame[column])


def rich_table(table: Table) -> RichTable:
    """One `Table` as a rich table: numbers right-aligned, a section per vocabulary, failures coloured."""
    out = RichTable(title=table.title, caption=table.note or None, title_justify="left", caption_justify="left")
    for column in table.frame.columns:
        out.add_column(str(column), justify="right" if _is_numeric(table.frame, column) else "left")
    text = formatted(table.frame)
    groups = [c for c in table.group_by if c in table.frame.columns]
    previous = None
    for index in range(len(text)):
        group = tuple(table.frame[c].iloc[index] for c in groups)
        if previous is not None and group != previous:
            out.add_section()
        previous = group
        status = str(table.frame["status"].iloc[index]) if "status" in table.frame else "ok"
        style = next((s for key, s in STATUS_STYLES.items() if key in status), None)
        out.add_row(*text.iloc[index].tolist(), style=style)
    if not len(text):
        out.add_row(*["" for _ in table.frame.columns])
    return out


def render_rich(tables: Sequence[Table], stream: TextIO, summary: str = "", width: int | None = None) -> None:
    """Prints the tables to `stream`; `width` defaults to the terminal's, or 200 columns when piped."""
    if width is None and not (hasattr(stream, "isatty") and stream.isatty()):
        width = 200
    console = Console(file=stream, width=width, soft_wrap=False)
    for table in tables:
        console.print(rich_table(table))
        console.print()
    if summary:
        console.print(summary, highlight=False, markup=False)


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown pipe table of `frame`, cells unpadded: numbers right-aligned by the rule row.

    Example:
        >>> print(markdown_table(pd.DataFrame({"strategy": ["qr"], "params": [1200]})))
        |strategy|params|
        |:--|--:|
        |qr|1,200|
    """
    if not len(frame):
        return "(no rows)"
    text = formatted(frame).map(lambda s: s.replace("|", "\\|").replace("\n", " "))
    rule = ["--:" if _is_numeric(frame, c) else ":--" for c in frame.columns]
    header = [str(c).replace("|", "\\|") for c in frame.columns]
    lines = ["|" + "|".join(header) + "|", "|" + "|".join(rule) + "|"]
    lines += ["|" + "|".join(row) + "|" for row in text.itertuples(index=False)]
    return "\n".join(lines)


def render_markdown(
    tables: Sequence[Table], title: str = "membed benchmark report", summary: str = "", images: Sequence[str] = ()
) -> str:
    """The whole report as one markdown document: the summary text, the lead tables, the plots, the other tables."""
    lines = [f"# {title}", ""]
    if summary:
        lines += [summary.replace("\n", "  \n"), ""]
    for table in [t for t in tables if t.lead]:
        lines += markdown_section(table)
    if images:
        lines += ["## Plots", ""]
        lines += [f"![{name}]({name})" for name in images]
        lines.append("")
    for table in [t for t in tables if not t.lead]:
        lines += markdown_section(table)
    return "\n".join(lines)


def markdown_section(table: Table) -> list[str]:
    """The lines of one table's section: its title, its note, the table."""
    lines = [f"## {table.title}", ""]
    if table.note:
        lines += [table.note, ""]
    return [*lines, markdown_table(table.frame), ""]


def with_integers(frame: pd.DataFrame) -> pd.DataFrame:
    """Float columns whose values are all whole numbers become nullable integers (counts read as counts)."""
    out = frame.copy()
    for column in out.columns:
        values = out[column]
        if pd.api.types.is_float_dtype(values):
            present = values.dropna()
            if len(present) and (present == present.round()).all() and (present.abs() < 2**53).all():
                out[column] = values.astype("Int64")
    return out


def _plain(value: Any) -> Any:
    # JSON-encodes the nested cells (options, per-epoch lists) so a CSV cell stays one cell.
    if isinstance(value, (list, tuple, dict, np.ndarray)):
        return json.dumps(value.tolist() if isinstance(value, np.ndarray) else value, sort_keys=True)
    return value


def render_csv(frame: pd.DataFrame) -> str:
    """The flat frame (one row per case, or per case and metric) as CSV."""
    buffer = io.StringIO()
    with_integers(frame).map(_plain).to_csv(buffer, index=False, lineterminator="\n")
    return buffer.getvalue()


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-ready records of `frame`: NaN becomes null, numpy scalars plain numbers."""
    return json.loads(with_integers(frame).to_json(orient="records", double_precision=15, default_handler=str))


def render_json(tables: Sequence[Table], frame: pd.DataFrame | None = None, summary: str = "") -> str:
    """`{"summary", "tables": [{"title", "note", "rows"}], "cases"}` as indented JSON."""
    document: dict[str, Any] = {}
    if summary:
        document["summary"] = summary
    document["tables"] = [{"title": t.title, "note": t.note, "rows": records(t.frame)} for t in tables]
    if frame is not None:
        document["cases"] = records(frame)
    return json.dumps(document, indent=1) + "\n"


def render(
    fmt: str,
    tables: Sequence[Table],
    frame: pd.DataFrame,
    stream: TextIO,
    title: str = "membed benchmark report",
    summary: str = "",
) -> None:
    """Writes `tables` (or, for csv, `frame`) to `stream` in format `fmt`, one of FORMATS."""
    if fmt == "rich":
        render_rich(tables, stream, summary)
    elif fmt == "markdown":
        stream.write(render_markdown(tables, title, summary))
    elif fmt == "csv":
        stream.write(render_csv(frame))
    elif fmt == "json":
        stream.write(render_json(tables, frame, summary))
    else:
        raise ValueError(f"Unknown format {fmt!r}. Use one of: {', '.join(FORMATS)}.")
