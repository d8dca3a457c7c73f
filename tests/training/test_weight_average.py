"""Weight averaging (sole_ros/training/weight_average.py, `sole-ros average-weights`): the shipped
demo weights are the average of a network and its continuation, so the average must be exact, keep
the first file's settings and CLIP, load like any checkpoint, and refuse two different networks."""

from __future__ import annotations

import pytest
import torch

from sole_ros.cli import main
from sole_ros.model.checkpoint import read_checkpoint
from sole_ros.pipeline import PipelineSettings, find_default_checkpoint, load_segmenter
from sole_ros.training.checkpointing import save_atomic
from sole_ros.training.weight_average import average_state_dicts


def _tensors():
    base = {"w": torch.tensor([0.0, 2.0, 4.0]), "bn.num_batches_tracked": torch.tensor(7)}
    other = {"w": torch.tensor([2.0, 2.0, 0.0]), "bn.num_batches_tracked": torch.tensor(3)}
    return base, other


def test_the_average_interpolates_floats_and_keeps_the_first_counters():
    base, other = _tensors()
    quarter = average_state_dicts(base, other, 0.25)
    assert torch.equal(quarter["w"], torch.tensor([0.5, 2.0, 3.0]))
    assert int(quarter["bn.num_batches_tracked"]) == 7
    assert torch.equal(average_state_dicts(base, other, 0.0)["w"], base["w"])
    assert torch.equal(average_state_dicts(base, other, 1.0)["w"], other["w"])


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda o: o.pop("w"), "tensors only in the first"),
        (lambda o: o.update(w=torch.zeros(4)), "differ in 1 tensors, e.g. w"),
        (lambda o: o.update(w=torch.zeros(3, dtype=torch.float64)), "torch.float64"),
    ],
)
def test_two_different_networks_are_refused(change, message):
    base, other = _tensors()
    change(other)
    with pytest.raises(ValueError, match=message):
        average_state_dicts(base, other)


@pytest.mark.parametrize("weight", [-0.1, 1.5, float("nan")])
def test_a_weight_outside_zero_one_is_refused(weight):
    with pytest.raises(ValueError, match="weight must be in"):
        average_state_dicts(*_tensors(), weight)


@pytest.fixture(scope="module")
def demo_and_shifted(tmp_path_factory):
    """The shipped demo weights and a copy whose network is shifted by a known amount."""
    folder = tmp_path_factory.mktemp("average")
    demo = read_checkpoint(find_default_checkpoint())
    shifted = {
        **demo,
        "state_dict": {
            k: v + 1.0 if v.is_floating_point() else v for k, v in demo["state_dict"].items()
        },
    }
    return find_default_checkpoint(), save_atomic(shifted, folder / "shifted.ckpt"), demo


def test_the_command_writes_a_checkpoint_that_loads_and_keeps_the_first_files_clip(
    demo_and_shifted, tmp_path, capsys
):
    demo_path, shifted_path, demo = demo_and_shifted
    out = tmp_path / "avg.ckpt"
    assert (
        main(
            [
                "average-weights",
                str(demo_path),
                str(shifted_path),
                "--weight",
                "0.5",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    assert f"wrote {out}" in capsys.readouterr().out
    averaged = read_checkpoint(out)
    for key, value in demo["state_dict"].items():
        expected = value + 0.5 if value.is_floating_point() else value
        assert torch.allclose(averaged["state_dict"][key], expected, atol=1e-6), key
    assert averaged["hyper_parameters"] == demo["hyper_parameters"]
    assert all(
        torch.equal(averaged["clip_state_dict"][k], v) for k, v in demo["clip_state_dict"].items()
    )
    # loads as the node loads it: strictly (every tensor fits the network), with the trained tower
    segmenter, clip = load_segmenter(
        PipelineSettings(checkpoint=str(out), device="cpu"), "cpu", log=lambda *_: None
    )
    assert clip.image_tower_trained
    loaded = dict(segmenter.model.state_dict())
    assert torch.allclose(
        loaded["semantic_proj.weight"], averaged["state_dict"]["model.semantic_proj.weight"]
    )


def test_command_mistakes_are_one_line_and_write_nothing(demo_and_shifted, tmp_path, capsys):
    demo_path, _, _ = demo_and_shifted
    out = tmp_path / "avg.ckpt"
    assert (
        main(
            [
                "average-weights",
                str(demo_path),
                str(tmp_path / "missing.ckpt"),
                "--output",
                str(out),
            ]
        )
        == 2
    )
    assert "missing.ckpt" in capsys.readouterr().err
    assert (
        main(
            [
                "average-weights",
                str(demo_path),
                str(demo_path),
                "--weight",
                "2",
                "--output",
                str(out),
            ]
        )
        == 2
    )
    assert "weight must be in [0, 1]" in capsys.readouterr().err
    assert not out.exists()
