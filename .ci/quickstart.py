"""Prints the commands of README.md's Quickstart block, one per line, for .ci/run to run as written.

The block is the first ```bash fence under "## Quickstart"; comment lines and
blank lines are dropped, a trailing comment is kept (bash ignores it).
"""

from __future__ import annotations

import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def quickstart_commands(text: str) -> list[str]:
    """The command lines of the Quickstart's bash block; ValueError when there is no such block."""
    try:
        section = text.split("\n## Quickstart\n", 1)[1].split("\n## ", 1)[0]
        block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    except IndexError:
        raise ValueError("README.md has no ```bash block under '## Quickstart'.") from None
    commands = [line.strip() for line in block.splitlines()]
    commands = [line for line in commands if line and not line.startswith("#")]
    if not commands:
        raise ValueError("README.md's Quickstart block holds no command.")
    return commands


if __name__ == "__main__":
    try:
        print("\n".join(quickstart_commands(README.read_text(encoding="utf-8"))))
    except ValueError as error:
        sys.exit(f"quickstart: {error}")
