"""`sole-ros bench`: list and run the benchmarks in the checkout's bench/ folder.

Each benchmark is a script bench/bench_<name>.py; `bench NAME [ARGS...]` runs it with this
Python in a subprocess (its own flags follow the name) and returns its exit code.
"""

from __future__ import annotations

import argparse
import ast
import os
import subprocess
import sys
from pathlib import Path

from sole_ros.cli.errors import CliError

PREFIX = "bench_"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="list (--list) or run the benchmarks in bench/",
        description=__doc__.split("\n\n", 1)[1].strip() if __doc__ else None,
        epilog="example: sole-ros bench model --voxels 50000   (sole-ros bench model --help: its own flags)",
    )
    parser.add_argument(
        "--list", action="store_true", help="list the benchmarks and what each measures"
    )
    parser.add_argument(
        "--bench-dir",
        metavar="DIR",
        help="the bench/ folder (default: ./bench, else the checkout's; env SOLE_ROS_BENCH_DIR)",
    )
    parser.add_argument("name", nargs="?", metavar="NAME", help="the benchmark to run (see --list)")
    parser.add_argument(
        "args", nargs=argparse.REMAINDER, metavar="ARGS", help="passed on to the benchmark"
    )
    parser.set_defaults(handler=run)


def bench_dir(explicit: str | None = None) -> Path:
    candidates = (
        [explicit]
        if explicit
        else [
            os.environ.get("SOLE_ROS_BENCH_DIR"),
            "bench",
            Path(__file__).resolve().parents[2] / "bench",
        ]
    )
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    if explicit:
        raise CliError(f"--bench-dir {explicit}: no such folder")
    raise CliError("no bench/ folder found: run from the checkout, or pass --bench-dir DIR")


def benchmarks(folder: Path) -> dict[str, Path]:
    return {p.stem[len(PREFIX) :]: p for p in sorted(folder.glob(f"{PREFIX}*.py"))}


def summary(path: Path) -> str:
    """The first line of the script's docstring, read without running it."""
    try:
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    except (OSError, SyntaxError, ValueError):
        return "(unreadable)"
    return doc.strip().splitlines()[0] if doc else ""


def run(args) -> int:
    folder = bench_dir(args.bench_dir)
    found = benchmarks(folder)
    if args.list or not args.name:
        if not found:
            print(f"no benchmarks ({PREFIX}*.py) in {folder}")
            return 0
        width = max(len(n) for n in found)
        for name, path in found.items():
            print(f"  {name:<{width}}  {summary(path)}")
        if not args.list:
            print("run one with: sole-ros bench NAME [its flags]")
        return 0
    name = args.name[len(PREFIX) :] if args.name.startswith(PREFIX) else args.name
    name = name[:-3] if name.endswith(".py") else name
    if name not in found:
        raise CliError(
            f"no benchmark {args.name!r} in {folder} (have: {', '.join(found) or 'none'})"
        )
    extra = args.args[1:] if args.args[:1] == ["--"] else args.args
    completed = subprocess.run([sys.executable, str(found[name]), *extra])
    return completed.returncode
