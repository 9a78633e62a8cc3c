"""Franka Hand behaviour in the sim: width ramps at the commanded speed under a force limit,
and grasps report success when the fingers stop inside the [width - eps_in, width + eps_out] window."""
from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from robot_client.sim import panda_mjcf as panda

MAX_FORCE = 70.0  # N, Franka Hand continuous force
MAX_SPEED = 0.1  # m/s
MOVE_FORCE = 20.0  # N: a Franka Hand `move` has no force argument; this is its effort
STALL_SPEED = 2e-3  # m/s: below this the fingers count as stopped
STALL_TIME = 0.05  # s the fingers must stay stopped before a command finishes
CLOSED_WIDTH = 0.002  # m: narrower than this means nothing is between the fingers


@dataclass
class GripperCommand:
    kind: str  # "goto" | "grasp"
    goal_width: float  # where the width target ramps to
    speed: float
    force: float
    grasp_width: float = 0.0
    epsilon_inner: float = -1.0
    epsilon_outer: float = -1.0
    done: bool = False
    successful: bool = True


class GripperServo:
    def __init__(self, model: mujoco.MjModel, data: mujoco.MjData) -> None:
        self.model = model
        self.actuator_id = model.actuator("act_gripper").id
        self.tendon_id = model.tendon("gripper_width").id
        self.command: GripperCommand | None = None
        self._ramp_target = self.width(data)
        self._stalled_since: float | None = None
        data.ctrl[self.actuator_id] = self._ramp_target

    def reset(self, data) -> None:
        """Forget any command and hold the current width (after a teleport)."""
        self.command = None
        self._ramp_target = self.width(data)
        data.ctrl[self.actuator_id] = self._ramp_target

    def width(self, data) -> float:
        return float(data.ten_length[self.tendon_id])

    def velocity(self, data) -> float:
        return float(data.ten_velocity[self.tendon_id])

    def start(self, data, command: GripperCommand) -> None:
        force = MOVE_FORCE if command.kind == "goto" else command.force
        self.model.actuator_forcerange[self.actuator_id] = (-force, force)
        self.command = command
        self._ramp_target = float(np.clip(self.width(data), 0.0, panda.GRIPPER_MAX_WIDTH))
        self._stalled_since = None

    def update(self, data, dt: float) -> None:
        cmd = self.command
        if cmd is None or cmd.done:
            return
        step = cmd.speed * dt
        self._ramp_target += float(np.clip(cmd.goal_width - self._ramp_target, -step, step))
        data.ctrl[self.actuator_id] = self._ramp_target
        ramp_finished = abs(self._ramp_target - cmd.goal_width) < 1e-9
        stopped = abs(self.velocity(data)) < STALL_SPEED
        # Blocked by an object before the ramp ends also finishes a command, as on the real hand.
        blocked = stopped and abs(self.width(data) - self._ramp_target) > 0.004
        if stopped and (ramp_finished or blocked):
            if self._stalled_since is None:
                self._stalled_since = data.time
            if data.time - self._stalled_since >= STALL_TIME:
                cmd.done = True
                cmd.successful = self._command_successful(data, cmd)
        else:
            self._stalled_since = None

    def _command_successful(self, data, cmd: GripperCommand) -> bool:
        if cmd.kind == "goto":
            return abs(self.width(data) - cmd.goal_width) < 0.005
        return self.in_grasp_window(data, cmd)

    def in_grasp_window(self, data, cmd: GripperCommand) -> bool:
        width = self.width(data)
        if width < CLOSED_WIDTH:
            return False  # closed on nothing
        lower = cmd.grasp_width - cmd.epsilon_inner if cmd.epsilon_inner >= 0 else -np.inf
        upper = cmd.grasp_width + cmd.epsilon_outer if cmd.epsilon_outer >= 0 else np.inf
        return bool(lower <= width <= upper)

    def is_moving(self, data) -> bool:
        return self.command is not None and not self.command.done

    def is_grasped(self, data) -> bool:
        cmd = self.command
        return bool(cmd is not None and cmd.kind == "grasp" and cmd.done and self.in_grasp_window(data, cmd))
