# Source this (bash) to use the set-up made by scripts/setup.sh: the venv, the colcon install
# (generated interfaces, sole_node, sole-ros) and a loopback-only DDS configuration.
_sole_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export VIRTUAL_ENV=${SOLE_VENV:-$_sole_root/.venv}
export PATH=$VIRTUAL_ENV/bin:$PATH
export AMENT_PREFIX_PATH=$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}
export RMW_IMPLEMENTATION=${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}
# Keep discovery on this machine unless the user asks otherwise.
export ROS_AUTOMATIC_DISCOVERY_RANGE=${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}
# colcon's setup files read unset variables: relax `set -u` while sourcing them.
case $- in *u*) _sole_nounset=1; set +u ;; *) _sole_nounset= ;; esac
# shellcheck disable=SC1091
. "$_sole_root/install/setup.bash"
[ -n "$_sole_nounset" ] && set -u
# `sole_node` on PATH too (ament installs it in lib/sole_ros, where `ros2 run` looks).
export PATH=$_sole_root/install/sole_ros/lib/sole_ros:$PATH
unset _sole_root _sole_nounset
