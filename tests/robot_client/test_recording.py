"""Episode recording: round trip, crash safety (SIGKILL), frame accounting, errors, bench."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from robot_client.recording import (
    EpisodeWriter,
    RecordingError,
    bench_recording,
    list_episodes,
    load_episode,
    synthetic_frames,
    synthetic_step,
    write_synthetic_episode,
)
from uwm_robot import action_codec
from uwm_robot.episode import STEPS_FILE, decode_video

REPO = Path(__file__).resolve().parents[2]
CAMS = {"exterior_image_1_left": (36, 64), "wrist_image_left": (15, 21)}  # odd size: padded for yuv420p


def test_round_trip(tmp_path):
    d = write_synthetic_episode(tmp_path / "ep", n_steps=25, camera_shapes=CAMS, save_raw_frames=True,
                                metadata={"condition": "L2", "server": {"model": "tiny"}, "calibration": None})
    ep = load_episode(d)
    assert ep.finished and ep.num_steps == 25 and ep.truncated_bytes == 0
    m = ep.meta
    assert m["task"] == "rice_cooker" and m["condition"] == "L2" and m["ood_category"] == "lighting"
    assert m["kind"] == "rollout" and m["server"] == {"model": "tiny"} and m["checkpoint"]["id"] == "synthetic"
    assert m["outcome"] == {"success": True, "decided_by": "sim_check", "reason": "success"}
    assert m["num_steps"] == 25 and m["timing"]["on_step_ms"]["n"] == 25
    assert {f["name"] for f in m["schema"]["fields"]} >= {"t", "q", "action_droid", "action_model", "intervention",
                                                         "capture_ts.wrist_image_left", "receive_ts.exterior_image_1_left"}
    for i in range(25):
        rec = synthetic_step(i, with_action=i >= 2)
        assert ep.steps["t"][i] == rec.t
        np.testing.assert_array_equal(ep.steps["q"][i], rec.q)
        np.testing.assert_array_equal(ep.steps["ee_quat"][i], rec.ee_quat)
        np.testing.assert_array_equal(ep.steps["q_target"][i], rec.command.q_target)
        assert ep.steps["action_index"][i] == rec.action_index and ep.steps["chunk_id"][i] == rec.chunk_id
        assert ep.steps["blended"][i] == rec.blended and ep.steps["hold"][i] == rec.command.hold
        assert ep.steps["intervention"][i] == 0
        f = synthetic_frames(i, CAMS)["wrist_image_left"]
        assert ep.steps["capture_ts.wrist_image_left"][i] == f.capture_ts
        assert ep.steps["receive_ts.wrist_image_left"][i] == f.receive_ts
        if rec.action is None:
            assert np.isnan(ep.steps["action_droid"][i]).all() and np.isnan(ep.steps["action_model"][i]).all()
        else:
            np.testing.assert_array_equal(ep.steps["action_droid"][i], rec.action)
            np.testing.assert_allclose(ep.steps["action_model"][i], action_codec.encode(rec.action))
            np.testing.assert_allclose(action_codec.decode(ep.steps["action_model"][i]), rec.action, atol=1e-12)
    # chunks
    assert [c["request_id"] for c in ep.chunks] == [0, 1, 2, 3]
    assert np.asarray(ep.chunks[1]["actions"]).shape == (16, 7) and ep.chunks[1]["meta"]["server_ms"] == 88.0
    # frames: raw exactly, video within codec error, one video frame per step
    for cam, (h, w) in CAMS.items():
        raw = ep.frames(cam)
        assert raw.shape == (25, h, w, 3)
        want = np.stack([synthetic_frames(i, CAMS)[cam].color for i in range(25)])
        np.testing.assert_array_equal(raw, want)
        video = np.stack(list(decode_video(ep.videos[cam], shape=(h, w))))
        assert video.shape == (25, h, w, 3)
        assert np.abs(video.astype(int) - want).mean() < 12
        assert m["video"][cam]["frames"] == 25 and m["video"][cam]["dropped"] == 0 and m["video"][cam]["error"] is None
        assert (d / m["thumbs"][cam]["first"]).is_file() and (d / m["thumbs"][cam]["last"]).is_file()
    (tmp_path / "eval.log").write_text("a log beside the episode")
    assert list_episodes(tmp_path) == [d]
    assert list_episodes(tmp_path / "eval.log") == []  # a file given where episodes were expected holds none
    selection = tmp_path.parent / f"{tmp_path.name}_selection"  # a folder of links to chosen episodes
    selection.mkdir()
    (selection / "chosen").symlink_to(d, target_is_directory=True)
    assert list_episodes(selection) == [selection / "chosen"]


def test_video_only_frames(tmp_path):
    d = write_synthetic_episode(tmp_path / "ep", n_steps=10, camera_shapes={"cam": (24, 32)})
    ep = load_episode(d)
    assert not ep.raw_frames
    frames = ep.frames("cam")
    assert frames.shape == (10, 24, 32, 3)


_KILL_SCRIPT = r"""
import sys, numpy as np
from robot_client.recording import EpisodeWriter, synthetic_step, synthetic_frames
from robot_client.chunk_executor import Chunk
cams = {"exterior_image_1_left": (36, 64), "wrist_image_left": (15, 21)}
w = EpisodeWriter(sys.argv[1], {"task": "stack_bowls", "condition": "C1"}, cams, save_raw_frames=True)
i = 0
while True:
    if i % 8 == 0:
        w.on_chunk(Chunk(np.zeros((16, 7)), i / 15.0, None, i // 8, 0.1))
    w.on_step(synthetic_step(i), synthetic_frames(i, cams), intervention=(i % 5 == 0))
    print(i + 1, flush=True)
    i += 1
"""


def test_sigkill_leaves_flushed_steps_readable(tmp_path):
    d = tmp_path / "crashed"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(d)], stdout=subprocess.PIPE, env=env, cwd=REPO)
    written = 0
    deadline = time.time() + 60
    while written < 40 and time.time() < deadline:
        line = proc.stdout.readline()
        assert line, "writer process died early"
        written = int(line)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert written >= 40

    # A partial record as if the kill had landed mid-write: the reader ignores it.
    with open(d / STEPS_FILE, "ab") as f:
        f.write(b"\x01" * 17)

    ep = load_episode(d)
    assert not ep.finished and ep.meta["status"] == "recording" and ep.meta["outcome"] is None
    assert ep.meta["task"] == "stack_bowls" and ep.meta["ood_category"] == "clutter"
    assert ep.num_steps >= written  # every step printed was flushed before the print
    assert ep.truncated_bytes == 17
    n = ep.num_steps
    for i in range(n):
        rec = synthetic_step(i)
        np.testing.assert_array_equal(ep.steps["q"][i], rec.q)
        np.testing.assert_array_equal(ep.steps["action_droid"][i], rec.action)
        assert ep.steps["intervention"][i] == (i % 5 == 0)
    for cam in ("exterior_image_1_left", "wrist_image_left"):
        frames = ep.frames(cam)
        assert frames.shape[0] == n
        np.testing.assert_array_equal(frames[n - 1], synthetic_frames(n - 1, {"exterior_image_1_left": (36, 64), "wrist_image_left": (15, 21)})[cam].color)
    assert len(ep.chunks) >= (written - 1) // 8 + 1
    assert list_episodes(tmp_path) == [d]


def test_full_encoder_queue_repeats_frames_and_reports_drops(tmp_path, monkeypatch):
    from robot_client import recording

    orig = recording._VideoEncoder._send

    def slow_send(self, data):
        time.sleep(0.02)
        orig(self, data)

    monkeypatch.setattr(recording._VideoEncoder, "_send", slow_send)
    cams = {"cam": (16, 16)}
    w = EpisodeWriter(tmp_path / "ep", {"task": "t"}, cams, video_queue_frames=2)
    for i in range(30):
        w.on_step(synthetic_step(i), synthetic_frames(i, cams))
    meta = w.finish(False, "operator_key", "timeout")
    v = meta["video"]["cam"]
    assert v["dropped"] > 0 and len(v["dropped_steps"]) == v["dropped"]
    assert v["frames"] == 30  # dropped frames were replaced by repeats: one video frame per step
    ep = load_episode(tmp_path / "ep")
    assert sum(1 for _ in decode_video(ep.videos["cam"])) == 30


def test_errors(tmp_path):
    cams = {"cam": (8, 8)}
    with pytest.raises(RecordingError, match="JSON"):
        EpisodeWriter(tmp_path / "a", {"x": object()}, cams)
    w = EpisodeWriter(tmp_path / "b", {}, cams, video=False)
    with pytest.raises(RecordingError, match="expected uint8"):
        w.on_step(synthetic_step(0), synthetic_frames(0, {"cam": (9, 8)}))
    with pytest.raises(RecordingError, match="no frame for camera"):
        w.on_step(synthetic_step(0), {})
    with pytest.raises(ValueError, match="decided_by"):
        w.finish(True, "guess", "success")
    with pytest.raises(ValueError, match="needs decided_by"):
        w.finish(True, "none", "success")
    w.finish(None, "none", "interrupted")
    with pytest.raises(RecordingError, match="after finish"):
        w.on_step(synthetic_step(0), synthetic_frames(0, cams))
    with pytest.raises(RecordingError, match="not empty"):
        EpisodeWriter(tmp_path / "b", {}, cams)
    with pytest.raises(RecordingError, match="kind"):
        EpisodeWriter(tmp_path / "c", {"kind": "eval"}, cams)


def test_context_manager_marks_unfinished_episode(tmp_path):
    cams = {"cam": (8, 8)}
    with pytest.raises(RuntimeError):
        with EpisodeWriter(tmp_path / "ep", {"kind": "demo"}, cams) as w:
            w.on_step(synthetic_step(0), synthetic_frames(0, cams))
            raise RuntimeError("boom")
    ep = load_episode(tmp_path / "ep")
    assert ep.finished and ep.num_steps == 1 and ep.meta["kind"] == "demo"
    assert ep.meta["outcome"]["success"] is None and "boom" in ep.meta["outcome"]["reason"]
    json.loads((tmp_path / "ep" / "meta.json").read_text())  # valid JSON, no tmp left over
    assert not (tmp_path / "ep" / "meta.json.tmp").exists()


def test_bench_recording_smoke(tmp_path):
    r = bench_recording(seconds=1.0, cameras=3, shape=(36, 64), fps=15.0, paced=False, out_dir=tmp_path)
    assert r["ok"], r
    assert r["steps"] == 15 and all(v == 15 for v in r["video_frames_decoded"].values())


def test_records_a_sim_control_loop(tmp_path):
    """The writer (and the live view) hooked into the real control loop on the MuJoCo sim."""
    pytest.importorskip("mujoco")
    from robot_client.action_path import CartesianVelocityActionPath
    from robot_client.control_loop import ControlLoop, LoopConfig
    from robot_client.live_view import LiveView
    from robot_client.policy import PolicyReply
    from robot_client.safety import SafetyMonitor
    from robot_client.sim.env import SimEnv

    class Policy:
        def hello(self):
            return {"model": "scripted"}

        def infer(self, obs, seed=None):
            return PolicyReply(np.tile([0.2, 0, 0, 0, 0, 0, 0.0], (16, 1)))

    env = SimEnv("rice_cooker", condition="B1", seed=0)
    try:
        shapes = {name: cam.read().color.shape[:2] for name, cam in env.cameras.items()}
        view = LiveView(save_path=tmp_path / "live.rrd")
        writer = EpisodeWriter(tmp_path / "ep", {"task": "rice_cooker", "condition": "B1", "seed": 0,
                                                 "server": Policy().hello()}, shapes)

        def on_step(rec, frames):
            writer.on_step(rec, frames)
            view.on_step(rec, frames)

        def on_chunk(chunk):
            writer.on_chunk(chunk)
            view.on_chunk(chunk)

        loop = ControlLoop(env.robot, env.gripper, env.cameras, env.clock, Policy(),
                           CartesianVelocityActionPath(SafetyMonitor()),
                           LoopConfig(max_steps=20, sim_latency_s=0.2), {k: (90, 160) for k in env.cameras},
                           on_step=on_step, on_chunk=on_chunk)
        result = loop.run()
        writer.finish(result.success, "sim_check", result.reason, result.stats)
        view.close()
    finally:
        env.close()
    ep = load_episode(tmp_path / "ep")
    assert ep.finished and ep.num_steps == result.steps == 20
    assert ep.meta["outcome"]["reason"] == "timeout" and ep.meta["loop_stats"]["chunks"] == len(ep.chunks) > 0
    assert ep.meta["ood_category"] == "background"
    acted = ~np.isnan(ep.steps["action_droid"][:, 0])
    assert acted.sum() > 10 and np.allclose(ep.steps["action_droid"][acted, 0], 0.2)
    assert (np.diff(ep.steps["t"]) > 0).all()
    for name, (h, w) in shapes.items():
        assert (np.diff(ep.steps[f"capture_ts.{name}"]) > 0).all()
        assert ep.frames(name).shape == (20, h, w, 3)
    assert (tmp_path / "live.rrd").stat().st_size > 10_000
