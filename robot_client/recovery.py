"""Back to the start when stuck at the first stage. A policy whose hand has stalled for many seconds
at the task's first stage is often in a state its demos never left from: a lid that fell shut with
the hand over its bar is the view every demo ends on ("done, hold still"), and no hotter sample gets
it out (docs/results.md, session 48). The control loop then drives the arm back to the joint
positions the episode started from, gripper open, and the policy starts over from the view every
demo starts from. Later in the task the start pose is the wrong place to start over from (the
policy heads for the first stage's object again), so a return is only made while the hand has not
closed its fingers yet, or is stalled near where it first did. Proprioception only, so it behaves
the same on the Franka; the return goes through the safety layer like any other command.
"""

from __future__ import annotations

import numpy as np

from robot_client.action_path import JointCommand, JointPositionActionPath
from robot_client.safety import SafetyMonitor
from robot_client.stall import StallDetector


class ReturnToStart:
    """`begin(q_start, t)`, then `command(q, t)` each tick: a joint target at most `joint_speed_rad_s`
    from the current positions toward `q_start`, with the gripper open; None once every joint is
    within `tolerance_rad` (or after `max_s`, so a blocked return cannot hold the episode)."""

    def __init__(self, safety: SafetyMonitor, dt: float, joint_speed_rad_s: float = 0.6,
                 tolerance_rad: float = 0.02, max_s: float = 6.0):
        if joint_speed_rad_s <= 0 or tolerance_rad <= 0 or max_s <= 0:
            raise ValueError(f"joint_speed_rad_s, tolerance_rad and max_s must be > 0, got {joint_speed_rad_s}, "
                             f"{tolerance_rad}, {max_s}")
        # The joint-position action path: rate-limited (never faster than the safety layer allows) and checked.
        self.path = JointPositionActionPath(safety, max_step_rad=joint_speed_rad_s * dt)
        self.tolerance_rad, self.max_s = float(tolerance_rad), float(max_s)
        self._q_start: np.ndarray | None = None
        self._t_begin = 0.0

    @property
    def active(self) -> bool:
        return self._q_start is not None

    def begin(self, q_start, t: float) -> None:
        self._q_start = np.asarray(q_start, dtype=float).copy()
        self._t_begin = float(t)

    def command(self, q, t: float) -> JointCommand | None:
        if self._q_start is None:
            return None
        q = np.asarray(q, dtype=float)
        error = self._q_start - q
        if np.max(np.abs(error)) < self.tolerance_rad or t - self._t_begin >= self.max_s:
            self._q_start = None
            return None
        return self.path(np.append(self._q_start, 0.0), q, None, None, gripper_current=0.0)  # gripper open


class StallReturn:
    """The control loop's side: `push(t, q, ee_pos, fingers_closed)` each tick (the first q is the start),
    `due()` says a return should begin (the hand has stayed within `radius_m` for `stall_s`, fewer than
    `max_returns` so far, and, given `near_first_grasp_m`, the fingers have not closed yet or the hand is
    within that distance of where they first did), `begin(t)` starts one and `command(q, t)` drives it
    (None when the policy has the arm). On arrival its own detector and `restart_detectors` (the loop's
    short stall test) start afresh: the policy starts over as at the episode's start."""

    def __init__(self, safety: SafetyMonitor, dt: float, stall_s: float, radius_m: float, max_returns: int,
                 near_first_grasp_m: float | None = None, restart_detectors: tuple[StallDetector, ...] = ()):
        self.detector = StallDetector(stall_s, radius_m)
        self.restart_detectors = (self.detector, *restart_detectors)
        self.back = ReturnToStart(safety, dt)
        self.max_returns = int(max_returns)
        self.near_first_grasp_m = near_first_grasp_m
        self.count = 0
        self.q_start: np.ndarray | None = None
        self.first_grasp: np.ndarray | None = None  # where the fingers first closed
        self._ee_pos = np.zeros(3)

    def push(self, t: float, q, ee_pos, fingers_closed: bool = False) -> None:
        if self.q_start is None:
            self.q_start = np.asarray(q, dtype=float).copy()
        self._ee_pos = np.asarray(ee_pos, dtype=float).copy()
        if fingers_closed and self.first_grasp is None:
            self.first_grasp = self._ee_pos.copy()
        self.detector.push(t, ee_pos)

    def at_first_stage(self) -> bool:
        if self.near_first_grasp_m is None or self.first_grasp is None:
            return True
        return float(np.linalg.norm(self._ee_pos - self.first_grasp)) <= self.near_first_grasp_m

    def due(self) -> bool:
        return (not self.back.active and self.count < self.max_returns and self.detector.stalled()
                and self.at_first_stage())

    def begin(self, t: float) -> None:
        self.back.begin(self.q_start, t)
        self.count += 1

    def command(self, q, t: float) -> JointCommand | None:
        if not self.back.active:
            return None
        command = self.back.command(q, t)
        if command is None:
            for detector in self.restart_detectors:
                detector.reset()
        return command
