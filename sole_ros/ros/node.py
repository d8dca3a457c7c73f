"""sole_node: the ROS 2 front end of sole_ros.

Advertises ``~/query`` (sole_ros/srv/QueryObjects). With the node named ``sole`` (the default)
the service is ``/sole/query``. Until a scene has been accumulated and segmented every query is
answered with success=false and the reason.
"""
from __future__ import annotations

import sys

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

from sole_ros.srv import QueryObjects

NO_SCENE = "no scene yet: nothing has been accumulated and segmented"


class SoleNode(Node):
    def __init__(self, **kwargs):
        super().__init__("sole", **kwargs)
        self.fixed_frame = self.declare_parameter("fixed_frame", "map").value
        self._query_srv = self.create_service(QueryObjects, "~/query", self._on_query)
        self.get_logger().info(f"ready: {self._query_srv.srv_name}")

    def _on_query(self, request: QueryObjects.Request, response: QueryObjects.Response):
        response.header.frame_id = self.fixed_frame
        if not [p for p in request.phrases if p.strip()]:
            response.success = False
            response.message = "empty query: give at least one non-empty phrase"
            return response
        response.success = False
        response.message = NO_SCENE
        return response


def main(args=None) -> int:
    rclpy.init(args=args)
    node = SoleNode()
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
