"""`robot_client eval`: trials per condition, a report, resume, and crash-safe re-runs."""

import json
import subprocess
import sys

import numpy as np
import pytest

from robot_client.cli import build_parser
from robot_client.sim.object_log import load_object_state
from uwm_robot.episode import decode_video, load_episode



def run_eval(ckpt, out, *extra):
    proc = subprocess.run(
        [sys.executable, "-m", "robot_client.cli", "eval", "--task", "rice_cooker", "--condition", "id,C1",
         "--trials", "2", "--max-steps", "12", "--checkpoint", str(ckpt), "--out", str(out), *extra],
        capture_output=True, text=True, timeout=500,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_eval_reports_resumes_and_reruns_unfinished_trials(tiny_checkpoint, tmp_path):
    out = tmp_path / "eval"
    first = run_eval(tiny_checkpoint, out, "--execute-k", "5", "--inpaint", "--samples", "3", "--coherent",
                     "--noise-scale", "0.5", "--stall-noise-scale", "1", "--stall-execute-k", "9", "--stall-return-s", "off",
                     "--release-lift-m", "0.06", "--release-lift-max", "1", "--grasp-sink-m", "0.004", "--raw-frames")
    assert first.count("[eval] rice_cooker") == 4
    assert first.count("steps; stages 0/3)") == 4  # 12 ticks: the lid still shut
    for cond in ("ID", "C1"):
        for i in range(2):
            trial = out / "rice_cooker" / cond / f"trial_{i:03d}"
            meta = json.loads((trial / "meta.json").read_text())
            assert meta["status"] == "finished" and meta["condition"] == cond and meta["seed"] == i
            # The overrides reached the loop (and are recorded): 12 ticks of 5-action windows need >= 3 chunks.
            assert meta["control"]["execute_k"] == 5 and meta["control"]["sim_latency_s"] == 0.2
            assert meta["control"]["inpaint"] is True and meta["control"]["coherent"] is True
            assert meta["control"]["stall_noise_scale"] == 1.0 and meta["control"]["stall_execute_k"] == 9
            assert meta["control"]["stall_return_s"] is None and meta["loop_stats"]["returns_to_start"] == 0
            assert meta["control"]["release_lift_m"] == 0.06 and meta["loop_stats"]["release_lifts"] == 0
            assert meta["control"]["release_lift_max"] == 1 and meta["control"]["grasp_sink_m"] == 0.004
            assert isinstance(meta["loop_stats"]["grasp_sinks"], int)
            assert meta["server"]["samples_per_chunk"] == 3  # the loopback server was started with --samples 3
            assert meta["server"]["action_noise_scale"] == 0.5  # ... and --noise-scale 0.5
            chunks = [json.loads(line) for line in (trial / "chunks.jsonl").read_text().splitlines()]
            assert all(c["meta"]["inpainted_rows"] > 0 for c in chunks[1:])  # each on the one in flight
            # ... and guided by its whole remaining plan, which reaches past the rows in flight
            assert all(c["meta"]["guided_rows"] > c["meta"]["inpainted_rows"] for c in chunks[1:])
            # 12 ticks: less than a 3 s stall, so no chunk is heated or has its own horizon
            assert all(c["meta"]["noise_scale"] is None and c["execute_k"] is None for c in chunks)
            assert meta["num_chunks"] >= 3
            objects = load_object_state(trial)  # the sim's ground truth, step by step
            assert len(objects["t"]) == meta["num_steps"] and objects["cup"].shape == (meta["num_steps"], 3)
            assert np.all(np.abs(objects["lid_hinge"]) < 0.06)  # 12 ticks: still shut
            # --raw-frames: the frames the policy saw, kept lossless beside the (lossy) H.264 video
            episode = load_episode(trial, load_chunks=False)
            assert meta["save_raw_frames"] is True and sorted(episode.raw_frames) == sorted(episode.cameras)
            for cam in episode.cameras:
                raw = np.asarray(episode.frames(cam), dtype=int)
                video = np.stack(list(decode_video(episode.videos[cam], shape=episode.camera_shape(cam))))
                assert raw.shape == video.shape == (meta["num_steps"], *episode.camera_shape(cam), 3)
                assert np.abs(raw - video).mean() > 0.5  # yuv420p, crf 23: what training on the video alone sees
    report = (out / "report.md").read_text()
    assert "rice_cooker" in report and "C1" in report and "0/2" in report
    assert "| C1 | 0/2 = 0% [0–66] | 0/2 = 0% [0–66] | 0/2 = 0% [0–66] |" in report  # no stage reached
    assert "actions executed per chunk (execute_k): 5" in report

    # A re-run resumes: every finished trial is kept and skipped.
    assert run_eval(tiny_checkpoint, out).count("[eval] rice_cooker") == 0

    # A crashed trial (meta still 'recording') is kept aside, never deleted, and run again.
    crashed = out / "rice_cooker" / "C1" / "trial_001" / "meta.json"
    meta = json.loads(crashed.read_text())
    meta["status"] = "recording"
    crashed.write_text(json.dumps(meta))
    third = run_eval(tiny_checkpoint, out)
    assert third.count("[eval] rice_cooker") == 1 and "kept unfinished trial_001" in third
    kept = list((out / "rice_cooker" / "C1").glob("trial_001.incomplete-*"))
    assert len(kept) == 1 and (kept[0] / "meta.json").exists()


@pytest.mark.parametrize("args, message", [(["--execute-k", "17"], "--execute-k must be in 1..16"),
                                           (["--samples", "0"], "--samples must be >= 1"),
                                           (["--noise-scale", "1.5"], "--noise-scale must be in [0, 1]"),
                                           (["--stall-noise-scale", "2"], "--stall-noise-scale must be in [0, 1]"),
                                           (["--stall-noise-scale", "hot"], "or 'off', got 'hot'"),
                                           (["--stall-execute-k", "0"], "--stall-execute-k must be in 1..16"),
                                           (["--stall-return-s", "-3"], "--stall-return-s must be seconds > 0"),
                                           (["--release-lift-m", "8"], "--release-lift-m must be metres in (0, 0.3]"),
                                           (["--coherent"], "--coherent picks among several sampled chunks: add --samples N")])
def test_out_of_range_overrides_are_refused(tiny_checkpoint, tmp_path, args, message):
    proc = subprocess.run(
        [sys.executable, "-m", "robot_client.cli", "eval", *args, "--checkpoint", str(tiny_checkpoint),
         "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and message in proc.stderr
    assert not (tmp_path / "rice_cooker").exists()


def test_unknown_condition_is_named(tiny_checkpoint, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "robot_client.cli", "eval", "--condition", "L9", "--checkpoint", str(tiny_checkpoint),
         "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "no condition 'L9'" in proc.stderr


def test_stall_noise_scale_off_disables_the_shipped_one():
    from robot_client.cli import _stall_noise_scale

    assert _stall_noise_scale("off") is None and _stall_noise_scale("OFF") is None
    assert _stall_noise_scale("0.7") == 0.7


def test_stall_execute_k_off_keeps_execute_k():
    from robot_client.cli import _stall_execute_k

    assert _stall_execute_k("off") is None and _stall_execute_k("12") == 12
    for text in ("0", "17", "1.5", "long"):
        with pytest.raises(SystemExit, match=f"--stall-execute-k must be in 1..16 .* or 'off', got '{text}'"):
            _stall_execute_k(text)


def test_rollouts_keep_only_their_videos_unless_asked():
    """Raw frames cost 23 kB a tick at 56x72 (two cameras): kept for rollouts meant as training data only."""
    parser = build_parser()
    assert parser.parse_args(["eval"]).raw_frames is False and parser.parse_args(["run"]).raw_frames is False
    assert parser.parse_args(["run", "--raw-frames"]).raw_frames is True


@pytest.mark.parametrize("parse, flag, expected, good, bad", [
    ("_release_lift_m", "--release-lift-m", "metres in \\(0, 0.3\\]", ("0.08", 0.08), ("0", "0.5", "high")),
    ("_release_lift_max", "--release-lift-max", "a count >= 1", ("1", 1), ("0", "1.5", "once")),
    ("_grasp_sink_m", "--grasp-sink-m", "metres in \\(0, 0.02\\]", ("0.005", 0.005), ("0", "0.05", "deep")),
    ("_stall_return_s", "--stall-return-s", "seconds > 0", ("8", 8.0), ("0", "-1", "soon")),
])
def test_optional_settings_take_a_value_or_off(parse, flag, expected, good, bad):
    """'off' (any case) disables a setting, the shipped stall return included; out-of-range values are refused."""
    import robot_client.cli as cli

    parse = getattr(cli, parse)
    assert parse("off") is None and parse("OFF") is None and parse(good[0]) == good[1]
    for text in bad:
        with pytest.raises(SystemExit, match=f"{flag} must be {expected} or 'off', got '{text}'"):
            parse(text)
