"""DLS IK on the Panda kinematic model: accuracy, step bound, limits, input errors."""
import numpy as np
import pytest

from robot_client.ik import DLSConfig, DLSInverseKinematics, PandaKinematics
from robot_client.sim import panda_mjcf as panda


@pytest.fixture(scope="module")
def ik():
    return DLSInverseKinematics()


def test_reaches_random_reachable_targets_within_1mm_and_001rad(ik):
    rng = np.random.default_rng(1)
    for _ in range(30):
        q_target = np.clip(panda.HOME_Q + rng.uniform(-0.7, 0.7, 7), panda.JOINT_LOWER + 0.1, panda.JOINT_UPPER - 0.1)
        pos, quat = ik.kin.forward_kinematics(q_target)
        result = ik.solve(pos, quat, panda.HOME_Q, max_iterations=200, max_joint_delta=None)
        assert result.success
        assert result.position_error <= 1e-3 and result.rotation_error <= 1e-2


def test_one_step_is_bounded_to_02_rad_per_joint_and_stays_in_limits(ik):
    far_pos, far_quat = ik.kin.forward_kinematics(np.array([1.0, 0.3, -0.5, -1.5, 0.8, 2.5, -0.5]))
    result = ik.solve(far_pos, far_quat, panda.HOME_Q, max_iterations=50)
    assert np.max(np.abs(result.q - panda.HOME_Q)) <= 0.2 + 1e-12
    assert not result.success  # too far for one bounded step
    assert np.all(result.q >= panda.JOINT_LOWER) and np.all(result.q <= panda.JOINT_UPPER)


def test_kinematics_matches_dh_and_returns_xyzw():
    kin = PandaKinematics()
    pos, quat = kin.forward_kinematics(panda.HOME_Q)
    np.testing.assert_allclose(pos, panda.dh_forward_kinematics(panda.HOME_Q)[:3, 3], atol=1e-9)
    # Home flange points down: a 180 deg turn about an axis in the xy plane, so w (last) is ~0.
    assert abs(quat[3]) < 1e-6 and abs(np.linalg.norm(quat) - 1) < 1e-9


def test_bad_input_names_what_was_expected(ik):
    with pytest.raises(ValueError, match="target position must have 3 elements"):
        ik.solve([0.3, 0.0], [0, 0, 0, 1], panda.HOME_Q)
    with pytest.raises(ValueError, match="q_init must have 7 elements"):
        ik.solve([0.3, 0.0, 0.4], [0, 0, 0, 1], panda.HOME_Q[:6])
    with pytest.raises(ValueError, match="finite"):
        ik.solve([np.nan, 0.0, 0.4], [0, 0, 0, 1], panda.HOME_Q)


def test_nullspace_pull_brings_the_elbow_back_toward_home_while_the_hand_tracks():
    # A posture off home only in the arm's redundancy (same hand pose family), then a streamed
    # 10 cm move: the pull toward home must undo some of that posture without costing hand accuracy.
    start = panda.HOME_Q + np.array([0.4, 0.0, -0.4, 0.0, 0.0, 0.0, 0.0])
    kin = PandaKinematics()
    pos0, quat = kin.forward_kinematics(start)

    def stream(config):
        solver = DLSInverseKinematics(kin, config)
        q = start.copy()
        for i in range(1, 21):
            result = solver.solve(pos0 + np.array([0.005 * i, 0.0, 0.0]), quat, q)
            assert result.success
            q = result.q
        return np.linalg.norm(q - panda.HOME_Q)

    assert stream(DLSConfig()) < 0.8 * stream(DLSConfig(nullspace_gain=0.0))
