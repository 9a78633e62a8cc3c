"""Polymetis `RobotInterface` / `GripperInterface` stand-ins answered by a SimWorld.

Same method and argument names, torch return types (quaternions xyzw) and failure
behaviour as polymetis (facebookresearch/fairo), so code written against the real
NUC runs unchanged on the sim.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from robot_client.ik import DLSInverseKinematics, PandaKinematics, check_vector
from robot_client.sim import panda_mjcf as panda
from robot_client.sim.gripper_servo import MAX_FORCE, MAX_SPEED, GripperCommand
from robot_client.sim.world import SimWorld

log = logging.getLogger(__name__)

try:  # code written for the real robot catches grpc.RpcError: make our error one of those when grpc exists
    import grpc

    _RpcBase: type = grpc.RpcError
except ImportError:  # pragma: no cover - depends on the environment
    _RpcBase = RuntimeError


class SimRpcError(_RpcBase):
    """What the Polymetis server answers with when a request is invalid in its current state."""

    def __init__(self, details: str) -> None:
        super().__init__(f"POLYMETIS SERVER ERROR --\n{details}")
        self._details = details

    def details(self) -> str:
        return self._details


@dataclass
class Timestamp:
    """google.protobuf.Timestamp look-alike."""

    seconds: int
    nanos: int

    @classmethod
    def from_seconds(cls, t: float) -> "Timestamp":
        ns = int(round(t * 1e9))
        return cls(ns // 1_000_000_000, ns % 1_000_000_000)

    def ToNanoseconds(self) -> int:
        return self.seconds * 1_000_000_000 + self.nanos

    def ToSeconds(self) -> float:
        return self.ToNanoseconds() / 1e9


@dataclass
class RobotState:
    """Fields of polymetis_pb2.RobotState (repeated fields as lists of float)."""

    timestamp: Timestamp
    joint_positions: list
    joint_velocities: list
    prev_joint_torques_computed: list
    prev_joint_torques_computed_safened: list
    motor_torques_measured: list
    motor_torques_external: list
    motor_torques_desired: list
    prev_controller_latency_ms: float = 0.0
    prev_command_successful: bool = True
    error_code: int = 0

    @property
    def joint_torques_computed(self) -> list:
        return self.prev_joint_torques_computed


@dataclass
class GripperState:
    """Fields of polymetis_pb2.GripperState, plus max_width for convenience."""

    timestamp: Timestamp
    width: float
    is_grasped: bool
    is_moving: bool
    prev_command_successful: bool
    error_code: int = 0
    max_width: float = panda.GRIPPER_MAX_WIDTH


@dataclass
class RobotMetadata:
    ee_link_name: str = "panda_link8"
    hz: int = 1000
    rest_pose: list = field(default_factory=lambda: panda.HOME_Q.tolist())
    default_Kq: list = field(default_factory=lambda: panda.DEFAULT_KQ.tolist())
    default_Kqd: list = field(default_factory=lambda: panda.DEFAULT_KQD.tolist())
    default_Kx: list = field(default_factory=lambda: panda.DEFAULT_KX.tolist())
    default_Kxd: list = field(default_factory=lambda: panda.DEFAULT_KXD.tolist())


@dataclass
class GripperMetadata:
    max_width: float = panda.GRIPPER_MAX_WIDTH


def _as_array(name: str, value, size: int) -> np.ndarray:
    if value is None:
        raise ValueError(f"{name} is required")
    return check_vector(name, value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value, size)


def _gains(name: str, value, default: np.ndarray) -> np.ndarray:
    if value is None:
        return default.copy()
    arr = _as_array(name, value, len(default))
    if np.any(arr < 0):
        raise ValueError(f"{name} must be >= 0, got {arr.tolist()}")
    return arr


class SimRobotInterface:
    """polymetis.RobotInterface over a SimWorld (one arm, ee link panda_link8)."""

    CONTROLLERS = ("JointTrajectoryExecutor", "JointImpedanceControl", "HybridJointImpedanceControl")

    def __init__(self, world: SimWorld, time_to_go_default: float = 1.0, use_grav_comp: bool = True) -> None:
        self.world = world
        self.metadata = RobotMetadata()
        self.robot_model = PandaKinematics()
        self._ik = DLSInverseKinematics(PandaKinematics())
        self.home_pose = torch.tensor(panda.HOME_Q, dtype=torch.float32)
        self.Kq_default = torch.tensor(panda.DEFAULT_KQ, dtype=torch.float32)
        self.Kqd_default = torch.tensor(panda.DEFAULT_KQD, dtype=torch.float32)
        self.Kx_default = torch.tensor(panda.DEFAULT_KX, dtype=torch.float32)
        self.Kxd_default = torch.tensor(panda.DEFAULT_KXD, dtype=torch.float32)
        self.hz = self.metadata.hz
        self.time_to_go_default = time_to_go_default
        self.use_grav_comp = use_grav_comp
        self._error_code = 0
        self._prev_command_successful = True

    # --- getters ---
    def get_robot_state(self) -> RobotState:
        w = self.world
        with w.lock:
            d = w.data
            ids = w.arm_dof_ids
            torques = (d.actuator_force[w.arm.actuator_ids] + d.qfrc_applied[ids]).tolist()
            return RobotState(
                timestamp=Timestamp.from_seconds(d.time),
                joint_positions=d.qpos[w.arm_qpos_ids].tolist(),
                joint_velocities=d.qvel[ids].tolist(),
                prev_joint_torques_computed=torques,
                prev_joint_torques_computed_safened=torques,
                motor_torques_measured=torques,
                motor_torques_external=(-d.qfrc_constraint[ids]).tolist(),
                motor_torques_desired=torques,
                prev_command_successful=self._prev_command_successful,
                error_code=self._error_code,
            )

    def get_joint_positions(self) -> torch.Tensor:
        return torch.tensor(self.get_robot_state().joint_positions, dtype=torch.float32)

    def get_joint_velocities(self) -> torch.Tensor:
        return torch.tensor(self.get_robot_state().joint_velocities, dtype=torch.float32)

    def get_ee_pose(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(position [3], quaternion xyzw [4]) of panda_link8 by FK of the current joint positions."""
        pos, quat = self.robot_model.forward_kinematics(self.world.arm_qpos())
        return torch.tensor(pos, dtype=torch.float32), torch.tensor(quat, dtype=torch.float32)

    def set_home_pose(self, home_pose) -> None:
        self.home_pose = torch.tensor(_as_array("home_pose", home_pose, 7), dtype=torch.float32)

    # --- blocking moves ---
    def _adaptive_time_to_go(self, joint_displacement: np.ndarray) -> float:
        time_to_go = float(np.max(np.abs(joint_displacement) / panda.JOINT_VELOCITY_LIMITS * 8.0))
        return max(time_to_go, self.time_to_go_default)

    def move_to_joint_positions(self, positions, time_to_go: float | None = None, delta: bool = False,
                                Kq=None, Kqd=None, **kwargs) -> list[RobotState]:
        """Min-jerk move that blocks (in sim time) until done; returns the states logged on the way."""
        q_goal = _as_array("positions", positions, 7)
        q_now = self.world.arm_qpos()
        if delta:
            q_goal = q_goal + q_now
        if np.any(q_goal < panda.JOINT_LOWER) or np.any(q_goal > panda.JOINT_UPPER):
            raise ValueError(
                f"positions {np.round(q_goal, 4).tolist()} outside joint limits "
                f"[{panda.JOINT_LOWER.tolist()}, {panda.JOINT_UPPER.tolist()}]"
            )
        if time_to_go is None:
            time_to_go = self._adaptive_time_to_go(q_goal - q_now)
        elif not time_to_go > 0:
            raise ValueError(f"time_to_go must be > 0 s, got {time_to_go}")
        kq = _gains("Kq", Kq, panda.DEFAULT_KQ)
        kqd = _gains("Kqd", Kqd, panda.DEFAULT_KQD)
        with self.world.lock:
            self.world.arm.start_trajectory(self.world.data, q_goal, time_to_go, kq, kqd)
            self._prev_command_successful = True
        states = []
        t_end = self.world.time + time_to_go
        log_dt = 0.05  # a 20 Hz log is enough to look at; the real one is 1 kHz
        while self.world.time < t_end - 1e-9:
            self.world.wait_until(min(t_end, self.world.time + log_dt))
            states.append(self.get_robot_state())
            if self.world.arm.mode != "trajectory":
                break  # killed or replaced
        if self.world.arm.mode == "trajectory":
            self.world.wait_until(self.world.time + self.world.control_dt)  # executor ends on the next tick
        return states

    def go_home(self, *args, **kwargs) -> list[RobotState]:
        return self.move_to_joint_positions(self.home_pose, *args, delta=False, **kwargs)

    def move_to_ee_pose(self, position, orientation=None, time_to_go: float | None = None, delta: bool = False,
                        Kx=None, Kxd=None, **kwargs) -> list[RobotState]:
        """IK to a joint goal, then a joint-space min-jerk move (the sim's op-space approximation)."""
        pos_now, quat_now = self.get_ee_pose()
        target = _as_array("position", position, 3)
        if delta:
            target = target + pos_now.numpy()
        quat = quat_now.numpy() if orientation is None else _as_array("orientation", orientation, 4)
        q, success = self.solve_inverse_kinematics(target, quat, self.get_joint_positions())
        if not success:
            log.warning("move_to_ee_pose: IK did not converge; not moving")
            return []
        return self.move_to_joint_positions(q, time_to_go=time_to_go)

    # --- streaming controllers ---
    def start_joint_impedance(self, Kq=None, Kqd=None, adaptive: bool = True, **kwargs) -> None:
        kq = _gains("Kq", Kq, panda.DEFAULT_KQ)
        kqd = _gains("Kqd", Kqd, panda.DEFAULT_KQD)
        with self.world.lock:
            kind = "cartesian_impedance" if adaptive else "joint_impedance"
            # adaptive=True is HybridJointImpedanceControl with the default Kx: stiffer along the task
            self.world.arm.start_impedance(self.world.data, kind, kq, kqd, panda.DEFAULT_KX, panda.DEFAULT_KXD)

    def start_cartesian_impedance(self, Kx=None, Kxd=None, **kwargs) -> None:
        kx = _gains("Kx", Kx, panda.DEFAULT_KX)
        kxd = _gains("Kxd", Kxd, panda.DEFAULT_KXD)
        with self.world.lock:
            self.world.arm.start_impedance(
                self.world.data, "cartesian_impedance", panda.DEFAULT_KQ, panda.DEFAULT_KQD, kx, kxd)

    def is_running_policy(self) -> bool:
        return self.world.arm.mode != "hold"

    def _require_streaming_controller(self, what: str) -> None:
        if self.world.arm.mode not in ("joint_impedance", "cartesian_impedance"):
            raise SimRpcError(
                f"{what}: no controller that accepts updates is running (current: {self.world.arm.mode}); "
                "use 'start_joint_impedance' or 'start_cartesian_impedance' first")

    def update_desired_joint_positions(self, positions) -> int:
        q = _as_array("positions", positions, 7)
        with self.world.lock:
            self._require_streaming_controller("update_desired_joint_positions")
            # The real safety layer keeps targets inside the joint limits.
            self.world.arm.set_target(self.world.data, q)
        return 0

    def update_desired_ee_pose(self, position=None, orientation=None) -> int:
        with self.world.lock:
            self._require_streaming_controller("update_desired_ee_pose")
        pos_now, quat_now = self.get_ee_pose()
        pos = pos_now.numpy() if position is None else _as_array("position", position, 3)
        quat = quat_now.numpy() if orientation is None else _as_array("orientation", orientation, 4)
        q, success = self.solve_inverse_kinematics(pos, quat, self.get_joint_positions())
        if not success:
            log.warning("update_desired_ee_pose: IK failed")
            return -1
        return self.update_desired_joint_positions(q)

    def terminate_current_policy(self, return_log: bool = True, timeout: float | None = None):
        with self.world.lock:
            if self.world.arm.mode == "hold":
                raise SimRpcError("TerminateController: no controller is running")
            self.world.arm.hold(self.world.data)
        return [] if return_log else None

    def solve_inverse_kinematics(self, position, orientation, q0, tol: float = 1e-3):
        """(joint positions, success) like Polymetis' Pinocchio CLIK, from our DLS solver."""
        result = self._ik.solve(_as_array("position", position, 3), _as_array("orientation", orientation, 4),
                                _as_array("q0", q0, 7), max_iterations=200, max_joint_delta=None)
        success = result.position_error <= tol and result.rotation_error <= 10 * tol
        return torch.tensor(result.q, dtype=torch.float32), success

    # --- fault injection for tests ---
    def kill_controller(self, error_code: int = 1) -> None:
        """Simulate a reflex/communication fault: the server drops the user controller and holds
        position, exactly what a watchdog must notice via is_running_policy()."""
        with self.world.lock:
            self.world.arm.hold(self.world.data)
            self._error_code = error_code
            self._prev_command_successful = False


class SimGripperInterface:
    """polymetis.GripperInterface over a SimWorld's Franka Hand."""

    def __init__(self, world: SimWorld) -> None:
        self.world = world
        self.metadata = GripperMetadata()

    def get_state(self) -> GripperState:
        w = self.world
        with w.lock:
            servo, d = w.gripper, w.data
            cmd = servo.command
            return GripperState(
                timestamp=Timestamp.from_seconds(d.time),
                width=servo.width(d),
                is_grasped=servo.is_grasped(d),
                is_moving=servo.is_moving(d),
                prev_command_successful=True if cmd is None or not cmd.done else cmd.successful,
            )

    @staticmethod
    def _check(name: str, value: float, low: float, high: float) -> float:
        value = float(value)
        if not np.isfinite(value) or not low <= value <= high:
            raise ValueError(f"{name} must be in [{low}, {high}], got {value}")
        return value

    def _send(self, command: GripperCommand, blocking: bool) -> None:
        w = self.world
        with w.lock:
            w.gripper.start(w.data, command)
        if blocking:
            # A command ends when the fingers stop; bound the wait so a stuck hand cannot hang a test.
            t_limit = w.time + panda.GRIPPER_MAX_WIDTH / command.speed + 2.0
            while not command.done and w.time < t_limit:
                w.wait_until(w.time + 0.01)

    def goto(self, width: float, speed: float, force: float, blocking: bool = True) -> None:
        width = self._check("width", width, 0.0, panda.GRIPPER_MAX_WIDTH)
        speed = self._check("speed", speed, 1e-4, MAX_SPEED * 10)
        force = self._check("force", force, 0.0, MAX_FORCE * 2)
        self._send(GripperCommand("goto", width, min(speed, MAX_SPEED), force), blocking)

    def grasp(self, speed: float, force: float, grasp_width: float = 0.0, epsilon_inner: float = -1,
              epsilon_outer: float = -1, blocking: bool = True) -> None:
        speed = self._check("speed", speed, 1e-4, MAX_SPEED * 10)
        force = self._check("force", force, 0.0, MAX_FORCE * 2)
        grasp_width = self._check("grasp_width", grasp_width, 0.0, panda.GRIPPER_MAX_WIDTH)
        # Closing toward 0 makes the force limit, not the position error, set the squeeze.
        command = GripperCommand("grasp", 0.0, min(speed, MAX_SPEED), min(force, MAX_FORCE), grasp_width,
                                 float(epsilon_inner), float(epsilon_outer))
        self._send(command, blocking)
