"""The demo: start sole_node, ask it a query over ROS 2, print the answer, stop the node.

Run through scripts/demo.sh (which sets everything up first).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import rclpy

from sole_ros.srv import QueryObjects


def _node_executable() -> str:
    exe = shutil.which("sole_node")
    if exe:
        return exe
    prefix = os.environ.get("COLCON_PREFIX_PATH", "").split(os.pathsep)[0] or "install"
    return os.path.join(prefix, "sole_ros", "lib", "sole_ros", "sole_node")


def main() -> int:
    print("[demo] starting sole_node", flush=True)
    node_proc = subprocess.Popen([_node_executable()], start_new_session=True)
    rclpy.init()
    client_node = rclpy.create_node("sole_demo_client")
    try:
        client = client_node.create_client(QueryObjects, "/sole/query")
        if not client.wait_for_service(timeout_sec=60.0):
            print("[demo] /sole/query did not appear within 60 s", file=sys.stderr)
            return 1
        for phrase in ["find the mug"]:
            future = client.call_async(QueryObjects.Request(phrases=[phrase], max_results=5))
            rclpy.spin_until_future_complete(client_node, future, timeout_sec=60.0)
            answer = future.result()
            if answer is None:
                print(f"[demo] no answer to {phrase!r}", file=sys.stderr)
                return 1
            print(f"[demo] {phrase!r}: success={answer.success} message={answer.message!r} "
                  f"instances={len(answer.instances)}", flush=True)
        return 0
    finally:
        client_node.destroy_node()
        rclpy.try_shutdown()
        os.killpg(node_proc.pid, signal.SIGINT)
        try:
            node_proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(node_proc.pid, signal.SIGKILL)
            node_proc.wait()
        time.sleep(0.1)


if __name__ == "__main__":
    sys.exit(main())
