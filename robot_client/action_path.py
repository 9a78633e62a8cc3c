"""DROID actions -> joint targets: clip, scale per step, integrate a target pose, solve IK.

A 7-d DROID action is a cartesian velocity in [-1, 1] (xyz, then the angular triple) plus an
absolute gripper position. At 15 Hz full scale is 0.075 m and 0.15 rad per step. The angular
part is applied as a rotation vector in the base frame (DROID hands it to a twist-based IK), to
the flange (`panda_link8`) pose the robot reports. The joint target goes through the safety
layer; anything it rejects becomes "hold".
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from robot_client.ik import DLSInverseKinematics, quat_wxyz_to_xyzw, quat_xyzw_to_wxyz
from robot_client.safety import SafetyMonitor


@dataclass
class JointCommand:
    q_target: np.ndarray  # 7 joint positions to stream
    gripper: float  # DROID gripper position, 0 open .. 1 closed
    hold: bool  # True when the action was rejected and q_target is the current position
    reason: str = ""
    target_position: np.ndarray | None = None
    target_quat_xyzw: np.ndarray | None = None
    clipped_action: np.ndarray | None = None


def apply_rotation_vector(quat_xyzw: np.ndarray, rotvec: np.ndarray) -> np.ndarray:
    """exp([rotvec]) * R(quat): rotate a pose by a base-frame rotation vector."""
    dq = np.zeros(4)
    angle = float(np.linalg.norm(rotvec))
    if angle < 1e-12:
        return np.asarray(quat_xyzw, dtype=float)
    mujoco.mju_axisAngle2Quat(dq, rotvec / angle, angle)
    out = np.zeros(4)
    mujoco.mju_mulQuat(out, dq, quat_xyzw_to_wxyz(quat_xyzw))
    return quat_wxyz_to_xyzw(out)


class CartesianVelocityActionPath:
    """Maps DROID cartesian_velocity + gripper_position actions to safe joint targets."""

    def __init__(self, safety: SafetyMonitor, ik: DLSInverseKinematics | None = None):
        self.safety = safety
        self.ik = ik or DLSInverseKinematics()
        c = safety.config
        self.step_scale = np.array([c.max_translation_per_step] * 3 + [c.max_rotation_per_step] * 3)

    def hold(self, q_current: np.ndarray, gripper: float, reason: str) -> JointCommand:
        return JointCommand(np.asarray(q_current, dtype=float).copy(), gripper, True, reason)

    def __call__(self, action, q_current, ee_pos, ee_quat_xyzw, gripper_current: float) -> JointCommand:
        verdict = self.safety.check_droid_action(action)
        if not verdict.ok:
            return self.hold(q_current, gripper_current, verdict.reason)
        a = self.safety.clip_droid_action(action)
        delta = a[:6] * self.step_scale
        target_pos = np.asarray(ee_pos, dtype=float) + delta[:3]
        target_quat = apply_rotation_vector(np.asarray(ee_quat_xyzw, dtype=float), delta[3:])
        verdict = self.safety.check_target_pose(target_pos)
        if not verdict.ok:
            return self.hold(q_current, gripper_current, verdict.reason)
        sol = self.ik.solve(target_pos, target_quat, q_current, max_iterations=20,
                            max_joint_delta=self.safety.config.max_joint_delta_per_step)
        verdict = self.safety.check_joint_target(sol.q, q_current)
        if not verdict.ok:
            return self.hold(q_current, gripper_current, verdict.reason)
        return JointCommand(sol.q, float(a[6]), False, "", target_pos, target_quat, a)


class JointPositionActionPath:
    """Absolute joint targets (8-d: 7 joints + gripper), checked like any other command. Each step is
    rate-limited to the safety layer's per-step joint limit, or to `max_step_rad` where that is lower."""

    def __init__(self, safety: SafetyMonitor, max_step_rad: float | None = None):
        self.safety = safety
        lim = safety.config.max_joint_delta_per_step
        self.max_step = lim if max_step_rad is None else min(float(max_step_rad), lim)

    def __call__(self, action, q_current, ee_pos, ee_quat_xyzw, gripper_current: float) -> JointCommand:
        a = np.asarray(action, dtype=float)
        if a.shape != (8,) or not np.all(np.isfinite(a)):
            return JointCommand(np.asarray(q_current, float).copy(), gripper_current, True, f"joint_position action must be 8 finite values, got {a.shape}")
        q = np.asarray(q_current, dtype=float)
        q_target = q + np.clip(a[:7] - q, -self.max_step, self.max_step)  # rate-limit like DROID's joint velocity cap
        verdict = self.safety.check_joint_target(q_target, q)
        if not verdict.ok:
            return JointCommand(q.copy(), gripper_current, True, verdict.reason)
        return JointCommand(q_target, float(np.clip(a[7], *self.safety.config.gripper_range)), False)


class JointVelocityActionPath(JointPositionActionPath):
    """DROID joint_velocity in [-1, 1] (scaled so max |v| <= 1), 0.2 rad per step at full scale."""

    def __call__(self, action, q_current, ee_pos, ee_quat_xyzw, gripper_current: float) -> JointCommand:
        a = np.asarray(action, dtype=float)
        if a.shape != (8,) or not np.all(np.isfinite(a)):
            return JointCommand(np.asarray(q_current, float).copy(), gripper_current, True, f"joint_velocity action must be 8 finite values, got {a.shape}")
        v = a[:7] / max(1.0, float(np.max(np.abs(a[:7]))))
        target = np.concatenate([np.asarray(q_current, float) + v * self.safety.config.max_joint_delta_per_step, a[7:]])
        return super().__call__(target, q_current, ee_pos, ee_quat_xyzw, gripper_current)


ACTION_PATHS = {
    "cartesian_velocity": CartesianVelocityActionPath,
    "joint_position": JointPositionActionPath,
    "joint_velocity": JointVelocityActionPath,
}


def make_action_path(space: str, safety: SafetyMonitor):
    try:
        return ACTION_PATHS[space](safety)
    except KeyError:
        raise ValueError(f"unknown action space {space!r}; expected one of {sorted(ACTION_PATHS)}") from None
