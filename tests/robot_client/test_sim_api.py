"""The Polymetis stand-ins behave like the real API: types, controller states, errors, gripper results."""
import time

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from robot_client.sim import panda_mjcf as panda
from robot_client.sim.env import SimEnv
from robot_client.sim.polymetis_api import SimRpcError
from robot_client.tasks.expert import link8_pose_from_tcp, topdown


@pytest.fixture()
def env():
    with SimEnv("block_cabinet", seed=0, camera_names=()) as env:
        yield env


def test_getters_return_torch_tensors_and_link8_pose_in_xyzw(env):
    robot = env.robot
    q = robot.get_joint_positions()
    assert isinstance(q, torch.Tensor) and q.shape == (7,)
    np.testing.assert_allclose(q.numpy(), panda.HOME_Q, atol=1e-5)
    assert robot.get_joint_velocities().shape == (7,)
    pos, quat = robot.get_ee_pose()
    assert isinstance(pos, torch.Tensor) and pos.shape == (3,) and quat.shape == (4,)
    reference = panda.dh_forward_kinematics(q.numpy().astype(float))
    np.testing.assert_allclose(pos.numpy(), reference[:3, 3], atol=1e-5)
    np.testing.assert_allclose(Rotation.from_quat(quat.numpy()).as_matrix(), reference[:3, :3], atol=1e-5)
    state = robot.get_robot_state()
    assert len(state.joint_positions) == 7 and len(state.motor_torques_measured) == 7
    assert state.timestamp.ToNanoseconds() == 0 and state.error_code == 0


def test_update_without_controller_raises_like_grpc_and_works_after_start(env):
    robot = env.robot
    assert not robot.is_running_policy()
    with pytest.raises(SimRpcError, match="start_joint_impedance"):
        robot.update_desired_joint_positions(panda.HOME_Q)
    with pytest.raises(SimRpcError, match="no controller is running"):
        robot.terminate_current_policy()
    robot.start_joint_impedance()
    assert robot.is_running_policy()
    target = panda.HOME_Q + np.array([0.1, 0, 0, 0, 0, 0, 0])
    robot.update_desired_joint_positions(torch.tensor(target))
    env.clock.sleep(2.0)
    np.testing.assert_allclose(robot.get_joint_positions().numpy(), target, atol=5e-3)
    robot.terminate_current_policy()
    assert not robot.is_running_policy()


def test_wrong_joint_vector_length_names_the_expectation(env):
    env.robot.start_joint_impedance()
    with pytest.raises(ValueError, match="positions must have 7 elements"):
        env.robot.update_desired_joint_positions([0.0] * 6)
    with pytest.raises(ValueError, match="positions must have 7 elements"):
        env.robot.move_to_joint_positions(torch.zeros(8))
    with pytest.raises(ValueError, match="outside joint limits"):
        env.robot.move_to_joint_positions(panda.HOME_Q + np.array([0, 0, 0, 3.0, 0, 0, 0]))


def test_move_to_joint_positions_uses_the_adaptive_time_and_ends_on_target(env):
    robot = env.robot
    goal = panda.HOME_Q + np.array([0.5, 0.2, 0.0, 0.3, 0.0, -0.2, 0.4])
    t0 = env.clock.now()
    states = robot.move_to_joint_positions(goal)
    expected = max(np.max(np.abs(goal - panda.HOME_Q) / panda.JOINT_VELOCITY_LIMITS * 8), 1.0)
    assert env.clock.now() - t0 == pytest.approx(expected, abs=0.01)
    assert len(states) > 10 and not robot.is_running_policy()  # trajectory executor ended
    np.testing.assert_allclose(robot.get_joint_positions().numpy(), goal, atol=2e-3)
    robot.go_home(time_to_go=2.0)
    np.testing.assert_allclose(robot.get_joint_positions().numpy(), panda.HOME_Q, atol=2e-3)


def test_killed_controller_is_visible_to_a_watchdog(env):
    robot = env.robot
    robot.start_cartesian_impedance()
    robot.kill_controller(error_code=7)
    assert not robot.is_running_policy()
    assert robot.get_robot_state().error_code == 7
    with pytest.raises(SimRpcError):
        robot.update_desired_joint_positions(panda.HOME_Q)
    robot.start_cartesian_impedance()  # the DROID-style recovery
    robot.update_desired_joint_positions(panda.HOME_Q)


def _hover_over_block(env, height: float) -> None:
    block = env.world.data.xpos[env.world.model.body("block").id].copy()
    block_yaw = env.initial_state["block_yaw"]
    pos, rot = link8_pose_from_tcp(block + np.array([0, 0, height]), topdown(block_yaw - np.pi / 2))
    q, ok = env.robot.solve_inverse_kinematics(pos, Rotation.from_matrix(rot).as_quat(), env.robot.get_joint_positions())
    assert ok
    env.robot.move_to_joint_positions(q)


def test_gripper_grasp_reports_object_and_empty_close(env):
    gripper = env.gripper
    assert gripper.metadata.max_width == pytest.approx(0.08)
    gripper.goto(0.07, 0.1, 20.0)
    state = gripper.get_state()
    assert state.width == pytest.approx(0.07, abs=2e-3) and not state.is_moving and not state.is_grasped
    _hover_over_block(env, 0.005)
    gripper.grasp(speed=0.1, force=40.0, grasp_width=0.04, epsilon_inner=0.005, epsilon_outer=0.005)
    state = gripper.get_state()
    assert state.is_grasped and state.width == pytest.approx(0.04, abs=2e-3)
    # Same grasp but expecting a much smaller object: closes on the block, outside the window.
    gripper.goto(0.07, 0.1, 20.0)
    gripper.grasp(speed=0.1, force=40.0, grasp_width=0.01, epsilon_inner=0.005, epsilon_outer=0.005)
    assert not gripper.get_state().is_grasped
    # Empty close: nothing between the fingers.
    gripper.goto(0.07, 0.1, 20.0)
    _hover_over_block(env, 0.15)
    gripper.grasp(speed=0.1, force=40.0)
    state = gripper.get_state()
    assert not state.is_grasped and state.width < 0.002


def test_non_blocking_gripper_command_moves_while_time_passes(env):
    env.gripper.goto(0.02, 0.05, 20.0, blocking=False)
    assert env.gripper.get_state().is_moving
    env.clock.sleep(1.5)
    state = env.gripper.get_state()
    assert not state.is_moving and state.width == pytest.approx(0.02, abs=2e-3)
    with pytest.raises(ValueError, match="width must be in"):
        env.gripper.goto(0.2, 0.05, 20.0)


def test_lockstep_is_deterministic():
    def run():
        with SimEnv("stack_bowls", seed=3, camera_names=()) as env:
            env.task.expert(env).run(max_duration_s=3.0, stop_on_success=False)
            return env.world.data.qpos.copy()

    np.testing.assert_array_equal(run(), run())


def test_realtime_mode_follows_the_wall_clock():
    with SimEnv("stack_bowls", seed=0, camera_names=(), mode="realtime") as env:
        wall0, sim0 = time.monotonic(), env.clock.now()
        env.robot.start_joint_impedance()
        env.clock.sleep(0.5)
        time.sleep(0.2)  # physics keeps running without the client waiting
        assert env.clock.now() - sim0 == pytest.approx(time.monotonic() - wall0, abs=0.1)
