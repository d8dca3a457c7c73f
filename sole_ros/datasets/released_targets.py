"""The released MCA and MEA target files of SOLE (``<dir>/<scan>.pickle``).

Facts from the reference loader: an MCA file is a dict whose "features" is a list with one tensor
per ground-truth instance (each [1, D] or [D]: the CLIP text embedding of that object's caption);
an MEA file is a dict whose "guide" is a [K, D] tensor (the entity embedding attended for each
instance). Rows follow the scene's target instance order (ascending instance id, without wall and
floor).

These are Python pickles. Unpickling an arbitrary pickle runs code, so this reader only lets
through what tensors, numpy arrays and plain containers need; tensor storages are re-read with
``torch.load(weights_only=True)`` on the CPU. Anything else is refused with UnsafePickleError.
"""

from __future__ import annotations

import io
import pathlib
import pickle

import numpy as np
import torch


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle references something beyond tensors, arrays and containers."""


def _storage_from_bytes(data: bytes):
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


_ALLOWED = {
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_tensor"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._tensor", "_rebuild_from_type_v2"),
    ("torch", "Tensor"),
    ("torch.nn.parameter", "Parameter"),
    ("collections", "OrderedDict"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
}
_DTYPE_MODULES = ("numpy.dtypes",)
_STORAGE_TYPES = {
    "FloatStorage",
    "HalfStorage",
    "DoubleStorage",
    "BFloat16Storage",
    "LongStorage",
    "IntStorage",
    "BoolStorage",
    "ByteStorage",
    "UntypedStorage",
    "TypedStorage",
}


class _TensorOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) == ("torch.storage", "_load_from_bytes"):
            return _storage_from_bytes
        if (
            (module, name) in _ALLOWED
            or module in _DTYPE_MODULES
            or (module == "torch" and name in _STORAGE_TYPES)
        ):
            return super().find_class(module, name)
        raise UnsafePickleError(
            f"refusing to unpickle {module}.{name}: only tensors, arrays and containers "
            f"are allowed in association target files"
        )


def safe_unpickle(path):
    with open(path, "rb") as f:
        return _TensorOnlyUnpickler(f).load()


def _rows(values, what: str, path) -> np.ndarray:
    if isinstance(values, (list, tuple)):
        if not values:
            return np.zeros((0, 0), np.float32)
        values = [torch.as_tensor(v).float().reshape(1, -1) for v in values]
        return torch.cat(values).numpy()
    tensor = torch.as_tensor(values).float()
    if tensor.ndim != 2:
        raise ValueError(f"{path}: {what} must be [K, D], got shape {tuple(tensor.shape)}")
    return tensor.numpy()


def load_mca(path) -> np.ndarray:
    data = safe_unpickle(path)
    if not isinstance(data, dict) or "features" not in data:
        raise ValueError(f"{path}: an MCA file is a dict with 'features'")
    return _rows(data["features"], "features", path)


def load_mea(path) -> np.ndarray:
    data = safe_unpickle(path)
    if not isinstance(data, dict) or "guide" not in data:
        raise ValueError(f"{path}: an MEA file is a dict with 'guide'")
    return _rows(data["guide"], "guide", path)


class ReleasedTargets:
    """Callable scan -> (mca [K,D], mea [K,D]) over the two folders; a missing file gives None."""

    def __init__(self, mca_dir=None, mea_dir=None):
        self.mca_dir = None if mca_dir is None else pathlib.Path(mca_dir)
        self.mea_dir = None if mea_dir is None else pathlib.Path(mea_dir)

    def __call__(self, scan: str):
        mca = mea = None
        if self.mca_dir is not None and (self.mca_dir / f"{scan}.pickle").exists():
            mca = load_mca(self.mca_dir / f"{scan}.pickle")
        if self.mea_dir is not None and (self.mea_dir / f"{scan}.pickle").exists():
            mea = load_mea(self.mea_dir / f"{scan}.pickle")
        return mca, mea
