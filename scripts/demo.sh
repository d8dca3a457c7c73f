#!/usr/bin/env bash
# Set up (idempotent) and run the demo: sole_node, a sensor player and a client asking queries.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/scripts/setup.sh"
# shellcheck disable=SC1091
source "$ROOT/scripts/env.sh"
cd "$ROOT"
exec python -m sole_ros.ros.demo "$@"
