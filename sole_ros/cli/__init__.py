"""sole-ros: the command line of the ROS-free library.

The program (parser, error handling) is sole_ros/cli/app.py; each command group is its own module
beside it (segment, bag, training, weights, bench), with the shared helpers in errors.py,
model_options.py and results.py. Command modules import only those helpers, never this package's
app, so that app alone decides which commands exist.
"""

from sole_ros.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
