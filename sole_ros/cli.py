"""sole-ros: the command line of the ROS-free library.

Each sub-command lives in its own module and registers itself here; a mistake gets one clear line
on stderr and a non-zero exit code. So does anything unexpected (one line naming the exception;
SOLE_ROS_DEBUG=1 shows its traceback instead), and Ctrl-C exits 130 without one.
"""
from __future__ import annotations

import argparse
import os
import sys

from sole_ros import __version__


class CliError(Exception):
    """A user mistake: printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sole-ros",
        description="Open-vocabulary 3D instance segmentation (SOLE) from the command line.")
    parser.add_argument("--version", action="version", version=f"sole-ros {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    from sole_ros.training.cli import register_eval, register_train

    register_train(subparsers)
    register_eval(subparsers)
    from sole_ros import cli_average, cli_bag, cli_bench, cli_image_tower, cli_segment, cli_weights

    for command in (cli_segment, cli_bag, cli_weights, cli_bench, cli_image_tower, cli_average):
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
        print(f"sole-ros: error: {type(error).__name__}: {' '.join(lines)[:500] or '(no message)'} "
              f"(SOLE_ROS_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1


def _debug() -> bool:
    return os.environ.get("SOLE_ROS_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


if __name__ == "__main__":
    # `python -m sole_ros.cli` runs this file as __main__, a second copy of the module: use the
    # imported one, whose CliError is the class the sub-command modules raise.
    from sole_ros.cli import main as imported_main

    sys.exit(imported_main())
