"""`python -m sole_ros.cli` (also under torchrun): the same program as `sole-ros`."""

import sys

from sole_ros.cli.app import main

if __name__ == "__main__":
    sys.exit(main())
