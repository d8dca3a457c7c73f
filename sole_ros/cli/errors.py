"""How a command reports: CliError for a user's mistake, progress on stderr.

Every command module raises CliError with a message that fits on one line; sole_ros/cli/app.py
prints it as `sole-ros COMMAND: error: MESSAGE` and exits 2.
"""

from __future__ import annotations

import sys


class CliError(Exception):
    """A user mistake: printed as one line, exit code 2."""


def log(message: str) -> None:
    """Progress and warnings go to stderr, so that --json output stays one clean document."""
    print(message, file=sys.stderr, flush=True)


def one_line(error: BaseException) -> str:
    """An exception's message on one line (for wrapping it in a CliError)."""
    lines = str(error).strip().splitlines()
    return " ".join(line.strip() for line in lines) or type(error).__name__
