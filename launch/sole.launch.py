"""Launch sole_node with its parameter file (needs launch_ros, i.e. a real ROS 2 install).

    ros2 launch sole_ros sole.launch.py config:=/path/to/sole.yaml namespace:=robot1
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    default_config = os.path.join(get_package_share_directory("sole_ros"), "config", "sole.yaml")
    return LaunchDescription([
        DeclareLaunchArgument("config", default_value=default_config,
                              description="parameter file for sole_node"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        Node(package="sole_ros", executable="sole_node", name="sole",
             namespace=LaunchConfiguration("namespace"),
             parameters=[LaunchConfiguration("config")], output="screen"),
    ])
