"""What scripts/setup.sh and scripts/env.sh give a shell: the tf2_msgs interface, and the commands on PATH."""

from __future__ import annotations

import json
import subprocess

from conftest import ROOT

# ROS 2's published type hash of tf2_msgs/msg/TFMessage (RIHS01, the same in Jazzy, Kilted and
# Rolling): what every tf2 broadcaster announces on /tf. The package's own definition must hash
# to it, or its /tf subscriptions would not match real robots'.
ROS2_TF_MESSAGE_HASH = "RIHS01_e369d0f05a23ae52508854b66f6aa0437f3449d652e8cbf22d5abe85d020f087"


def test_tf_message_type_is_the_standard_one():
    from tf2_msgs.msg import TFMessage

    assert TFMessage.__module__.startswith("tf2_msgs.msg")
    description = next((ROOT / "install").glob("tf2_msgs/share/tf2_msgs/msg/TFMessage.json"), None)
    if description is None:  # a ROS 2 install's own tf2_msgs: nothing of ours to check
        return
    hashes = json.loads(description.read_text())["type_hashes"]
    assert hashes[0]["type_name"] == "tf2_msgs/msg/TFMessage"
    assert hashes[0]["hash_string"] == ROS2_TF_MESSAGE_HASH


def test_env_puts_both_commands_on_path():
    result = subprocess.run(
        ["bash", "-c", f"source {ROOT}/scripts/env.sh && command -v sole_node sole-ros"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    found = result.stdout.split()
    assert found[0].endswith("/sole_node") and found[1].endswith("/sole-ros"), found
