"""The one place MinkowskiEngine is imported.

MinkowskiEngine 0.5.4 does ``from collections import Sequence`` at import time, which Python 3.10
removed; the alias below restores it before the import. Import ``ME`` from here, never directly.
"""

import collections
import collections.abc

if not hasattr(collections, "Sequence"):
    collections.Sequence = collections.abc.Sequence  # type: ignore[attr-defined]

import MinkowskiEngine as ME  # noqa: E402

__all__ = ["ME"]
