"""Issue 6: the `sole-ros` command line: segment, weights, bench, help and mistakes.

`segment` runs on a real Kinect scan (../shared/data/mosd) with the tiny architecture and random
weights: no pretrained weights can be had here, so the answer is checked for its contract (indices
name the input file's rows, boxes and centroids fit them, files are written), not its meaning.
The weights download itself needs the internet; here the offline path is exercised for real.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ROOT, shared_data
from sole_ros.cli import main
from sole_ros.pointfiles import read_point_file

TINY = ["--config", "tiny", "--random-weights", "--clip-model", "sole-tiny", "--clip-pretrained", "",
        "--device", "cpu"]
COMMANDS = ("segment", "bag", "weights", "bench", "train", "eval", "average-weights")


def sole_ros(*args: str, env: dict | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    """The command line in its own process, from the checkout (the code under test)."""
    return subprocess.run([sys.executable, "-m", "sole_ros.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def in_process(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line(err: str, *fragments: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# --- help everywhere -------------------------------------------------------------------------------

def test_help_lists_every_command():
    result = sole_ros("--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: sole-ros {command}" in capsys.readouterr().out


# --- segment ---------------------------------------------------------------------------------------

def test_segment_json_contract_on_a_real_scan(tmp_path):
    scan = shared_data("mosd", "learn33.pcd")
    out = tmp_path / "results"
    result = sole_ros("segment", str(scan), "--query", "cylinder", "box", "--top-k", "4", "--json",
                      "--out-dir", str(out), *TINY)
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout)  # stdout is one JSON document, logs went to stderr

    from pypcd4 import PointCloud  # the file as written, independent of sole_ros.pointfiles

    raw = PointCloud.from_path(scan).pc_data
    xyz = np.stack([raw["x"], raw["y"], raw["z"]], axis=1).astype(np.float64)
    finite = np.isfinite(xyz).all(axis=1)
    assert answer["input"]["rows"] == len(xyz) and answer["input"]["points"] == finite.sum()
    assert answer["queries"] == ["cylinder", "box"]
    assert answer["model"]["random_weights"] is True and answer["model"]["config"] == "tiny"
    instances = answer["instances"]
    assert 1 <= len(instances) <= 4
    assert [i["rank"] for i in instances] == list(range(1, len(instances) + 1))
    assert all(a["score"] >= b["score"] for a, b in zip(instances, instances[1:]))
    for inst in instances:
        assert inst["label"] in ("cylinder", "box") and 0.0 <= inst["score"] <= 1.0
        idx = np.asarray(inst["point_indices"])
        assert len(idx) == inst["num_points"] > 0 and len(np.unique(idx)) == len(idx)
        assert idx.min() >= 0 and idx.max() < len(xyz)
        pts = xyz[idx]  # rows of the input file, NaN rows included in the numbering
        assert np.isfinite(pts).all()
        box = inst["box"]
        assert (pts >= np.asarray(box["min"]) - 1e-5).all() and (pts <= np.asarray(box["max"]) + 1e-5).all()
        np.testing.assert_allclose(pts.mean(axis=0), inst["centroid"], atol=1e-5)
        np.testing.assert_allclose(np.asarray(box["max"]) - box["min"], box["size"], atol=1e-5)
    # The organised scan has NaN rows before the first instance point: indices were mapped back.
    assert not finite.all()

    ply = read_point_file(answer["outputs"]["ply"])
    assert len(ply) == finite.sum()
    np.testing.assert_allclose(ply.points, xyz[finite], atol=1e-6)
    header = Path(answer["outputs"]["ply"]).read_bytes().split(b"end_header")[0]
    assert b"property int instance" in header and b"property int source_index" in header
    with Image.open(answer["outputs"]["png"]) as png:
        assert png.size == (1280, 960) and png.format == "PNG"


def test_segment_mistakes_are_one_line(tmp_path, capsys):
    # In its own process: exit code and stderr as a user sees them.
    result = sole_ros("segment", str(tmp_path / "absent.ply"), "--query", "mug")
    assert result.returncode == 2
    one_line(result.stderr, "sole-ros segment: error:", "absent.ply: no such file")
    # The others through main() in this process (same code path, no Python start-up each).
    (tmp_path / "scene.xyz").write_text("1 2 3\n")
    code, _, err = in_process(capsys, "segment", str(tmp_path / "scene.xyz"), "--query", "mug")
    assert code == 2
    one_line(err, "unsupported file type '.xyz'")
    np.savez(tmp_path / "scene.npz", points=np.random.default_rng(0).normal(size=(100, 3)))
    for query in ("", "   "):
        code, _, err = in_process(capsys, "segment", str(tmp_path / "scene.npz"), "--query", query)
        assert code == 2
        one_line(err, "empty query")
    code, _, err = in_process(capsys, "segment", str(tmp_path / "scene.npz"), "--query", "mug", "--min-score", "2")
    assert code == 2
    one_line(err, "--min-score must be within 0..1")
    # No checkpoint and no --random-weights: refused with the way out, never random answers.
    from sole_ros.pipeline import find_default_checkpoint

    if find_default_checkpoint():
        return  # the package ships demo weights: then there is always a checkpoint
    code, _, err = in_process(capsys, "segment", str(tmp_path / "scene.npz"), "--query", "mug", "--config", "tiny",
                              "--clip-model", "sole-tiny", "--clip-pretrained", "")
    assert code == 2
    one_line(err.splitlines()[-1], "cannot load the model: no checkpoint", "sole-ros weights")


# --- weights ---------------------------------------------------------------------------------------

def test_weights_offline_says_so_in_one_line_then_explains(tmp_path):
    result = sole_ros("weights", "--dest", str(tmp_path / "w"), env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0] == "sole-ros weights: offline: HF_HUB_OFFLINE is set; nothing was downloaded."
    text = result.stderr
    assert "https://huggingface.co/datasets/onandon/SOLE/resolve/main/scannet200.ckpt" in text
    assert f"model.checkpoint: {tmp_path / 'w' / 'scannet200.ckpt'}" in text
    assert "model.clip_model: ViT-L-14-quickgelu" in text and "model.clip_pretrained:" in text
    assert not (tmp_path / "w").exists()  # nothing created when nothing could be fetched


def test_weights_without_network_for_real(tmp_path):
    from sole_ros.cli_weights import hub_reachable

    reachable, _ = hub_reachable(3.0)
    if reachable:
        pytest.skip("the Hugging Face hub is reachable from here: the offline path cannot be seen for real")
    env = {k: "" for k in ("HF_HUB_OFFLINE",)}
    result = sole_ros("weights", "--dest", str(tmp_path / "w"), "--timeout", "3", env=env, timeout=60)
    assert result.returncode == 1
    assert result.stderr.splitlines()[0].startswith("sole-ros weights: offline: cannot reach ")


@pytest.fixture(scope="module")
def published_like_checkpoint(tmp_path_factory):
    """A file laid out like the published scannet200.ckpt: the paper-size network's keys under
    "model.", the unused criterion weight, Lightning's extra entries. The weights are zeros in
    float16 (only names and shapes are checked), which keeps the file small."""
    from sole_ros.model import SoleConfig, SoleModel

    folder = tmp_path_factory.mktemp("weights")
    model = SoleModel(SoleConfig())
    state = {f"model.{k}": (torch.zeros(v.shape, dtype=torch.float16) if v.is_floating_point() else v.clone())
             for k, v in model.state_dict().items()}
    state["criterion.empty_weight"] = torch.ones(201)
    torch.save({"epoch": 599, "global_step": 1, "pytorch-lightning_version": "1.7.2", "state_dict": state},
               folder / "scannet200.ckpt")
    return folder


def test_weights_checks_local_files_offline(published_like_checkpoint, tmp_path, capsys):
    from sole_ros.clip import ClipSpec, load_clip

    dest = published_like_checkpoint
    clip_dir = dest / "clip"
    clip_dir.mkdir(exist_ok=True)
    torch.save(load_clip(ClipSpec.tiny()).model.state_dict(), clip_dir / "open_clip_pytorch_model.bin")
    code, out, err = in_process(capsys, "weights", "--dest", str(dest), "--clip-model", "sole-tiny")
    assert code == 0, err
    ckpt = dest / "scannet200.ckpt"
    assert f"sha256 {hashlib.sha256(ckpt.read_bytes()).hexdigest()}" in out
    assert "tensors fit the network" in out and "768-d CLIP space" in out
    assert "loads as open_clip sole-tiny" in out
    assert f"model.checkpoint: {ckpt}" in out
    assert f"--clip-pretrained {clip_dir / 'open_clip_pytorch_model.bin'}" in out

    # A file that is not SOLE's network: one line saying so.
    torch.save({"state_dict": {"model.something": torch.zeros(3)}}, tmp_path / "scannet200.ckpt")
    code, _, err = in_process(capsys, "weights", "--dest", str(tmp_path), "--skip-clip")
    assert code == 2
    one_line(err, "is not a usable SOLE checkpoint")


# --- bench -------------------------------------------------------------------------------------------

def test_bench_lists_and_runs_scripts(tmp_path, capsys):
    code, out, _ = in_process(capsys, "bench", "--list")
    assert code == 0
    assert {line.split()[0] for line in out.splitlines() if line.strip()} >= {"model", "scene"}
    (tmp_path / "bench_echo.py").write_text('"""Echo its arguments."""\nimport sys\nprint(sys.argv[1:])\n'
                                            "sys.exit(3)\n")
    code, out, _ = in_process(capsys, "bench", "--bench-dir", str(tmp_path), "--list")
    assert out.split() == ["echo", "Echo", "its", "arguments."]
    result = sole_ros("bench", "--bench-dir", str(tmp_path), "echo", "--size", "7")
    assert result.returncode == 3 and result.stdout.strip() == "['--size', '7']"
    code, _, err = in_process(capsys, "bench", "--bench-dir", str(tmp_path), "nothing")
    assert code == 2
    one_line(err, "no benchmark 'nothing'", "echo")
