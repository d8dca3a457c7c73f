"""sole-ros: the command line of the ROS-free library.

Each sub-command lives in its own module and registers itself here; a mistake gets one clear line
on stderr and a non-zero exit code.
"""
from __future__ import annotations

import argparse
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
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args.handler(args) or 0)
    except CliError as error:
        print(f"sole-ros {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    # `python -m sole_ros.cli` runs this file as __main__, a second copy of the module: use the
    # imported one, whose CliError is the class the sub-command modules raise.
    from sole_ros.cli import main as imported_main

    sys.exit(imported_main())
