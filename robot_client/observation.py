"""The last n frames per camera (resized to what the server asks for) and robot states, at the control rate."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import cv2
import numpy as np

from robot_client.cameras.base import Frame
from uwm_robot.images import resize_rgb  # noqa: F401  (re-exported: the client's resize)


@dataclass
class Observation:
    images: dict[str, np.ndarray]  # camera -> uint8 (n_obs, H, W, 3), oldest first
    capture_ts: dict[str, list[int]]  # camera -> capture timestamps (ns) of those frames
    t: float  # clock time of the newest tick (s)
    state: dict[str, np.ndarray] = field(default_factory=dict)  # key -> float (n_obs, D), same ticks


class ObservationHistory:
    def __init__(self, image_shapes: dict[str, tuple[int, int]], n_obs_steps: int = 2):
        if n_obs_steps < 1:
            raise ValueError(f"n_obs_steps must be >= 1, got {n_obs_steps}")
        self.image_shapes = dict(image_shapes)
        self.n = n_obs_steps
        self._frames: dict[str, deque] = {k: deque(maxlen=n_obs_steps) for k in image_shapes}
        self._states: deque = deque(maxlen=n_obs_steps)
        self._t = 0.0

    def reset(self) -> None:
        for d in self._frames.values():
            d.clear()
        self._states.clear()

    def push(self, frames: dict[str, Frame], t: float, state: dict | None = None) -> None:
        """One tick: a frame per camera and (optionally) the robot state read with them, key -> (D,)."""
        missing = sorted(set(self.image_shapes) - set(frames))
        if missing:
            raise KeyError(f"no frame from camera(s) {missing}; the policy needs {sorted(self.image_shapes)}")
        for name, hw in self.image_shapes.items():
            f = frames[name]
            self._frames[name].append((resize_rgb(f.color, hw), f.capture_ts))
        self._states.append({k: np.atleast_1d(np.asarray(v, dtype=np.float64)) for k, v in (state or {}).items()})
        self._t = t

    @property
    def ready(self) -> bool:
        return all(len(d) > 0 for d in self._frames.values())

    def snapshot(self) -> Observation:
        """Stacked history; right after a reset the first frame is repeated (as DROID's agent does)."""
        if not self.ready:
            raise RuntimeError("no frames yet: push() at least one tick before snapshot()")
        pad = lambda d: [d[0]] * (self.n - len(d)) + list(d)  # noqa: E731
        images, stamps = {}, {}
        for name, d in self._frames.items():
            items = pad(d)
            images[name] = np.stack([img for img, _ in items])
            stamps[name] = [int(ts) for _, ts in items]
        states = pad(self._states)
        state = {k: np.stack([s[k] for s in states]) for k in states[-1] if all(k in s for s in states)}
        return Observation(images, stamps, self._t, state)
