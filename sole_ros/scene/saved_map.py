"""A voxel map file read and checked: its header (settings, version, stamp) and its arrays.

The container itself (magic, checksums, atomic writes) is map_file.py; this is what a map file
must hold to be swapped into a VoxelMap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import map_file, voxel_keys
from .errors import MapFileError, shown

ARRAY_SPECS = {  # name -> (dtype, trailing shape given feature_dim)
    "keys": (np.int64, lambda d: ()),
    "color": (np.float32, lambda d: (3,)),
    "color_count": (np.uint32, lambda d: ()),
    "observations": (np.uint32, lambda d: ()),
    "last_seen": (np.float64, lambda d: ()),
    "feature": (np.float16, lambda d: (d,)),
    "feature_count": (np.uint32, lambda d: ()),
}

# A map file may hold this many times the loading map's max_voxels (the newest are kept).
LOAD_CAPACITY_FACTOR = 2
MAX_FEATURE_DIM = 4096
SETTING_NAMES = (
    "voxel_size",
    "max_voxels",
    "region_min",
    "region_max",
    "keep_radius",
    "max_range",
    "feature_dim",
    "evict_fraction",
    "feature_depth_tolerance",
)


@dataclass
class SavedMap:
    """A map file read and validated, ready to swap in: nothing about it is unchecked."""

    settings: dict
    version: int
    stamp: float
    arrays: dict
    header: dict  # the whole header, for extra entries saved with the map

    @classmethod
    def read(
        cls, path, check_settings: Callable[[dict], object], max_bytes: int | None = None
    ) -> "SavedMap":
        """Read and validate ``path``; ``check_settings`` raises TypeError or ValueError for
        settings no map accepts (the map's own constructor checks)."""
        header, arrays = map_file.read(path, max_bytes=max_bytes)
        hint = header.get("_path", "map file")
        try:
            settings = settings_from_header(header, check_settings)
            version = header.get("version")
            if (
                isinstance(version, bool)
                or not isinstance(version, int)
                or not 0 <= version < 2**62
            ):
                raise MapFileError(
                    f"map version must be an integer in 0..2^62, got {shown(version)}"
                )
            stamp = header.get("stamp", 0.0)
            if (
                isinstance(stamp, bool)
                or not isinstance(stamp, (int, float))
                or not 0.0 <= stamp < 1e11
            ):
                raise MapFileError(f"stamp must be a time in seconds, got {shown(stamp)}")
            validate_arrays(arrays, settings["feature_dim"])
        except MapFileError as error:
            raise MapFileError(f"{hint}: {error}") from None
        return cls(settings, version, float(stamp), arrays, header)


def validate_arrays(arrays: dict, feature_dim: int) -> None:
    missing = set(ARRAY_SPECS) - set(arrays)
    if missing:
        raise MapFileError(f"arrays missing: {sorted(missing)}")
    count = arrays["keys"].shape[0] if arrays["keys"].ndim == 1 else -1
    for name, (dtype, trailing) in ARRAY_SPECS.items():
        array = arrays[name]
        if array.dtype != dtype or array.shape != (count, *trailing(feature_dim)):
            raise MapFileError(
                f"array {name} has {array.dtype} {array.shape}, "
                f"expected {np.dtype(dtype)} {(count, *trailing(feature_dim))}"
            )
    keys = arrays["keys"]
    if count and (keys[0] < 0 or keys[-1] >= 1 << (3 * voxel_keys.FIELD_BITS)):
        raise MapFileError("voxel keys outside the packed coordinate range")
    if count > 1 and not np.all(keys[1:] > keys[:-1]):
        raise MapFileError("voxel keys are not strictly increasing (each voxel once, in order)")
    for name in ("color", "last_seen", "feature"):
        if not np.all(np.isfinite(arrays[name])):
            raise MapFileError(f"array {name} contains NaN or inf")
    if count and (arrays["color"].min() < 0 or arrays["color"].max() > 255):
        raise MapFileError("colours outside 0..255")


def settings_from_header(header: dict, check_settings: Callable[[dict], object]) -> dict:
    """The map settings a header holds, each of the right type and in range."""
    settings = header.get("settings")
    if (
        not isinstance(settings, dict)
        or not set(settings) <= set(SETTING_NAMES)
        or not {"voxel_size", "feature_dim"} <= set(settings)
    ):
        raise MapFileError("header has missing or unknown settings")
    for name, value in settings.items():
        values = (
            value
            if name in ("region_min", "region_max") and isinstance(value, list) and len(value) == 3
            else [value]
        )
        if not all(
            v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) < 1e9)
            for v in values
        ):
            raise MapFileError(f"setting {name} is not a number in range: {shown(value)}")
    feature_dim = settings["feature_dim"]
    if not isinstance(feature_dim, int) or not 0 <= feature_dim <= MAX_FEATURE_DIM:
        raise MapFileError(
            f"feature_dim must be an integer in 0..{MAX_FEATURE_DIM}, got {shown(feature_dim)}"
        )
    if not isinstance(settings["voxel_size"], (int, float)) or isinstance(
        settings["voxel_size"], bool
    ):
        raise MapFileError(f"voxel_size must be a number, got {shown(settings['voxel_size'])}")
    if not isinstance(settings.get("max_voxels", 1), int):
        raise MapFileError(f"max_voxels must be an integer, got {shown(settings['max_voxels'])}")
    settings = {**settings, "voxel_size": float(settings["voxel_size"])}
    try:
        check_settings(settings)  # the settings themselves must be valid
    except (TypeError, ValueError) as error:
        raise MapFileError(f"header has invalid settings: {error}") from None
    return settings
