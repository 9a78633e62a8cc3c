"""Damped-least-squares IK for panda_link8 on a MuJoCo kinematic model of the Panda.

Used by the sim expert and by the control loop (DROID-style cartesian actions -> joint targets).
The model is the robot alone, so FK here is exactly the flange pose Polymetis reports.
"""
from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from robot_client.sim import panda_mjcf as panda


def quat_xyzw_to_wxyz(quat_xyzw) -> np.ndarray:
    q = np.asarray(quat_xyzw, dtype=float)
    return np.array([q[3], q[0], q[1], q[2]])


def quat_wxyz_to_xyzw(quat_wxyz) -> np.ndarray:
    q = np.asarray(quat_wxyz, dtype=float)
    return np.array([q[1], q[2], q[3], q[0]])


def check_vector(name: str, value, size: int) -> np.ndarray:
    """`value` as a float vector of `size` finite entries, or a ValueError naming `name`."""
    arr = np.asarray(value, dtype=float).reshape(-1)
    if arr.shape != (size,):
        raise ValueError(f"{name} must have {size} elements, got shape {np.shape(value)}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {arr}")
    return arr


class PandaKinematics:
    """Forward kinematics and the 6x7 world-frame Jacobian of panda_link8 (private MjData: not thread-safe)."""

    def __init__(self) -> None:
        self.model = mujoco.MjModel.from_xml_string(panda.panda_robot_only_xml())
        self.data = mujoco.MjData(self.model)
        self.link8_id = self.model.body("panda_link8").id
        self.lower = panda.JOINT_LOWER.copy()
        self.upper = panda.JOINT_UPPER.copy()
        self._jacp = np.zeros((3, self.model.nv))
        self._jacr = np.zeros((3, self.model.nv))

    def _set(self, q) -> None:
        self.data.qpos[:7] = check_vector("joint positions", q, 7)
        mujoco.mj_kinematics(self.model, self.data)

    def forward_kinematics(self, q) -> tuple[np.ndarray, np.ndarray]:
        """(position [3], quaternion xyzw [4]) of panda_link8, like Polymetis' robot_model."""
        self._set(q)
        return self.data.xpos[self.link8_id].copy(), quat_wxyz_to_xyzw(self.data.xquat[self.link8_id])

    def pose_matrix(self, q) -> tuple[np.ndarray, np.ndarray]:
        self._set(q)
        return self.data.xpos[self.link8_id].copy(), self.data.xmat[self.link8_id].reshape(3, 3).copy()

    def jacobian(self, q) -> np.ndarray:
        self._set(q)
        mujoco.mj_comPos(self.model, self.data)  # mj_jacBody needs com-based quantities
        mujoco.mj_jacBody(self.model, self.data, self._jacp, self._jacr, self.link8_id)
        return np.vstack([self._jacp[:, :7], self._jacr[:, :7]])


def rotation_error(target_mat: np.ndarray, current_mat: np.ndarray) -> np.ndarray:
    """World-frame rotation vector taking current to target."""
    quat_err = np.zeros(4)
    mujoco.mju_mat2Quat(quat_err, (target_mat @ current_mat.T).reshape(-1))
    rotvec = np.zeros(3)
    mujoco.mju_quat2Vel(rotvec, quat_err, 1.0)
    return rotvec


@dataclass
class IKResult:
    q: np.ndarray
    success: bool
    position_error: float  # m
    rotation_error: float  # rad
    iterations: int


@dataclass
class DLSConfig:
    damping: float = 0.05  # lambda: keeps steps bounded near singularities
    max_step_per_iteration: float = 0.1  # rad, per joint, per iteration
    limit_margin: float = 0.05  # rad kept away from joint limits
    nullspace_gain: float = 0.05  # pull toward `nullspace_target` (home) in the Jacobian's nullspace
    position_tolerance: float = 1e-3
    rotation_tolerance: float = 1e-2


class DLSInverseKinematics:
    """Damped least squares with a joint-limit margin and a nullspace pull toward home.

    `max_joint_delta` (default 0.2 rad, DROID's per-step bound) limits |q - q_init| per joint,
    so one call gives a joint target safe to stream at 15 Hz; pass None to solve fully.
    """

    def __init__(self, kinematics: PandaKinematics | None = None, config: DLSConfig | None = None,
                 nullspace_target=None) -> None:
        self.kin = kinematics or PandaKinematics()
        self.config = config or DLSConfig()
        self.nullspace_target = panda.HOME_Q.copy() if nullspace_target is None else check_vector(
            "nullspace_target", nullspace_target, 7)

    def solve(self, target_pos, target_quat_xyzw, q_init, max_iterations: int = 50,
              max_joint_delta: float | None = 0.2) -> IKResult:
        target_pos = check_vector("target position", target_pos, 3)
        target_quat = check_vector("target quaternion (xyzw)", target_quat_xyzw, 4)
        norm = np.linalg.norm(target_quat)
        if norm < 1e-6:
            raise ValueError("target quaternion has zero norm")
        target_mat = np.zeros(9)
        mujoco.mju_quat2Mat(target_mat, quat_xyzw_to_wxyz(target_quat / norm))
        target_mat = target_mat.reshape(3, 3)
        q_init = check_vector("q_init", q_init, 7)
        cfg = self.config
        lower = np.minimum(self.kin.lower + cfg.limit_margin, q_init)
        upper = np.maximum(self.kin.upper - cfg.limit_margin, q_init)
        if max_joint_delta is not None:
            lower = np.maximum(lower, q_init - max_joint_delta)
            upper = np.minimum(upper, q_init + max_joint_delta)
        q = q_init.copy()
        pos_err = rot_err = np.inf
        for iteration in range(1, max_iterations + 1):
            pos, mat = self.kin.pose_matrix(q)
            error = np.concatenate([target_pos - pos, rotation_error(target_mat, mat)])
            pos_err, rot_err = np.linalg.norm(error[:3]), np.linalg.norm(error[3:])
            if pos_err <= cfg.position_tolerance and rot_err <= cfg.rotation_tolerance:
                return IKResult(q, True, pos_err, rot_err, iteration - 1)
            jac = self.kin.jacobian(q)
            jjt = jac @ jac.T + cfg.damping**2 * np.eye(6)
            dq = jac.T @ np.linalg.solve(jjt, error)
            nullspace = np.eye(7) - np.linalg.pinv(jac) @ jac
            dq += nullspace @ (cfg.nullspace_gain * (self.nullspace_target - q))
            largest = np.max(np.abs(dq))
            if largest > cfg.max_step_per_iteration:
                dq *= cfg.max_step_per_iteration / largest
            q = np.clip(q + dq, lower, upper)
        pos, mat = self.kin.pose_matrix(q)
        pos_err = float(np.linalg.norm(target_pos - pos))
        rot_err = float(np.linalg.norm(rotation_error(target_mat, mat)))
        ok = pos_err <= cfg.position_tolerance and rot_err <= cfg.rotation_tolerance
        return IKResult(q, ok, pos_err, rot_err, max_iterations)
