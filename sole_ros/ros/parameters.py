"""sole_node's parameters: the table of sole_ros/settings_table.py with ROS descriptors.

The table itself is ROS-free (the command line builds its options from it); this module adds what
only the node needs: a ParameterDescriptor per entry (type, description, range) and their
declaration.
"""

from __future__ import annotations

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType

from sole_ros.settings_table import BY_NAME, PARAMETERS, Param, validate

__all__ = ["BY_NAME", "PARAMETERS", "Param", "declare_all", "descriptor", "validate"]

_KINDS = {
    bool: ParameterType.PARAMETER_BOOL,
    int: ParameterType.PARAMETER_INTEGER,
    float: ParameterType.PARAMETER_DOUBLE,
    str: ParameterType.PARAMETER_STRING,
}


def descriptor(p: Param) -> ParameterDescriptor:
    """The descriptor the node declares ``p`` with: its type, description (and choices), range."""
    kind = (
        ParameterType.PARAMETER_DOUBLE_ARRAY
        if isinstance(p.default, list)
        else _KINDS[type(p.default)]
    )
    text = p.description + (f" One of: {', '.join(p.choices)}." if p.choices else "")
    result = ParameterDescriptor(name=p.name, type=kind, description=text, read_only=p.read_only)
    if p.has_range and isinstance(p.default, float):
        result.floating_point_range = [
            FloatingPointRange(from_value=float(p.minimum), to_value=float(p.maximum), step=0.0)
        ]
    elif p.has_range:
        result.integer_range = [
            IntegerRange(from_value=int(p.minimum), to_value=int(p.maximum), step=1)
        ]
    return result


def declare_all(node) -> None:
    for p in PARAMETERS:
        node.declare_parameter(p.name, p.default, descriptor(p))
