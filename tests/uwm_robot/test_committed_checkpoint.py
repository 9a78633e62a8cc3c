"""The committed sim policy (docs/results.md) is a complete, servable checkpoint of the stack's own training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

CKPT = Path(__file__).resolve().parents[2] / "checkpoints" / "rice_cooker_tiny"


@pytest.mark.skipif(not (CKPT / "model.safetensors").exists(), reason="no committed checkpoint")
def test_committed_checkpoint_loads_verified_and_serves_a_chunk():
    from policy_server.local import random_observation, random_state
    from uwm_robot.checkpoint import load_checkpoint
    from uwm_robot.inference import UWMPolicy

    loaded = load_checkpoint(CKPT, verify=True)  # weights re-hashed against meta.json
    # A trained one, not an init: a finetune, or a weight average (`uwm_robot average`) of finetunes.
    trained = loaded.meta["averaged"] if loaded.meta["source"] == "uwm_robot average" else [loaded.meta]
    assert all(m["source"] == "uwm_robot finetune" and m["step"] >= 1000 and m["episodes"] >= 50 for m in trained)
    assert loaded.config.cameras == ("exterior_image_2_left", "wrist_image_left")
    assert (CKPT / "model.safetensors").stat().st_size <= 60e6
    policy = UWMPolicy.load(CKPT)
    images, _ = random_observation(policy.metadata(), 0)
    state = random_state(policy.metadata(), 0) or {}  # the robot state, if the model conditions on it
    out = policy.infer({k: v[None] for k, v in {**images, **state}.items()}, seed=0)
    assert out["actions"].shape == (1, 16, 7) and np.isfinite(out["actions"]).all()
