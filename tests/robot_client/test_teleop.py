"""Teleop demo recording: operator keys save / discard / reset; the expert device labels itself."""

from __future__ import annotations

import numpy as np
import pytest

from robot_client.teleop import (
    DISCARDED_DIR,
    ExpertDevice,
    KeyboardDevice,
    OperatorEvents,
    TeleopDevice,
    collect_sim_demos,
    next_demo_index,
)
from uwm_robot.episode import load_episode
from uwm_robot.training_data import find_episodes

PUSH = np.array([0.2, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])


class ScriptedOperator(TeleopDevice):
    """Pushes +x every tick and presses one operator key at a given tick of each episode."""

    name = "scripted"

    def __init__(self, events: OperatorEvents, script: list[tuple[int, str]]):
        self.events, self.script = events, list(script)
        self.handlers = events.handlers()
        self.tick = 0
        self.key_at: tuple[int, str] | None = None

    def reset(self, env) -> None:
        self.tick = 0
        self.key_at = self.script.pop(0)

    def action(self) -> np.ndarray:
        if self.tick == self.key_at[0]:
            self.handlers[self.key_at[1]]()  # as the key listener thread would
        self.tick += 1
        return PUSH.copy()


def test_keys_save_discard_and_reset(tmp_path):
    events = OperatorEvents()
    device = ScriptedOperator(events, [(5, "\n"), (3, "n"), (2, "r"), (4, "y")])
    out = tmp_path / "demos"
    results = collect_sim_demos("rice_cooker", device, out, episodes=2, camera_shape=(32, 32), realtime=False,
                                events=events, operator="tester")
    assert [(r.saved, r.steps, r.reason) for r in results] == [
        (True, 6, "save"), (False, 4, "discard"), (False, 3, "discard"), (True, 5, "save")]
    assert sorted(p.name for p in out.iterdir()) == ["demo_000", "demo_003", DISCARDED_DIR]
    assert sorted(p.name for p in (out / DISCARDED_DIR).iterdir()) == ["demo_001", "demo_002"]
    assert find_episodes([out]) == [out / "demo_000", out / "demo_003"]  # training never sees discards

    saved = load_episode(out / "demo_000")
    assert saved.meta["kind"] == "demo" and saved.meta["operator"] == "tester" and saved.meta["seed"] == 0
    assert saved.meta["outcome"] == {"success": True, "decided_by": "operator_key", "reason": "saved"}
    assert saved.num_steps == 6 and saved.frames("wrist_image_left").shape == (6, 32, 32, 3)
    np.testing.assert_allclose(saved.steps["action_droid"], np.tile(PUSH, (6, 1)))
    # The push went through the policy's action path: the flange moved along +x.
    assert saved.steps["ee_pos"][-1, 0] - saved.steps["ee_pos"][0, 0] > 0.02
    dropped = load_episode(out / DISCARDED_DIR / "demo_001")
    assert dropped.meta["discarded"] and dropped.meta["outcome"]["success"] is None and dropped.num_steps == 4
    assert next_demo_index(out) == 4  # a second session numbers on


def test_expert_device_records_a_successful_demo(tmp_path):
    results = collect_sim_demos("rice_cooker", ExpertDevice(), tmp_path, episodes=1, camera_shape=(32, 32),
                                cameras=("wrist_image_left",), save_raw_frames=False, max_attempts=1)
    assert len(results) == 1 and results[0].saved, results
    ep = load_episode(results[0].path)
    assert ep.meta["outcome"]["decided_by"] == "sim_check" and ep.meta["teleop_device"] == "expert"
    assert ep.cameras == ["wrist_image_left"] and ep.num_steps > 200
    assert np.isfinite(ep.steps["action_model"]).all() and ep.steps["action_droid"][:, 6].max() == 1.0
    assert not ep.steps["intervention"].any()  # a plain demo's ticks all label it: nothing is tagged


def test_keyboard_pulses_decay_and_g_toggles_the_gripper():
    kb = KeyboardDevice(speed=0.5, hold_ticks=2)
    handlers = kb.key_handlers()
    handlers["w"]()
    assert kb.action()[0] == 0.5 and kb.action()[0] == 0.5 and kb.action()[0] == 0.0
    handlers["u"]()
    assert kb.action()[5] == 0.5
    handlers["g"]()
    assert kb.action()[6] == 1.0
    handlers["g"]()
    assert kb.action()[6] == 0.0


def test_recorder_keeps_the_intervention_tag_of_a_step(tmp_path):
    import dataclasses

    from robot_client.recording import EpisodeWriter, synthetic_frames, synthetic_step

    shapes = {"wrist_image_left": (16, 16)}
    with EpisodeWriter(tmp_path / "ep", {"kind": "rollout"}, shapes, video=False) as rec:
        for i in range(4):
            rec.on_step(dataclasses.replace(synthetic_step(i), intervention=i in (1, 2)), synthetic_frames(i, shapes))
        meta = rec.finish(True, "sim_check", "success")
    assert load_episode(tmp_path / "ep").steps["intervention"].tolist() == [0, 1, 1, 0]
    assert meta["intervention_steps"] == 2


def test_robot_demos_reset_the_arm_and_record_at_the_requested_shape(tmp_path):
    """The real-arm path, driven through the sim's Polymetis and camera stand-ins (the same API)."""
    from robot_client.sim.env import SimEnv
    from robot_client.teleop import DROID_RESET_JOINTS, collect_robot_demos

    env = SimEnv("rice_cooker", seed=3, camera_width=64, camera_height=48, mode="lockstep",
                 camera_names=("wrist_image_left",))
    try:
        env.gripper.goto(width=0.0, speed=0.1, force=20.0, blocking=True)  # the last demo ended closed
        events = OperatorEvents()
        device = ScriptedOperator(events, [(2, "n"), (4, "y")])
        results = collect_robot_demos("rice_cooker", device, tmp_path, 1, env.robot, env.gripper, env.cameras,
                                      env.clock, camera_shape=(24, 32), events=events, calibration={"x": 1})
    finally:
        env.close()
    assert [(r.saved, r.steps, r.reason) for r in results] == [(False, 3, "discard"), (True, 5, "save")]
    ep = load_episode(results[1].path)
    assert ep.meta["robot"] == "franka" and ep.meta["calibration"] == {"x": 1}
    assert ep.meta["outcome"]["decided_by"] == "operator_key"
    assert ep.frames("wrist_image_left").shape == (5, 24, 32, 3)  # 48x64 camera, recorded at 24x32
    np.testing.assert_allclose(ep.steps["q"][0], DROID_RESET_JOINTS, atol=0.02)  # reset before each demo
    assert ep.steps["gripper_width"][0] > 0.07  # the reset opened the gripper


def test_teleop_refuses_the_expert_on_the_real_arm(capsys):
    from robot_client.cli import main

    assert main(["teleop", "--robot", "franka", "--device", "expert"]) != 0
    assert "on the real arm use keyboard or spacemouse" in capsys.readouterr().err


def test_expert_options_are_refused_for_other_devices_and_tasks():
    from robot_client.sim.env import SimEnv
    from robot_client.teleop import make_device

    with pytest.raises(ValueError, match="--device expert only"):
        make_device("keyboard", practice_miss_prob=0.5)
    device = make_device("expert", practice_miss_prob=0.5)
    assert device.meta() == {"expert_options": {"practice_miss_prob": 0.5}}
    with SimEnv("stack_bowls", seed=0, camera_names=()) as env, pytest.raises(ValueError, match="takes no options"):
        device.reset(env)


def test_expert_pushes_run_but_the_demo_records_the_experts_correction(tmp_path):
    """DART-style demos: some ticks run a pushed translation; every tick records the expert's own action."""
    results = collect_sim_demos("rice_cooker", ExpertDevice(action_noise=0.5), tmp_path, episodes=1, seed=201,
                                camera_shape=(24, 32), cameras=("wrist_image_left",), save_raw_frames=False,
                                max_attempts=1)
    assert len(results) == 1 and results[0].saved, results
    ep = load_episode(results[0].path)
    assert ep.meta["action_noise"] == 0.5
    ran_rows = np.isfinite(ep.steps["action_clipped"]).all(axis=1)  # NaN: ticks the action path held
    label, ran = ep.steps["action_droid"][ran_rows], ep.steps["action_clipped"][ran_rows]
    pushed = np.any(np.abs(ran[:, :3] - label[:, :3]) > 1e-6, axis=1)
    assert 0.02 < pushed.mean() < 0.3  # PUSH_RATE 0.05 per tick, 2 ticks each
    push = ran[pushed, :3] - label[pushed, :3]
    assert np.all(np.linalg.norm(push, axis=1) <= 0.5 + 1e-6)  # clipping can only shorten a push
    assert np.allclose(ran[~pushed], label[~pushed])  # rotation, gripper and unpushed ticks run as labelled
    with pytest.raises(ValueError, match="action_noise"):
        ExpertDevice(action_noise=1.5)


def test_a_slip_demo_tags_the_experts_labels_and_leaves_the_slip_unlabelled(tmp_path):
    """`--lid-slips`: the ticks from the slip until the hand is up are not labels (a chunk from a pull's view
    must not say "let go"); every other tick is tagged `intervention`, the expert's label, as a takeover's
    are, so training leaves the slip's ticks unlabelled. A plain demo tags nothing."""
    results = collect_sim_demos("rice_cooker", ExpertDevice(lid_slip_prob=1.0), tmp_path, episodes=1, seed=1,
                                camera_shape=(24, 32), cameras=("wrist_image_left",), save_raw_frames=False,
                                max_attempts=1)
    assert len(results) == 1 and results[0].saved, results
    ep = load_episode(results[0].path)
    labelled = ep.steps["intervention"].astype(bool)
    gap = np.flatnonzero(~labelled)
    assert gap.size and np.all(np.diff(gap) == 1)  # one span
    assert 50 < gap[0] and 5 < gap.size < 60 and labelled[gap[-1] + 1:].all()
    assert ep.steps["gripper_width"][gap].min() < 0.008  # the fingers closed on nothing inside it
    assert ep.meta["expert_options"] == {"lid_slip_prob": 1.0}
