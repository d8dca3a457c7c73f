"""Input accounting: counters by reason, the synchroniser's drop reasons, QoS that follows publishers."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy

from sole_ros.messages import input_counters as reasons
from sole_ros.messages.input_counters import InputCounters
from sole_ros.ros.input_qos import offered_reliability
from sole_ros.ros.sync import OUT_OF_ORDER, UNMATCHED, ApproximateTimeSync


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_counters_by_input_and_reason():
    counters = InputCounters()
    for _ in range(3):
        counters.received("depth")
    counters.fused("depth")
    counters.dropped("depth", reasons.NO_POSE, "no transform map <- camera")
    counters.dropped("depth", reasons.NO_POSE)
    counters.received("color")
    snapshot = counters.snapshot()
    assert (snapshot["depth"].received, snapshot["depth"].fused) == (3, 1)
    assert snapshot["depth"].dropped == {reasons.NO_POSE: 2}
    assert (
        snapshot["color"].received,
        snapshot["color"].fused,
        dict(snapshot["color"].dropped),
    ) == (1, 0, {})
    rows = dict(counters.key_values())
    assert rows["depth received"] == "3" and rows["depth dropped: no pose at the stamp"] == "2"
    assert "color dropped: no pose at the stamp" not in rows
    assert counters.describe() == (
        "color: 1 received, 0 fused; depth: 3 received, 1 fused, dropped: 2 no pose at the stamp"
    )


def test_unknown_reason_is_refused():
    with pytest.raises(ValueError, match="unknown drop reason"):
        InputCounters().dropped("depth", "because")


def test_stalled_says_why_only_after_the_quiet_time():
    clock = Clock()
    counters = InputCounters(clock=clock)
    assert counters.stalled("depth", 5.0) is None  # nothing received: not this check's business
    counters.received("depth")
    counters.dropped("depth", reasons.NO_CAMERA_INFO, "nothing on /depth/camera_info yet")
    clock.now += 4.0
    assert counters.stalled("depth", 5.0) is None
    clock.now += 2.0
    assert counters.stalled("depth", 5.0) == "no camera info: nothing on /depth/camera_info yet"
    counters.fused("depth")
    assert counters.stalled("depth", 5.0) is None


def _msg(stamp: float):
    return SimpleNamespace(
        header=SimpleNamespace(
            stamp=SimpleNamespace(sec=int(stamp), nanosec=round((stamp % 1) * 1e9))
        )
    )


def test_synchroniser_reports_each_drop_with_its_input_and_reason():
    drops, pairs = [], []
    sync = ApproximateTimeSync(
        2, lambda *m: pairs.append(m), slop=0.01, on_drop=lambda i, r: drops.append((i, r))
    )
    sync.add(0, _msg(1.0))
    sync.add(1, _msg(2.0))  # depth 1.0 can never pair: dropped as unmatched
    assert drops == [(0, UNMATCHED)]
    sync.add(0, _msg(2.0))
    assert len(pairs) == 1
    sync.add(1, _msg(1.5))  # older than the pair just delivered
    assert drops[-1] == (1, OUT_OF_ORDER) and sync.dropped == 2


def _publisher(reliability):
    return SimpleNamespace(qos_profile=QoSProfile(depth=5, reliability=reliability))


def test_subscription_follows_what_publishers_offer():
    reliable, best_effort = ReliabilityPolicy.RELIABLE, ReliabilityPolicy.BEST_EFFORT
    assert offered_reliability([]) is None
    assert offered_reliability([_publisher(reliable)]) == reliable
    assert offered_reliability([_publisher(reliable), _publisher(reliable)]) == reliable
    # One best-effort publisher among reliable ones: only best effort matches them all.
    assert offered_reliability([_publisher(reliable), _publisher(best_effort)]) == best_effort


def test_diagnostic_status_carries_the_counters_and_says_what_is_wrong():
    from diagnostic_msgs.msg import DiagnosticStatus

    from sole_ros.ros.node_diagnostics import perception_status

    counters = InputCounters()
    counters.received("depth")
    counters.dropped("depth", reasons.NO_POSE, "no transform")
    inputs = {
        "input rate depth (Hz)": "1.0",
        **dict(counters.key_values()),
        "depth waiting for its pair": "0",
    }

    def values(status):
        return {kv.key: kv.value for kv in status.values}

    active = perception_status("/robot1/sole", "active", inputs, None)
    assert active.name == "/robot1/sole: perception" and active.level == DiagnosticStatus.OK
    assert list(values(active))[:2] == ["input rate depth (Hz)", "lifecycle state"]
    assert values(active)["depth dropped: no pose at the stamp"] == "1"
    inactive = perception_status("/sole", "inactive", inputs, None)
    assert inactive.level == DiagnosticStatus.WARN and "inactive" in inactive.message
    broken = perception_status(
        "/sole", "unconfigured", inputs, None, model_error="model not loaded: gone"
    )
    assert broken.level == DiagnosticStatus.ERROR and broken.message == "model not loaded: gone"
