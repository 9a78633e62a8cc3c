"""After the fingers let go of something they held, the hand rises clear of it before moving sideways.

A policy that opens the fingers and heads straight for its next target drags along whatever still sits
between them: in the rice cooker, a lid let go of at its stop was taken back down by the bar between the
open fingers (docs/results.md, session 57). The demos' expert rises 8 cm first; this holds the policy's
sideways motion and turns until the hand has risen `clearance_m` above where it let go. Only a release of
something the hand moved counts: the policy's gripper command flickers shut and open for a tick or two many
times a trial (over the cup, at the lid close), and lifting after each of those interrupts it.
"""

from __future__ import annotations

import numpy as np

CLOSING = 0.5  # a DROID gripper action at or above this closes the fingers
HELD_WIDTH_M = 0.005  # fingers commanded shut but stopped wider than this were holding something
RISE = 0.3  # DROID z velocity of the lift (0.3 x 7.5 cm per tick at 15 Hz: about the expert's 0.3 m/s)
OPENED_M = 0.015  # the fingers have opened this much past the held width: the rise may start
CARRIED_M = 0.05  # the hand moved this far while the fingers were shut: it pulled or carried what it held


class ReleaseLift:
    """Filters the policy's actions. From the release of something held and moved until the hand is
    `clearance_m` higher (or `max_s` has passed, or the policy closes the fingers again), x, y and the turn
    are held at zero, and z rises at `RISE` at least once the fingers have opened. At most `max_lifts` times
    an episode (None: no limit); 1 lifts off the lid's bar only, not off the cup let go of in the pot."""

    def __init__(self, clearance_m: float, max_s: float, max_lifts: int | None = None):
        if clearance_m <= 0 or max_s <= 0 or (max_lifts is not None and max_lifts < 1):
            raise ValueError(f"release lift needs clearance_m > 0, max_s > 0 and max_lifts >= 1 or None, got "
                             f"{clearance_m} m, {max_s} s and {max_lifts}")
        self.clearance_m, self.max_s = clearance_m, max_s
        self.goal_z: float | None = None  # set while lifting
        self.deadline = self.release_width = 0.0
        self.was_closing = False
        self.closed_at: np.ndarray | None = None  # where the fingers were last told to shut
        self.lifts = 0
        self.max_lifts = max_lifts  # None: after every release of something moved

    @property
    def lifting(self) -> bool:
        return self.goal_z is not None

    def filter(self, action: np.ndarray, ee_pos: np.ndarray, width: float, t: float) -> np.ndarray:
        a = np.array(action, dtype=float)
        closing = a[6] >= CLOSING
        if closing and not self.was_closing:
            self.closed_at = np.array(ee_pos, dtype=float)
        if (not self.lifting and self.lifts != self.max_lifts and self.was_closing and not closing
                and width > HELD_WIDTH_M
                and np.linalg.norm(np.asarray(ee_pos) - self.closed_at) >= CARRIED_M):
            self.goal_z, self.deadline, self.release_width = float(ee_pos[2]) + self.clearance_m, t + self.max_s, width
            self.lifts += 1
        self.was_closing = closing
        if self.lifting and (closing or ee_pos[2] >= self.goal_z or t > self.deadline):
            self.goal_z = None
        if self.lifting:
            a[[0, 1, 3, 4, 5]] = 0.0
            if width >= self.release_width + OPENED_M:
                a[2] = max(a[2], RISE)
        return a
