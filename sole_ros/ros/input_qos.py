"""Input subscriptions whose QoS follows what their publishers offer (``inputs.qos: auto``).

A reliable subscription does not match a best-effort publisher, and a best-effort subscription
to a reliable publisher of large images loses most of them over DDS (fragments are not resent).
So, per topic: reliable when every publisher offers reliable, best effort when any offers only
best effort or when there is no publisher yet (it matches both); when the publishers leave, the
subscription stays as it is. The choice is re-checked
periodically, as publishers come, go or change, and a group of subscriptions (a depth/colour
pair) is re-created when any of its topics' choice changes, as rosbag2's recorder adapts.
"""

from __future__ import annotations

from typing import Callable

from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

MODES = ("auto", "reliable", "best_effort")
NAMES = {ReliabilityPolicy.RELIABLE: "reliable", ReliabilityPolicy.BEST_EFFORT: "best_effort"}


def offered_reliability(publishers) -> ReliabilityPolicy | None:
    """The reliability that matches every one of ``publishers`` (TopicEndpointInfo); None when none."""
    if not publishers:
        return None
    if all(p.qos_profile.reliability == ReliabilityPolicy.RELIABLE for p in publishers):
        return ReliabilityPolicy.RELIABLE
    return ReliabilityPolicy.BEST_EFFORT


class _Group:
    def __init__(
        self,
        topics: list[str],
        create: Callable[[list[QoSProfile]], Callable[[], None]],
        latest_value: bool = False,
    ):
        self.topics = topics
        self.latest_value = latest_value
        self.create = create
        self.current: list[ReliabilityPolicy] | None = None
        self.destroy: Callable[[], None] | None = None


class AdaptiveSubscriptions:
    """Creates input subscriptions with the QoS ``mode`` asks for and re-creates them as it changes.

    ``add(topics, create)``: ``create(profiles)`` subscribes to ``topics`` (one profile each) and
    returns a function that destroys what it made. ``refresh()`` re-checks the publishers.
    """

    def __init__(self, node, mode: str, depth: int, log=None):
        if mode not in MODES:
            raise ValueError(f"inputs.qos must be one of {', '.join(MODES)}, not {mode!r}")
        self._node = node
        self._mode = mode
        self._depth = depth
        self._log = log or node.get_logger().info
        self._groups: list[_Group] = []

    def resolve(self, topic: str) -> str:
        """The topic's full name after namespace and remapping (what publishers are listed under)."""
        return self._node.resolve_topic_name(topic)

    def publishers(self, topic: str) -> list:
        return self._node.get_publishers_info_by_topic(self.resolve(topic))

    def _reliability(
        self, topic: str, current: ReliabilityPolicy | None = None
    ) -> ReliabilityPolicy:
        if self._mode == "reliable":
            return ReliabilityPolicy.RELIABLE
        if self._mode == "best_effort":
            return ReliabilityPolicy.BEST_EFFORT
        offered = offered_reliability(self.publishers(topic))
        if offered is None:
            # No publisher now: keep what matched the last ones (a driver restarting comes back
            # with the same offer), else best effort, which matches any publisher.
            return current or ReliabilityPolicy.BEST_EFFORT
        return offered

    def _profile(self, reliability: ReliabilityPolicy) -> QoSProfile:
        return QoSProfile(
            depth=self._depth, history=HistoryPolicy.KEEP_LAST, reliability=reliability
        )

    def add(
        self,
        topics: list[str],
        create: Callable[[list[QoSProfile]], Callable[[], None]],
        latest_value: bool = False,
    ) -> None:
        """``latest_value``: small messages that each supersede the last (camera info), read best
        effort in auto mode: a lost one is replaced by the next, whereas a reliable reader would
        hold every later one back until the lost one is resent."""
        group = _Group(list(topics), create, latest_value)
        self._groups.append(group)
        self._apply(group)

    def _apply(self, group: _Group) -> None:
        current = group.current or [None] * len(group.topics)
        if group.latest_value and self._mode == "auto":
            wanted = [ReliabilityPolicy.BEST_EFFORT] * len(group.topics)
        else:
            wanted = [self._reliability(t, c) for t, c in zip(group.topics, current)]
        if wanted == group.current:
            return
        if group.destroy is not None:
            group.destroy()
        group.destroy = group.create([self._profile(r) for r in wanted])
        if group.current is not None or self._mode == "auto":
            chosen = ", ".join(
                f"{self.resolve(t)}: {NAMES[r]}" for t, r in zip(group.topics, wanted)
            )
            self._log(f"input QoS ({self._mode}): {chosen}")
        group.current = wanted

    def refresh(self) -> None:
        if self._mode != "auto":
            return
        for group in self._groups:
            self._apply(group)

    def chosen(self) -> dict[str, str]:
        """Each subscribed topic's full name and the reliability it is subscribed with now."""
        return {
            self.resolve(t): NAMES[r]
            for g in self._groups
            if g.current
            for t, r in zip(g.topics, g.current)
        }

    def destroy(self) -> None:
        for group in self._groups:
            if group.destroy is not None:
                group.destroy()
        self._groups = []


__all__ = ["AdaptiveSubscriptions", "offered_reliability", "MODES"]
