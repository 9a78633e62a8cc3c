"""The last n frames per camera at the control rate, resized to what the server asks for."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np

from robot_client.cameras.base import Frame
from uwm_robot.images import resize_rgb  # noqa: F401  (re-exported: the client's resize)


@dataclass
class Observation:
    images: dict[str, np.ndarray]  # camera -> uint8 (n_obs, H, W, 3), oldest first
    capture_ts: dict[str, list[int]]  # camera -> capture timestamps (ns) of those frames
    t: float  # clock time of the newest tick (s)


class ObservationHistory:
    def __init__(self, image_shapes: dict[str, tuple[int, int]], n_obs_steps: int = 2):
        if n_obs_steps < 1:
            raise ValueError(f"n_obs_steps must be >= 1, got {n_obs_steps}")
        self.image_shapes = dict(image_shapes)
        self.n = n_obs_steps
        self._frames: dict[str, deque] = {k: deque(maxlen=n_obs_steps) for k in image_shapes}
        self._t = 0.0

    def reset(self) -> None:
        for d in self._frames.values():
            d.clear()

    def push(self, frames: dict[str, Frame], t: float) -> None:
        missing = sorted(set(self.image_shapes) - set(frames))
        if missing:
            raise KeyError(f"no frame from camera(s) {missing}; the policy needs {sorted(self.image_shapes)}")
        for name, hw in self.image_shapes.items():
            f = frames[name]
            self._frames[name].append((resize_rgb(f.color, hw), f.capture_ts))
        self._t = t

    @property
    def ready(self) -> bool:
        return all(len(d) > 0 for d in self._frames.values())

    def snapshot(self) -> Observation:
        """Stacked history; right after a reset the first frame is repeated (as DROID's agent does)."""
        if not self.ready:
            raise RuntimeError("no frames yet: push() at least one tick before snapshot()")
        images, stamps = {}, {}
        for name, d in self._frames.items():
            items = [d[0]] * (self.n - len(d)) + list(d)
            images[name] = np.stack([img for img, _ in items])
            stamps[name] = [int(ts) for _, ts in items]
        return Observation(images, stamps, self._t)
