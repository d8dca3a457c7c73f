"""The input boundary of the message conversion layer. The exception and the payload reader live
in the ROS-free sole_ros.messages (the bag replay uses them without rclpy); re-exported here so
that ``except MalformedMessage`` catches the same class everywhere."""

from sole_ros.messages.errors import MalformedMessage, message_bytes

__all__ = ["MalformedMessage", "message_bytes"]
