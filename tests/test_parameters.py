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
