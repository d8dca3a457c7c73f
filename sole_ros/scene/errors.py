"""Errors the scene library raises, each with a reason a person can act on."""
from __future__ import annotations


class InvalidInput(ValueError):
    """An input was rejected whole; the map is unchanged. str(error) says why."""


class MapFileError(ValueError):
    """A saved map file is unreadable, corrupt, of another format or of an unsupported version."""
