"""The safety layer between the policy and the arm.

Every command goes through here before it reaches the robot. A rejected command never moves the
arm: the caller holds the current joint positions instead. The e-stop latches: once tripped, the
controller is terminated and nothing moves until a person clears it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

# Franka Panda joint limits (rad) and DROID's per-step joint bound at 15 Hz.
PANDA_Q_LOWER = np.array([-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973])
PANDA_Q_UPPER = np.array([2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973])
HARD_LIMIT_SLACK = 1e-3  # rad a measured joint may sit past its stop (constraint softness, encoder noise)


@dataclass(frozen=True)
class SafetyConfig:
    # Workspace box for panda_link8 in the robot base frame (m). DROID's ±1 m box is effectively
    # off; this default keeps the flange over a table in front of the robot.
    workspace_lower: tuple[float, float, float] = (0.20, -0.55, 0.05)
    workspace_upper: tuple[float, float, float] = (0.85, 0.55, 0.75)
    max_translation_per_step: float = 0.075  # m, DROID's full-scale step at 15 Hz
    max_rotation_per_step: float = 0.15  # rad
    max_joint_delta_per_step: float = 0.2  # rad, per joint
    joint_limit_margin: float = 0.05  # rad kept from the hardware limits
    gripper_range: tuple[float, float] = (0.0, 1.0)  # DROID gripper position: 0 open, 1 closed

    @classmethod
    def from_dict(cls, data: dict, source: str = "safety config") -> "SafetyConfig":
        from uwm_robot.typed_yaml import dataclass_from_mapping

        return dataclass_from_mapping(cls, data, source)


@dataclass
class Verdict:
    ok: bool
    reason: str = ""


class EStopped(RuntimeError):
    """Raised when a command is attempted after the e-stop latched."""


@dataclass
class EStop:
    """A latch. `trip()` from any thread (a key handler, a watchdog); only `clear()` resets it."""

    _event: threading.Event = field(default_factory=threading.Event)
    reason: str = ""

    def trip(self, reason: str = "e-stop pressed") -> None:
        self.reason = reason
        self._event.set()

    @property
    def tripped(self) -> bool:
        return self._event.is_set()

    def clear(self) -> None:
        """Only a person calls this (never the control loop)."""
        self.reason = ""
        self._event.clear()


class SafetyMonitor:
    def __init__(self, config: SafetyConfig | None = None):
        self.config = config or SafetyConfig()
        c = self.config
        self.q_lower = PANDA_Q_LOWER + c.joint_limit_margin
        self.q_upper = PANDA_Q_UPPER - c.joint_limit_margin
        self.box_lower = np.asarray(c.workspace_lower, dtype=float)
        self.box_upper = np.asarray(c.workspace_upper, dtype=float)

    def check_droid_action(self, action: np.ndarray | None) -> Verdict:
        """A 7-d DROID action: 6 cartesian velocity in [-1, 1] (after clipping) + gripper position."""
        if action is None:
            return Verdict(False, "no action available (missing chunk)")
        a = np.asarray(action, dtype=float)
        if a.shape != (7,):
            return Verdict(False, f"action must have shape (7,), got {a.shape}")
        if not np.all(np.isfinite(a)):
            return Verdict(False, f"action has NaN/inf: {a}")
        return Verdict(True)

    def clip_droid_action(self, action: np.ndarray) -> np.ndarray:
        """DROID's rule: norm-clip the linear and angular parts to <= 1; gripper into its range."""
        a = np.array(action, dtype=float)
        for part in (slice(0, 3), slice(3, 6)):
            n = np.linalg.norm(a[part])
            if n > 1.0:
                a[part] /= n
        a[6] = np.clip(a[6], *self.config.gripper_range)
        return a

    def check_target_pose(self, position: np.ndarray) -> Verdict:
        p = np.asarray(position, dtype=float)
        if np.any(p < self.box_lower) or np.any(p > self.box_upper):
            return Verdict(False, f"target {np.round(p, 3).tolist()} m outside workspace box {self.box_lower.tolist()}..{self.box_upper.tolist()}")
        return Verdict(True)

    def check_joint_target(self, q_target: np.ndarray, q_current: np.ndarray) -> Verdict:
        q, q0 = np.asarray(q_target, dtype=float), np.asarray(q_current, dtype=float)
        if q.shape != (7,) or not np.all(np.isfinite(q)):
            return Verdict(False, f"joint target must be 7 finite values, got {q}")
        step = np.abs(q - q0)
        if np.any(step > self.config.max_joint_delta_per_step + 1e-9):
            j = int(np.argmax(step))
            return Verdict(False, f"joint {j + 1} step {step[j]:.3f} rad exceeds {self.config.max_joint_delta_per_step} rad per step")
        # Inside the margin band a target may stay put or move back out of it (tracking error can
        # leave the arm there; refusing every target would hold it there forever), never go deeper.
        outside = (q < np.minimum(self.q_lower, q0)) | (q > np.maximum(self.q_upper, q0))
        # Past the hardware limit itself: never, beyond the slack a joint stretched against its stop
        # rests in (MuJoCo's soft limit leaves it ~2e-6 rad past; refusing that froze the arm there).
        outside |= (q < PANDA_Q_LOWER - HARD_LIMIT_SLACK) | (q > PANDA_Q_UPPER + HARD_LIMIT_SLACK)
        if np.any(outside):
            j = int(np.argmax(outside))
            return Verdict(False, f"joint {j + 1} target {q[j]:.3f} rad outside limits [{self.q_lower[j]:.3f}, {self.q_upper[j]:.3f}]")
        return Verdict(True)

