"""Launch sole_node (needs launch_ros, i.e. a real ROS 2 install).

    ros2 launch sole_ros sole.launch.py config:=/path/to/sole.yaml namespace:=robot1 device:=cuda \
        points:=/camera/depth/points depth_image:=/camera/depth/image_rect_raw \
        depth_info:=/camera/depth/camera_info color_image:=/camera/color/image_raw rviz:=true
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription

# launch argument -> the node's relative input topic it remaps
TOPIC_ARGUMENTS = {
    "points": "points",
    "depth_image": "depth/image",
    "depth_info": "depth/camera_info",
    "color_image": "color/image",
    "pose": "pose",
}


def generate_launch_description():
    share = get_package_share_directory("sole_ros")
    arguments = [
        DeclareLaunchArgument(
            "config",
            default_value=os.path.join(share, "config", "sole.yaml"),
            description="parameter file for sole_node",
        ),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument(
            "device", default_value="auto", description="auto, cpu, cuda or cuda:N"
        ),
        DeclareLaunchArgument(
            "rviz", default_value="false", description="also start RViz with config/sole.rviz"
        ),
    ]
    arguments += [
        DeclareLaunchArgument(arg, default_value=topic, description=f"topic for {topic}")
        for arg, topic in TOPIC_ARGUMENTS.items()
    ]
    node = Node(
        package="sole_ros",
        executable="sole_node",
        name="sole",
        namespace=LaunchConfiguration("namespace"),
        parameters=[LaunchConfiguration("config"), {"device": LaunchConfiguration("device")}],
        remappings=[(topic, LaunchConfiguration(arg)) for arg, topic in TOPIC_ARGUMENTS.items()],
        output="screen",
    )
    # RViz in the node's namespace: config/sole.rviz names the topics relatively (sole/scene, ...),
    # so they resolve to this robot's node, and two robots' RViz windows never show each other's.
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="sole_rviz",
        namespace=LaunchConfiguration("namespace"),
        arguments=["-d", os.path.join(share, "config", "sole.rviz")],
        condition=IfCondition(LaunchConfiguration("rviz")),
    )
    return LaunchDescription(arguments + [node, rviz])
