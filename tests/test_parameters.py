"""config/sole.yaml, the README table and the node's declared parameters agree."""
import re

import yaml

from conftest import ROOT
from sole_ros.ros.parameters import PARAMETERS


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
    assert set(values) == set(declared), (set(values) ^ set(declared))
    for name, default in declared.items():
        assert values[name] == default, f"{name}: config/sole.yaml has {values[name]!r}, node declares {default!r}"


def test_readme_parameter_table_matches_declarations():
    readme = (ROOT / "README.md").read_text()
    readme = readme[readme.index("### Parameters"):]
    table = dict(re.findall(r"^\| `([a-z_.]+)` \| `([^`]*)` \|", readme, flags=re.M))
    declared = {p.name: p.default for p in PARAMETERS}
    assert set(table) == set(declared), (set(table) ^ set(declared))
    for name, default in declared.items():
        shown = str(default).lower() if isinstance(default, bool) else str(default)
        assert table[name] == shown, f"README says {name} = {table[name]!r}, node declares {shown!r}"


def test_descriptors_carry_ranges_and_descriptions():
    for p in PARAMETERS:
        descriptor = p.descriptor()
        assert descriptor.description, p.name
        if p.minimum is not None:
            assert descriptor.floating_point_range or descriptor.integer_range, p.name


def test_node_parameters_become_pipeline_settings():
    """Every model/query/scene parameter the node declares reaches PipelineSettings by its name."""
    from sole_ros.pipeline import PipelineSettings

    values = {p.name: p.default for p in PARAMETERS}
    defaults = PipelineSettings.from_parameters(values)
    assert (defaults.test_time_views, defaults.scene_scale, defaults.view_scale_jitter) == (1, 1.0, 0.1)
    assert defaults.split_distance is None and defaults.contrast_phrases == () and defaults.min_points == 0
    assert defaults.num_queries == 0
    values.update({"model.num_queries": 128, "query.min_points": 50, "model.test_time_views": 16, "model.scene_scale": 0.65, "model.view_scale_jitter": 0.15,
                   "query.split_distance": 0.05, "query.contrast_phrases": "mug, bowl"})
    chosen = PipelineSettings.from_parameters(values)
    assert (chosen.test_time_views, chosen.scene_scale, chosen.view_scale_jitter) == (16, 0.65, 0.15)
    assert chosen.split_distance == 0.05 and chosen.contrast_phrases == ("mug", "bowl")
    assert chosen.min_points == 50 and chosen.num_queries == 128
