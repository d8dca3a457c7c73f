"""Shared test fixtures: real ROS 2 processes over loopback DDS, never left behind."""

from __future__ import annotations

import os
import pathlib
import random
import signal
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

# A private DDS domain per test run so parallel runs (CI, a developer) never see each other.
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(1, 100)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")


# sole_node with the tiny architecture and random weights (no pretrained weights exist here),
# poses from the `pose` topic (no tf2_ros here), reliable inputs and on-demand segmentation.
TINY_NODE_ARGS = [
    "--ros-args",
    "-p",
    "model.config:=tiny",
    "-p",
    "model.allow_random_weights:=true",
    "-p",
    "model.clip_model:=sole-tiny",
    "-p",
    "model.clip_pretrained:=''",
    "-p",
    "device:=cpu",
    "-p",
    "pose.source:=topic",
    "-p",
    "inputs.qos:=reliable",
    "-p",
    "segmentation.period:=0.0",
    "-p",
    "scene.voxel_size:=0.03",
    "-p",
    "scene.keyframe_translation:=0.0",
    "-p",
    "scene.keyframe_rotation_deg:=0.0",
    "-p",
    "output.scene_period:=1.0",
    "-p",
    "output.diagnostics_period:=0.5",
]
SOLE_NODE = ROOT / "install/sole_ros/lib/sole_ros/sole_node"


def shared_data(*parts: str) -> pathlib.Path:
    """A path under ../shared/data, or skip the test with the reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (the shared test data sits beside the checkout)")
    return path


class NodeProcess:
    """A ROS executable in its own process group; output captured to a file for diagnostics."""

    def __init__(self, argv: list[str], log_path: pathlib.Path, env: dict | None = None):
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGINT)
                self.proc.wait(timeout=timeout)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                pass
        # Whatever is left of the group (children included) goes too.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self._log.close()
        return self.proc.returncode


@pytest.fixture(scope="module")
def text_encoder():
    """The tiny CLIP's text tower with seed-0 random weights (no weights can be downloaded here)."""
    import torch

    from sole_ros.clip import ClipSpec
    from sole_ros.model.text import TextEncoder

    torch.manual_seed(0)
    return TextEncoder(ClipSpec.tiny(), device="cpu")


@pytest.fixture
def spawn(tmp_path):
    """spawn(name, *ros_args) starts an installed executable of this package in its own process."""
    started: list[NodeProcess] = []

    def _spawn(executable: str, *args: str, env: dict | None = None) -> NodeProcess:
        node = NodeProcess(
            [executable, *args],
            tmp_path / f"{pathlib.Path(executable).name}-{len(started)}.log",
            env,
        )
        started.append(node)
        return node

    yield _spawn
    for node in started:
        node.stop()


@pytest.fixture
def ros_client():
    """An rclpy context and a plain node in this (the test's) process, shut down afterwards."""
    rclpy = pytest.importorskip("rclpy")
    context = rclpy.context.Context()
    rclpy.init(context=context)
    node = rclpy.create_node(
        f"test_client_{os.getpid()}_{int(time.time() * 1000) % 100000}", context=context
    )
    yield node
    node.destroy_node()
    rclpy.shutdown(context=context)


def call_service(node, srv_type, name: str, request, timeout: float = 60.0):
    """Wait for a service, call it, spin until the answer comes; fail the test on timeout."""
    client = node.create_client(srv_type, name)
    try:
        if not client.wait_for_service(timeout_sec=timeout):
            pytest.fail(f"service {name} did not appear within {timeout} s")
        future = client.call_async(request)
        spin_until(node, future, timeout)
        if not future.done():
            pytest.fail(f"service {name} did not answer within {timeout} s")
        return future.result()
    finally:
        node.destroy_client(client)


def spin_until(node, future, timeout: float) -> None:
    """Spin the test's node (in its own context) until the future is done or the time is up."""
    from rclpy.executors import SingleThreadedExecutor

    executor = SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    try:
        executor.spin_until_future_complete(future, timeout_sec=timeout)
    finally:
        executor.remove_node(node)
        executor.shutdown()


def run_python(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout
    )


def wait_until_active(
    node, process: NodeProcess, timeout: float = 180.0, name: str = "/sole"
) -> None:
    """Poll <name>/get_state until the lifecycle node is active (autostart loads the model first)."""
    from lifecycle_msgs.msg import State
    from lifecycle_msgs.srv import GetState

    deadline = time.monotonic() + timeout
    client = node.create_client(GetState, f"{name}/get_state")
    try:
        while time.monotonic() < deadline:
            assert process.alive(), f"sole_node exited:\n{process.output()[-3000:]}"
            if not client.wait_for_service(timeout_sec=1.0):
                continue
            future = client.call_async(GetState.Request())
            spin_until(node, future, 10.0)
            if future.done() and future.result().current_state.id == State.PRIMARY_STATE_ACTIVE:
                return
            time.sleep(0.5)
    finally:
        node.destroy_client(client)
    pytest.fail(f"sole_node did not become active within {timeout} s:\n{process.output()[-3000:]}")
