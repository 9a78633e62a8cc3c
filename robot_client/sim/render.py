"""Offscreen rendering of a SimWorld: one GL context per thread, shared by all cameras of that thread.

Each render snapshots qpos under the world lock into a private MjData and rasterises outside
the lock, so a realtime physics thread keeps running while cameras render.
"""
from __future__ import annotations

import os
import threading

os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco
import numpy as np


class SceneRenderer:
    """RGB + depth of any named camera, read in one pass (mjr_readPixels returns both)."""

    def __init__(self, world) -> None:
        self.world = world
        model = world.model
        self.max_width, self.max_height = model.vis.global_.offwidth, model.vis.global_.offheight
        self._thread = threading.get_ident()
        self._gl = mujoco.GLContext(self.max_width, self.max_height)
        self._gl.make_current()
        self._context = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_150)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._context)
        self._scene = mujoco.MjvScene(model, maxgeom=2000)
        self._option = mujoco.MjvOption()
        self._camera = mujoco.MjvCamera()
        self._camera.type = mujoco.mjtCamera.mjCAMERA_FIXED
        self._data = mujoco.MjData(model)
        extent = model.stat.extent
        self._near, self._far = model.vis.map.znear * extent, model.vis.map.zfar * extent
        self._closed = False

    def snapshot(self) -> float:
        """Copy the world's state; returns its sim time."""
        w = self.world
        with w.lock:
            self._data.qpos[:] = w.data.qpos
            self._data.mocap_pos[:] = w.data.mocap_pos
            self._data.mocap_quat[:] = w.data.mocap_quat
            self._data.time = w.data.time
        for hook in w.render_hooks:
            hook(w.model, self._data)
        mujoco.mj_kinematics(w.model, self._data)
        mujoco.mj_camlight(w.model, self._data)
        return float(self._data.time)

    def render(self, camera: str, width: int, height: int, depth: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Render the last snapshot from `camera`: (RGB uint8 HxWx3, depth in metres float32 or None)."""
        if self._closed:
            raise RuntimeError("renderer is closed")
        if threading.get_ident() != self._thread:
            raise RuntimeError("a SceneRenderer must be used by the thread that created it (GL contexts are per thread)")
        if width > self.max_width or height > self.max_height:
            raise ValueError(f"image {width}x{height} exceeds the offscreen buffer {self.max_width}x{self.max_height}")
        self._camera.fixedcamid = self.world.model.camera(camera).id
        mujoco.mjv_updateScene(self.world.model, self._data, self._option, None, self._camera,
                               mujoco.mjtCatBit.mjCAT_ALL, self._scene)
        viewport = mujoco.MjrRect(0, 0, width, height)
        mujoco.mjr_render(viewport, self._scene, self._context)
        rgb = np.empty((height, width, 3), dtype=np.uint8)
        z_buffer = np.empty((height, width), dtype=np.float32) if depth else None
        mujoco.mjr_readPixels(rgb, z_buffer, viewport, self._context)
        rgb = np.flipud(rgb)  # OpenGL rows start at the bottom
        if z_buffer is None:
            return np.ascontiguousarray(rgb), None
        # Non-linear depth buffer -> planar distance along the optical axis (the RealSense convention).
        metres = self._near / (1.0 - np.flipud(z_buffer) * (1.0 - self._near / self._far))
        return np.ascontiguousarray(rgb), metres

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._context.free()
        self._gl.free()


class RendererPool:
    """One SceneRenderer per thread for a world, reference-counted by the cameras that use it."""

    def __init__(self, world) -> None:
        self.world = world
        self._lock = threading.Lock()
        self._renderers: dict[int, SceneRenderer] = {}
        self._users: dict[int, int] = {}

    def acquire(self) -> SceneRenderer:
        tid = threading.get_ident()
        with self._lock:
            if tid not in self._renderers:
                self._renderers[tid] = SceneRenderer(self.world)
                self._users[tid] = 0
            self._users[tid] += 1
            return self._renderers[tid]

    def release(self, renderer: SceneRenderer) -> None:
        with self._lock:
            tid = renderer._thread
            self._users[tid] -= 1
            if self._users[tid] == 0:
                self._renderers.pop(tid).close()
                del self._users[tid]

    def close_all(self) -> None:
        with self._lock:
            for renderer in self._renderers.values():
                renderer.close()
            self._renderers.clear()
            self._users.clear()
