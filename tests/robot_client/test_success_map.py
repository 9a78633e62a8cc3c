"""scripts/success_map.py: outcomes read back from trials' meta.json, by cup-to-cooker distance."""
import subprocess
import sys
from pathlib import Path

from robot_client.recording import EpisodeWriter, synthetic_frames, synthetic_step

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "success_map.py"
STAGES = ["lid opened", "cup in the pot", "lid closed"]
SHAPES = {"wrist_image_left": (8, 8)}


def _trial(path: Path, cup_y: float, reached: int, finished: bool = True):
    """A recorded trial whose cup starts `0.2 - cup_y` m from the cooker (both at x = 0.4) and that
    reached `reached` stages; unfinished: still recording."""
    meta = {"kind": "rollout", "task": "rice_cooker",
            "initial_state": {"cooker_xy": [0.4, 0.2], "cup_xy": [0.4, cup_y]}}
    w = EpisodeWriter(path, meta, SHAPES, video=False)
    w.on_step(synthetic_step(0), synthetic_frames(0, SHAPES))
    if finished:
        w.finish(reached == 3, "sim_check", "success" if reached == 3 else "timeout",
                 extra={"task_progress": {"stage": reached, "stages": STAGES, "reached": STAGES[:reached]}})


def test_quartiles_count_each_stage_and_the_map_is_drawn(tmp_path):
    # distances 30..37 cm; the near half only opens the lid, the far half succeeds but for one
    for i, reached in enumerate([1, 1, 1, 2, 3, 3, 2, 3]):
        _trial(tmp_path / "eval_a" / f"trial_{i:03d}", 0.2 - (0.30 + 0.01 * i), reached)
    _trial(tmp_path / "eval_a" / "trial_008", -0.5, 3, finished=False)  # still recording: left out
    out = tmp_path / "map.png"
    run = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), str(tmp_path / "eval_a")],
                         capture_output=True, text=True, check=True)
    lines = run.stdout.splitlines()
    assert lines[0] == "8 trials, 3 successes"
    assert lines[1] == "cup-cooker 30.0-31.8 cm: 2 trials, lid opened 2, cup in the pot 0, lid closed 0"
    assert lines[2] == "cup-cooker 31.8-33.5 cm: 2 trials, lid opened 2, cup in the pot 1, lid closed 0"
    assert lines[4] == "cup-cooker 35.2-37.0 cm: 2 trials, lid opened 2, cup in the pot 2, lid closed 1"
    assert out.stat().st_size > 10_000


def test_no_finished_trial_is_a_clear_error(tmp_path):
    _trial(tmp_path / "eval_b" / "trial_000", -0.1, 3, finished=False)
    run = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "m.png"), str(tmp_path / "eval_b")],
                         capture_output=True, text=True)
    assert run.returncode != 0 and "no finished rice_cooker trial with task progress" in run.stderr
