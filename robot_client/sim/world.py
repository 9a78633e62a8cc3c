"""The MuJoCo world: model, data, lock, and the two ways time advances.

lockstep: physics advances only inside `wait_until` (the client's sleep), so runs are
          deterministic and as fast as the CPU allows.
realtime: a physics thread keeps sim time = wall time x rt_factor; `wait_until` just waits.
"""
from __future__ import annotations

import os
import threading
import time

os.environ.setdefault("MUJOCO_GL", "egl")  # must precede the first renderer; GLFW fails headless

import mujoco
import numpy as np

from robot_client.sim import panda_mjcf as panda
from robot_client.sim.arm_servo import ArmServo
from robot_client.sim.gripper_servo import GripperServo

MODES = ("lockstep", "realtime")


class SimWorld:
    def __init__(self, xml: str, mode: str = "lockstep", control_dt: float = 0.005, rt_factor: float = 1.0) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if rt_factor <= 0:
            raise ValueError(f"rt_factor must be > 0, got {rt_factor}")
        self.model = mujoco.MjModel.from_xml_string(xml)
        self.data = mujoco.MjData(self.model)
        self.mode = mode
        self.rt_factor = rt_factor
        self.lock = threading.RLock()
        self.steps_per_chunk = max(1, int(round(control_dt / self.model.opt.timestep)))
        self.control_dt = self.steps_per_chunk * self.model.opt.timestep
        self.arm_qpos_ids = np.array([self.model.joint(j).qposadr[0] for j in panda.ARM_JOINTS])
        self.arm_dof_ids = np.array([self.model.joint(j).dofadr[0] for j in panda.ARM_JOINTS])
        self.set_arm_qpos(panda.HOME_Q)
        self.arm = ArmServo(self.model, self.data)
        self.gripper = GripperServo(self.model, self.data)
        self.render_hooks: list = []  # f(model, data) before each render: moving lights etc.
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._closed = False

    # --- state ---
    @property
    def time(self) -> float:
        return float(self.data.time)

    def set_arm_qpos(self, q, finger_width: float | None = None) -> None:
        """Teleport (only for resets before a run starts)."""
        with self.lock:
            self.data.qpos[self.arm_qpos_ids] = q
            self.data.qvel[:] = 0.0
            if finger_width is not None:
                for j in panda.FINGER_JOINTS:
                    self.data.qpos[self.model.joint(j).qposadr[0]] = finger_width / 2
            mujoco.mj_forward(self.model, self.data)
            if hasattr(self, "arm"):
                self.arm.hold(self.data)
                self.gripper.reset(self.data)

    def arm_qpos(self) -> np.ndarray:
        with self.lock:
            return self.data.qpos[self.arm_qpos_ids].copy()

    # --- time ---
    def _step_chunk(self) -> None:
        self.arm.update(self.data)
        self.gripper.update(self.data, self.control_dt)
        mujoco.mj_step(self.model, self.data, nstep=self.steps_per_chunk)

    def step_to(self, t: float) -> None:
        """Advance physics in control chunks until sim time >= t (the caller must own time)."""
        with self.lock:
            while self.data.time < t - 1e-9:
                self._step_chunk()

    def wait_until(self, t: float) -> None:
        if self._closed:
            raise RuntimeError("SimWorld is closed")
        if self.mode == "lockstep":
            self.step_to(t)
            return
        if self._thread is None:
            raise RuntimeError("realtime SimWorld is not running: call start() first")
        while self.time < t - 1e-9:
            if not self._thread.is_alive():
                raise RuntimeError("realtime physics thread died")
            time.sleep(max(0.0005, min(0.01, (t - self.time) / self.rt_factor)))

    # --- realtime physics thread ---
    def start(self) -> None:
        if self.mode != "realtime" or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._realtime_loop, name="sim-physics", daemon=True)
        self._thread.start()

    def _realtime_loop(self) -> None:
        wall0, sim0 = time.monotonic(), self.time
        while not self._stop.is_set():
            target = sim0 + (time.monotonic() - wall0) * self.rt_factor
            if self.time < target:
                with self.lock:  # one chunk per lock hold so API calls interleave
                    self._step_chunk()
            else:
                time.sleep(self.control_dt / self.rt_factor / 2)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        self._closed = True

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()
