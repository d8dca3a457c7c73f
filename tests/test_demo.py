"""Issue 6: the demo (README's first command, after set-up) runs end to end and writes its picture."""
import subprocess
import sys

from PIL import Image


def test_demo_answers_three_queries_and_writes_the_picture(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "sole_ros.ros.demo", "--frames", "6", "--rate", "10", "--out-dir", str(tmp_path),
         "--views", "2"],
        capture_output=True, text=True, timeout=600, start_new_session=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "weights: " in out and "demo.ckpt" in out, out  # the shipped demo weights, not random ones
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
