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


class FirstRelease:
    """Where the first stage ended: the joint positions just after the fingers first let go of something
    they held (a lid's bar at the top of its pull), once the hand has moved `rise_m` from where they did
    (or `rise_s` later). `push(t, q, ee_pos, gripper_width, gripper_cmd)` each tick; `anchor` is None until
    then; `window_open` while the fingers are open again and nothing has been held since (the second stage,
    e.g. the way to the cup). A hold is the fingers commanded closed and resting at least `min_width_m`
    apart for `hold_ticks` ticks (on an object, not closing on air)."""

    def __init__(self, min_width_m: float = 0.01, hold_ticks: int = 8, rise_m: float = 0.05, rise_s: float = 1.5):
        self.min_width_m, self.hold_ticks, self.rise_m, self.rise_s = min_width_m, hold_ticks, rise_m, rise_s
        self.holds = 0
        self.anchor: np.ndarray | None = None
        self._steady = 0
        self._last_width: float | None = None
        self._released_at: tuple[float, np.ndarray] | None = None
        self._open = False

    def push(self, t: float, q, ee_pos, gripper_width: float, gripper_cmd: float | None) -> None:
        closed = gripper_cmd is not None and gripper_cmd >= 0.5
        steady = self._last_width is not None and abs(gripper_width - self._last_width) < 1e-3
        self._last_width = gripper_width
        self._steady = self._steady + 1 if closed and steady and gripper_width >= self.min_width_m else 0
        if self._steady == self.hold_ticks:
            self.holds += 1
        self._open = not closed
        if self.holds == 1 and self._released_at is None and not closed:
            self._released_at = (float(t), np.asarray(ee_pos, dtype=float).copy())
        if self._released_at is not None and self.anchor is None:
            t_rel, at = self._released_at
            if np.linalg.norm(np.asarray(ee_pos, dtype=float) - at) >= self.rise_m or t - t_rel >= self.rise_s:
                self.anchor = np.asarray(q, dtype=float).copy()

    @property
    def window_open(self) -> bool:
        return self.anchor is not None and self.holds == 1 and self._open


class StallReturn:
    """The control loop's side: `push(t, q, ee_pos, gripper_width, gripper_cmd)` each tick (the first q is
    the start), `due()` says a return should begin and `begin(t)` starts it, `command(q, t)` drives it
    (None when the policy has the arm). A return is due when the hand has stayed within `radius_m` for
    `stall_s`, and either
    - at the first stage, back to the start: the fingers have not closed yet (gripper width at most
      `max_width / 2`) or, given `near_first_grasp_m`, the hand is within that distance of where they
      first did; or
    - given `after_release`, at the second stage, back to where the first stage ended (`FirstRelease`):
      the fingers open, nothing held since the first release, and the hand away from the first grasp.
    Each kind at most `max_returns` times. On arrival its own detector and `restart_detectors` (the loop's
    short stall test) start afresh: the policy starts over as from that stage's start."""

    def __init__(self, safety: SafetyMonitor, dt: float, stall_s: float, radius_m: float, max_returns: int,
                 near_first_grasp_m: float | None = None, restart_detectors: tuple[StallDetector, ...] = (),
                 max_width: float = 0.08, after_release: bool = False):
        self.detector = StallDetector(stall_s, radius_m)
        self.restart_detectors = (self.detector, *restart_detectors)
        self.back = ReturnToStart(safety, dt)
        self.max_returns = int(max_returns)
        self.near_first_grasp_m = near_first_grasp_m
        self.max_width = float(max_width)
        self.release = FirstRelease() if after_release else None
        self.count = 0  # returns to the start
        self.count_release = 0  # returns to where the first stage ended
        self.q_start: np.ndarray | None = None
        self.first_grasp: np.ndarray | None = None  # where the fingers first closed
        self._ee_pos = np.zeros(3)

    def push(self, t: float, q, ee_pos, gripper_width: float, gripper_cmd: float | None = None) -> None:
        if self.q_start is None:
            self.q_start = np.asarray(q, dtype=float).copy()
        self._ee_pos = np.asarray(ee_pos, dtype=float).copy()
        if gripper_width <= self.max_width / 2 and self.first_grasp is None:
            self.first_grasp = self._ee_pos.copy()
        if self.release is not None:
            self.release.push(t, q, ee_pos, gripper_width, gripper_cmd)
        self.detector.push(t, ee_pos)

    def at_first_stage(self) -> bool:
        if self.near_first_grasp_m is None or self.first_grasp is None:
            return True
        return float(np.linalg.norm(self._ee_pos - self.first_grasp)) <= self.near_first_grasp_m

    def _target(self) -> tuple[str, np.ndarray] | None:
        """Where a return due now goes: ("start", q) or ("release", q); None when none is due."""
        if self.back.active or not self.detector.stalled():
            return None
        if self.at_first_stage():
            return ("start", self.q_start) if self.count < self.max_returns else None
        if self.release is not None and self.release.window_open and self.count_release < self.max_returns:
            return "release", self.release.anchor
        return None

    def due(self) -> str | None:
        """"start" or "release" when a return is due, else None."""
        target = self._target()
        return None if target is None else target[0]

    def begin(self, t: float) -> None:
        kind, q = self._target()
        self.back.begin(q, t)
        if kind == "start":
            self.count += 1
        else:
            self.count_release += 1

    def command(self, q, t: float) -> JointCommand | None:
        if not self.back.active:
            return None
        command = self.back.command(q, t)
        if command is None:
            for detector in self.restart_detectors:
                detector.reset()
        return command
