"""The episode's first grasp ends a few millimetres deeper than the policy put it.

A policy that closes the fingers with their tips a few millimetres above the lid's bar holds the bar by its
upper edge, and the pull slips it out (docs/results.md, session 57: 17 of 36 such pulls slipped, 3 of 231
deeper ones). The demos' expert closes with the fingertip centre on the bar's axis. For the first ticks of a
close given to open fingers, this adds a downward velocity, so the fingers shut `depth_m` lower than the
policy's own motion would have them. Only until the fingers have first held something: later closes (over
the cup, on the lid when closing it) are left to the policy, and sinking there cost trials (session 58).
"""

from __future__ import annotations

import numpy as np

from robot_client.release_lift import CLOSING

OPEN_WIDTH_M = 0.03  # fingers wider than this when told to shut were not holding anything yet
EMPTY_WIDTH_M = 0.005  # fingers shut narrower than this hold nothing
STILL_M = 0.0005  # width change per tick below which the fingers have stopped
HELD_TICKS = 10  # shut, still and not empty this long: the first grasp holds
SINK_TICKS = 3  # the sink is spread over the close's first ticks, before the fingers reach the object


class GraspSink:
    """Filters the policy's actions: z velocity at most -depth_m / SINK_TICKS per tick for the first
    SINK_TICKS ticks of each close given to open fingers, until the fingers have first held something."""

    def __init__(self, depth_m: float, step_m: float):
        """`step_m`: metres a DROID velocity of 1 moves per tick (the safety layer's max_translation_per_step)."""
        if depth_m <= 0:
            raise ValueError(f"grasp sink needs depth_m > 0, got {depth_m} m")
        self.down = -depth_m / SINK_TICKS / step_m
        self.left = 0  # ticks of the current sink still to run
        self.was_closing = False
        self.last_width: float | None = None
        self.held_ticks = 0
        self.sinks = 0

    @property
    def done(self) -> bool:
        return self.held_ticks >= HELD_TICKS

    def filter(self, action: np.ndarray, width: float) -> np.ndarray:
        a = np.array(action, dtype=float)
        closing = a[6] >= CLOSING
        still = self.last_width is not None and abs(width - self.last_width) < STILL_M
        self.last_width = width
        if not self.done:
            self.held_ticks = self.held_ticks + 1 if closing and still and width > EMPTY_WIDTH_M else 0
        if closing and not self.was_closing and width >= OPEN_WIDTH_M and not self.done:
            self.left = SINK_TICKS
            self.sinks += 1
        if not closing:
            self.left = 0  # the policy let go again: a flick of the fingers, not a grasp
        self.was_closing = closing
        if self.left > 0:
            a[2] = min(a[2], self.down)
            self.left -= 1
        return a
