"""sole_node's /diagnostics: one status per node, in every lifecycle state.

The status is named after the node's fully qualified name (``/robot1/sole: perception``) so that
robots sharing /diagnostics stay apart. Its values: the inputs' rates, counters, QoS and waiting
frames (node_inputs.py), the lifecycle state, the map, the last segmentation and the object
memory. Its level: ERROR with the reason when the model did not load or a segmentation failed,
WARN when the node is not active, else OK.
"""

from __future__ import annotations

import time
from collections import deque

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

NOT_ACTIVE = "node is not active (lifecycle state: {})"

__all__ = ["RateMeter", "perception_status", "diagnostic_array", "NOT_ACTIVE"]


class RateMeter:
    """Messages per second over the last few seconds, for diagnostics."""

    def __init__(self, window: float = 5.0):
        self.window = window
        self._times: deque[float] = deque()

    def tick(self) -> None:
        now = time.monotonic()
        self._times.append(now)
        while self._times and now - self._times[0] > self.window:
            self._times.popleft()

    def rate(self) -> float:
        now = time.monotonic()
        while self._times and now - self._times[0] > self.window:
            self._times.popleft()
        return len(self._times) / self.window


def pipeline_values(pipeline) -> dict[str, str]:
    """The map, the model's device, the last segmentation's age and the object memory's counts."""
    if pipeline is None:
        return {}
    stats = pipeline.map.stats()
    values = {
        "map voxels": str(stats["voxels"]),
        "map memory (bytes)": str(stats["memory_bytes"]),
        "map version": str(stats["version"]),
        "map stamp": f"{stats['stamp']:.6f}",
        "model device": str(pipeline.device),
    }
    seg = pipeline.segmentation
    values["last segmentation age (s)"] = f"{time.time() - seg.finished_at:.1f}" if seg else "never"
    memory = pipeline.memory
    if memory is not None:
        values.update(
            {
                "objects remembered" if name == "objects" else f"objects {name}": str(count)
                for name, count in memory.stats().items()
                if name != "voxels"
            }
        )
    return values


def perception_status(
    node_name: str,
    state: str,
    input_values: dict[str, str],
    pipeline,
    model_error: str = "",
    segment_error: str = "",
) -> DiagnosticStatus:
    """The node's status: ``state`` its lifecycle state, ``input_values`` NodeInputs'."""
    status = DiagnosticStatus(name=f"{node_name}: perception", hardware_id="sole_ros")
    values = {k: v for k, v in input_values.items() if k.startswith("input rate ")}
    values["lifecycle state"] = state
    values.update({k: v for k, v in input_values.items() if not k.startswith("input rate ")})
    values.update(pipeline_values(pipeline))
    status.level, status.message = DiagnosticStatus.OK, "ok"
    if model_error or segment_error:
        status.level = DiagnosticStatus.ERROR
        status.message = model_error or f"segmentation failed: {segment_error}"
    elif state != "active":
        status.level = DiagnosticStatus.WARN
        status.message = NOT_ACTIVE.format(state)
    status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
    return status


def diagnostic_array(status: DiagnosticStatus, stamp) -> DiagnosticArray:
    msg = DiagnosticArray(status=[status])
    msg.header.stamp = stamp
    return msg
