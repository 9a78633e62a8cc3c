"""Is the hand stuck? A policy that keeps asking for the same small motion (fingers pressed on the lid it
should go behind, a hover over a bar it does not grasp) leaves the hand within a few centimetres of
where it was for seconds. The control loop then asks for its next chunks at a higher sampling
temperature (`LoopConfig.stall_noise_scale`): at the low temperature that suits the rest of the task,
the samples keep landing in the same mode (docs/results.md, session 39).
"""

from __future__ import annotations

from collections import deque

import numpy as np


class StallDetector:
    """`push(t, position)` each tick; `stalled()`: the position has stayed within `radius_m` of the
    newest one over the last `window_s` seconds (a window shorter than that is never a stall)."""

    def __init__(self, window_s: float, radius_m: float) -> None:
        self.window_s, self.radius_m = float(window_s), float(radius_m)
        self._samples: deque[tuple[float, np.ndarray]] = deque()

    def push(self, t: float, position) -> None:
        self._samples.append((float(t), np.asarray(position, dtype=float).copy()))
        # Keep the newest sample at or before the window's start: it decides whether the window is covered.
        while len(self._samples) > 1 and self._samples[1][0] <= t - self.window_s + 1e-9:
            self._samples.popleft()

    def stalled(self) -> bool:
        if not self._samples:
            return False
        t_new, newest = self._samples[-1]
        if self._samples[0][0] > t_new - self.window_s + 1e-9:
            return False
        return all(np.linalg.norm(p - newest) < self.radius_m for _, p in self._samples)
