"""scripts/plot_cup_aim.py: the hand's offset from the cup where it goes down, read back from recorded episodes."""
import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np

from robot_client.recording import EpisodeWriter, synthetic_frames, synthetic_step

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "plot_cup_aim.py"
SHAPES = {"wrist_image_left": (8, 8)}


def _episode(path, cup_xy, lowest_xy):
    """The hand passes far from the cup, then goes down to `lowest_xy`."""
    track = [(0.6, 0.2, 0.5), (0.5, 0.0, 0.4), (*lowest_xy, 0.35), (*lowest_xy, 0.14), (*lowest_xy, 0.25)]
    with EpisodeWriter(path, {"kind": "rollout", "initial_state": {"cup_xy": list(cup_xy)}}, SHAPES, video=False) as w:
        for i, ee in enumerate(track):
            w.on_step(dataclasses.replace(synthetic_step(i), ee_pos=np.array(ee)), synthetic_frames(i, SHAPES))
        w.finish(False, "sim_check", "timeout")


def test_offsets_are_read_at_the_lowest_point_near_the_cup(tmp_path):
    _episode(tmp_path / "a" / "trial_000", (0.40, -0.15), (0.41, -0.11))  # +1, +4 cm
    _episode(tmp_path / "a" / "trial_001", (0.38, -0.12), (0.37, -0.10))  # -1, +2 cm
    _episode(tmp_path / "b" / "trial_000", (0.40, -0.15), (0.60, 0.20))  # never near the cup
    out = tmp_path / "aim.png"
    run = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), f"policy, k = 8={tmp_path / 'a'}"],
                         capture_output=True, text=True, check=True)
    assert "policy, k = 8: 2 episodes, mean offset x +0.0 y +3.0 cm, rms x 1.0 y 3.2 cm" in run.stdout
    assert out.stat().st_size > 1000
    bad = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), f"far={tmp_path / 'b'}"],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "far: no episode went within 8 cm of the cup" in bad.stderr
