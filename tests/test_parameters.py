"""config/sole.yaml, the docs/PARAMETERS.md table and the node's declared parameters agree; the
table is ROS-free and checks values as rclpy does."""

import math
import re

import pytest
import yaml
from conftest import ROOT, run_python

from sole_ros import settings_table
from sole_ros.settings_table import BY_NAME, PARAMETERS, validate


def _flatten(tree, prefix=""):
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _flatten(value, name + ".")
        else:
            yield name, value


def test_config_file_lists_every_parameter_with_its_default():
    config = yaml.safe_load((ROOT / "config" / "sole.yaml").read_text())
    values = dict(_flatten(config["sole"]["ros__parameters"]))
    declared = {p.name: p.default for p in PARAMETERS}
    assert set(values) == set(declared), set(values) ^ set(declared)
    for name, default in declared.items():
        assert values[name] == default, (
            f"{name}: config/sole.yaml has {values[name]!r}, node declares {default!r}"
        )


def test_readme_parameter_table_matches_declarations():
    readme = (ROOT / "docs" / "PARAMETERS.md").read_text()
    readme = readme[readme.index("## All parameters") :]
    table = dict(re.findall(r"^\| `([a-z_.]+)` \| `([^`]*)` \|", readme, flags=re.M))
    declared = {p.name: p.default for p in PARAMETERS}
    assert set(table) == set(declared), set(table) ^ set(declared)
    for name, default in declared.items():
        shown = str(default).lower() if isinstance(default, bool) else str(default)
        assert table[name] == shown, (
            f"docs/PARAMETERS.md says {name} = {table[name]!r}, node declares {shown!r}"
        )


def test_descriptors_carry_ranges_and_descriptions():
    from sole_ros.ros import parameters

    assert parameters.PARAMETERS is PARAMETERS  # the node declares the one table
    for p in PARAMETERS:
        descriptor = parameters.descriptor(p)
        assert descriptor.name == p.name and descriptor.description.startswith(p.description), (
            p.name
        )
        if p.minimum is not None:
            assert descriptor.floating_point_range or descriptor.integer_range, p.name
            ranges = descriptor.floating_point_range or descriptor.integer_range
            assert (ranges[0].from_value, ranges[0].to_value) == (p.minimum, p.maximum), p.name
        for choice in p.choices:
            assert choice in descriptor.description, p.name


def test_table_imports_without_ros():
    """The table and the command line built from it load without rclpy or any ROS message."""
    result = run_python(
        "import sys, sole_ros.settings_table, sole_ros.cli; sole_ros.cli.build_parser(); "
        "ros = sorted(m for m in sys.modules if m.split('.')[0] in ('rclpy', 'rcl_interfaces', 'sole_ros.ros') "
        "or m.startswith('sole_ros.ros')); assert not ros, ros"
    )
    assert result.returncode == 0, result.stderr


def test_validate_checks_choices_and_ranges_as_the_node_declares_them():
    defaults = settings_table.defaults()
    assert set(defaults) == set(BY_NAME) and validate(defaults) == []
    problems = validate(
        {
            "model.config": "huge",
            "model.test_time_views": 0,
            "scene.voxel_size": math.nan,
            "query.split_distance": 10.0,
            "model.scene_scale": 0.05,
            "unknown.name": -1,
        }
    )
    assert problems == [
        "model.config must be one of paper, tiny, not 'huge'",
        "model.test_time_views must be within 1..64, not 0",
        "scene.voxel_size must be within 0.005..0.5, not nan",
    ]  # bounds themselves are in


@pytest.mark.parametrize("p", [p for p in PARAMETERS if p.has_range], ids=lambda p: p.name)
def test_every_range_is_usable(p):
    assert p.minimum <= p.default <= p.maximum and p.problem(p.default) is None
    above = p.maximum + (1 if isinstance(p.default, int) else p.maximum)
    assert p.problem(above) == f"must be within {p.range_text()}"


def test_node_parameters_become_pipeline_settings():
    """Every model/query/scene parameter the node declares reaches PipelineSettings by its name."""
    from sole_ros.pipeline import PipelineSettings

    values = settings_table.defaults()
    defaults = PipelineSettings.from_parameters(values)
    assert (defaults.test_time_views, defaults.scene_scale, defaults.view_scale_jitter) == (
        1,
        1.0,
        0.1,
    )
    assert (
        defaults.split_distance is None
        and defaults.contrast_phrases == ()
        and defaults.min_points == 0
    )
    assert defaults.num_queries == 0
    values.update(
        {
            "model.num_queries": 128,
            "query.min_points": 50,
            "model.test_time_views": 16,
            "model.scene_scale": 0.65,
            "model.view_scale_jitter": 0.15,
            "query.split_distance": 0.05,
            "query.contrast_phrases": "mug, bowl",
        }
    )
    chosen = PipelineSettings.from_parameters(values)
    assert (chosen.test_time_views, chosen.scene_scale, chosen.view_scale_jitter) == (
        16,
        0.65,
        0.15,
    )
    assert chosen.split_distance == 0.05 and chosen.contrast_phrases == ("mug", "bowl")
    assert chosen.min_points == 50 and chosen.num_queries == 128


def test_library_defaults_of_the_model_are_the_tables():
    """The CLIP model, its weights tag and the prompt are repeated as library defaults (pipeline,
    CLIP loader, text encoder): they must stay the table's, which the node, config and docs show."""
    from sole_ros.clip import ClipSpec
    from sole_ros.model.text import DEFAULT_PROMPT
    from sole_ros.pipeline import PipelineSettings

    table = settings_table.defaults()
    library = PipelineSettings()
    assert (library.clip_model, library.clip_pretrained, library.prompt) == (
        table["model.clip_model"],
        table["model.clip_pretrained"],
        table["model.prompt"],
    )
    assert (ClipSpec().model_name, ClipSpec().pretrained) == (
        table["model.clip_model"],
        table["model.clip_pretrained"],
    )
    assert DEFAULT_PROMPT == table["model.prompt"]


def test_the_bag_replay_pairs_at_the_nodes_tolerance():
    from sole_ros.bag import ReplayOptions
    from sole_ros.messages.poses import POSE_END_TOLERANCE

    options = ReplayOptions()
    assert options.sync_tolerance == BY_NAME["inputs.sync_slop"].default
    assert options.pose_tolerance == POSE_END_TOLERANCE
