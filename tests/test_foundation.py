"""The package builds, its interfaces are real rosidl types, sole_node answers over DDS."""

import shutil

from conftest import ROOT, SOLE_NODE, TINY_NODE_ARGS, call_service, run_python, wait_until_active


def test_library_imports_without_ros():
    result = run_python(
        "import sys, sole_ros, sole_ros.cli; assert 'rclpy' not in sys.modules, sorted(sys.modules)"
    )
    assert result.returncode == 0, result.stderr


def test_interfaces_are_generated_rosidl_types():
    from sole_ros.msg import ObjectInstance
    from sole_ros.srv import LoadScene, QueryObjects, SaveScene

    fields = ObjectInstance.get_fields_and_field_types()
    assert fields["id"] == "uint32"
    assert fields["label"] == "string"
    assert fields["score"] == "float"
    assert fields["centroid"] == "geometry_msgs/Point"
    assert fields["bbox_size"] == "geometry_msgs/Vector3"
    assert fields["num_points"] == "uint32"
    assert fields["points"] == "sensor_msgs/PointCloud2"
    request = QueryObjects.Request.get_fields_and_field_types()
    assert request == {
        "phrases": "sequence<string>",
        "max_results": "uint32",
        "min_score": "float",
        "include_points": "boolean",
    }
    response = QueryObjects.Response.get_fields_and_field_types()
    assert response["instances"] == "sequence<sole_ros/ObjectInstance>"
    assert response["header"] == "std_msgs/Header"
    assert "path" in SaveScene.Request.get_fields_and_field_types()
    assert "path" in LoadScene.Request.get_fields_and_field_types()


def test_executables_are_installed():
    assert shutil.which("sole_node") or (ROOT / "install/sole_ros/lib/sole_ros/sole_node").exists()
    assert shutil.which("sole-ros"), "sole-ros is not on PATH after sourcing scripts/env.sh"


def test_query_service_answers_other_process(spawn, ros_client):
    from sole_ros.srv import QueryObjects

    assert SOLE_NODE.exists(), "sole_node is not installed: run scripts/setup.sh"
    node = spawn(str(SOLE_NODE), *TINY_NODE_ARGS)
    wait_until_active(ros_client, node)
    request = QueryObjects.Request(phrases=["the mug"], max_results=5, min_score=0.1)
    answer = call_service(ros_client, QueryObjects, "/sole/query", request)
    assert node.alive(), node.output()
    assert answer.success is False
    assert "no scene yet" in answer.message
    assert answer.header.frame_id == "map"
    assert list(answer.instances) == []

    empty = call_service(
        ros_client, QueryObjects, "/sole/query", QueryObjects.Request(phrases=["  "])
    )
    assert empty.success is False and "empty query" in empty.message
    assert node.alive(), node.output()
