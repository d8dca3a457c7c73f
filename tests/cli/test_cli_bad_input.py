"""`sole-ros segment` on bad input: a refusal in one line on stderr, a non-zero exit, never a traceback.

Every file here is crafted byte by byte (headers that lie, data cut short, coordinates of 1e30,
checkpoints whose configuration or weights are unusable) and the command runs in its own process,
as a user runs it. Valid files next to them still segment.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import ROOT
from test_cli import TINY, sole_ros

torch.set_num_threads(1)

# the CLIP the tiny checkpoints below fit (64-d, random weights: nothing is downloaded)
TINY_CLIP = ["--clip-model", "sole-tiny", "--clip-pretrained", "", "--device", "cpu"]
RNG = np.random.default_rng(11)


def refused(result, *fragments: str, code: int = 2) -> str:
    """The command failed with ``code``, one error line (the last on stderr) holding every
    fragment, and no traceback. Progress lines and library warnings may come before it."""
    assert result.returncode == code, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def segment(path, *extra: str, model=TINY, out=None):
    return sole_ros(
        "segment",
        str(path),
        "--query",
        "mug",
        "--out-dir",
        str(out or path.parent / "out"),
        *model,
        *extra,
    )


def pcd_header(points: int, width: int | None = None, kind: str = "binary") -> bytes:
    width = points if width is None else width
    return (
        f"# .PCD v0.7\nVERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH {width}\n"
        f"HEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {points}\nDATA {kind}\n"
    ).encode()


def xyz(count: int) -> np.ndarray:
    return RNG.uniform(0.0, 2.0, size=(count, 3)).astype(np.float32)


# --- point files ---------------------------------------------------------------------------------


def test_truncated_binary_pcd_is_refused(tmp_path):
    path = tmp_path / "cut.pcd"
    path.write_bytes(pcd_header(400) + xyz(400).tobytes()[:2400])  # 200 of the 400 points
    refused(segment(path), "truncated", "POINTS 400", "2400 bytes follow")


def test_pcd_whose_points_line_lies_is_refused(tmp_path):
    more = tmp_path / "more_data.pcd"  # says 100, holds 400
    more.write_bytes(pcd_header(100) + xyz(400).tobytes())
    refused(segment(more), "more data than its header declares", "POINTS 100", "3600 bytes more")
    fewer = tmp_path / "fewer_data.pcd"  # says 800, holds 400
    fewer.write_bytes(pcd_header(800) + xyz(400).tobytes())
    refused(segment(fewer), "truncated", "POINTS 800", "(400 points)")
    mismatch = tmp_path / "width.pcd"  # POINTS agrees with the data, WIDTH x HEIGHT does not
    mismatch.write_bytes(pcd_header(400, width=500) + xyz(400).tobytes())
    refused(segment(mismatch), "POINTS 400", "WIDTH x HEIGHT = 500 x 1 = 500")


def test_ply_declaring_2_to_the_62_vertices_is_refused_at_once(tmp_path):
    path = tmp_path / "huge.ply"
    path.write_bytes(
        b"ply\nformat binary_little_endian 1.0\nelement vertex %d\nproperty float x\n"
        b"property float y\nproperty float z\nend_header\n" % 2**62 + xyz(100).tobytes()
    )
    started = time.perf_counter()
    result = segment(path)
    refused(result, "truncated", str(2**62), "(100 vertices)")
    assert time.perf_counter() - started < 60  # the import of torch, not the file


def test_points_far_out_are_refused(tmp_path):
    points = RNG.uniform(0.0, 2.0, size=(500, 3))
    points[3] = np.nan  # dropped rows still count: the message names the file's row
    points[17] = (0.5, -1e30, 1e30)
    np.savez(tmp_path / "far.npz", points=points)
    refused(
        segment(tmp_path / "far.npz"),
        "points up to 10000 m from the origin",
        "one at 1e+30 m",
        "(row 17)",
    )


def sparse_ply(path, count: int) -> None:
    """A binary PLY declaring ``count`` vertices whose data is a hole: as large as declared on
    disk, zeros when read, and no disk blocks written."""
    header = (
        b"ply\nformat binary_little_endian 1.0\nelement vertex %d\nproperty float x\nproperty float y\n"
        b"property float z\nend_header\n" % count
    )
    with open(path, "wb") as f:
        f.write(header)
        f.truncate(len(header) + 12 * count)


def test_more_points_than_max_points_are_refused_from_the_header(tmp_path):
    path = tmp_path / "large.ply"
    sparse_ply(path, 3_000_000)  # above the default bound
    refused(
        segment(path),
        "3,000,000 points, more than --max-points 2,000,000",
        "--downsample VOXEL",
        "raise --max-points",
    )
    points = xyz(5000)
    small = tmp_path / "small.ply"
    small.write_bytes(
        b"ply\nformat binary_little_endian 1.0\nelement vertex 5000\nproperty float x\n"
        b"property float y\nproperty float z\nend_header\n" + points.tobytes()
    )
    refused(segment(small, "--max-points", "1000"), "5,000 points, more than --max-points 1,000")
    # downsampled to cubes still too many: the message says what to change
    refused(
        segment(small, "--max-points", "1000", "--downsample", "0.001"),
        "points after --downsample 0.001, more than --max-points 1,000",
        "larger voxel",
    )


def test_downsample_makes_a_large_file_usable_and_indices_stay_file_rows(tmp_path):
    points = xyz(5000).astype(np.float64)
    points[10] = np.nan  # a dropped row before the thinning: rows must still be the file's
    path = tmp_path / "cloud.npz"
    np.savez(path, points=points, colors=RNG.integers(0, 256, size=(5000, 3)).astype(np.uint8))
    result = segment(path, "--max-points", "1000", "--downsample", "0.25", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout)
    assert answer["input"]["rows"] == 5000 and answer["input"]["downsample"] == 0.25
    # the first row of each occupied 0.25 m cube, in file order: what a user can recompute
    cells = np.floor(points / 0.25)
    first: dict = {}
    for row, cell in enumerate(map(tuple, cells)):
        if row != 10:
            first.setdefault(cell, row)
    kept = sorted(first.values())
    assert answer["input"]["points"] == len(kept) <= 1000
    assert answer["instances"], "random weights still answer with instances"
    for instance in answer["instances"]:
        assert set(instance["point_indices"]) <= set(kept)


# --- checkpoints ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A checkpoint as `sole-ros train` writes one (tiny network, sole_config in hyper_parameters)
    and a small valid scene; returns (folder, state_dict, hyper_parameters, scene path)."""
    from sole_ros.model import SoleConfig, SoleModel

    folder = tmp_path_factory.mktemp("run")
    config = SoleConfig.tiny()
    torch.manual_seed(0)
    state = {f"model.{k}": v.clone() for k, v in SoleModel(config).state_dict().items()}
    plain = {
        k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()
    }
    hyper = {"sole_config": plain, "clip": {"model_name": "sole-tiny", "pretrained": None}}
    scene = folder / "scene.npz"
    np.savez(scene, points=RNG.uniform(0.0, 1.0, size=(800, 3)))
    return folder, state, hyper, scene


def test_valid_checkpoint_still_segments(tiny_run):
    folder, state, hyper, scene = tiny_run
    torch.save({"state_dict": state, "hyper_parameters": hyper}, folder / "good.ckpt")
    result = segment(scene, "--checkpoint", str(folder / "good.ckpt"), model=TINY_CLIP)
    assert result.returncode == 0, result.stderr[-3000:]


def test_checkpoint_config_out_of_bounds_is_refused_before_building(tiny_run):
    folder, state, hyper, scene = tiny_run
    wide = dict(hyper, sole_config=dict(hyper["sole_config"], hidden_dim=10**9))
    torch.save({"state_dict": state, "hyper_parameters": wide}, folder / "wide.ckpt")
    refused(
        segment(scene, "--checkpoint", str(folder / "wide.ckpt"), model=TINY_CLIP),
        "cannot load the model",
        "hidden_dim 1000000000 is outside its bound 2..2048",
    )
    # the published layout: the reference's hydra config under hyper_parameters["config"]
    from omegaconf import OmegaConf

    published = {"config": {"model": {"num_queries": 10**9}}}
    torch.save(
        {"state_dict": state, "hyper_parameters": OmegaConf.create(published)},
        folder / "published.ckpt",
    )
    refused(
        segment(scene, "--checkpoint", str(folder / "published.ckpt"), model=TINY_CLIP),
        "config.model.num_queries",
        "1000000000 is outside its bound 1..4096",
    )


def test_checkpoint_with_nan_weights_is_refused_by_name(tiny_run):
    folder, state, hyper, scene = tiny_run
    poisoned = dict(state)
    poisoned["model.decoder_norm.weight"] = state["model.decoder_norm.weight"].clone()
    poisoned["model.decoder_norm.weight"][1] = float("nan")
    torch.save({"state_dict": poisoned, "hyper_parameters": hyper}, folder / "nan.ckpt")
    refused(
        segment(scene, "--checkpoint", str(folder / "nan.ckpt"), model=TINY_CLIP),
        "model.decoder_norm.weight holds NaN",
    )


def test_empty_checkpoints_are_refused_with_a_reason(tiny_run):
    folder, _, _, scene = tiny_run
    torch.save({}, folder / "empty.ckpt")
    refused(
        segment(scene, "--checkpoint", str(folder / "empty.ckpt"), model=TINY_CLIP),
        "empty.ckpt holds an empty dict: no state_dict",
    )
    (folder / "zero.ckpt").write_bytes(b"")
    line = refused(
        segment(scene, "--checkpoint", str(folder / "zero.ckpt"), model=TINY_CLIP),
        "zero.ckpt: the file is empty (0 bytes)",
    )
    assert not line.rstrip().endswith(":")


# --- the last line of defence --------------------------------------------------------------------


def _run_with_failing_handler(raised: str, env: dict | None = None):
    """`sole-ros segment` in its own process, its handler replaced by one that raises ``raised``."""
    code = (
        "import sys, sole_ros.cli.segment as s\n"
        f"def run(args):\n    raise {raised}\n"
        "s.run = run\n"
        "from sole_ros.cli import main\n"
        "sys.exit(main(['segment', 'x.ply', '--query', 'mug']))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "SOLE_ROS_DEBUG": "", **(env or {})},
    )


def test_unexpected_exception_is_one_line_and_debug_shows_the_traceback():
    result = _run_with_failing_handler("RuntimeError('boom\\nsecond line')")
    line = refused(result, code=1)
    assert (
        line
        == "sole-ros: error: RuntimeError: boom second line (SOLE_ROS_DEBUG=1 shows the traceback)"
    )
    result = _run_with_failing_handler("MemoryError()")
    assert refused(result, code=1).startswith("sole-ros: error: MemoryError: (no message)")
    debug = _run_with_failing_handler("RuntimeError('boom')", env={"SOLE_ROS_DEBUG": "1"})
    assert (
        debug.returncode == 1
        and "Traceback" in debug.stderr
        and "RuntimeError: boom" in debug.stderr
    )


def test_interrupt_exits_130_quietly():
    result = _run_with_failing_handler("KeyboardInterrupt")
    assert result.returncode == 130, result.stderr
    assert "KeyboardInterrupt" not in result.stderr and "Traceback" not in result.stderr
    assert "error" not in result.stderr.lower(), result.stderr
