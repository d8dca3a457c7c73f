"""pip-installable ROS-free part of sole_ros (model, scene fusion, inference, training, CLI).

For machines without ROS (a GPU cluster for training, a laptop for offline use):
    pip install .
The ROS node and the interfaces are built with colcon (see README.md). Versions are read from
constraints.txt, the one place where they are pinned.
"""

import pathlib
import re

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).parent
LIBRARY_DEPS = [
    "torch",
    "torchvision",
    "open_clip_torch",
    "numpy",
    "scipy",
    "pillow",
    "omegaconf",
    "matplotlib",
    "tqdm",
    "PyYAML",
    "pypcd4",
    "rosbags",
]


def pinned(names):
    pins = {}
    for line in (HERE / "constraints.txt").read_text().splitlines():
        m = re.match(r"^\s*([A-Za-z0-9_.\-]+)==(\S+)", line)
        if m:
            pins[m.group(1).lower().replace("_", "-")] = m.group(0).strip()
    return [pins.get(n.lower().replace("_", "-"), n) for n in names]


setup(
    name="sole_ros",
    version="0.1.0",
    description="Open-vocabulary 3D instance segmentation (SOLE) with a ROS 2 node",
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(
        include=["sole_ros", "sole_ros.*"], exclude=["sole_ros.ros", "sole_ros.ros.*"]
    ),
    # The demo weights (a small model trained here) ship with the library.
    package_data={"sole_ros": ["weights/*.ckpt", "weights/README.md"]},
    install_requires=pinned(LIBRARY_DEPS),
    extras_require={
        # Built from source; see scripts/setup.sh for the flags it needs.
        "minkowski": pinned(["MinkowskiEngine"]),
    },
    entry_points={"console_scripts": ["sole-ros=sole_ros.cli:main"]},
)
