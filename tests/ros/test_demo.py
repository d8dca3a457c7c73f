"""The demo (README's first command, after set-up) runs end to end and writes its picture."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from sole_ros.ros.demo import build_parser, demo_scene


def test_demo_answers_three_queries_and_writes_the_picture(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sole_ros.ros.demo",
            "--frames",
            "6",
            "--rate",
            "10",
            "--out-dir",
            str(tmp_path),
            "--views",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        start_new_session=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "weights: " in out and "demo.ckpt" in out, (
        out
    )  # the shipped demo weights, not random ones
    assert "compact object sizes" in out, out  # the sizes those weights were trained on
    for phrase in ("'find the mug'", "'a bowl'", "'the bottle'"):
        assert f"[demo] {phrase}:" in out, out
    assert "score" in out and "centroid" in out
    # the node got the demo's contrast phrases (one string parameter with commas) and its views
    # (the answers above then come from the test-time augmentation, over DDS)
    log = (tmp_path / "sole_node.log").read_text()
    assert "contrast phrases: mug, bowl, bottle, box, ball, can, book, chair, table" in log
    assert "test-time views: 2 at scene scale 1.0" in log
    png = tmp_path / "demo.png"
    assert png.exists() and f"picture of the answers (best instance per query): {png}" in out
    with Image.open(png) as image:
        assert image.size[0] >= 640 and image.size[1] >= 480


def test_demo_renders_the_object_sizes_asked():
    """`demo.sh --object-sizes household` (for weights trained with OBJECT_SIZES=household) draws the
    demo's tabletop, same seed and classes, at real products' sizes; compact stays the default."""
    default = build_parser().parse_args(["--frames", "1"])
    assert default.object_sizes == "compact"
    compact, _ = demo_scene(default)
    household, frames = demo_scene(
        build_parser().parse_args(["--frames", "1", "--object-sizes", "household"])
    )
    assert len(frames) == 1
    assert [o.class_name for o in household.objects] == [o.class_name for o in compact.objects]

    def extents(scene):  # each small object's bounding-box size
        return np.array(
            [np.subtract(*o.bounds()[::-1]) for o in scene.objects if o.class_name != "table"]
        )

    assert not np.allclose(extents(household), extents(compact))
    with pytest.raises(SystemExit) as refused:
        build_parser().parse_args(["--object-sizes", "giant"])
    assert refused.value.code == 2
