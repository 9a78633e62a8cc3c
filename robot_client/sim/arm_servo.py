"""Low-level arm control inside the sim: what the Polymetis server's 1 kHz controllers do.

The joint PD itself is MuJoCo's <position kp kv> actuators (no Python per physics step);
this class only moves their targets/gains every control chunk and adds the min-jerk
feed-forward that torchcontrol's JointTrajectoryExecutor adds.
"""
from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from robot_client.sim import panda_mjcf as panda


def min_jerk(q_start: np.ndarray, q_goal: np.ndarray, duration: float, t: float):
    """Position, velocity, acceleration of a min-jerk profile at time t (clamped to [0, duration])."""
    tau = float(np.clip(t / duration, 0.0, 1.0)) if duration > 0 else 1.0
    delta = q_goal - q_start
    s = 10 * tau**3 - 15 * tau**4 + 6 * tau**5
    ds = (30 * tau**2 - 60 * tau**3 + 30 * tau**4) / duration if duration > 0 else 0.0
    dds = (60 * tau - 180 * tau**2 + 120 * tau**3) / duration**2 if duration > 0 else 0.0
    return q_start + s * delta, ds * delta, dds * delta


@dataclass
class Trajectory:
    q_start: np.ndarray
    q_goal: np.ndarray
    t_start: float
    duration: float

    def done(self, t: float) -> bool:
        return t >= self.t_start + self.duration


class ArmServo:
    """Modes: 'hold' (server default controller), 'trajectory' (blocking move), 'joint_impedance',
    'cartesian_impedance' (hybrid: joint PD whose gains include diag(J^T Kx J), like DROID's controller)."""

    def __init__(self, model: mujoco.MjModel, data: mujoco.MjData) -> None:
        self.model = model
        self.qpos_ids = np.array([model.joint(j).qposadr[0] for j in panda.ARM_JOINTS])
        self.dof_ids = np.array([model.joint(j).dofadr[0] for j in panda.ARM_JOINTS])
        self.actuator_ids = np.array([model.actuator(f"act_{j}").id for j in panda.ARM_JOINTS])
        self.link8_id = model.body("panda_link8").id
        self.mode = "hold"
        self.trajectory: Trajectory | None = None
        self.kq = panda.DEFAULT_KQ.copy()
        self.kqd = panda.DEFAULT_KQD.copy()
        self.kx = panda.DEFAULT_KX.copy()
        self.kxd = panda.DEFAULT_KXD.copy()
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))
        self._accel = np.zeros(model.nv)
        self._inertial_force = np.zeros(model.nv)
        self.hold(data)

    # --- mode changes (called under the world lock) ---
    def hold(self, data: mujoco.MjData) -> None:
        self.mode = "hold"
        self.trajectory = None
        self.set_gains(panda.DEFAULT_KQ, panda.DEFAULT_KQD)
        self.set_target(data, data.qpos[self.qpos_ids])
        data.qfrc_applied[self.dof_ids] = 0.0

    def start_trajectory(self, data, q_goal, duration, kq, kqd) -> None:
        self.mode = "trajectory"
        self.set_gains(kq, kqd)
        self.trajectory = Trajectory(data.qpos[self.qpos_ids].copy(), np.asarray(q_goal, float), data.time, duration)

    def start_impedance(self, data, kind: str, kq, kqd, kx=None, kxd=None) -> None:
        self.mode = kind
        self.trajectory = None
        self.kq, self.kqd = np.asarray(kq, float), np.asarray(kqd, float)
        if kx is not None:
            self.kx, self.kxd = np.asarray(kx, float), np.asarray(kxd, float)
        self.set_gains(self.kq, self.kqd)
        self.set_target(data, data.qpos[self.qpos_ids])
        data.qfrc_applied[self.dof_ids] = 0.0

    # --- low level ---
    def set_gains(self, kq, kqd) -> None:
        kq, kqd = np.asarray(kq, float), np.asarray(kqd, float)
        self.model.actuator_gainprm[self.actuator_ids, 0] = kq
        self.model.actuator_biasprm[self.actuator_ids, 1] = -kq
        self.model.actuator_biasprm[self.actuator_ids, 2] = -kqd

    def set_target(self, data, q) -> None:
        data.ctrl[self.actuator_ids] = np.clip(q, panda.JOINT_LOWER, panda.JOINT_UPPER)

    def target(self, data) -> np.ndarray:
        return data.ctrl[self.actuator_ids].copy()

    def update(self, data: mujoco.MjData) -> None:
        """Once per control chunk: advance the trajectory setpoint, refresh hybrid gains."""
        if self.mode == "trajectory" and self.trajectory is not None:
            traj = self.trajectory
            q, qd, qdd = min_jerk(traj.q_start, traj.q_goal, traj.duration, data.time - traj.t_start)
            self.set_target(data, q)
            self._accel[:] = 0.0
            self._accel[self.dof_ids] = qdd
            mujoco.mj_mulM(self.model, data, self._inertial_force, self._accel)  # M @ qdd_des
            damping = self.model.dof_damping[self.dof_ids]
            data.qfrc_applied[self.dof_ids] = (self.kqd_current() + damping) * qd + self._inertial_force[self.dof_ids]
            if traj.done(data.time):
                # JointTrajectoryExecutor ends: the server falls back to holding the goal.
                data.qfrc_applied[self.dof_ids] = 0.0
                self.mode = "hold"
                self.trajectory = None
                self.set_gains(panda.DEFAULT_KQ, panda.DEFAULT_KQD)
                self.set_target(data, traj.q_goal)
        elif self.mode == "cartesian_impedance":
            mujoco.mj_jacBody(self.model, data, self._jacp, self._jacr, self.link8_id)
            jac = np.vstack([self._jacp, self._jacr])[:, self.dof_ids]
            kq = self.kq + np.einsum("ij,i,ij->j", jac, self.kx, jac)
            kqd = self.kqd + np.einsum("ij,i,ij->j", jac, self.kxd, jac)
            self.set_gains(kq, kqd)

    def kqd_current(self) -> np.ndarray:
        return -self.model.actuator_biasprm[self.actuator_ids, 2]
