"""PooledCallbackExecutor over real DDS: while every thread waits inside a service callback and a
topic and timers keep firing, the spin thread sleeps instead of spinning (rclpy 9's
MultiThreadedExecutor uses a whole core there: 99.9% measured with this setup), no more callbacks
run at once than it has threads, and every request is answered once they are free."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import pytest
import rclpy
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from std_msgs.msg import String
from std_srvs.srv import Trigger

from sole_ros.ros.callback_executor import PooledCallbackExecutor

THREADS = 2
REQUESTS = 6

# Another process calls the service REQUESTS times at once, publishes on a topic at about 50 Hz
# meanwhile (a camera's stream), and prints how many answers came back.
CLIENT = textwrap.dedent(f"""
    import sys, time, rclpy
    from std_msgs.msg import String
    from std_srvs.srv import Trigger
    rclpy.init()
    node = rclpy.create_node("pooled_executor_client")
    stream = node.create_publisher(String, sys.argv[1] + "/stream", 10)
    client = node.create_client(Trigger, sys.argv[1])
    assert client.wait_for_service(timeout_sec=60.0)
    futures = [client.call_async(Trigger.Request()) for _ in range({REQUESTS})]
    deadline = time.monotonic() + 120.0
    while time.monotonic() < deadline and not all(f.done() for f in futures):
        stream.publish(String(data="frame"))
        rclpy.spin_once(node, timeout_sec=0.02)
    print(sum(f.done() and f.result().success for f in futures))
""")


def _thread_cpu_seconds(thread: threading.Thread) -> float:
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


@pytest.fixture
def context():
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    yield ctx
    rclpy.try_shutdown(context=ctx)


def test_blocked_callbacks_leave_the_spin_thread_asleep_and_all_requests_are_answered(
    context, tmp_path
):
    release, lock = threading.Event(), threading.Lock()
    running, most_running, started = [0], [0], []

    def blocking(request, response):
        with lock:
            running[0] += 1
            most_running[0] = max(most_running[0], running[0])
            started.append(time.monotonic())
        release.wait(timeout=60.0)
        with lock:
            running[0] -= 1
        response.success = True
        return response

    node = Node("pooled_executor_server", context=context)
    service_name = f"/pooled_executor_{id(node)}"
    node.create_service(Trigger, service_name, blocking, callback_group=ReentrantCallbackGroup())
    node.create_subscription(
        String,
        f"{service_name}/stream",
        lambda _: None,
        10,
        callback_group=MutuallyExclusiveCallbackGroup(),
    )
    timers = MutuallyExclusiveCallbackGroup()
    node.create_timer(0.1, lambda: None, callback_group=timers)
    node.create_timer(0.5, lambda: None, callback_group=timers)
    executor = PooledCallbackExecutor(num_threads=THREADS, context=context)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    client = subprocess.Popen(
        [sys.executable, "-c", CLIENT, service_name], stdout=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60.0
        while len(started) < THREADS and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(started) == THREADS, "the service was not called"
        time.sleep(1.0)  # the remaining requests arrive and wait for a thread
        cpu_before, wall_before = _thread_cpu_seconds(spinner), time.monotonic()
        time.sleep(2.0)
        busy = (_thread_cpu_seconds(spinner) - cpu_before) / (time.monotonic() - wall_before)
        assert busy < 0.1, f"the spin thread used {busy:.0%} of a core while every thread was busy"
        assert most_running[0] == THREADS

        release.set()
        out, _ = client.communicate(timeout=120.0)
        assert out.strip() == str(REQUESTS), f"answered: {out!r}"
        assert len(started) == REQUESTS and most_running[0] == THREADS
    finally:
        release.set()
        client.kill()
        executor.shutdown()
        spinner.join(timeout=10.0)
        node.destroy_node()
    assert not spinner.is_alive()


def test_a_callback_error_ends_spin_in_the_spin_thread(context):
    node = Node("pooled_executor_failing", context=context)

    def failing():
        raise RuntimeError("callback failed")

    node.create_timer(0.01, failing)
    executor = PooledCallbackExecutor(num_threads=THREADS, context=context)
    executor.add_node(node)
    try:
        with pytest.raises(RuntimeError, match="callback failed"):
            deadline = time.monotonic() + 30.0
            while time.monotonic() < deadline:
                executor.spin_once(timeout_sec=0.1)
    finally:
        executor.shutdown()
        node.destroy_node()


def test_thread_count_must_be_positive(context):
    with pytest.raises(ValueError, match="num_threads"):
        PooledCallbackExecutor(num_threads=0, context=context)
