"""DROID action codec: 10-d UWM model actions <-> 7-d DROID commands.

The official converter (`datasets/droid/convert_dataset_zarr.py`) builds each training action
from DROID's `action_dict` as

    [cartesian_velocity[:3], euler_angles_to_rot_6d(cartesian_velocity[3:6]), gripper_position]

i.e. xyz velocity (3) + rot6d of the angular-velocity triple read as intrinsic XYZ Euler angles
(6) + absolute gripper position (1). `decode` inverts that with the same intrinsic convention
(`uwm_robot.rotations`); the official eval's scipy `as_euler("xyz")` is extrinsic and is NOT the
inverse (0.3 rad error at |angles| ~ 0.5).

Values are passed through unclipped: DROID's [-1, 1] velocity limit and the gripper range are
the safety layer's job, so that clipping is visible where it happens.
Actions here are un-normalised (see `uwm_robot.normalizer` for the model's [-1, 1] scaling).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import rotations

MODEL_ACTION_DIM = 10  # xyz (3) + rot6d (6) + gripper (1)
DROID_ACTION_DIM = 7  # cartesian_velocity (6: xyz, Euler-rate triple) + gripper_position (1)


def _checked(x: Any, dim: int, what: str) -> tuple[np.ndarray, np.dtype]:
    arr = np.asarray(x)
    if arr.ndim == 0 or arr.shape[-1] != dim:
        raise ValueError(f"{what} must have shape (..., {dim}), got {tuple(arr.shape)}")
    out_dtype = arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.float64
    return arr.astype(np.float64, copy=False), out_dtype


def encode(droid_action: Any) -> np.ndarray:
    """(..., 7) `[vx, vy, vz, wa, wb, wc, gripper]` -> (..., 10) model action (un-normalised)."""
    a, dtype = _checked(droid_action, DROID_ACTION_DIM, "DROID action [cartesian_velocity(6), gripper_position(1)]")
    rot6d = rotations.euler_to_rot6d(a[..., 3:6])
    return np.concatenate([a[..., :3], rot6d, a[..., 6:7]], axis=-1).astype(dtype, copy=False)


def decode(model_action: Any) -> np.ndarray:
    """(..., 10) model action (un-normalised) -> (..., 7) DROID `[cartesian_velocity, gripper_position]`.

    The rot6d part need not be orthonormal (it is a network output): Gram-Schmidt projects it
    onto the nearest rotation in the official sense before the Euler triple is read off.
    """
    a, dtype = _checked(model_action, MODEL_ACTION_DIM, "model action [xyz(3), rot6d(6), gripper(1)]")
    euler = rotations.rot6d_to_euler(a[..., 3:9])
    return np.concatenate([a[..., :3], euler, a[..., 9:10]], axis=-1).astype(dtype, copy=False)


def encode_parts(cartesian_velocity: Any, gripper_position: Any) -> np.ndarray:
    """As `encode`, from DROID's two `action_dict` entries: velocity (..., 6) and gripper (..., 1)."""
    v = np.asarray(cartesian_velocity)
    g = np.asarray(gripper_position)
    if v.ndim == 0 or v.shape[-1] != 6:
        raise ValueError(f"cartesian_velocity must have shape (..., 6), got {tuple(v.shape)}")
    if g.ndim == 0 or g.shape[-1] != 1:
        raise ValueError(f"gripper_position must have shape (..., 1), got {tuple(g.shape)}")
    return encode(np.concatenate([v, g.astype(v.dtype, copy=False)], axis=-1))


class DroidActionCodec:
    """The codec for `ModelConfig.action_space == "droid"` (10-d model, 7-d robot)."""

    name = "droid"
    model_dim = MODEL_ACTION_DIM
    robot_dim = DROID_ACTION_DIM

    def encode(self, robot_action: Any) -> np.ndarray:
        return encode(robot_action)

    def decode(self, model_action: Any) -> np.ndarray:
        return decode(model_action)


class RawActionCodec:
    """`action_space == "raw"` (LIBERO): the model's actions are the robot's; shapes are still checked."""

    name = "raw"

    def __init__(self, dim: int):
        self.model_dim = self.robot_dim = int(dim)

    def encode(self, robot_action: Any) -> np.ndarray:
        a, dtype = _checked(robot_action, self.robot_dim, "action")
        return a.astype(dtype, copy=False)

    def decode(self, model_action: Any) -> np.ndarray:
        a, dtype = _checked(model_action, self.model_dim, "model action")
        return a.astype(dtype, copy=False)


def codec_for(action_space: str, action_dim: int) -> DroidActionCodec | RawActionCodec:
    """The codec a `ModelConfig` (its `action_space`, `action_dim`) needs."""
    if action_space == "droid":
        if action_dim != MODEL_ACTION_DIM:
            raise ValueError(f"action_space 'droid' needs action_dim {MODEL_ACTION_DIM}, got {action_dim}")
        return DroidActionCodec()
    if action_space == "raw":
        return RawActionCodec(action_dim)
    raise ValueError(f"unknown action_space {action_space!r}; expected 'droid' or 'raw'")
