"""scripts/rice_cooker_lid.py: what the lid did, read back from the episodes' object state."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from robot_client.sim.object_log import OBJECT_STATE_FILE

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "rice_cooker_lid.py"
COOKER_XY = (0.45, 0.2)
IN_POT, BESIDE = (0.45, 0.2, 0.05), (0.4, -0.15, 0.03)


def _episode(path, lid, cup, success=False):
    """A finished trial at 15 Hz: the lid angle and the cup position per step."""
    path.mkdir(parents=True)
    (path / "meta.json").write_text(json.dumps({"fps": 15.0, "initial_state": {"cooker_xy": list(COOKER_XY)},
                                                "outcome": {"success": success}}))
    n = len(lid)
    np.savez(path / OBJECT_STATE_FILE, t=np.arange(n) / 15, lid_hinge=np.asarray(lid, float),
             cup=np.asarray(cup, float).reshape(n, 3))


def test_a_lid_fallen_shut_before_the_cup_is_told_from_one_that_stays_open(tmp_path):
    up = list(np.linspace(0, 1.7, 20))
    _episode(tmp_path / "trial_000", up + [1.7] * 40 + [0.0] * 10, [BESIDE] * 40 + [IN_POT] * 30, success=True)
    _episode(tmp_path / "trial_001", up[:17] + [1.3] * 10 + list(np.linspace(1.3, 0.0, 15)) + [0.0] * 28, [BESIDE] * 70)
    _episode(tmp_path / "trial_002", [0.0] * 70, [BESIDE] * 70)  # never opened
    run = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True, check=True)
    assert (f"{tmp_path}: 3 trials, 1 succeeded; lid opened in 2, fell shut again before the cup was in 1; "
            "rest angle after the first pull: median 0.85 rad (min 0.00, 1 below 1.4)") in run.stdout
