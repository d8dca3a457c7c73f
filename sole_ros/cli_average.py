"""`sole-ros average-weights`: one checkpoint from two of the same network, by weight averaging.

The first file gives everything but the network's tensors (settings, post-processing, the CLIP and
its image tower); each floating-point tensor becomes (1 - w) * first + w * second. Meant for a
network and a continuation of its training (sole_ros/training/weight_average.py); the demo weights
are made this way (scripts/train_demo_weights.sh).
"""
from __future__ import annotations

from sole_ros.cli import CliError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "average-weights", help="average the networks of two checkpoints of one architecture",
        description=__doc__.split("\n\n", 1)[1].strip() if __doc__ else None)
    parser.add_argument("first", help="checkpoint whose settings, CLIP and counters the result keeps")
    parser.add_argument("second", help="checkpoint of the same network (e.g. trained further)")
    parser.add_argument("--weight", type=float, default=0.5,
                        help="share of the second network, in [0, 1] (default: %(default)s)")
    parser.add_argument("--output", required=True, help="where to write the averaged checkpoint")
    parser.set_defaults(handler=run)


def run(args) -> int:
    from sole_ros.model.checkpoint import CheckpointError
    from sole_ros.training.weight_average import average_checkpoints

    try:
        path = average_checkpoints(args.first, args.second, args.output, args.weight)
    except (ValueError, FileNotFoundError, CheckpointError) as error:
        raise CliError(str(error)) from None
    print(f"wrote {path}: {1 - args.weight:g} x {args.first} + {args.weight:g} x {args.second}")
    return 0
