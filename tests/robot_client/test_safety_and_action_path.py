"""Each safety rule, and the DROID action path down to joint targets."""

import numpy as np
import pytest

from robot_client.action_path import CartesianVelocityActionPath, JointPositionActionPath, apply_rotation_vector
from robot_client.ik import PandaKinematics
from robot_client.safety import SafetyConfig, SafetyMonitor
from robot_client.sim import panda_mjcf as panda


@pytest.fixture(scope="module")
def kin():
    return PandaKinematics()


def home_pose(kin):
    q = panda.HOME_Q.copy()
    pos, quat = kin.forward_kinematics(q)
    return q, pos, quat


def test_nan_and_missing_actions_hold(kin):
    path = CartesianVelocityActionPath(SafetyMonitor())
    q, pos, quat = home_pose(kin)
    for bad in (None, np.array([np.nan, 0, 0, 0, 0, 0, 1.0]), np.array([0, 0, np.inf, 0, 0, 0, 0.0]), np.zeros(6)):
        cmd = path(bad, q, pos, quat, 0.3)
        assert cmd.hold and np.array_equal(cmd.q_target, q) and cmd.gripper == 0.3
    assert "NaN" in path(np.array([np.nan] * 7), q, pos, quat, 0.0).reason
    assert "shape (7,)" in path(np.zeros(6), q, pos, quat, 0.0).reason


def test_velocity_is_norm_clipped_and_scaled_per_step(kin):
    path = CartesianVelocityActionPath(SafetyMonitor())
    q, pos, quat = home_pose(kin)
    cmd = path(np.array([3.0, 0, 0, 0, 0, 0, 2.0]), q, pos, quat, 0.0)
    assert not cmd.hold
    np.testing.assert_allclose(cmd.target_position - pos, [0.075, 0, 0], atol=1e-12)  # |v| clipped to 1
    assert cmd.gripper == 1.0  # gripper clipped into [0, 1]
    assert np.abs(cmd.q_target - q).max() <= 0.2 + 1e-9  # full scale is bounded by the joint step
    half = path(np.array([0.5, 0, 0, 0, 0, 0, 0]), q, pos, quat, 0.0)  # reachable within 0.2 rad
    reached, _ = kin.forward_kinematics(half.q_target)
    assert np.linalg.norm(reached - half.target_position) < 1e-3


def test_rotation_part_is_a_base_frame_rotation_vector(kin):
    path = CartesianVelocityActionPath(SafetyMonitor())
    q, pos, quat = home_pose(kin)
    cmd = path(np.array([0, 0, 0, 0, 0, 1.0, 0]), q, pos, quat, 0.0)
    expected = apply_rotation_vector(quat, np.array([0, 0, 0.15]))
    assert abs(abs(np.dot(cmd.target_quat_xyzw, expected)) - 1) < 1e-12
    _, reached = kin.forward_kinematics(cmd.q_target)
    assert abs(np.dot(reached, expected)) > np.cos(0.01 / 2)  # within 0.01 rad


def test_workspace_box_rejects_targets_outside(kin):
    path = CartesianVelocityActionPath(SafetyMonitor(SafetyConfig(workspace_upper=(0.85, 0.55, 0.6))))
    q, pos, quat = home_pose(kin)  # flange z ~0.59
    cmd = path(np.array([0, 0, 1.0, 0, 0, 0, 0]), q, pos, quat, 0.0)
    assert cmd.hold and "workspace" in cmd.reason


def test_joint_step_and_joint_limit_checks():
    mon = SafetyMonitor()
    q = panda.HOME_Q.copy()
    assert mon.check_joint_target(q + 0.1, q).ok
    v = mon.check_joint_target(q + np.array([0, 0, 0.3, 0, 0, 0, 0]), q)
    assert not v.ok and "joint 3" in v.reason and "0.2" in v.reason
    inside, near = q.copy(), q.copy()
    inside[3], near[3] = -0.15, -0.07  # joint 4's upper limit is -0.0698; the margin keeps 0.05 rad away
    v = mon.check_joint_target(near, inside)
    assert not v.ok and "outside limits" in v.reason
    # Left in the margin band by tracking error: staying or moving back out is allowed, deeper is not.
    band = q.copy()
    band[3] = -0.10
    assert mon.check_joint_target(band, band).ok
    assert mon.check_joint_target(band - np.array([0, 0, 0, 0.01, 0, 0, 0]), band).ok
    v = mon.check_joint_target(band + np.array([0, 0, 0, 0.01, 0, 0, 0]), band)
    assert not v.ok and "joint 4" in v.reason
    beyond = q.copy()
    beyond[3] = -0.05  # past the hardware limit itself: never, even if already there
    assert not mon.check_joint_target(beyond, beyond).ok
    # Stretched against its stop a joint rests a hair past it (the sim: 2e-6 rad); staying there
    # is allowed, or every command would be refused and the arm frozen at its reach limit.
    stop = q.copy()
    stop[3] = -0.069798
    assert mon.check_joint_target(stop - np.array([0.01, 0, 0, 0, 0, 0, 0]), stop).ok
    assert not mon.check_joint_target(stop + np.array([0, 0, 0, 0.001, 0, 0, 0]), stop).ok


def test_joint_position_path_rate_limits_and_checks():
    path = JointPositionActionPath(SafetyMonitor())
    q = panda.HOME_Q.copy()
    cmd = path(np.concatenate([q + 1.0, [0.5]]), q, None, None, 0.0)
    assert not cmd.hold and np.allclose(cmd.q_target - q, 0.2)
    assert path(np.full(8, np.nan), q, None, None, 0.0).hold


def test_unknown_safety_config_key_is_named():
    with pytest.raises(ValueError, match="workspace_hi"):
        SafetyConfig.from_dict({"workspace_hi": [1, 1, 1]}, source="configs/robot.yaml")
