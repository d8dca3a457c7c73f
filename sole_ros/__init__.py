"""sole_ros: open-vocabulary 3D instance segmentation (SOLE) for robots.

The library (model, scene fusion, inference, training, command line) is ROS-free: importing
``sole_ros`` or any module outside ``sole_ros.ros`` never imports rclpy. The ROS 2 layer lives in
``sole_ros.ros``; the generated interfaces in ``sole_ros.msg`` / ``sole_ros.srv`` exist after a
colcon build.
"""

__version__ = "0.1.0"

# The generated interfaces (sole_ros.msg, sole_ros.srv) live in the colcon install tree; when this
# source tree comes first on sys.path (running from the checkout) let the package span both.
import pkgutil as _pkgutil

__path__ = _pkgutil.extend_path(__path__, __name__)
