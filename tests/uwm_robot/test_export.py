"""Exports of recorded episodes: the official UWM zarr buffer and LeRobot v3, read back."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from robot_client.recording import EpisodeWriter, synthetic_frames, synthetic_step, write_synthetic_episode
from uwm_robot import action_codec
from uwm_robot.episode import decode_video, load_episode
from uwm_robot.images import resize_frames
from uwm_robot.export import (
    ExportError,
    collect_episodes,
    export_lerobot,
    export_uwm_zarr,
    quat_to_droid_euler,
)

CAMS = {"exterior_image_1_left": (36, 64), "wrist_image_left": (36, 64)}
LENGTHS = [20, 25, 30]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("episodes")
    for i, n in enumerate(LENGTHS):
        write_synthetic_episode(root / "rice_cooker" / "ID" / f"trial_{i:03d}", n_steps=n, camera_shapes=CAMS,
                                save_raw_frames=(i == 1), success=(i != 2), decided_by="sim_check")
    demo = write_synthetic_episode(root / "demos" / "demo_000", n_steps=12, camera_shapes=CAMS,
                                   metadata={"kind": "demo", "instruction": "stack the bowls", "task": "stack_bowls",
                                             "condition": None},
                                   success=None, decided_by="none", reason="operator_stop", no_action_steps=0)
    assert demo.exists()
    # A crashed episode: raw frames, no video, never finished.
    w = EpisodeWriter(root / "crashed" / "trial_000", {"task": "rice_cooker", "condition": "ID"}, CAMS,
                      save_raw_frames=True, video=False)
    for i in range(9):
        w.on_step(synthetic_step(i), synthetic_frames(i, CAMS))
    del w
    return root


def test_quat_to_droid_euler_matches_scipy_extrinsic_xyz():
    Rotation = pytest.importorskip("scipy.spatial.transform").Rotation
    rng = np.random.default_rng(0)
    q = rng.normal(size=(200, 4))
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    np.testing.assert_allclose(quat_to_droid_euler(q), Rotation.from_quat(q).as_euler("xyz"), atol=1e-9)


def test_collect_filters(root):
    assert len(collect_episodes([root])) == 4  # crashed one left out
    assert len(collect_episodes([root], include_incomplete=True)) == 5
    assert len(collect_episodes([root], only_success=True)) == 2
    assert [e.meta["kind"] for e in collect_episodes([root], kind="demo")] == ["demo"]
    with pytest.raises(ExportError, match="does not exist"):
        collect_episodes([root / "nope"])
    with pytest.raises(ExportError, match="no episode left"):
        collect_episodes([root / "demos"], only_success=True)


def test_uwm_zarr_has_official_layout(root, tmp_path):
    zarr = pytest.importorskip("zarr")
    eps = collect_episodes([root / "rice_cooker", root / "crashed"], include_incomplete=True)
    assert [e.num_steps for e in eps] == [9, *LENGTHS]  # path order: crashed/ sorts first
    summary = export_uwm_zarr(eps, tmp_path / "buffer.zarr", image_shape=(180, 320))
    total = 9 + sum(LENGTHS)
    g = zarr.open_group(str(tmp_path / "buffer.zarr"), mode="r")
    assert g.metadata.zarr_format == 2  # readable by the official zarr 2 code
    assert sorted(g["data"].array_keys()) == sorted(["obs.exterior_image_1_left", "obs.wrist_image_left",
                                                     "obs.cartesian_position", "obs.gripper_position", "action"])
    data = g["data"]
    for cam in CAMS:
        a = data[f"obs.{cam}"]
        assert a.shape == (total, 180, 320, 3) and a.dtype == np.uint8 and a.chunks == (1, 180, 320, 3)
        comp = a.metadata.compressor.get_config()
        assert (comp["id"], comp["cname"], comp["clevel"], comp["shuffle"]) == ("blosc", "lz4", 5, 0)
    for key, dim in (("obs.cartesian_position", 6), ("obs.gripper_position", 1), ("action", 10)):
        a = data[key]
        assert a.shape == (total, dim) and a.dtype == np.float32 and a.chunks == (total, dim)
        comp = a.metadata.compressor.get_config()
        assert (comp["cname"], comp["clevel"], comp["shuffle"]) == ("lz4", 0, 0)
    ends = g["meta"]["episode_ends"][:]
    assert ends.dtype == np.int64 and ends.tolist() == list(np.cumsum([9, *LENGTHS]))
    assert g["meta"]["episode_ends"].metadata.compressor is None
    assert summary["steps"] == total

    # Episode 2 (trial_001, raw frames): values
    ep = eps[2]
    s, e = int(ends[1]), int(ends[2])
    acts = data["action"][s:e]
    assert not np.isnan(acts).any()
    # the first two steps had no action: the hold (zero velocity, commanded gripper) was exported
    np.testing.assert_allclose(acts[:2, :3], 0.0)
    np.testing.assert_allclose(acts[:2, 3:9], np.tile([1, 0, 0, 0, 1, 0], (2, 1)), atol=1e-7)
    np.testing.assert_allclose(acts[:2, 9], ep.steps["gripper_command"][:2])
    np.testing.assert_allclose(acts[2:], action_codec.encode(ep.steps["action_droid"][2:]), rtol=1e-6, atol=1e-7)
    cart = data["obs.cartesian_position"][s:e]
    np.testing.assert_allclose(cart[:, :3], ep.steps["ee_pos"], atol=1e-6)
    np.testing.assert_allclose(cart[:, 3:], quat_to_droid_euler(ep.steps["ee_quat"]), atol=1e-6)
    np.testing.assert_allclose(data["obs.gripper_position"][s:e, 0], 1 - ep.steps["gripper_width"] / 0.08, atol=1e-6)
    img = data["obs.wrist_image_left"][s + 3]
    np.testing.assert_array_equal(img, resize_frames(ep.frames("wrist_image_left")[3:4], (180, 320))[0])


def test_uwm_zarr_errors(root, tmp_path):
    eps = collect_episodes([root / "rice_cooker"])
    export_uwm_zarr(eps, tmp_path / "b.zarr", image_shape=(18, 32))
    with pytest.raises(ExportError, match="exists"):
        export_uwm_zarr(eps, tmp_path / "b.zarr")
    export_uwm_zarr(eps, tmp_path / "b.zarr", image_shape=(18, 32), overwrite=True)
    with pytest.raises(ExportError, match="missing"):
        export_uwm_zarr(eps, tmp_path / "c.zarr", cameras=["nope"])


def test_lerobot_v3_layout(root, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    eps = collect_episodes([root / "rice_cooker", root / "demos"])
    out = tmp_path / "lr"
    summary = export_lerobot(eps, out)
    lengths = [e.num_steps for e in eps]
    total = sum(lengths)
    assert summary["episodes"] == 4 and summary["frames"] == total

    info = json.loads((out / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 15
    assert info["total_episodes"] == 4 and info["total_frames"] == total and info["total_tasks"] == 2
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["video_path"] == "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    assert info["splits"] == {"train": "0:4"} and info["chunks_size"] == 1000
    feats = info["features"]
    for key in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
        assert feats[key]["shape"] == [1]
    assert feats["observation.images.wrist_image_left"]["dtype"] == "video"
    assert feats["observation.images.wrist_image_left"]["shape"] == [36, 64, 3]
    assert feats["action"] == {"dtype": "float32", "shape": [7], "names": ["vx", "vy", "vz", "wx", "wy", "wz", "gripper_position"]}

    data = pq.read_table(out / "data" / "chunk-000" / "file-000.parquet")
    assert data.num_rows == total
    assert set(data.column_names) == {k for k, f in feats.items() if f["dtype"] != "video"}
    assert str(data.schema.field("action").type) == "fixed_size_list<element: float>[7]"
    idx = data.column("index").to_numpy()
    assert idx.tolist() == list(range(total))
    fi = data.column("frame_index").to_numpy()
    np.testing.assert_allclose(data.column("timestamp").to_numpy(), fi / 15.0, atol=1e-6)

    tasks = pq.read_table(out / "meta" / "tasks.parquet")
    assert json.loads(tasks.schema.metadata[b"pandas"])["index_columns"] == ["task"]
    # path order: demos/ before rice_cooker/
    assert [e.meta["kind"] for e in eps] == ["demo", "rollout", "rollout", "rollout"]
    assert dict(zip(tasks.column("task").to_pylist(), tasks.column("task_index").to_pylist())) == {
        "stack the bowls": 0, "put the rice in the cooker": 1}

    epi = pq.read_table(out / "meta" / "episodes" / "chunk-000" / "file-000.parquet").to_pylist()
    assert [r["episode_index"] for r in epi] == [0, 1, 2, 3]
    assert [r["length"] for r in epi] == lengths
    assert epi[1]["dataset_from_index"] == lengths[0] and epi[-1]["dataset_to_index"] == total
    assert epi[0]["tasks"] == ["stack the bowls"] and epi[0]["uwm/success"] is None
    assert epi[1]["uwm/success"] is True and epi[3]["uwm/success"] is False
    key = "observation.images.wrist_image_left"
    assert epi[2][f"videos/{key}/from_timestamp"] == pytest.approx(sum(lengths[:2]) / 15)
    assert epi[2][f"videos/{key}/to_timestamp"] == pytest.approx(sum(lengths[:3]) / 15)
    assert epi[0]["stats/action/count"] == [lengths[0]] and len(epi[0]["stats/action/mean"]) == 7
    assert np.asarray(epi[0][f"stats/{key}/mean"]).shape == (3, 1, 1)

    stats = json.loads((out / "meta" / "stats.json").read_text())
    assert stats["action"]["count"] == [total] and np.asarray(stats[key]["max"]).shape == (3, 1, 1)
    acts = np.stack(data.column("action").to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(stats["action"]["min"], acts.min(0), atol=1e-6)
    np.testing.assert_allclose(stats["action"]["mean"], acts.mean(0), atol=1e-5)
    np.testing.assert_allclose(stats["action"]["std"], acts.std(0), atol=1e-5)

    video = out / "videos" / key / "chunk-000" / "file-000.mp4"
    frames = list(decode_video(video))
    assert len(frames) == total
    # the first frame of episode 2 sits at its from_timestamp
    first = frames[int(round(epi[2][f"videos/{key}/from_timestamp"] * 15))]
    want = load_episode(eps[2].path).frames("wrist_image_left")[0]
    assert np.abs(first.astype(int) - want).mean() < 12


def test_cli(root, tmp_path, capsys):
    from uwm_robot.cli import main

    assert main(["export", "--to", "uwm-zarr", str(root / "rice_cooker"), "--out", str(tmp_path / "z.zarr"),
                 "--image-shape", "18x32", "--only-success"]) == 0
    assert "exported 2 episodes" in capsys.readouterr().out
    assert main(["export", "--to", "lerobot", str(root), "--out", str(tmp_path / "lr"), "--kind", "rollout"]) == 0
    assert main(["export", "--to", "lerobot", str(root), "--out", str(tmp_path / "lr")]) == 2
    assert "exists" in capsys.readouterr().err
