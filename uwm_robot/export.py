"""Export recorded episodes (`uwm_robot.episode`) to training formats.

    uwm_robot export --to uwm-zarr <episode dirs or roots> --out buffer.zarr [--image-shape 180x320]
    uwm_robot export --to lerobot  <episode dirs or roots> --out dataset_dir

uwm-zarr: the `CompressedTrajectoryBuffer` layout the official UWM training reads
(`datasets/utils/buffer.py`, `datasets/droid/convert_dataset_zarr.py`), written in zarr *format 2*
so the official code (zarr 2.18, `zarr.DirectoryStore`) opens it:

    data/obs.<camera>             uint8 (N, H, W, 3)  chunks (1, H, W, 3), Blosc lz4 clevel 5, no shuffle
    data/obs.cartesian_position   float32 (N, 6)      [xyz, Euler of panda_link8 as DROID writes it:
                                                       scipy "xyz" (extrinsic)]
    data/obs.gripper_position     float32 (N, 1)      1 - width / gripper_max_width (DROID)
    data/action                   float32 (N, 10)     action_codec.encode(DROID action): xyz vel,
                                                       rot6d of the Euler-rate triple, gripper
    meta/episode_ends             int64 (E,)          cumulative step counts, uncompressed
  float arrays: chunks of ~2 MB along the first axis (full trailing dims), Blosc lz4 clevel 0, no
  shuffle, as the official `get_optimal_chunks`. Differences from a buffer the official code writes
  itself: the arrays are exactly N long (no unused capacity; the official reader takes N from the
  array length and episode_ends, so this is equivalent), episode_ends has one chunk of length E
  rather than the 1.5x-grown chunk, and no Pickle object codec is recorded (it is ignored for
  non-object dtypes anyway).
  Steps with no action (the ticks before the first chunk arrived) get the hold action the robot
  actually executed: zero velocity, gripper = the commanded gripper position.

lerobot: LeRobotDataset v3.0 (codebase_version "v3.0"; paths as `lerobot/datasets/utils.py`):

    meta/info.json                              features, fps, path templates, totals, splits
    meta/stats.json                             min/max/mean/std/count/q01..q99 per feature
    meta/tasks.parquet                          index "task" (string) -> column task_index
    meta/episodes/chunk-000/file-000.parquet    one row per episode: episode_index, tasks, length,
                                                data/{chunk,file}_index, dataset_{from,to}_index,
                                                videos/<key>/{chunk_index,file_index,from_timestamp,
                                                to_timestamp}, meta/episodes/{chunk,file}_index,
                                                stats/<feature>/<stat>, plus uwm/* extras
    data/chunk-000/file-000.parquet             one row per frame, many episodes per file
    videos/observation.images.<cam>/chunk-000/file-000.mp4   H.264 yuv420p, episodes concatenated
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from . import action_codec, rotations
from .episode import Episode, EpisodeFormatError, list_episodes, load_episode
from .images import resize_frames

DEFAULT_IMAGE_SHAPE = (180, 320)  # the DROID RLDS images UWM was trained on
OFFICIAL_TARGET_CHUNK_BYTES = 2e6
LEROBOT_VERSION = "v3.0"
LEROBOT_CHUNKS_SIZE = 1000
LEROBOT_DATA_FILE_MB = 100
LEROBOT_VIDEO_FILE_MB = 200
LEROBOT_DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
LEROBOT_VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
LEROBOT_EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
LEROBOT_QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)


class ExportError(ValueError):
    """The episodes cannot be exported as asked."""


# ---- selection ------------------------------------------------------------------------------------
@dataclass
class Selected:
    episode: Episode
    length: int  # steps exported (all steps; for a crashed episode, those that also have frames)


def collect_episodes(paths: Iterable[str | Path], *, only_success: bool = False, include_incomplete: bool = False,
                     kind: str = "any") -> list[Episode]:
    """Episodes under the given directories (episode dirs or roots), filtered, in path order."""
    dirs: list[Path] = []
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise ExportError(f"{p} does not exist")
        found = list_episodes(p)
        if not found:
            raise ExportError(f"no episodes under {p}")
        dirs += found
    out = []
    for d in sorted(set(dirs)):
        try:
            ep = load_episode(d, load_chunks=False)
        except EpisodeFormatError as e:
            raise ExportError(str(e)) from e
        if not ep.finished and not include_incomplete:
            continue
        if kind != "any" and ep.meta.get("kind") != kind:
            continue
        if only_success and ep.success is not True:
            continue
        if ep.num_steps == 0:
            continue
        out.append(ep)
    if not out:
        raise ExportError("no episode left to export after filtering (finished only unless --include-incomplete; "
                          f"kind={kind}; only_success={only_success})")
    return out


def _cameras(episodes: list[Episode], cameras: list[str] | None) -> list[str]:
    have = [set(ep.cameras) for ep in episodes]
    common = set.intersection(*have)
    if cameras:
        missing = {str(ep.path): sorted(set(cameras) - h) for ep, h in zip(episodes, have) if set(cameras) - h}
        if missing:
            raise ExportError(f"camera(s) missing from episodes: {missing}")
        return list(cameras)
    if any(h != have[0] for h in have):
        raise ExportError(f"episodes have different cameras ({sorted(map(sorted, map(tuple, have)))}); "
                          f"pick a common set with --cameras (common: {sorted(common)})")
    return list(episodes[0].cameras)


def _frames(ep: Episode, cam: str, n: int) -> np.ndarray:
    frames = ep.frames(cam)[:n]
    if len(frames) < n:
        if ep.finished:
            raise ExportError(f"{ep.path}: camera {cam} has {len(frames)} frames for {n} steps")
    return np.asarray(frames)


def _lengths(episodes: list[Episode], cameras: list[str]) -> list[int]:
    """Steps to export per episode: all of them, except that a crashed episode without raw frames is
    cut to the frames its video kept."""
    out = []
    for ep in episodes:
        n = ep.num_steps
        if not ep.finished:
            for cam in cameras:
                if cam not in ep.raw_frames:
                    n = min(n, sum(1 for _ in ep.iter_frames(cam)))
        out.append(n)
    return out


# ---- conversions ------------------------------------------------------------------------------------
def quat_to_droid_euler(quat_xyzw: np.ndarray) -> np.ndarray:
    """(..., 4) xyzw -> (..., 3) Euler angles as DROID's cartesian_position stores them: scipy
    `as_euler("xyz")` (extrinsic x, y, z), i.e. R = Rz(c) @ Ry(b) @ Rx(a)."""
    m = np.asarray(rotations.quat_to_matrix(np.asarray(quat_xyzw, dtype=np.float64)))
    a = np.arctan2(m[..., 2, 1], m[..., 2, 2])
    b = -np.arcsin(np.clip(m[..., 2, 0], -1.0, 1.0))
    c = np.arctan2(m[..., 1, 0], m[..., 0, 0])
    return np.stack([a, b, c], axis=-1)


def droid_state(ep: Episode, n: int) -> tuple[np.ndarray, np.ndarray]:
    """cartesian_position (n, 6) and gripper_position (n, 1), float64, DROID conventions."""
    s = ep.steps
    cart = np.concatenate([s["ee_pos"][:n], quat_to_droid_euler(s["ee_quat"][:n])], axis=-1)
    max_w = float(ep.meta.get("gripper_max_width") or 0.08)
    grip = np.clip(1.0 - s["gripper_width"][:n] / max_w, 0.0, 1.0)[:, None]
    return cart, grip


def droid_actions(ep: Episode, n: int) -> np.ndarray:
    """(n, 7) DROID actions; steps without one get the hold that was executed (zero velocity, the
    commanded gripper position)."""
    a = np.array(ep.steps["action_droid"][:n], dtype=np.float64)
    missing = np.isnan(a).any(axis=-1)
    if missing.any():
        a[missing, :6] = 0.0
        a[missing, 6] = ep.steps["gripper_command"][:n][missing]
    return a


def _official_chunks(shape: tuple[int, ...], dtype) -> tuple[int, ...]:
    """Chunk of ~2 MB along the first axis with the trailing dims whole (what the official
    get_optimal_chunks gives for (N, d) low-dim arrays)."""
    row = np.dtype(dtype).itemsize * int(np.prod(shape[1:], dtype=np.int64))
    return (max(1, min(shape[0], math.ceil(OFFICIAL_TARGET_CHUNK_BYTES / row))),) + tuple(shape[1:])


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists():
        if not overwrite:
            raise ExportError(f"{out} exists; pass --overwrite to replace it")
        shutil.rmtree(out) if out.is_dir() else out.unlink()


def _progress(it, total: int, desc: str):
    try:
        from tqdm import tqdm

        return tqdm(it, total=total, desc=desc, unit="ep", disable=not sys.stderr.isatty())
    except ImportError:  # pragma: no cover
        return it


# ---- uwm-zarr ---------------------------------------------------------------------------------------
def export_uwm_zarr(episodes: list[Episode], out: str | Path, image_shape: tuple[int, int] = DEFAULT_IMAGE_SHAPE,
                    cameras: list[str] | None = None, overwrite: bool = False) -> dict:
    """Write the official UWM training buffer; returns a summary (keys, shapes, episodes, steps)."""
    import numcodecs
    import zarr

    out = Path(out)
    cameras = _cameras(episodes, cameras)
    lengths = _lengths(episodes, cameras)
    total = int(sum(lengths))
    _prepare_out(out, overwrite)
    root = zarr.open_group(str(out), mode="w", zarr_format=2)
    data, meta = root.require_group("data"), root.require_group("meta")
    image_codec = numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.NOSHUFFLE)
    float_codec = numcodecs.Blosc(cname="lz4", clevel=0, shuffle=numcodecs.Blosc.NOSHUFFLE)
    h, w = image_shape
    arrays = {}
    for cam in cameras:
        shape = (total, h, w, 3)
        arrays[f"obs.{cam}"] = data.create_array(f"obs.{cam}", shape=shape, chunks=(1, h, w, 3), dtype="uint8",
                                                 compressors=image_codec, fill_value=0)
    for key, dim in (("obs.cartesian_position", 6), ("obs.gripper_position", 1), ("action", action_codec.MODEL_ACTION_DIM)):
        shape = (total, dim)
        arrays[key] = data.create_array(key, shape=shape, chunks=_official_chunks(shape, np.float32), dtype="float32",
                                        compressors=float_codec, fill_value=0.0)
    start = 0
    ends = []
    for ep, n in _progress(zip(episodes, lengths), len(episodes), "uwm-zarr"):
        cart, grip = droid_state(ep, n)
        arrays["obs.cartesian_position"][start:start + n] = cart.astype(np.float32)
        arrays["obs.gripper_position"][start:start + n] = grip.astype(np.float32)
        arrays["action"][start:start + n] = action_codec.encode(droid_actions(ep, n)).astype(np.float32)
        for cam in cameras:
            arrays[f"obs.{cam}"][start:start + n] = resize_frames(_frames(ep, cam, n), image_shape)
        start += n
        ends.append(start)
    meta.create_array("episode_ends", data=np.asarray(ends, dtype=np.int64), chunks=(max(1, len(ends)),), compressors=None)
    root.attrs.update({"exported_by": "uwm_robot.export", "source_episodes": [str(ep.path) for ep in episodes],
                       "image_shape": list(image_shape), "cameras": cameras})
    return {"out": str(out), "episodes": len(ends), "steps": total,
            "keys": {f"data/{k}": list(a.shape) for k, a in arrays.items()} | {"meta/episode_ends": [len(ends)]}}


# ---- LeRobot v3 ---------------------------------------------------------------------------------------
def _feature_stats(x: np.ndarray, image: bool = False) -> dict:
    """LeRobot per-feature stats. Vectors (N, d): per-dim; images (N, H, W, 3) uint8: per channel,
    in [0, 1], shape (3, 1, 1); scalars (N,): shape (1,)."""
    if image:
        v = x.reshape(-1, 3).astype(np.float64) / 255.0
        shape = (3, 1, 1)
    else:
        v = x.astype(np.float64).reshape(len(x), -1)
        shape = (v.shape[1],)
    stats = {"min": v.min(0), "max": v.max(0), "mean": v.mean(0), "std": v.std(0)}
    for q in LEROBOT_QUANTILES:
        stats[f"q{int(round(q * 100)):02d}"] = np.quantile(v, q, axis=0)
    out = {k: s.reshape(shape).tolist() for k, s in stats.items()}
    out["count"] = [int(len(x))]
    return out


def _aggregate_stats(per_episode: list[dict]) -> dict:
    """Dataset stats from episode stats: exact min/max/mean/std; quantiles as count-weighted means
    (what LeRobot's aggregate_stats does too)."""
    out = {}
    for key in per_episode[0]:
        items = [s[key] for s in per_episode]
        counts = np.array([s["count"][0] for s in items], dtype=np.float64)
        wts = counts / counts.sum()
        means = np.array([s["mean"] for s in items])
        mean = np.tensordot(wts, means, axes=1)
        var = np.tensordot(wts, np.array([s["std"] for s in items]) ** 2 + (means - mean) ** 2, axes=1)
        agg = {"min": np.min([s["min"] for s in items], axis=0).tolist(),
               "max": np.max([s["max"] for s in items], axis=0).tolist(),
               "mean": mean.tolist(), "std": np.sqrt(var).tolist(), "count": [int(counts.sum())]}
        for q in [k for k in items[0] if k.startswith("q")]:
            agg[q] = np.tensordot(wts, np.array([s[q] for s in items]), axes=1).tolist()
        out[key] = agg
    return out


class _VideoShard:
    """One growing LeRobot video file (ffmpeg via imageio-ffmpeg, libx264 yuv420p)."""

    def __init__(self, path: Path, hw: tuple[int, int], fps: float, crf: int, gop: int):
        import imageio_ffmpeg

        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.frames = 0
        self._gen = imageio_ffmpeg.write_frames(
            str(path), (hw[1], hw[0]), pix_fmt_in="rgb24", pix_fmt_out="yuv420p", fps=fps, codec="libx264",
            quality=None, macro_block_size=1, ffmpeg_log_level="error",
            output_params=["-crf", str(crf), "-g", str(gop), "-preset", "veryfast"])
        self._gen.send(None)

    def write(self, frames: np.ndarray) -> None:
        for f in frames:
            self._gen.send(np.ascontiguousarray(f))
            self.frames += 1

    def size_mb(self) -> float:
        return self.path.stat().st_size / 1e6 if self.path.exists() else 0.0

    def close(self) -> None:
        self._gen.close()


def _pandas_index_metadata(index: str, columns: list[tuple[str, str, str]]) -> bytes:
    """The b"pandas" schema metadata pandas writes, so `pd.read_parquet` restores `index` as the
    index (LeRobot reads meta/tasks.parquet that way). columns: (name, pandas_type, numpy_type)."""
    cols = [{"name": n, "field_name": n, "pandas_type": pt, "numpy_type": nt, "metadata": None} for n, pt, nt in columns]
    return json.dumps({
        "index_columns": [index],
        "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "object",
                            "metadata": {"encoding": "UTF-8"}}],
        "columns": cols, "creator": {"library": "pyarrow", "version": __import__("pyarrow").__version__},
        "pandas_version": "2.2.3"}).encode()


def _fixed_list(values: np.ndarray, pa_type):
    import pyarrow as pa

    values = np.ascontiguousarray(values)
    flat = pa.array(values.reshape(-1), type=pa_type)
    return pa.FixedSizeListArray.from_arrays(flat, values.shape[1])


def export_lerobot(episodes: list[Episode], out: str | Path, cameras: list[str] | None = None,
                   image_shape: tuple[int, int] | None = None, robot_type: str = "franka", overwrite: bool = False,
                   crf: int = 23, gop: int = 2, data_file_mb: float = LEROBOT_DATA_FILE_MB,
                   video_file_mb: float = LEROBOT_VIDEO_FILE_MB) -> dict:
    """Write a LeRobotDataset v3.0 directory; returns a summary."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out)
    cameras = _cameras(episodes, cameras)
    lengths = _lengths(episodes, cameras)
    fps_values = {float(ep.meta.get("fps", 15.0)) for ep in episodes}
    if len(fps_values) != 1:
        raise ExportError(f"episodes were recorded at different rates {sorted(fps_values)}; LeRobot needs one fps")
    fps = fps_values.pop()
    if abs(fps - round(fps)) > 1e-9:
        raise ExportError(f"LeRobot info.json stores an integer fps; episodes were recorded at {fps}")
    fps = int(round(fps))
    shapes = {}
    for cam in cameras:
        h, w = image_shape or episodes[0].camera_shape(cam)
        shapes[cam] = (h - h % 2, w - w % 2)  # yuv420p needs even sizes; resize to them rather than pad
    _prepare_out(out, overwrite)
    (out / "meta").mkdir(parents=True)

    video_keys = {cam: f"observation.images.{cam}" for cam in cameras}
    features: dict = {}
    for cam, key in video_keys.items():
        h, w = shapes[cam]
        features[key] = {"dtype": "video", "shape": [h, w, 3], "names": ["height", "width", "channels"],
                         "info": {"video.height": h, "video.width": w, "video.codec": "h264", "video.pix_fmt": "yuv420p",
                                  "video.is_depth_map": False, "video.fps": fps, "video.channels": 3,
                                  "video.g": gop, "video.crf": crf, "has_audio": False}}
    features["observation.state"] = {"dtype": "float32", "shape": [7],
                                     "names": ["x", "y", "z", "euler_x", "euler_y", "euler_z", "gripper_position"]}
    features["observation.joint_position"] = {"dtype": "float32", "shape": [7], "names": [f"joint_{i}" for i in range(7)]}
    features["action"] = {"dtype": "float32", "shape": [7],
                          "names": ["vx", "vy", "vz", "wx", "wy", "wz", "gripper_position"]}
    features["intervention"] = {"dtype": "bool", "shape": [1], "names": None}
    for key, dt in (("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"), ("index", "int64"),
                    ("task_index", "int64")):
        features[key] = {"dtype": dt, "shape": [1], "names": None}

    tasks: dict[str, int] = {}
    data_chunk = data_file = 0
    data_tables: list = []
    data_rows_mb = 0.0
    shards = {cam: None for cam in cameras}
    shard_idx = {cam: [0, 0] for cam in cameras}  # chunk, file
    episode_rows = []
    episode_stats = []
    index = 0

    def flush_data():
        nonlocal data_tables, data_rows_mb
        if not data_tables:
            return
        path = out / LEROBOT_DATA_PATH.format(chunk_index=data_chunk, file_index=data_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.concat_tables(data_tables), path)
        data_tables, data_rows_mb = [], 0.0

    def next_index(chunk, file):
        return (chunk + 1, 0) if file + 1 >= LEROBOT_CHUNKS_SIZE else (chunk, file + 1)

    for ep_index, (ep, n) in enumerate(_progress(zip(episodes, lengths), len(episodes), "lerobot")):
        task = ep.meta.get("instruction") or ep.meta.get("task") or "unknown task"
        task_index = tasks.setdefault(task, len(tasks))
        cart, grip = droid_state(ep, n)
        state = np.concatenate([cart, grip], axis=-1).astype(np.float32)
        joints = ep.steps["q"][:n].astype(np.float32)
        actions = droid_actions(ep, n).astype(np.float32)
        frame_index = np.arange(n, dtype=np.int64)
        timestamp = (frame_index / fps).astype(np.float32)
        intervention = ep.steps["intervention"][:n].astype(bool)
        columns = {
            "observation.state": _fixed_list(state, pa.float32()),
            "observation.joint_position": _fixed_list(joints, pa.float32()),
            "action": _fixed_list(actions, pa.float32()),
            "intervention": pa.array(intervention, type=pa.bool_()),
            "timestamp": pa.array(timestamp, type=pa.float32()),
            "frame_index": pa.array(frame_index, type=pa.int64()),
            "episode_index": pa.array(np.full(n, ep_index, np.int64), type=pa.int64()),
            "index": pa.array(np.arange(index, index + n, dtype=np.int64), type=pa.int64()),
            "task_index": pa.array(np.full(n, task_index, np.int64), type=pa.int64()),
        }
        table = pa.table(columns)
        table_mb = table.nbytes / 1e6
        if data_tables and data_rows_mb + table_mb > data_file_mb:
            flush_data()
            data_chunk, data_file = next_index(data_chunk, data_file)
        data_tables.append(table)
        data_rows_mb += table_mb

        stats = {"observation.state": _feature_stats(state), "observation.joint_position": _feature_stats(joints),
                 "action": _feature_stats(actions), "intervention": _feature_stats(intervention[:, None]),
                 "timestamp": _feature_stats(timestamp[:, None]), "frame_index": _feature_stats(frame_index[:, None]),
                 "episode_index": _feature_stats(np.full((n, 1), ep_index)),
                 "index": _feature_stats(np.arange(index, index + n)[:, None]),
                 "task_index": _feature_stats(np.full((n, 1), task_index))}
        row = {"episode_index": ep_index, "tasks": [task], "length": n,
               "data/chunk_index": data_chunk, "data/file_index": data_file,
               "dataset_from_index": index, "dataset_to_index": index + n}
        for cam, key in video_keys.items():
            frames = resize_frames(_frames(ep, cam, n), shapes[cam])
            stats[key] = _feature_stats(frames, image=True)
            shard = shards[cam]
            if shard is not None and shard.size_mb() >= video_file_mb:
                shard.close()
                shard_idx[cam] = list(next_index(*shard_idx[cam]))
                shard = None
            if shard is None:
                c, f = shard_idx[cam]
                shard = shards[cam] = _VideoShard(out / LEROBOT_VIDEO_PATH.format(video_key=key, chunk_index=c, file_index=f),
                                                  shapes[cam], fps, crf, gop)
            start_frame = shard.frames
            shard.write(frames)
            row[f"videos/{key}/chunk_index"] = shard_idx[cam][0]
            row[f"videos/{key}/file_index"] = shard_idx[cam][1]
            row[f"videos/{key}/from_timestamp"] = start_frame / fps
            row[f"videos/{key}/to_timestamp"] = (start_frame + n) / fps
        row["meta/episodes/chunk_index"] = 0
        row["meta/episodes/file_index"] = 0
        for feat, st in stats.items():
            for name, value in st.items():
                row[f"stats/{feat}/{name}"] = value
        row["uwm/source"] = str(ep.path)
        row["uwm/kind"] = ep.meta.get("kind")
        row["uwm/task"] = ep.meta.get("task")
        row["uwm/condition"] = ep.meta.get("condition")
        row["uwm/success"] = ep.success
        row["uwm/finished"] = ep.finished
        episode_rows.append(row)
        episode_stats.append(stats)
        index += n
    flush_data()
    for shard in shards.values():
        if shard is not None:
            shard.close()

    # meta/episodes (one file: 1000s of rows are far below the 100 MB limit)
    ep_path = out / LEROBOT_EPISODES_PATH.format(chunk_index=0, file_index=0)
    ep_path.parent.mkdir(parents=True, exist_ok=True)
    cols = {k: [r[k] for r in episode_rows] for k in episode_rows[0]}
    ep_table = pa.table({k: pa.array(v, type=pa.list_(pa.string())) if k == "tasks" else pa.array(v) for k, v in cols.items()})
    pq.write_table(ep_table, ep_path)

    # meta/tasks.parquet, as pandas writes a DataFrame indexed by "task"
    names = sorted(tasks, key=tasks.get)
    t_table = pa.table({"task_index": pa.array([tasks[n] for n in names], type=pa.int64()),
                        "task": pa.array(names, type=pa.string())})
    t_table = t_table.replace_schema_metadata({b"pandas": _pandas_index_metadata(
        "task", [("task_index", "int64", "int64"), ("task", "unicode", "object")])})
    pq.write_table(t_table, out / "meta" / "tasks.parquet")

    info = {
        "codebase_version": LEROBOT_VERSION, "robot_type": robot_type,
        "total_episodes": len(episode_rows), "total_frames": index, "total_tasks": len(tasks),
        "chunks_size": LEROBOT_CHUNKS_SIZE, "data_files_size_in_mb": int(data_file_mb),
        "video_files_size_in_mb": int(video_file_mb), "fps": fps, "splits": {"train": f"0:{len(episode_rows)}"},
        "data_path": LEROBOT_DATA_PATH, "video_path": LEROBOT_VIDEO_PATH, "features": features,
    }
    (out / "meta" / "info.json").write_text(json.dumps(info, indent=4))
    (out / "meta" / "stats.json").write_text(json.dumps(_aggregate_stats(episode_stats), indent=4))
    return {"out": str(out), "episodes": len(episode_rows), "frames": index, "tasks": len(tasks), "fps": fps,
            "cameras": cameras, "video_keys": list(video_keys.values())}


# ---- CLI --------------------------------------------------------------------------------------------
def _parse_hw(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().replace(",", "x").split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW (e.g. 180x320), got {text!r}") from None
    if h <= 0 or w <= 0:
        raise argparse.ArgumentTypeError(f"image shape must be positive, got {text!r}")
    return h, w


def _export_cmd(args: argparse.Namespace) -> int:
    try:
        episodes = collect_episodes(args.paths, only_success=args.only_success,
                                    include_incomplete=args.include_incomplete, kind=args.kind)
        cameras = args.cameras.split(",") if args.cameras else None
        if args.to == "uwm-zarr":
            summary = export_uwm_zarr(episodes, args.out, args.image_shape or DEFAULT_IMAGE_SHAPE, cameras, args.overwrite)
            print(f"exported {summary['episodes']} episodes, {summary['steps']} steps -> {summary['out']}")
            for k, shape in summary["keys"].items():
                print(f"  {k}: {tuple(shape)}")
        else:
            summary = export_lerobot(episodes, args.out, cameras, args.image_shape, overwrite=args.overwrite)
            print(f"exported {summary['episodes']} episodes, {summary['frames']} frames, {summary['tasks']} task(s) "
                  f"at {summary['fps']} fps -> {summary['out']} (LeRobotDataset {LEROBOT_VERSION}; videos: "
                  f"{', '.join(summary['video_keys'])})")
    except (ExportError, FileNotFoundError) as e:
        print(f"uwm_robot export: error: {e}", file=sys.stderr)
        return 2
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """`uwm_robot export --to uwm-zarr|lerobot PATHS... --out OUT`."""
    p = subparsers.add_parser("export", help="recorded episodes -> UWM zarr buffer or LeRobot v3 dataset",
                              description="Export episode directories (or roots containing them) for training.")
    p.add_argument("--to", choices=["uwm-zarr", "lerobot"], required=True)
    p.add_argument("paths", nargs="+", type=Path, help="episode directories or roots to search")
    p.add_argument("--out", type=Path, required=True, help="output .zarr directory or dataset directory")
    p.add_argument("--image-shape", type=_parse_hw, default=None,
                   help="HxW to resize camera images to (uwm-zarr default 180x320; lerobot default: as recorded)")
    p.add_argument("--cameras", default=None, help="comma-separated cameras (default: all, same in every episode)")
    p.add_argument("--only-success", action="store_true", help="only episodes labelled successful")
    p.add_argument("--include-incomplete", action="store_true", help="also crashed episodes (the steps that survived)")
    p.add_argument("--kind", choices=["any", "rollout", "demo"], default="any")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=_export_cmd)
