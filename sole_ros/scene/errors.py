"""Errors the scene library raises, each with a reason a person can act on."""

from __future__ import annotations

MAX_REASON_LENGTH = 1000


class InvalidInput(ValueError):
    """An input was rejected whole; the map is unchanged. str(error) says why."""


class MapFileError(ValueError):
    """A saved map file is unreadable, corrupt, of another format or of an unsupported version.

    Its message is always one printable line of bounded length, whatever the file held: it ends
    up in service responses, logs and the command line's single line of output."""

    def __init__(self, message: str):
        line = "".join(c if c.isprintable() else " " for c in str(message))
        if len(line) > MAX_REASON_LENGTH:
            line = line[: MAX_REASON_LENGTH - 3] + "..."
        super().__init__(line)


def shown(value, limit: int = 40) -> str:
    """A value read from a file as a message may quote it: its repr, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
