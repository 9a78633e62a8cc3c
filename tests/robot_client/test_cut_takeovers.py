"""scripts/cut_takeovers.py: a round's takeovers for one reason, cut where the expert let go of the bar."""
import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np

from robot_client.recording import EpisodeWriter, synthetic_frames, synthetic_step
from robot_client.sim.object_log import OBJECT_STATE_FILE
from uwm_robot.episode import load_episode

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "cut_takeovers.py"
SHAPES = {"wrist_image_left": (8, 8)}


def _trial(path, reason, taken_at, lid, width, success=True, cup=None):
    """A finished 15 Hz round trial with raw frames: the expert drives from `taken_at` (its first takeover
    for `reason`); the lid angle, the finger width and the cup's position (default the origin) per step."""
    n = len(lid)
    meta = {"kind": "rollout", "expert_takeover": {"t": taken_at / 15, "reason": reason}}
    with EpisodeWriter(path, meta, SHAPES, save_raw_frames=True, video=False) as w:
        for i in range(n):
            step = dataclasses.replace(synthetic_step(i), gripper_width=float(width[i]), intervention=i >= taken_at)
            w.on_step(step, synthetic_frames(i, SHAPES))
        w.finish(success, "sim_check", "success" if success else "timeout")
    np.savez(path / OBJECT_STATE_FILE, t=np.arange(n) / 15, lid_hinge=np.asarray(lid, float),
             cup=np.zeros((n, 3)) if cup is None else np.asarray(cup, float))


def test_only_quick_successful_takeovers_for_the_reason_are_kept_cut_after_the_release(tmp_path):
    rounds = tmp_path / "round"
    # policy 10 ticks, the expert takes over for the roll at 0.5 rad, passes 1.6 rad 9 ticks later, lets go 2 after
    lid = list(np.linspace(0, 0.5, 10)) + list(np.linspace(0.5, 1.7, 10)) + [1.7] * 30
    width = [0.016] * 21 + [0.07] * 29
    _trial(rounds / "trial_000", "hand rolled +4.2 deg about the bar mid-pull", 10, lid, width)
    _trial(rounds / "trial_001", "hand 1.3 cm off the cup at 0.05 m above it", 10, lid, width)  # another reason
    _trial(rounds / "trial_002", "hand rolled +4.0 deg about the bar mid-pull", 10, lid, width, success=False)
    slow = list(np.linspace(0, 0.5, 10)) + [0.9] * 80 + [1.7] * 10  # the pull fought the lid for 80 ticks
    _trial(rounds / "trial_003", "hand rolled +4.4 deg about the bar mid-pull", 10, slow, [0.016] * 92 + [0.07] * 8)
    out = tmp_path / "cut"
    run = subprocess.run([sys.executable, str(SCRIPT), str(out), str(rounds), "--after-release", "5"],
                         capture_output=True, text=True, check=True)
    assert "trial_003: left out" in run.stdout and run.stdout.strip().endswith(f"1 episodes in {out}")
    assert [p.name for p in out.iterdir()] == ["round_trial_000"]
    cut = load_episode(out / "round_trial_000")
    # the lid passes 1.6 at step 19 and the fingers open at 21: kept up to 21 + 5
    assert cut.num_steps == 26 and cut.steps["intervention"].sum() == 16
    original = load_episode(rounds / "trial_000")
    assert np.array_equal(cut.steps["q"], original.steps["q"][:26])
    assert np.array_equal(cut.frames("wrist_image_left"), original.frames("wrist_image_left")[:26])
    assert len(np.load(out / "round_trial_000" / OBJECT_STATE_FILE)["lid_hinge"]) == 26
    assert cut.meta["cut_from"] == {"path": str(rounds / "trial_000"), "num_steps": 50}


def test_the_takeover_leaves_its_steps_over_the_cup_unlabelled_when_asked(tmp_path):
    lid = list(np.linspace(0, 0.2, 10)) + list(np.linspace(0.2, 1.7, 10)) + [1.7] * 30
    width = [0.07] * 10 + [0.016] * 11 + [0.07] * 29
    # the hand (synthetic x = 0.5 + 0.001 i, y = 0) is right over the cup until step 13, then 0.5 m away
    cup = [[0.5 + 0.001 * i, 0.0, 0.03] if i < 14 else [0.0, 0.0, 0.03] for i in range(50)]
    _trial(tmp_path / "round" / "trial_000", "lid fell shut (0.20 rad) before the cup was in", 10, lid, width, cup=cup)
    for flag, out in ((["--unlabel-near-cup", "0.15"], "near"), ([], "all")):
        subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / out), str(tmp_path / "round"),
                        "--reason", "lid fell shut", *flag], capture_output=True, text=True, check=True)
    near = load_episode(tmp_path / "near" / "round_trial_000").steps["intervention"]
    every = load_episode(tmp_path / "all" / "round_trial_000").steps["intervention"]
    assert len(near) == len(every) == 26 and every.sum() == 16
    assert np.array_equal(np.flatnonzero(near), np.arange(14, 26))  # steps 10-13, over the cup, label nothing
