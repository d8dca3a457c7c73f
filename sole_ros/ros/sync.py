"""Depth/colour subscriptions joined by the package's synchroniser (or message_filters').

The pairing rule itself is ROS-free, in sole_ros.messages.sync (the bag replay pairs with it too);
this module subscribes a node to the inputs and feeds it. message_filters is not on PyPI; on a full
ROS 2 install ``backend="message_filters"`` uses its ApproximateTimeSynchronizer instead (another
rule, which does not report its drops).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from sole_ros.messages.sync import OUT_OF_ORDER, UNMATCHED, ApproximateTimeSync

__all__ = [
    "ApproximateTimeSync",
    "UNMATCHED",
    "OUT_OF_ORDER",
    "SynchronizedSubscription",
    "subscribe_synchronized",
    "message_filters_available",
]


def lost_events(on_lost: Callable[[Any, int], Any] | None, index):
    """Subscription event callbacks calling ``on_lost(index, count)`` when the middleware reports
    messages lost on the way (None when not asked)."""
    if on_lost is None:
        return None
    from rclpy.event_handler import SubscriptionEventCallbacks

    return SubscriptionEventCallbacks(
        message_lost=lambda info: on_lost(index, info.total_count_change)
    )


def message_filters_available() -> bool:
    try:
        import message_filters  # noqa: F401
    except ImportError:
        return False
    return True


class SynchronizedSubscription:
    """Subscriptions plus the synchroniser joining them; keep it referenced while in use."""

    def __init__(self, backend: str, subscriptions: list, synchronizer):
        self.backend = backend  # "builtin" or "message_filters"
        self.subscriptions = subscriptions
        self.synchronizer = synchronizer

    def destroy(self, node) -> None:
        for sub in self.subscriptions:
            node.destroy_subscription(getattr(sub, "sub", sub))  # message_filters wraps it
        self.subscriptions = []


def subscribe_synchronized(
    node,
    inputs: Sequence[tuple[type, str]],
    callback: Callable[..., Any],
    *,
    slop: float,
    queue_size: int = 10,
    qos=10,
    callback_group=None,
    backend: str = "auto",
    on_receive: Callable[[int, Any], Any] | None = None,
    on_drop: Callable[[int, str], Any] | None = None,
    on_lost: Callable[[int, int], Any] | None = None,
) -> SynchronizedSubscription:
    """Subscribe ``node`` to ``inputs`` [(msg_type, topic), ...] and call ``callback(*msgs)``.

    backend: "builtin" (ApproximateTimeSync), "message_filters" (ImportError when absent) or
    "auto" (message_filters when importable, else builtin). ``callback_group`` is given to
    every subscription, or is a sequence of one per input (the builtin synchroniser is
    thread-safe, so inputs may run side by side).
    ``qos`` is one profile for all inputs or a sequence of one per input. ``on_receive(i, msg)``
    hears of every message as it arrives, ``on_drop(i, reason)`` of every one the builtin
    synchroniser discards (message_filters does not report its drops), ``on_lost(i, count)`` of
    messages the middleware reports lost on the way (builtin backend).
    """
    qos_per_input = list(qos) if isinstance(qos, (list, tuple)) else [qos] * len(inputs)
    groups = (
        list(callback_group)
        if isinstance(callback_group, (list, tuple))
        else [callback_group] * len(inputs)
    )
    if len(qos_per_input) != len(inputs) or len(groups) != len(inputs):
        raise ValueError(
            f"{len(qos_per_input)} QoS profiles and {len(groups)} callback groups for "
            f"{len(inputs)} inputs"
        )
    if backend not in ("auto", "builtin", "message_filters"):
        raise ValueError(f"backend must be auto, builtin or message_filters, not {backend!r}")
    if backend == "auto":
        backend = "message_filters" if message_filters_available() else "builtin"
    if backend == "message_filters":
        import message_filters  # ImportError names the missing module, which is the reason

        subscribers = [
            message_filters.Subscriber(
                node, msg_type, topic, qos_profile=profile, callback_group=group
            )
            for (msg_type, topic), profile, group in zip(inputs, qos_per_input, groups)
        ]
        if on_receive is not None:
            for i, subscriber in enumerate(subscribers):
                subscriber.registerCallback(lambda msg, i=i: on_receive(i, msg))
        synchronizer = message_filters.ApproximateTimeSynchronizer(subscribers, queue_size, slop)
        synchronizer.registerCallback(callback)
        return SynchronizedSubscription(backend, subscribers, synchronizer)
    synchronizer = ApproximateTimeSync(
        len(inputs), callback, slop=slop, queue_size=queue_size, on_drop=on_drop
    )

    def feeder(i: int):
        def feed(msg):
            if on_receive is not None:
                on_receive(i, msg)
            synchronizer.add(i, msg)

        return feed

    subscriptions = [
        node.create_subscription(
            msg_type,
            topic,
            feeder(i),
            profile,
            callback_group=groups[i],
            event_callbacks=lost_events(on_lost, i),
        )
        for i, ((msg_type, topic), profile) in enumerate(zip(inputs, qos_per_input))
    ]
    return SynchronizedSubscription(backend, subscriptions, synchronizer)
