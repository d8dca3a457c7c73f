"""The ROS 2 layer: converts messages, parameters and services into library calls."""
