"""`robot_client run` end to end: a real policy server process (tiny preset, CPU), the zerorpc
client, the MuJoCo sim and the recorder, as a user runs it."""

import json
import subprocess
import sys

import pytest

from uwm_robot.episode import load_episode



def test_run_one_episode_through_a_real_server(tiny_checkpoint, tmp_path):
    out = tmp_path / "rollouts"
    proc = subprocess.run(
        [sys.executable, "-m", "robot_client.cli", "run", "--task", "rice_cooker", "--checkpoint", str(tiny_checkpoint),
         "--max-steps", "45", "--out", str(out), "--seed", "3"],
        capture_output=True, text=True, timeout=400,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "READY tcp://127.0.0.1:" in proc.stdout
    ep = load_episode(out / "trial_000")
    meta = ep.meta
    assert meta["task"] == "rice_cooker" and meta["condition"] == "ID" and meta["seed"] == 3
    assert meta["checkpoint"]["hash"] == json.loads((tiny_checkpoint / "meta.json").read_text())["checkpoint_hash"]
    assert meta["outcome"]["reason"] == "timeout" and meta["num_steps"] == 45
    stats = meta["loop_stats"]
    assert stats["chunks"] >= 4 and stats["idle_s"] == 0.0 and stats["inference_ms_p50"] > 0
    assert len(ep.steps["t"]) == 45 and len(ep.chunks) == stats["chunks"]
    executed = ep.steps["action_index"] >= 0
    assert executed.sum() >= 35  # the arm had an action on (almost) every tick after the first chunk
    for cam in ("exterior_image_1_left", "exterior_image_2_left", "wrist_image_left"):
        assert (out / "trial_000" / "videos" / f"{cam}.mp4").stat().st_size > 0


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "robot_client.cli", "run", "--checkpoint", str(tmp_path / "nope"), "--max-steps", "5"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "no policy checkpoint at" in proc.stderr and "uwm_robot init" in proc.stderr


def test_expert_takeover_records_dagger_data(tiny_checkpoint, tmp_path):
    """`--takeover expert`: the untrained policy stalls, the sim's expert takes the arm after 1 s and
    finishes the task; the episode says when and why, and tags only the expert's steps."""
    out = tmp_path / "dagger"
    proc = subprocess.run(
        [sys.executable, "-m", "robot_client.cli", "run", "--task", "rice_cooker", "--checkpoint", str(tiny_checkpoint),
         "--max-steps", "700", "--out", str(out), "--seed", "3", "--takeover", "expert", "--takeover-stall-s", "1"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ep = load_episode(out / "trial_000", load_chunks=False)
    meta = ep.meta
    assert meta["outcome"]["success"] is True and meta["outcome"]["reason"] == "success"
    taken = meta["expert_takeover"]
    assert taken["reason"] == "no progress for 1 s (next: lid opened)" and 1.0 < taken["t"] < 1.2
    tagged = ep.steps["intervention"].astype(bool)
    first = int(tagged.argmax())
    assert tagged[first:].all() and not tagged[:first].any() and first == round(taken["t"] * 15)
    assert meta["intervention_steps"] == meta["num_steps"] - first


def test_expert_takeover_hand_back_records_each_takeover(tiny_checkpoint, tmp_path):
    """`--takeover-hand-back`: the expert opens the lid for the stalled policy, gives the arm back, and
    takes it again when the policy fails at the cup; meta.json lists both, and the policy's steps
    between them are untagged."""
    out = tmp_path / "dagger"
    proc = subprocess.run(
        [sys.executable, "-m", "robot_client.cli", "run", "--task", "rice_cooker", "--checkpoint", str(tiny_checkpoint),
         "--max-steps", "160", "--out", str(out), "--seed", "3", "--takeover", "expert", "--takeover-stall-s", "1",
         "--takeover-hand-back"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ep = load_episode(out / "trial_000", load_chunks=False)
    first, second = ep.meta["expert_takeovers"]
    assert first["reason"] == "no progress for 1 s (next: lid opened)" and first["stage"] == 0
    assert second["stage"] == 1 and second["t"] > first["handed_back_t"]  # stalled, or (untrained) off course
    assert ep.meta["expert_takeover"] == {"t": first["t"], "reason": first["reason"]}
    tagged = ep.steps["intervention"].astype(bool)
    back, again = round(first["handed_back_t"] * 15), round(second["t"] * 15)
    assert tagged[round(first["t"] * 15):back].all() and not tagged[back:again].any() and tagged[again:].all()


def test_takeover_hand_back_needs_the_expert(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "robot_client.cli", "run", "--takeover", "keyboard", "--takeover-hand-back",
         "--checkpoint", str(tmp_path / "nope")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode != 0 and "--takeover-hand-back is for --takeover expert" in proc.stderr


def test_expert_takeover_is_refused_on_the_real_arm(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "robot_client.cli", "run", "--robot", "franka", "--takeover", "expert",
         "--checkpoint", str(tmp_path / "nope")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode != 0 and "--takeover expert plans from the simulator's state" in proc.stderr
