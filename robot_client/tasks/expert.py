"""Scripted experts: a task plan (a generator of segments) executed through the robot/gripper API at 15 Hz.

Every tick is a DROID action: an end-effector velocity in [-1, 1] (x 0.075 m / 0.15 rad per step)
and a gripper position in [0, 1] (1 = closed). The action is turned into a joint target with
the same DLS IK the control loop uses and streamed with update_desired_joint_positions, so the
expert doubles as the sim's teleop device for demo collection.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from scipy.spatial.transform import Rotation

from robot_client.ik import DLSInverseKinematics, rotation_error
from robot_client.sim import panda_mjcf as panda

MAX_LIN_STEP = 0.075  # m per control step at |v| = 1 (DROID)
MAX_ROT_STEP = 0.15  # rad per control step at |w| = 1 (DROID)
_HAND_FROM_LINK8 = Rotation.from_rotvec([0.0, 0.0, panda.HAND_YAW]).as_matrix()


def hand_rotation(approach, finger_axis) -> np.ndarray:
    """Hand frame (x, y = finger axis, z = approach) as a rotation matrix; finger_axis is orthogonalised."""
    z = np.asarray(approach, float)
    z = z / np.linalg.norm(z)
    y = np.asarray(finger_axis, float)
    y = y - z * (y @ z)
    y = y / np.linalg.norm(y)
    return np.column_stack([np.cross(y, z), y, z])


def topdown(finger_yaw: float) -> np.ndarray:
    """Hand pointing down with the fingers closing along the world direction `finger_yaw`."""
    return hand_rotation((0, 0, -1), (np.cos(finger_yaw), np.sin(finger_yaw), 0))


def link8_pose_from_tcp(tcp_pos, hand_rot) -> tuple[np.ndarray, np.ndarray]:
    """panda_link8 pose giving this fingertip-centre pose (Polymetis targets are link8 poses)."""
    rot = hand_rot @ _HAND_FROM_LINK8.T
    return np.asarray(tcp_pos, float) - hand_rot[:, 2] * panda.TCP_OFFSET, rot


def hand_from_link8(rot) -> np.ndarray:
    """The hand frame (as `hand_rotation` builds it) of a panda_link8 rotation."""
    return np.asarray(rot) @ _HAND_FROM_LINK8


def tcp_from_link8(pos, rot) -> np.ndarray:
    return np.asarray(pos) + hand_from_link8(rot)[:, 2] * panda.TCP_OFFSET


@dataclass
class DroidAction:
    cartesian_velocity: np.ndarray  # (6,) in [-1, 1]: xyz, then extrinsic-xyz Euler delta, each / DROID scale
    gripper_position: float  # [0, 1], 1 = closed

    def as_array(self) -> np.ndarray:
        return np.concatenate([self.cartesian_velocity, [self.gripper_position]])


# --- plan segments ---
@dataclass
class Move:
    tcp_pos: np.ndarray
    hand_rot: np.ndarray
    speed: float = 0.4  # fraction of DROID's full-scale step
    tol: float = 0.004  # m
    rot_tol: float = 0.03  # rad
    timeout_s: float = 8.0
    via: bool = False  # a waypoint passed through at full `speed` (no slowing down on the way in)
    abandon_if: Callable[[], bool] | None = None  # checked every tick: True ends the move where it is


@dataclass
class Gripper:
    kind: str  # "goto" | "grasp"
    width: float = 0.08  # goto width, or the expected object width for grasp
    epsilon: float = 0.01
    force: float = 40.0
    speed: float = 0.1


@dataclass
class Hold:
    seconds: float


@dataclass
class Labels:
    """Whether the expert's ticks from here on label a demo; False: the sim is perturbing the scene (a
    demo's slip), and a policy must not learn what the expert does until it is over. Taken at once."""
    on: bool


@dataclass
class ExpertResult:
    success: bool
    steps: int
    duration_s: float
    actions: list = field(default_factory=list)


class ScriptedExpert:
    """Runs `task_plan(env)` (a generator of Move/Gripper/Hold) one control tick at a time."""

    def __init__(self, env, plan, actuate: bool = True, marks_labels: bool = False) -> None:
        self.env = env
        # marks_labels: the plan yields Labels, so a demo tags which of its ticks label the policy
        self.marks_labels = marks_labels
        self.labelling = True
        # actuate=False: only return the DROID action; the caller executes it (the teleop
        # recorder sends it through the policy's own action path, so demos match deployment).
        self.actuate = actuate
        self.robot, self.gripper, self.clock = env.robot, env.gripper, env.clock
        self.dt = 1.0 / env.task.control_hz
        self.ik = DLSInverseKinematics()
        self.plan = plan
        self.segment = None
        self._segment_start = 0.0
        self._goal = None  # (link8 pos, link8 rot) held between moves
        self._gripper_cmd = 0.0
        self._gripper_sent = False
        self._gripper_sent_at = 0.0
        self.finished = False

    def _next_segment(self) -> None:
        self.segment = next(self.plan, None)
        while isinstance(self.segment, Labels):
            self.labelling = self.segment.on
            self.segment = next(self.plan, None)
        self._segment_start = self.clock.now()
        self._gripper_sent = False
        if self.segment is None:
            self.finished = True
        elif isinstance(self.segment, Move):
            self._goal = link8_pose_from_tcp(self.segment.tcp_pos, self.segment.hand_rot)

    def _pose_and_error(self):
        """Joints, flange pose, and the position and rotation-vector errors to the goal."""
        q = self.robot.get_joint_positions().numpy().astype(float)
        pos, rot = self.ik.kin.pose_matrix(q)
        goal_pos, goal_rot = self._goal
        return q, pos, rot, goal_pos - pos, rotation_error(goal_rot, rot)

    def _action_towards_goal(self, speed: float, via: bool = False) -> tuple[DroidAction, float, float]:
        q, pos, rot, pos_error, rot_error = self._pose_and_error()
        lin = pos_error / MAX_LIN_STEP
        ang = rot_error / MAX_ROT_STEP
        pos_err, rot_err = np.linalg.norm(pos_error), np.linalg.norm(rot_error)
        lin_scale = speed / max(np.linalg.norm(lin), 1e-12)
        lin *= lin_scale if via else min(1.0, lin_scale)
        ang *= min(1.0, speed / max(np.linalg.norm(ang), 1e-12))
        delta_rot = Rotation.from_rotvec(ang * MAX_ROT_STEP)
        target_pos = pos + lin * MAX_LIN_STEP
        target_rot = delta_rot.as_matrix() @ rot
        if self.actuate:
            quat_xyzw = Rotation.from_matrix(target_rot).as_quat()
            result = self.ik.solve(target_pos, quat_xyzw, q, max_iterations=15, max_joint_delta=0.2)
            self.robot.update_desired_joint_positions(result.q)
        euler = delta_rot.as_euler("xyz") / MAX_ROT_STEP
        action = DroidAction(np.clip(np.concatenate([lin, euler]), -1, 1), self._gripper_cmd)
        return action, pos_err, rot_err

    def _within_tolerance(self, seg: Move) -> bool:
        _, _, _, pos_error, rot_error = self._pose_and_error()
        return np.linalg.norm(pos_error) <= seg.tol and np.linalg.norm(rot_error) <= seg.rot_tol

    def start(self) -> None:
        if not self.robot.is_running_policy():
            self.robot.start_cartesian_impedance()
        self._hold_where_it_is()
        self._next_segment()

    def _hold_where_it_is(self) -> None:
        """The goal between moves (what Gripper and Hold segments keep the arm at): the arm's pose now."""
        self._goal = self.ik.kin.pose_matrix(self.robot.get_joint_positions().numpy())

    def step(self) -> DroidAction:
        """One control tick: command arm and gripper (non-blocking) and return the DROID action."""
        if self.segment is None and not self.finished:
            self.start()
        seg = self.segment
        elapsed = self.clock.now() - self._segment_start
        if isinstance(seg, Move):
            if seg.via and self._within_tolerance(seg):
                # Passed through: steer at the next segment this same tick (a full-speed step at a
                # waypoint already reached would point wherever the last millimetres of error do).
                self._next_segment()
                return self.step()
            if seg.abandon_if is not None and seg.abandon_if():
                self._hold_where_it_is()
                self._next_segment()
                return self.step()
            action, pos_err, rot_err = self._action_towards_goal(seg.speed, seg.via)
            if (pos_err <= seg.tol and rot_err <= seg.rot_tol) or elapsed > seg.timeout_s:
                self._next_segment()
            return action
        if isinstance(seg, Gripper):
            if not self._gripper_sent:
                if seg.kind == "grasp":
                    if self.actuate:
                        self.gripper.grasp(seg.speed, seg.force, seg.width, seg.epsilon, seg.epsilon, blocking=False)
                    self._gripper_cmd = 1.0
                else:
                    if self.actuate:
                        self.gripper.goto(seg.width, seg.speed, seg.force, blocking=False)
                    self._gripper_cmd = 1.0 - seg.width / panda.GRIPPER_MAX_WIDTH
                self._gripper_sent = True
                self._gripper_sent_at = self.clock.now()
            action, _, _ = self._action_towards_goal(0.3)
            # Done once the hand has stopped, at least a tick after the command went out (a
            # non-actuating expert's command is sent by its caller after this tick returns).
            if self.clock.now() - self._gripper_sent_at > self.dt and not self.gripper.get_state().is_moving:
                self._next_segment()
            return action
        action, _, _ = self._action_towards_goal(0.3)
        if isinstance(seg, Hold) and elapsed >= seg.seconds:
            self._next_segment()
        return action

    def run(self, max_duration_s: float | None = None, stop_on_success: bool = True, record: bool = False,
            on_step=None) -> ExpertResult:
        """Tick at the task rate on the env clock until the plan ends (plus a short settle) or time runs out."""
        max_duration_s = max_duration_s or self.env.task.max_duration_s
        t0 = self.clock.now()
        actions, steps = [], 0
        settle_until = None
        while self.clock.now() - t0 < max_duration_s:
            tick = t0 + steps * self.dt
            action = self.step()  # once the plan is done, step() holds the last goal
            if record:
                actions.append(action.as_array())
            if on_step is not None:
                on_step(steps, action)
            steps += 1
            self.clock.sleep_until(tick + self.dt)
            success = self.env.check_success()
            if success and stop_on_success:
                break
            if self.finished:
                settle_until = settle_until or self.clock.now() + 1.0
                if self.clock.now() >= settle_until:
                    break
        return ExpertResult(self.env.check_success(), steps, self.clock.now() - t0, actions)
