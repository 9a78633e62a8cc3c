"""scripts/select_chunks.py: successful trials' chunks, less the stalled ones and the hover before the cup lifts."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from robot_client.recording import EpisodeWriter, synthetic_frames, synthetic_step
from robot_client.sim.object_log import OBJECT_STATE_FILE
from uwm_robot.episode import CHUNKS_FILE, load_episode

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "select_chunks.py"
SHAPES = {"wrist_image_left": (8, 8)}
N = 300  # ticks at 15 Hz: the lid opens at 30, the cup lifts at 210


def _trial(path, seed, success=True, returns=0):
    meta = {"kind": "rollout", "seed": seed}
    with EpisodeWriter(path, meta, SHAPES, save_raw_frames=True, video=False) as w:
        for i in range(N):
            w.on_step(synthetic_step(i), synthetic_frames(i, SHAPES))
        w.finish(success, "sim_check", "success" if success else "timeout", stats={"returns_to_start": returns})
    lid = np.where(np.arange(N) >= 30, 1.5, 0.0)
    cup = np.zeros((N, 3))
    cup[210:, 2] = 0.1
    np.savez(path / OBJECT_STATE_FILE, t=np.arange(N) / 15, lid_hinge=lid, cup=cup)
    with open(path / CHUNKS_FILE, "w") as f:  # one chunk every 3 ticks; two asked while stalled
        for tick in range(0, N, 3):
            f.write(json.dumps({"request_id": tick, "t_obs": tick / 15, "actions": [[0.0] * 7] * 16,
                                "execute_k": 12 if tick in (240, 243) else None}) + "\n")


def _ticks(path):
    return [round(json.loads(line)["t_obs"] * 15) for line in open(path / CHUNKS_FILE)]


def test_keeps_successes_without_a_return_less_stalled_and_early_cup_stage_chunks(tmp_path):
    ev = tmp_path / "eval_x"
    for i, kw in enumerate([{}, {"success": False}, {"returns": 1}, {}]):
        _trial(ev / "rice_cooker" / "ID" / f"trial_{i:03d}", 100 + i, **kw)
    out = tmp_path / "sel"
    run = subprocess.run([sys.executable, str(SCRIPT), str(out), str(ev), "--seeds", "100", "103",
                          "--keep-before-lift-s", "2"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    (kept,) = sorted(out.iterdir())  # trial 1 failed, trial 2 returned, trial 3's seed is out of range
    # Before the lid opened and from 2 s (30 ticks) before the lift on; the two stalled chunks left out too.
    assert _ticks(kept) == [t for t in range(0, N, 3) if (t < 30 or t >= 180) and t not in (240, 243)]
    assert "1 trials" in run.stdout and "48 chunks kept" in run.stdout
    ep = load_episode(kept, load_chunks=True)  # the rest of the trial is its own, linked
    assert len(ep.steps["t"]) == N and len(ep.chunks) == 48


def test_no_usable_trial_is_a_clear_error(tmp_path):
    ev = tmp_path / "eval_y"
    _trial(ev / "trial_000", 5, success=False)
    run = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "sel"), str(ev)], capture_output=True, text=True)
    assert run.returncode == 1 and "no successful trial without a return" in run.stderr
