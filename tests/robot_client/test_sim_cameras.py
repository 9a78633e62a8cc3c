"""Sim cameras: Frame format, intrinsics, depth; OOD conditions change images but not task geometry."""
import numpy as np
import pytest

from robot_client.cameras.base import Camera, Frame
from robot_client.sim.env import SimEnv

CAMERAS = ("exterior_image_1_left", "exterior_image_2_left", "wrist_image_left")


def _frames(task, condition, seed=0, t=0.4):
    with SimEnv(task, condition=condition, seed=seed, camera_width=96, camera_height=72) as env:
        env.clock.sleep(t)
        frames = env.read_cameras()
        geometry = {
            "qpos": env.world.data.qpos.copy(),
            "task_bodies": {env.world.model.body(i).name: env.world.model.body_pos[i].copy()
                            for i in range(env.world.model.nbody)
                            if not env.world.model.body(i).name.startswith("distractor")},
        }
    return frames, geometry


def test_frames_have_the_camera_interface_format():
    with SimEnv("rice_cooker", seed=0, camera_width=160, camera_height=120) as env:
        assert tuple(env.cameras) == CAMERAS
        cam = env.cameras["exterior_image_1_left"]
        assert isinstance(cam, Camera)
        cam.start()
        frame = cam.read()
        assert isinstance(frame, Frame) and frame.serial == "sim-exterior_image_1_left"
        assert frame.color.shape == (120, 160, 3) and frame.color.dtype == np.uint8
        assert frame.depth.shape == (120, 160) and frame.depth.dtype == np.uint16
        assert 300 < np.median(frame.depth) < 3000  # table a metre or so away, in mm
        assert frame.capture_ts == 0 and frame.receive_ts >= frame.capture_ts
        k = cam.intrinsics
        assert k.fx == pytest.approx(0.5 * 120 / np.tan(np.deg2rad(60) / 2)) and k.ppx == pytest.approx(79.5)
        env.clock.sleep(0.1)
        assert cam.read().capture_ts == pytest.approx(100_000_000, abs=1_000_000)
        cam.stop()


def test_depth_matches_geometry_at_the_table():
    with SimEnv("stack_bowls", seed=0, camera_width=64, camera_height=64) as env:
        frame = env.cameras["wrist_image_left"].read()
        # Wrist camera at home looks roughly down at the table from ~0.45 m.
        centre = frame.depth[24:40, 24:40]
        assert 300 < np.median(centre) < 700


def test_unknown_camera_name_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown camera name"):
        SimEnv("rice_cooker", camera_names=("front_left",))


@pytest.mark.parametrize("condition", ["L1", "L2", "B1", "B2", "C1", "C2"])
def test_ood_condition_changes_images_but_not_task_geometry(condition):
    id_frames, id_geometry = _frames("block_cabinet", "ID")
    ood_frames, ood_geometry = _frames("block_cabinet", condition)
    np.testing.assert_array_equal(id_geometry["qpos"], ood_geometry["qpos"])
    for name, pos in id_geometry["task_bodies"].items():
        np.testing.assert_array_equal(pos, ood_geometry["task_bodies"][name])
    # Share of pixels that visibly changed (a few small distractors are a small but clear share).
    changed = [np.mean(np.abs(id_frames[c].color.astype(int) - ood_frames[c].color.astype(int)).max(axis=2) > 30)
               for c in CAMERAS]
    assert max(changed) > 0.005, f"{condition} barely changes the images: changed pixel share {changed}"


def test_moving_light_changes_over_time():
    frames_a, _ = _frames("rice_cooker", "L2", t=0.1)
    frames_b, _ = _frames("rice_cooker", "L2", t=0.5)
    diff = np.abs(frames_a["exterior_image_1_left"].color.astype(int) - frames_b["exterior_image_1_left"].color.astype(int))
    assert diff.mean() > 3.0
