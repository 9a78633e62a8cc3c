"""Sim episodes carry the objects' ground truth per step (object_state.npz)."""

from types import SimpleNamespace

import numpy as np
import pytest

from robot_client.sim.env import SimEnv
from robot_client.sim.object_log import ObjectStateLog, load_object_state


def test_the_log_follows_the_lid_and_the_cup_and_leaves_out_the_robot(tmp_path):
    with SimEnv("rice_cooker", seed=3, camera_names=()) as env:
        log = ObjectStateLog(env.world)
        assert {"lid_hinge", "cup"} <= set(log.names) and not any(n.startswith("panda") for n in log.names)
        lid = env.world.model.joint("lid_hinge").qposadr[0]
        for i, angle in enumerate([0.0, 1.45, 0.3]):  # opened, then fallen shut part way
            env.world.data.qpos[lid] = angle
            log.on_step(SimpleNamespace(t=i / 15))
        log.save(tmp_path)
        cup_xy = env.initial_state["cup_xy"]
    got = load_object_state(tmp_path)
    np.testing.assert_allclose(got["t"], [0, 1 / 15, 2 / 15])
    np.testing.assert_allclose(got["lid_hinge"], [0.0, 1.45, 0.3])
    assert got["cup"].shape == (3, 3)
    np.testing.assert_allclose(got["cup"][:, :2], np.tile(cup_xy, (3, 1)), atol=1e-6)


def test_a_trial_stopped_before_its_first_tick_still_saves(tmp_path):
    with SimEnv("rice_cooker", seed=0, camera_names=()) as env:
        ObjectStateLog(env.world).save(tmp_path)
    got = load_object_state(tmp_path)
    assert got["t"].shape == (0,) and got["lid_hinge"].shape == (0,) and got["cup"].shape == (0, 3)


def test_an_episode_without_the_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no object state"):
        load_object_state(tmp_path)
