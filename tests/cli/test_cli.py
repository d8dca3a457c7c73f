"""The `sole-ros` command line: segment, weights, bench, help and mistakes.

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
from conftest import ROOT, shared_data
from PIL import Image

from sole_ros.cli import main
from sole_ros.pointfiles import read_point_file

TINY = [
    "--config",
    "tiny",
    "--random-weights",
    "--clip-model",
    "sole-tiny",
    "--clip-pretrained",
    "",
    "--device",
    "cpu",
]
COMMANDS = ("segment", "bag", "weights", "bench", "train", "eval", "average-weights")


def sole_ros(
    *args: str, env: dict | None = None, timeout: float = 240
) -> subprocess.CompletedProcess:
    """The command line in its own process, from the checkout (the code under test)."""
    return subprocess.run(
        [sys.executable, "-m", "sole_ros.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


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


def test_python_dash_m_runs_the_package():
    """`python -m sole_ros.cli` is the same program: help, version, and a mistake as one line."""
    result = sole_ros("--help", timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: sole-ros") and result.stderr == ""
    result = sole_ros("--version", timeout=120)
    assert result.returncode == 0 and result.stdout.strip().startswith("sole-ros ")
    result = sole_ros("bench", "--bench-dir", str(ROOT / "no such folder"), timeout=120)
    assert result.returncode == 2
    one_line(result.stderr, "sole-ros bench: error: --bench-dir", "no such folder")


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
    result = sole_ros(
        "segment",
        str(scan),
        "--query",
        "cylinder",
        "box",
        "--top-k",
        "4",
        "--json",
        "--out-dir",
        str(out),
        *TINY,
    )
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
        assert (pts >= np.asarray(box["min"]) - 1e-5).all() and (
            pts <= np.asarray(box["max"]) + 1e-5
        ).all()
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
    code, _, err = in_process(
        capsys, "segment", str(tmp_path / "scene.npz"), "--query", "mug", "--min-score", "2"
    )
    assert code == 2
    one_line(err, "--min-score must be within 0..1")
    # No checkpoint and no --random-weights: refused with the way out, never random answers.
    from sole_ros.pipeline import find_default_checkpoint

    if find_default_checkpoint():
        return  # the package ships demo weights: then there is always a checkpoint
    code, _, err = in_process(
        capsys,
        "segment",
        str(tmp_path / "scene.npz"),
        "--query",
        "mug",
        "--config",
        "tiny",
        "--clip-model",
        "sole-tiny",
        "--clip-pretrained",
        "",
    )
    assert code == 2
    one_line(err.splitlines()[-1], "cannot load the model: no checkpoint", "sole-ros weights")


# --- the node's settings as options ------------------------------------------------------------------

# Left out of the commands on purpose (sole_ros/cli/model_options.py says why); everything else of model.*,
# query.* (and scene.* for bag) must be an option.
LEFT_OUT = {
    "query.default_max_results",
    "query.max_staleness",
    "query.decoded_crops",
    "scene.directory",
}
OFFERED = {"segment": ("model", "query"), "bag": ("model", "query", "scene")}


def _expected_flag(name: str) -> str:
    return (
        "--candidates" if name == "query.top_k" else "--" + name.split(".", 1)[-1].replace("_", "-")
    )


def _table_options(command: str):
    from sole_ros.settings_table import PARAMETERS

    return [
        p
        for p in PARAMETERS
        if (p.group in OFFERED[command] or p.name == "device") and p.name not in LEFT_OUT
    ]


def _subparser(command: str):
    from sole_ros.cli import build_parser

    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    return subparsers.choices[command]


def _out_of_range(p) -> list:
    integer = isinstance(p.default, int)
    above = p.maximum + 1 if integer else p.maximum * 1.5 + 0.01
    below = p.minimum - 1 if integer else (p.minimum / 2 if p.minimum > 0 else -0.01)
    return [int(above) if integer else above, int(below) if integer else below]


def test_left_out_settings_are_named_and_few():
    from sole_ros.cli.model_options import LEFT_OUT as left_out_here
    from sole_ros.settings_table import BY_NAME

    assert set(left_out_here) == LEFT_OUT and LEFT_OUT <= set(BY_NAME)
    assert all(reason for reason in left_out_here.values())


@pytest.mark.parametrize("command", ["segment", "bag"])
def test_every_model_and_query_setting_is_an_option_with_the_tables_default(command):
    parser = _subparser(command)
    actions = {a.dest: a for a in parser._actions}
    expected = _table_options(command)
    assert {
        "model.test_time_views",
        "model.scene_scale",
        "query.contrast_phrases",
        "query.min_points",
        "query.split_distance",
        "model.view_scale_jitter",
        "model.num_queries",
    } <= {p.name for p in expected}
    assert ("scene.voxel_size" in actions) == (command == "bag")
    for p in expected:
        action = actions.get(p.name)
        assert action is not None, f"{command}: no option for {p.name}"
        assert _expected_flag(p.name) in action.option_strings, (p.name, action.option_strings)
        assert action.default == p.default and type(action.default) is type(p.default), p.name
        assert p.description in action.help and p.name in action.help, p.name
        if p.choices:
            assert tuple(action.choices) == p.choices, p.name
    # parsed without options: every value the table's default
    args = parser.parse_args(["input", "--query", "mug"])
    assert all(getattr(args, p.name) == p.default for p in expected)
    assert args.top_k == 20  # the command's own answer count, not query.top_k (--candidates)
    assert actions["query.top_k"].option_strings == ["--candidates"]


@pytest.mark.parametrize("command", ["segment", "bag"])
def test_out_of_range_settings_are_one_line(command, tmp_path, capsys):
    """Checked before the input is read: a missing file does not hide the mistake."""
    absent = str(tmp_path / ("absent.ply" if command == "segment" else "absent_bag"))
    checked = [p for p in _table_options(command) if p.has_range]
    assert len(checked) == (9 if command == "segment" else 16)
    for p in checked:
        for value in _out_of_range(p):
            code, _, err = in_process(
                capsys, command, absent, "--query", "mug", _expected_flag(p.name), str(value)
            )
            assert code == 2, (p.name, value, err)
            one_line(
                err,
                f"sole-ros {command}: error: {_expected_flag(p.name)} must be within {p.range_text()}",
            )
    code, _, err = in_process(capsys, command, absent, "--query", "mug", "--scene-scale", "nan")
    assert code == 2
    one_line(err, "--scene-scale must be within 0.05..20, not nan")


def test_options_reach_pipeline_settings_as_node_parameters_do():
    from sole_ros.cli.model_options import settings_from_args
    from sole_ros.pipeline import PipelineSettings
    from sole_ros.settings_table import defaults

    parser = _subparser("bag")
    # the older spellings still work: --random-weights, --no-dense-features, --config, --autocast
    args = parser.parse_args(
        [
            "run1",
            "--query",
            "mug",
            *TINY,
            "--autocast",
            "--no-dense-features",
            "--test-time-views",
            "16",
            "--scene-scale",
            "0.65",
            "--contrast-phrases",
            "mug, bowl",
            "--candidates",
            "50",
            "--min-points",
            "5",
            "--split-distance",
            "0.05",
            "--voxel-size",
            "0.01",
            "--max-range",
            "3",
            "--num-queries",
            "64",
        ]
    )
    settings = settings_from_args(args, OFFERED["bag"])
    values = defaults()
    values.update(
        {
            "model.config": "tiny",
            "model.allow_random_weights": True,
            "model.clip_model": "sole-tiny",
            "model.clip_pretrained": "",
            "device": "cpu",
            "model.autocast": True,
            "scene.dense_features": False,
            "model.test_time_views": 16,
            "model.scene_scale": 0.65,
            "query.contrast_phrases": "mug, bowl",
            "query.top_k": 50,
            "query.min_points": 5,
            "query.split_distance": 0.05,
            "scene.voxel_size": 0.01,
            "scene.max_range": 3.0,
            "model.num_queries": 64,
        }
    )
    assert settings == PipelineSettings.from_parameters(values)
    assert settings.contrast_phrases == ("mug", "bowl") and settings.clip_pretrained is None
    # nothing given: the node's defaults
    plain = settings_from_args(parser.parse_args(["run1", "--query", "mug"]), OFFERED["bag"])
    assert plain == PipelineSettings.from_parameters(defaults())
    assert settings_from_args(
        parser.parse_args(["run1", "-q", "mug", "--allow-random-weights"]), OFFERED["bag"]
    ).allow_random_weights


def test_segment_with_the_nodes_settings_on_a_real_scan(tmp_path):
    scan = shared_data("mosd", "learn33.pcd")
    result = sole_ros(
        "segment",
        str(scan),
        "--query",
        "cylinder",
        "--top-k",
        "3",
        "--json",
        "--out-dir",
        str(tmp_path),
        "--test-time-views",
        "2",
        "--contrast-phrases",
        "mug, bowl",
        "--min-points",
        "5",
        *TINY,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout)
    model = answer["model"]
    assert model["test_time_views"] == 2 and model["contrast_phrases"] == ["mug", "bowl"]
    assert model["min_points"] == 5 and model["candidates"] == 100 and model["scene_scale"] == 1.0
    assert model["split_distance"] is None and model["num_queries"] == 0
    instances = answer["instances"]
    assert 1 <= len(instances) <= 3
    assert all(
        i["label"] == "cylinder" and i["num_points"] >= 5 for i in instances
    )  # contrast never answered


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
    from sole_ros.cli.weights import hub_reachable

    reachable, _ = hub_reachable(3.0)
    if reachable:
        pytest.skip(
            "the Hugging Face hub is reachable from here: the offline path cannot be seen for real"
        )
    env = {k: "" for k in ("HF_HUB_OFFLINE",)}
    result = sole_ros(
        "weights", "--dest", str(tmp_path / "w"), "--timeout", "3", env=env, timeout=60
    )
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
    state = {
        f"model.{k}": (
            torch.zeros(v.shape, dtype=torch.float16) if v.is_floating_point() else v.clone()
        )
        for k, v in model.state_dict().items()
    }
    state["criterion.empty_weight"] = torch.ones(201)
    torch.save(
        {"epoch": 599, "global_step": 1, "pytorch-lightning_version": "1.7.2", "state_dict": state},
        folder / "scannet200.ckpt",
    )
    return folder


def test_weights_checks_local_files_offline(published_like_checkpoint, tmp_path, capsys):
    from sole_ros.clip import ClipSpec, load_clip

    dest = published_like_checkpoint
    clip_dir = dest / "clip"
    clip_dir.mkdir(exist_ok=True)
    torch.save(
        load_clip(ClipSpec.tiny()).model.state_dict(), clip_dir / "open_clip_pytorch_model.bin"
    )
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
    (tmp_path / "bench_echo.py").write_text(
        '"""Echo its arguments."""\nimport sys\nprint(sys.argv[1:])\nsys.exit(3)\n'
    )
    code, out, _ = in_process(capsys, "bench", "--bench-dir", str(tmp_path), "--list")
    assert out.split() == ["echo", "Echo", "its", "arguments."]
    result = sole_ros("bench", "--bench-dir", str(tmp_path), "echo", "--size", "7")
    assert result.returncode == 3 and result.stdout.strip() == "['--size', '7']"
    code, _, err = in_process(capsys, "bench", "--bench-dir", str(tmp_path), "nothing")
    assert code == 2
    one_line(err, "no benchmark 'nothing'", "echo")


# --- bounds and the last line of defence ------------------------------------------------------------


def test_segment_point_bounds_are_options_and_their_mistakes_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["segment", "--help"])
    usage = capsys.readouterr().out
    assert "--max-points N" in usage and "2,000,000" in usage and "--downsample VOXEL" in usage
    np.savez(tmp_path / "scene.npz", points=np.random.default_rng(0).normal(size=(100, 3)))
    for option, value, fragment in (
        ("--max-points", "0", "--max-points must be at least 1, not 0"),
        ("--downsample", "-1", "--downsample must be within 0.001..10 m, not -1.0"),
        ("--downsample", "nan", "--downsample must be within"),
    ):
        code, _, err = in_process(
            capsys, "segment", str(tmp_path / "scene.npz"), "--query", "mug", option, value
        )
        assert code == 2
        one_line(err, "sole-ros segment: error:", fragment)
    code, _, err = in_process(
        capsys, "segment", str(tmp_path / "scene.npz"), "--query", "mug", "--max-points", "99"
    )
    assert code == 2
    one_line(err, "100 points, more than --max-points 99", "--downsample VOXEL")


def test_unexpected_errors_are_one_line_and_interrupts_quiet(capsys, monkeypatch):
    import sole_ros.cli.segment as cli_segment

    def fails(args):
        raise ValueError("bad\nthing")

    monkeypatch.setattr(cli_segment, "run", fails)
    monkeypatch.delenv("SOLE_ROS_DEBUG", raising=False)
    code, _, err = in_process(capsys, "segment", "x.ply", "--query", "mug")
    assert code == 1
    one_line(err, "sole-ros: error: ValueError: bad thing", "SOLE_ROS_DEBUG=1 shows the traceback")
    monkeypatch.setenv("SOLE_ROS_DEBUG", "1")
    with pytest.raises(ValueError, match="bad"):
        main(["segment", "x.ply", "--query", "mug"])

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_segment, "run", interrupted)
    code, out, err = in_process(capsys, "segment", "x.ply", "--query", "mug")
    assert code == 130 and out == "" and err == ""


# --- layout of sole_ros/cli ---------------------------------------------------------------------------

CLI_DIR = ROOT / "sole_ros" / "cli"
PROGRAM = {
    "__init__.py",
    "__main__.py",
    "app.py",
}  # the program; every other module is a part of it


def _imported_modules(path: Path) -> set[str]:
    """Every module a file imports, anywhere in it (functions included), as absolute names."""
    import ast

    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against sole_ros.cli
                base = "sole_ros.cli" + (f".{base}" if base else "")
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def test_cli_modules_never_import_the_program():
    """No import cycle: commands and helpers import helpers, never the package or its app."""
    parts = sorted(p for p in CLI_DIR.glob("*.py") if p.name not in PROGRAM)
    assert {p.stem for p in parts} >= {
        "errors",
        "model_options",
        "results",
        "segment",
        "bag",
        "training",
        "weights",
        "bench",
    }
    for path in parts:
        forbidden = {
            n
            for n in _imported_modules(path)
            if n in ("sole_ros.cli", "sole_ros.cli.app") or n.startswith("sole_ros.cli.app.")
        }
        assert not forbidden, (
            f"{path.name} imports {sorted(forbidden)}: import helpers by their full names"
        )


def test_every_command_module_is_registered_once():
    from sole_ros.cli import app

    with_register = {
        p.stem
        for p in CLI_DIR.glob("*.py")
        if p.name not in PROGRAM and "\ndef register(" in p.read_text(encoding="utf-8")
    }
    registered = [m.__name__.rsplit(".", 1)[-1] for m in app.COMMANDS]
    assert sorted(registered) == sorted(with_register) and len(set(registered)) == len(registered)
    assert (
        not list((ROOT / "sole_ros").glob("cli_*.py"))
        and not (ROOT / "sole_ros" / "cli.py").exists()
    )
