"""The `sole-ros` program: its parser, made of the command modules, and main().

Each command module has register(subparsers), which adds its sub-command(s) and sets a handler
(args -> exit code). A mistake raised as CliError gets one clear line on stderr and exit code 2.
So does anything unexpected (one line naming the exception, exit code 1; SOLE_ROS_DEBUG=1 shows its
traceback instead), and Ctrl-C exits 130 without one.
"""

from __future__ import annotations

import argparse
import os
import sys

from sole_ros import __version__
from sole_ros.cli import bag, bench, segment, training, weights
from sole_ros.cli.errors import CliError

# In the order `sole-ros --help` lists them.
COMMANDS = (segment, bag, training, weights, bench)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sole-ros",
        description="Open-vocabulary 3D instance segmentation (SOLE) from the command line.",
    )
    parser.add_argument("--version", action="version", version=f"sole-ros {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = None
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 0
        return int(args.handler(args) or 0)
    except CliError as error:
        command = getattr(args, "command", None)
        print(f"sole-ros{' ' + command if command else ''}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # noqa: BLE001 - the last line of defence: a bug or an unforeseen input
        if _debug():
            raise
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        print(
            f"sole-ros: error: {type(error).__name__}: {' '.join(lines)[:500] or '(no message)'} "
            f"(SOLE_ROS_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return 1


def _debug() -> bool:
    return os.environ.get("SOLE_ROS_DEBUG", "").strip().lower() not in ("", "0", "false", "no")
