"""The MJCF Panda matches the official DH model and the real robot's limits."""
import mujoco
import numpy as np

from robot_client.sim import panda_mjcf as panda


def test_link8_forward_kinematics_matches_dh_over_random_poses():
    model = mujoco.MjModel.from_xml_string(panda.panda_robot_only_xml())
    data = mujoco.MjData(model)
    link8 = model.body("panda_link8").id
    rng = np.random.default_rng(0)
    for _ in range(200):
        q = rng.uniform(panda.JOINT_LOWER, panda.JOINT_UPPER)
        data.qpos[:7] = q
        mujoco.mj_kinematics(model, data)
        reference = panda.dh_forward_kinematics(q)
        assert np.abs(data.xpos[link8] - reference[:3, 3]).max() <= 1e-6
        assert np.abs(data.xmat[link8].reshape(3, 3) - reference[:3, :3]).max() <= 1e-6


def test_home_tcp_is_the_real_panda_value_pointing_down():
    model = mujoco.MjModel.from_xml_string(panda.panda_robot_only_xml())
    data = mujoco.MjData(model)
    data.qpos[:7] = panda.HOME_Q
    mujoco.mj_kinematics(model, data)
    np.testing.assert_allclose(data.site("tcp").xpos, [0.3069, 0.0, 0.4869], atol=2e-4)
    np.testing.assert_allclose(data.site("tcp").xmat.reshape(3, 3)[:, 2], [0, 0, -1], atol=1e-9)


def test_joint_ranges_gains_and_torque_limits_are_the_real_ones():
    model = mujoco.MjModel.from_xml_string(panda.panda_robot_only_xml().replace(
        "</mujoco>", f"<actuator>{panda.panda_actuators_xml()}</actuator></mujoco>"))
    for i, joint in enumerate(panda.ARM_JOINTS):
        np.testing.assert_allclose(model.joint(joint).range, [panda.JOINT_LOWER[i], panda.JOINT_UPPER[i]])
        act = model.actuator(f"act_{joint}")
        assert act.gainprm[0] == panda.DEFAULT_KQ[i]
        assert act.biasprm[2] == -panda.DEFAULT_KQD[i]
        assert act.forcerange[1] == (87.0 if i < 4 else 12.0)
    assert all(model.body_gravcomp[model.body(f"panda_link{i}").id] == 1 for i in range(1, 8))


def test_dh_reference_rejects_wrong_length():
    import pytest

    with pytest.raises(ValueError, match="expected 7 joint angles"):
        panda.dh_forward_kinematics(np.zeros(6))
