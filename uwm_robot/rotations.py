"""Rotation conversions: the one place that decides conventions.

Conventions (those of the UWM training data, i.e. pytorch3d's as used by the official
`datasets/droid/utils.py`):

- rot6d: the first two ROWS of the rotation matrix, flattened `(r00 r01 r02 r10 r11 r12)`;
  back to a matrix by Gram-Schmidt (rows b1, b2, b3 = b1 x b2).
- Euler angles: intrinsic `XYZ`, R = Rx(a) @ Ry(b) @ Rz(c) (pytorch3d
  `euler_angles_to_matrix(convention="XYZ")`; scipy's `as_euler("XYZ")`, NOT `"xyz"`).
  Decoding returns b in [-pi/2, pi/2] and a, c in (-pi, pi].
- Quaternions: `(x, y, z, w)` (Polymetis / scipy order), returned with w >= 0.

DROID's robot *poses* (`cartesian_position`, and the deltas its IK applies) use a different
Euler convention, scipy's extrinsic `"xyz"` (R = Rz(c) @ Ry(b) @ Rx(a)). That one is here as
`pose_euler_to_matrix` / `matrix_to_pose_euler`, for robot state only: never for the action codec.

Every function takes numpy arrays (or anything array-like) with arbitrary leading batch dims,
computes in float64, and returns the input's floating dtype (float64 for non-float input).
torch tensors are accepted too and come back as tensors on the same device and dtype (computed
through numpy, so without autograd).
"""

from __future__ import annotations

from typing import Any

import numpy as np

EULER_CONVENTION = "XYZ"  # intrinsic; see the module docstring

_EPS = 1e-12  # as torch.nn.functional.normalize, so degenerate rot6d behaves like the official code


# ---- array plumbing ---------------------------------------------------------------------------
def _as_f64(x: Any, last: tuple[int, ...], what: str) -> tuple[np.ndarray, Any]:
    """float64 view of x checked to end in `last`, plus what is needed to give back x's type."""
    torch_like = None
    if type(x).__module__.startswith("torch"):
        torch_like = (x.dtype, x.device)
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    out_dtype = arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.float64
    if arr.ndim < len(last) or tuple(arr.shape[arr.ndim - len(last):]) != last:
        want = "(..., " + ", ".join(map(str, last)) + ")"
        raise ValueError(f"{what} must have shape {want}, got {tuple(arr.shape)}")
    return arr.astype(np.float64, copy=False), (out_dtype, torch_like)


def _back(arr: np.ndarray, like: Any) -> Any:
    out_dtype, torch_like = like
    if torch_like is not None:
        import torch

        dtype, device = torch_like
        if not dtype.is_floating_point:
            dtype = torch.float64
        return torch.from_numpy(np.ascontiguousarray(arr)).to(device=device, dtype=dtype)
    return arr.astype(out_dtype, copy=False)


def _normalize(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), _EPS)


# ---- rot6d <-> matrix -------------------------------------------------------------------------
def _rot6d_to_matrix(d6: np.ndarray) -> np.ndarray:
    a1, a2 = d6[..., :3], d6[..., 3:]
    b1 = _normalize(a1)
    b2 = _normalize(a2 - np.sum(b1 * a2, axis=-1, keepdims=True) * b1)
    b3 = np.cross(b1, b2)
    return np.stack((b1, b2, b3), axis=-2)


def rot6d_to_matrix(rot6d: Any) -> Any:
    """(..., 6) -> (..., 3, 3). The 6 numbers are the first two rows; Gram-Schmidt restores the rest."""
    d6, like = _as_f64(rot6d, (6,), "rot6d")
    return _back(_rot6d_to_matrix(d6), like)


def matrix_to_rot6d(matrix: Any) -> Any:
    """(..., 3, 3) -> (..., 6): the first two rows, flattened."""
    m, like = _as_f64(matrix, (3, 3), "rotation matrix")
    return _back(m[..., :2, :].reshape(m.shape[:-2] + (6,)), like)


# ---- Euler (intrinsic XYZ) <-> matrix ---------------------------------------------------------
def _euler_to_matrix(e: np.ndarray) -> np.ndarray:
    ca, cb, cc = np.cos(e[..., 0]), np.cos(e[..., 1]), np.cos(e[..., 2])
    sa, sb, sc = np.sin(e[..., 0]), np.sin(e[..., 1]), np.sin(e[..., 2])
    # Rx(a) @ Ry(b) @ Rz(c), written out.
    rows = (
        (cb * cc, -cb * sc, sb),
        (ca * sc + sa * sb * cc, ca * cc - sa * sb * sc, -sa * cb),
        (sa * sc - ca * sb * cc, sa * cc + ca * sb * sc, ca * cb),
    )
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


def _matrix_to_euler(m: np.ndarray) -> np.ndarray:
    # R02 = sin b; R12/R22 give a; R01/R00 give c (the same formulas as pytorch3d's "XYZ").
    b = np.arcsin(np.clip(m[..., 0, 2], -1.0, 1.0))
    a = np.arctan2(-m[..., 1, 2], m[..., 2, 2])
    c = np.arctan2(-m[..., 0, 1], m[..., 0, 0])
    return np.stack((a, b, c), axis=-1)


def euler_to_matrix(euler: Any) -> Any:
    """Intrinsic XYZ Euler angles (..., 3) in radians -> (..., 3, 3), R = Rx @ Ry @ Rz."""
    e, like = _as_f64(euler, (3,), "euler angles")
    return _back(_euler_to_matrix(e), like)


def matrix_to_euler(matrix: Any) -> Any:
    """(..., 3, 3) -> intrinsic XYZ Euler angles (..., 3); the inverse of `euler_to_matrix`."""
    m, like = _as_f64(matrix, (3, 3), "rotation matrix")
    return _back(_matrix_to_euler(m), like)


def euler_to_rot6d(euler: Any) -> Any:
    """Intrinsic XYZ Euler angles (..., 3) -> rot6d (..., 6), as the official `euler_angles_to_rot_6d`."""
    e, like = _as_f64(euler, (3,), "euler angles")
    m = _euler_to_matrix(e)
    return _back(m[..., :2, :].reshape(m.shape[:-2] + (6,)), like)


def rot6d_to_euler(rot6d: Any) -> Any:
    """rot6d (..., 6) -> intrinsic XYZ Euler angles (..., 3) (the correct inverse of the encoding)."""
    d6, like = _as_f64(rot6d, (6,), "rot6d")
    return _back(_matrix_to_euler(_rot6d_to_matrix(d6)), like)


# ---- DROID pose Euler (scipy extrinsic "xyz") <-> matrix --------------------------------------
def pose_euler_to_matrix(euler: Any) -> Any:
    """DROID pose angles (..., 3), extrinsic xyz = Rz(c) @ Ry(b) @ Rx(a) -> (..., 3, 3)."""
    e, like = _as_f64(euler, (3,), "pose euler angles")
    # Extrinsic x-y-z by (a, b, c) is intrinsic Z-Y-X by (c, b, a) = the transpose of intrinsic
    # X-Y-Z by (-a, -b, -c).
    return _back(np.swapaxes(_euler_to_matrix(-e), -1, -2), like)


def matrix_to_pose_euler(matrix: Any) -> Any:
    """(..., 3, 3) -> DROID pose angles (..., 3) (scipy `as_euler("xyz")`), b in [-pi/2, pi/2]."""
    m, like = _as_f64(matrix, (3, 3), "rotation matrix")
    return _back(-_matrix_to_euler(np.swapaxes(m, -1, -2)), like)


# ---- quaternion (x, y, z, w) <-> matrix -------------------------------------------------------
def quat_to_matrix(quat_xyzw: Any) -> Any:
    """(..., 4) quaternion (x, y, z, w), normalised first -> (..., 3, 3)."""
    q, like = _as_f64(quat_xyzw, (4,), "quaternion (x, y, z, w)")
    norm = np.linalg.norm(q, axis=-1, keepdims=True)
    if np.any(norm < _EPS):
        raise ValueError("quaternion with zero norm has no rotation")
    x, y, z, w = np.moveaxis(q / norm, -1, 0)
    rows = (
        (1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)),
        (2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)),
        (2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)),
    )
    return _back(np.stack([np.stack(r, axis=-1) for r in rows], axis=-2), like)


def matrix_to_quat(matrix: Any) -> Any:
    """(..., 3, 3) -> (..., 4) quaternion (x, y, z, w) with w >= 0."""
    m, like = _as_f64(matrix, (3, 3), "rotation matrix")
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    # Four candidates, each exact where its denominator is large; pick the best-conditioned one
    # per matrix (Shepperd's method).
    sq = np.sqrt(np.maximum(np.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1), 0.0))
    d21, d02, d10 = m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]
    s01, s02, s12 = m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1]
    cands = np.stack(
        [
            np.stack([d21, d02, d10, sq[..., 0] ** 2], -1),  # from w
            np.stack([sq[..., 1] ** 2, s01, s02, d21], -1),  # from x
            np.stack([s01, sq[..., 2] ** 2, s12, d02], -1),  # from y
            np.stack([s02, s12, sq[..., 3] ** 2, d10], -1),  # from z
        ],
        -2,
    ) / (2.0 * np.maximum(sq, 0.1)[..., None])
    best = np.argmax(sq, axis=-1)
    q = np.take_along_axis(cands, best[..., None, None], axis=-2)[..., 0, :]
    q = _normalize(q)
    q = np.where(q[..., 3:4] < 0, -q, q)
    return _back(q, like)


def quat_to_euler(quat_xyzw: Any) -> Any:
    """(..., 4) quaternion (x, y, z, w) -> intrinsic XYZ Euler angles (..., 3)."""
    return matrix_to_euler(quat_to_matrix(quat_xyzw))


def euler_to_quat(euler: Any) -> Any:
    """Intrinsic XYZ Euler angles (..., 3) -> quaternion (x, y, z, w)."""
    return matrix_to_quat(euler_to_matrix(euler))
