"""The one exception the message conversion layer raises for bad input messages."""
from __future__ import annotations


class MalformedMessage(ValueError):
    """A message that is inconsistent or unsupported; ``str(exc)`` is a one-line human reason.

    Subclasses ValueError so that callers that only know "bad input" still catch it.
    """
