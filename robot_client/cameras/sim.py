"""RealSense stand-in: a named MuJoCo camera of a SimWorld behind the Camera interface."""
from __future__ import annotations

import threading

import numpy as np

from robot_client.cameras.base import Camera, CameraIntrinsics, Frame
from robot_client.sim.clock import Clock, SimClock
from robot_client.sim.render import RendererPool

DEPTH_SCALE_M = 0.001  # uint16 depth unit, as RealSense's default depth_scale


class SimCamera(Camera):
    """Renders on the thread that calls read() (GL contexts are per thread); stop() from that thread."""

    def __init__(self, world, pool: RendererPool, name: str, width: int = 128, height: int = 128,
                 depth: bool = True, clock: Clock | None = None, serial: str | None = None) -> None:
        try:
            world.model.camera(name)
        except KeyError:
            names = [world.model.camera(i).name for i in range(world.model.ncam)]
            raise ValueError(f"no camera {name!r} in the scene; cameras: {names}") from None
        if width <= 0 or height <= 0:
            raise ValueError(f"image size must be positive, got {width}x{height}")
        self.world, self.pool, self.name = world, pool, name
        self.width, self.height, self.depth = int(width), int(height), bool(depth)
        self.clock = clock or SimClock(world)
        self.serial = serial or f"sim-{name}"
        self._renderer = None
        self._lock = threading.Lock()

    @property
    def intrinsics(self) -> CameraIntrinsics:
        fovy = np.deg2rad(self.world.model.camera(self.name).fovy[0])
        focal = 0.5 * self.height / np.tan(fovy / 2)
        return CameraIntrinsics(self.width, self.height, focal, focal, (self.width - 1) / 2, (self.height - 1) / 2)

    def start(self) -> None:
        """Nothing to open: the GL context is made by the first read(), in the reading thread."""

    def read(self) -> Frame:
        if self._renderer is None:
            self._renderer = self.pool.acquire()
        renderer = self._renderer
        capture_time = renderer.snapshot()
        color, metres = renderer.render(self.name, self.width, self.height, self.depth)
        depth = None
        if metres is not None:
            depth = np.clip(np.round(metres / DEPTH_SCALE_M), 0, 65535).astype(np.uint16)
        return Frame(color, depth, int(round(capture_time * 1e9)), self.clock.now_ns(), self.serial)

    def stop(self) -> None:
        if self._renderer is not None:
            self.pool.release(self._renderer)
            self._renderer = None
