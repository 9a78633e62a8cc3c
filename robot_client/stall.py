"""Is the hand stuck? A policy that keeps asking for the same small motion (fingers pressed on the lid it
should go behind, a hover over a bar it does not grasp) leaves the hand within a few centimetres of
where it was for seconds. The control loop then asks for its next chunks at a higher sampling
temperature (`LoopConfig.stall_noise_scale`): at the low temperature that suits the rest of the task,
the samples keep landing in the same mode (docs/results.md, session 39). It also runs each such chunk
further (`LoopConfig.stall_execute_k`), so the way out a hotter sample finds is followed for more than
the 3 ticks a chunk gets before the next one re-plans from the stuck pose (session 40).
"""

from __future__ import annotations

from collections import deque

import numpy as np


class StallDetector:
    """`push(t, position, quat)` each tick; `stalled()`: the position has stayed within `radius_m` of the
    newest one over the last `window_s` seconds (a window shorter than that is never a stall) and, given
    `max_turn_deg`, the hand has turned less than that from its newest orientation (a hand turning in
    place for a grip is not stuck)."""

    def __init__(self, window_s: float, radius_m: float, max_turn_deg: float | None = None) -> None:
        self.window_s, self.radius_m = float(window_s), float(radius_m)
        # |<q1, q2>| >= cos(angle / 2): the same test for xyzw and wxyz quaternions, and for q and -q.
        self._min_quat_dot = None if max_turn_deg is None else float(np.cos(np.radians(max_turn_deg) / 2))
        self._samples: deque[tuple[float, np.ndarray, np.ndarray | None]] = deque()

    def push(self, t: float, position, quat=None) -> None:
        quat = None if quat is None else np.asarray(quat, dtype=float) / np.linalg.norm(quat)
        self._samples.append((float(t), np.asarray(position, dtype=float).copy(), quat))
        # Keep the newest sample at or before the window's start: it decides whether the window is covered.
        while len(self._samples) > 1 and self._samples[1][0] <= t - self.window_s + 1e-9:
            self._samples.popleft()

    def reset(self) -> None:
        """Forget every sample (the hand was moved on purpose)."""
        self._samples.clear()

    def stalled(self) -> bool:
        if not self._samples:
            return False
        t_new, newest, q_new = self._samples[-1]
        if self._samples[0][0] > t_new - self.window_s + 1e-9:
            return False
        if any(np.linalg.norm(p - newest) >= self.radius_m for _, p, _ in self._samples):
            return False
        if self._min_quat_dot is None or q_new is None:
            return True
        return all(q is None or abs(float(q @ q_new)) >= self._min_quat_dot for _, _, q in self._samples)
