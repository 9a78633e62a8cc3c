"""Action / low-dim normalisers and their JSON file (`normalizer.json`).

`LinearNormalizer` is the official min-max scaling to [-1, 1]:
    scale = (max - min) / 2,  offset = (max + min) / 2
    normalize(x) = (x - offset) / scale,  unnormalize(y) = y * scale + offset
`IdentityNormalizer` is for action spaces trained un-normalised (LIBERO / robomimic).

Zero range: a dimension that is constant in the data (max == min) would divide by zero.
`from_data` gives such a dimension scale 1 and offset = its value, so it normalises to 0 and
round-trips exactly. A scale of 0 read from an official checkpoint is kept as is, so that
`unnormalize` returns the constant exactly as the official code does; `normalize` maps those
dimensions to 0 instead of inf/nan.

Works on numpy arrays and torch tensors (the statistics follow the input's dtype and device).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "uwm_robot.normalizer/1"
FILENAME = "normalizer.json"
ZERO_RANGE_EPS = 1e-8  # a data range below this counts as constant


class NormalizerError(ValueError):
    """A normaliser file or dict is malformed, or data does not match a normaliser's shape."""


def _stat(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise NormalizerError(f"{name} must be a non-empty 1-d list of numbers, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise NormalizerError(f"{name} has non-finite values: {arr.tolist()}")
    return arr


def _like(stat: np.ndarray, x: Any) -> Any:
    """The statistic in x's array type, dtype and device."""
    if type(x).__module__.startswith("torch"):
        import torch

        dtype = x.dtype if x.dtype.is_floating_point else torch.float32
        return torch.as_tensor(stat, dtype=dtype, device=x.device)
    x = np.asarray(x)
    return stat.astype(x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64)


class LinearNormalizer:
    """Per-dimension affine map to [-1, 1] (along the last axis)."""

    kind = "linear"

    def __init__(self, scale: Any, offset: Any):
        self.scale = _stat(scale, "scale")
        self.offset = _stat(offset, "offset")
        if self.scale.shape != self.offset.shape:
            raise NormalizerError(f"scale {self.scale.shape} and offset {self.offset.shape} differ in length")
        if np.any(self.scale < 0):
            raise NormalizerError(f"scale must be >= 0, got {self.scale.tolist()}")

    @property
    def dim(self) -> int:
        return int(self.scale.shape[0])

    @classmethod
    def from_data(cls, data: Any) -> "LinearNormalizer":
        """Min-max statistics over all leading axes of `data` (..., D)."""
        arr = np.asarray(data, dtype=np.float64)
        if arr.ndim == 0 or arr.size == 0:
            raise NormalizerError(f"need a non-empty (..., D) array, got shape {arr.shape}")
        flat = arr.reshape(-1, arr.shape[-1])
        lo, hi = flat.min(axis=0), flat.max(axis=0)
        scale, offset = (hi - lo) / 2.0, (hi + lo) / 2.0
        const = (hi - lo) < ZERO_RANGE_EPS
        scale[const], offset[const] = 1.0, lo[const]  # see the module docstring
        return cls(scale, offset)

    @classmethod
    def from_range(cls, low: Any, high: Any) -> "LinearNormalizer":
        """Maps [low, high] to [-1, 1] per dimension (e.g. -1, 1 for the identity-like default)."""
        lo, hi = _stat(low, "low"), _stat(high, "high")
        if lo.shape != hi.shape or np.any(hi < lo):
            raise NormalizerError(f"need low <= high of equal length, got {lo.tolist()} and {hi.tolist()}")
        return cls((hi - lo) / 2.0, (hi + lo) / 2.0)

    def _check(self, x: Any) -> None:
        if len(x.shape) == 0 or x.shape[-1] != self.dim:
            raise NormalizerError(f"expected data of shape (..., {self.dim}), got {tuple(x.shape)}")

    def normalize(self, x: Any) -> Any:
        x = x if hasattr(x, "shape") else np.asarray(x)
        self._check(x)
        zero = self.scale == 0
        if not zero.any():
            return (x - _like(self.offset, x)) / _like(self.scale, x)
        # Constant dimensions (scale 0, see the module docstring) normalise to 0.
        y = (x - _like(self.offset, x)) / _like(np.where(zero, 1.0, self.scale), x)
        return y * _like((~zero).astype(np.float64), x)

    def unnormalize(self, y: Any) -> Any:
        y = y if hasattr(y, "shape") else np.asarray(y)
        self._check(y)
        return y * _like(self.scale, y) + _like(self.offset, y)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.kind, "scale": self.scale.tolist(), "offset": self.offset.tolist()}

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, LinearNormalizer)
            and np.array_equal(self.scale, other.scale)
            and np.array_equal(self.offset, other.offset)
        )

    def __repr__(self) -> str:
        return f"LinearNormalizer(dim={self.dim})"


class IdentityNormalizer:
    """No scaling: for actions the model was trained on un-normalised (LIBERO)."""

    kind = "identity"

    def __init__(self, dim: int | None = None):
        self.dim = None if dim is None else int(dim)

    def _check(self, x: Any) -> Any:
        x = x if hasattr(x, "shape") else np.asarray(x)
        if self.dim is not None and (len(x.shape) == 0 or x.shape[-1] != self.dim):
            raise NormalizerError(f"expected data of shape (..., {self.dim}), got {tuple(x.shape)}")
        return x

    def normalize(self, x: Any) -> Any:
        return self._check(x)

    def unnormalize(self, y: Any) -> Any:
        return self._check(y)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.kind, "dim": self.dim}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdentityNormalizer) and other.dim == self.dim

    def __repr__(self) -> str:
        return f"IdentityNormalizer(dim={self.dim})"


Normalizer = LinearNormalizer | IdentityNormalizer


def normalizer_from_dict(data: Any, where: str = "normalizer") -> Normalizer:
    if not isinstance(data, dict) or "type" not in data:
        raise NormalizerError(f"{where}: expected a mapping with a 'type', got {data!r:.80}")
    kind = data["type"]
    expected = {"linear": {"type", "scale", "offset"}, "identity": {"type", "dim"}}
    if kind not in expected:
        raise NormalizerError(f"{where}: unknown type {kind!r}; expected 'linear' or 'identity'")
    extra = sorted(set(data) - expected[kind])
    if extra:
        raise NormalizerError(f"{where}: unknown key(s) {extra} for a {kind} normalizer")
    try:
        if kind == "linear":
            return LinearNormalizer(data["scale"], data["offset"])
        return IdentityNormalizer(data.get("dim"))
    except KeyError as e:
        raise NormalizerError(f"{where}: missing key {e}") from None
    except NormalizerError as e:
        raise NormalizerError(f"{where}: {e}") from None


@dataclass
class NormalizerSet:
    """What a checkpoint needs to (un)scale data: the action normaliser + low-dim ones per key."""

    action: Normalizer
    lowdim: dict[str, LinearNormalizer] = field(default_factory=dict)

    @classmethod
    def default(cls, action_dim: int, identity: bool = False, low_dim: Any = ()) -> "NormalizerSet":
        """Actions already in [-1, 1] (scale 1, offset 0), or un-normalised (`identity=True`); the
        low-dim `(key, dim)` inputs unscaled."""
        lowdim = {k: LinearNormalizer(np.ones(d), np.zeros(d)) for k, d in low_dim}
        if identity:
            return cls(IdentityNormalizer(action_dim), lowdim)
        return cls(LinearNormalizer(np.ones(action_dim), np.zeros(action_dim)), lowdim)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "action": self.action.to_dict(),
            "lowdim": {k: self.lowdim[k].to_dict() for k in sorted(self.lowdim)},
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "normalizer") -> "NormalizerSet":
        if not isinstance(data, dict):
            raise NormalizerError(f"{source}: expected a JSON object, got {type(data).__name__}")
        if data.get("format") != FORMAT:
            raise NormalizerError(f"{source}: format is {data.get('format')!r}, expected {FORMAT!r}")
        extra = sorted(set(data) - {"format", "action", "lowdim"})
        if extra:
            raise NormalizerError(f"{source}: unknown key(s) {extra}")
        if "action" not in data:
            raise NormalizerError(f"{source}: missing 'action'")
        lowdim = data.get("lowdim") or {}
        if not isinstance(lowdim, dict):
            raise NormalizerError(f"{source}: 'lowdim' must map keys to normalizers")
        low = {k: normalizer_from_dict(v, f"{source}: lowdim.{k}") for k, v in lowdim.items()}
        bad = sorted(k for k, v in low.items() if not isinstance(v, LinearNormalizer))
        if bad:
            raise NormalizerError(f"{source}: lowdim normalizers must be linear: {bad}")
        return cls(normalizer_from_dict(data["action"], f"{source}: action"), low)

    def canonical_json(self) -> str:
        # Sorted keys, no whitespace, floats in repr form: equal contents give equal bytes.
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)

    def content_hash(self) -> str:
        """sha256 (hex) of the canonical JSON: what the server handshake compares."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    def save(self, path: str | Path) -> Path:
        """Write `normalizer.json` (a directory gets that file name) atomically."""
        path = Path(path)
        if path.is_dir():
            path = path / FILENAME
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1, sort_keys=True, allow_nan=False) + "\n")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "NormalizerSet":
        path = Path(path)
        if path.is_dir():
            path = path / FILENAME
        try:
            data = json.loads(path.read_text())
        except OSError as e:
            raise NormalizerError(f"{path}: cannot read: {e.strerror or e}") from None
        except json.JSONDecodeError as e:
            raise NormalizerError(f"{path}: not valid JSON: {e}") from None
        return cls.from_dict(data, source=str(path))
