"""The episode format (rollouts and demos) and its reader. Pure numpy + json; imageio-ffmpeg to decode videos.

One directory per episode, written by `robot_client.recording.EpisodeWriter`:

    <episode>/
      meta.json          what, who, when, outcome, schema. Written when recording starts (status
                         "recording") and replaced atomically when it finishes (status "finished").
      steps.bin          one fixed-size little-endian record per control tick (numpy structured
                         dtype described by meta["schema"]), appended and handed to the kernel every
                         tick, fsync'ed at finish. A trailing partial record (crash) is ignored.
      chunks.jsonl       one JSON line per received action chunk (request_id, t_obs, latency_s,
                         received_ns, actions, raw, meta), appended and flushed.
      videos/<cam>.mp4   H.264 yuv420p, one frame per step (fragmented MP4, so a crash loses only
                         the last fragment). Frames the encoder queue could not take are replaced
                         by repeats of the previous frame and counted in meta["video"].
      raw/<cam>.rgb      optional (save_raw_frames): uint8 HxWx3 RGB per step, fixed record size,
                         written before the step record, so every readable step has its frames.
      thumbs/<cam>_{first,last}.png   written at finish.
      object_state.npz   sim trials only: the objects' ground truth per step (hinge angles, free
                         bodies' positions), `robot_client.sim.object_log`.

A crashed episode (SIGKILL, power cut after the kernel wrote the data) reads back with every
flushed step; `Episode.finished` is False and its meta has no outcome.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

FORMAT_NAME = "uwm-franka-episode"
FORMAT_VERSION = 1

META_FILE = "meta.json"
STEPS_FILE = "steps.bin"
CHUNKS_FILE = "chunks.jsonl"
VIDEOS_DIR = "videos"
RAW_DIR = "raw"
THUMBS_DIR = "thumbs"
VIDEO_EXT = ".mp4"
RAW_EXT = ".rgb"

STATUS_RECORDING = "recording"
STATUS_FINISHED = "finished"

KINDS = ("rollout", "demo")
DECIDED_BY = ("sim_check", "operator_key", "none")  # "none": no label (crash, interrupted, demo)

# ID/OOD conditions of the UWM paper (Table IV) and their categories.
CONDITION_CATEGORY = {"ID": "ID", "L": "lighting", "B": "background", "C": "clutter"}
CATEGORY_ORDER = ("ID", "lighting", "background", "clutter")

# Per-step fields that do not depend on the cameras: name -> (numpy dtype, shape).
BASE_STEP_FIELDS: dict[str, tuple[str, tuple[int, ...]]] = {
    "t": ("<f8", ()),  # control clock time of the tick (s)
    "wall_ns": ("<i8", ()),  # time.monotonic_ns() when the step was recorded (loop timing)
    "q": ("<f8", (7,)),  # measured joint positions (rad)
    "ee_pos": ("<f8", (3,)),  # panda_link8 position (m)
    "ee_quat": ("<f8", (4,)),  # panda_link8 orientation, xyzw
    "gripper_width": ("<f8", ()),  # measured (m)
    "action_droid": ("<f8", (7,)),  # the scheduled DROID action [cartesian_velocity(6), gripper(1)]; NaN: none
    "action_model": ("<f8", (10,)),  # action_codec.encode(action_droid) (un-normalised 10-d); NaN: none
    "action_clipped": ("<f8", (7,)),  # the action after the safety layer's clipping; NaN: none
    "q_target": ("<f8", (7,)),  # joint target sent to the controller
    "gripper_command": ("<f8", ()),  # DROID gripper position commanded, 0 open .. 1 closed
    "hold": ("u1", ()),  # 1: the safety layer turned this tick into a hold
    "action_index": ("<i4", ()),  # index of the action in its chunk; -1: none
    "chunk_id": ("<i8", ()),  # request id of the chunk; -1: none
    "blended": ("u1", ()),  # 1: cross-faded at a chunk boundary
    "intervention": ("u1", ()),  # 1: an operator had control (teleop takeover)
}
CAMERA_STEP_FIELDS = ("capture_ts", "receive_ts")  # int64 ns, monotonic clock, one per camera


class EpisodeFormatError(ValueError):
    """The directory is not an episode of this format (or is damaged beyond reading)."""


def ood_category(condition: str | None) -> str | None:
    """'ID' -> 'ID', 'L1'/'L2' -> 'lighting', 'B*' -> 'background', 'C*' -> 'clutter'; else None."""
    if not condition:
        return None
    if condition == "ID":
        return "ID"
    return CONDITION_CATEGORY.get(condition[0]) if condition[0] in "LBC" else None


def camera_field(kind: str, camera: str) -> str:
    """Name of a per-camera step field, e.g. `capture_ts.wrist_image_left`."""
    return f"{kind}.{camera}"


def step_schema(cameras: list[str] | tuple[str, ...]) -> dict:
    """The JSON schema of steps.bin for these cameras: fields with dtype, shape and byte offset."""
    fields = [(name, dt, shape) for name, (dt, shape) in BASE_STEP_FIELDS.items()]
    for cam in cameras:
        if not cam or "/" in cam or cam.startswith("."):
            raise ValueError(f"bad camera name {cam!r}: it must be a plain file name")
        fields += [(camera_field(kind, cam), "<i8", ()) for kind in CAMERA_STEP_FIELDS]
    out, offset = [], 0
    for name, dt, shape in fields:
        out.append({"name": name, "dtype": dt, "shape": list(shape), "offset": offset})
        offset += np.dtype(dt).itemsize * int(np.prod(shape, dtype=np.int64))
    return {"record_size": offset, "byte_order": "little", "fields": out}


def schema_dtype(schema: dict) -> np.dtype:
    """The numpy structured dtype of one steps.bin record."""
    try:
        fields = schema["fields"]
        return np.dtype({
            "names": [f["name"] for f in fields],
            "formats": [(f["dtype"], tuple(f["shape"])) if f["shape"] else f["dtype"] for f in fields],
            "offsets": [int(f["offset"]) for f in fields],
            "itemsize": int(schema["record_size"]),
        })
    except (KeyError, TypeError, ValueError) as e:
        raise EpisodeFormatError(f"bad step schema in meta.json: {e}") from e


def write_json_atomic(path: Path, obj: dict) -> None:
    """Write JSON to path.tmp, fsync, rename over path, fsync the directory."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    data = json.dumps(obj, indent=2, default=_json_default, allow_nan=True).encode()
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _json_default(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, (set, tuple)):
        return list(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def to_jsonable(obj):
    """obj with numpy arrays/scalars and Paths made JSON-friendly (raises TypeError on anything else)."""
    return json.loads(json.dumps(obj, default=_json_default, allow_nan=True))


# ---- reading ------------------------------------------------------------------------------------
@dataclass
class Episode:
    path: Path
    meta: dict
    steps: dict[str, np.ndarray]
    chunks: list[dict]
    videos: dict[str, Path] = field(default_factory=dict)
    raw_frames: dict[str, Path] = field(default_factory=dict)
    truncated_bytes: int = 0  # bytes of a partial trailing record ignored in steps.bin

    @property
    def num_steps(self) -> int:
        return len(self.steps["t"]) if "t" in self.steps else 0

    @property
    def finished(self) -> bool:
        return self.meta.get("status") == STATUS_FINISHED

    @property
    def cameras(self) -> list[str]:
        return list(self.meta.get("cameras", {}))

    @property
    def success(self) -> bool | None:
        return self.meta.get("outcome", {}).get("success")

    @property
    def task(self) -> str | None:
        return self.meta.get("task")

    @property
    def condition(self) -> str | None:
        return self.meta.get("condition")

    def camera_shape(self, camera: str) -> tuple[int, int]:
        c = self.meta["cameras"][camera]
        return int(c["height"]), int(c["width"])

    def frames(self, camera: str) -> np.ndarray:
        """(N, H, W, 3) uint8 RGB of one camera: a read-only memmap of the raw frames when they were
        saved, else the decoded video. N is num_steps (fewer only if a crash cut the video short)."""
        if camera not in self.meta.get("cameras", {}):
            raise KeyError(f"no camera {camera!r} in {self.path}; cameras: {self.cameras}")
        if camera in self.raw_frames:
            h, w = self.camera_shape(camera)
            n = self.num_steps
            if n == 0:
                return np.zeros((0, h, w, 3), np.uint8)
            return np.memmap(self.raw_frames[camera], dtype=np.uint8, mode="r", shape=(n, h, w, 3))
        frames = list(self.iter_frames(camera))
        if not frames:
            h, w = self.camera_shape(camera)
            return np.zeros((0, h, w, 3), np.uint8)
        return np.stack(frames)

    def iter_frames(self, camera: str) -> Iterator[np.ndarray]:
        """Frames one at a time (raw frames if saved, else decoded video), at most num_steps."""
        if camera in self.raw_frames:
            yield from self.frames(camera)
            return
        if camera not in self.videos:
            raise KeyError(f"no video or raw frames for camera {camera!r} in {self.path}")
        yield from decode_video(self.videos[camera], limit=self.num_steps, shape=self.camera_shape(camera))


def decode_video(path: Path, limit: int | None = None, shape: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
    """Decode an MP4 to HxWx3 uint8 RGB frames with imageio-ffmpeg, cropping the encoder's even-size
    padding back to `shape`. A truncated file (crash) yields the frames that can be decoded."""
    try:
        import imageio_ffmpeg
    except ImportError as e:  # pragma: no cover - imageio-ffmpeg is a dependency
        raise RuntimeError("decoding episode videos needs imageio-ffmpeg (pip install imageio-ffmpeg)") from e
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return
    gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    n = 0
    try:
        try:
            info = next(gen)
        except (RuntimeError, StopIteration, OSError):
            return  # nothing decodable
        w, h = info["size"]
        for data in gen:
            if limit is not None and n >= limit:
                break
            img = np.frombuffer(data, np.uint8).reshape(h, w, 3)
            if shape is not None:
                img = img[: shape[0], : shape[1]]
            yield img
            n += 1
    except (RuntimeError, OSError):
        return  # ffmpeg gave up on a damaged tail
    finally:
        gen.close()


def read_meta(directory: str | Path) -> dict:
    path = Path(directory) / META_FILE
    try:
        meta = json.loads(path.read_text())
    except (FileNotFoundError, NotADirectoryError) as e:  # a file (a log beside the episodes) is no episode either
        raise EpisodeFormatError(f"{directory}: no {META_FILE}; not an episode directory") from e
    except json.JSONDecodeError as e:
        raise EpisodeFormatError(f"{path}: not valid JSON ({e})") from e
    if meta.get("format") != FORMAT_NAME:
        raise EpisodeFormatError(f"{path}: format is {meta.get('format')!r}, expected {FORMAT_NAME!r}")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise EpisodeFormatError(f"{path}: format_version {meta.get('format_version')} is newer than this reader ({FORMAT_VERSION})")
    return meta


def task_progress(meta: dict) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the task's stages in order, the stages the trial reached) from a sim trial's meta; both empty where the
    trial recorded none (a real robot's, or one from before stages were recorded)."""
    progress = meta.get("task_progress") or {}
    return tuple(progress.get("stages") or ()), tuple(progress.get("reached") or ())


def read_chunks(path: Path) -> list[dict]:
    """chunks.jsonl, ignoring a partial last line (crash)."""
    if not path.exists():
        return []
    lines = path.read_bytes().split(b"\n")
    out = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:  # unterminated last line: written when the process died
                break
            raise EpisodeFormatError(f"{path}: line {i + 1} is not JSON")
    return out


def load_episode(directory: str | Path, load_chunks: bool = True) -> Episode:
    """Read an episode directory (finished or crashed). Steps are copied into plain arrays."""
    directory = Path(directory)
    meta = read_meta(directory)
    dtype = schema_dtype(meta["schema"])
    steps_path = directory / STEPS_FILE
    size = steps_path.stat().st_size if steps_path.exists() else 0
    n = size // dtype.itemsize
    cameras = dict(meta.get("cameras", {}))
    raw_frames: dict[str, Path] = {}
    if meta.get("save_raw_frames"):
        for cam, c in cameras.items():
            p = directory / RAW_DIR / f"{cam}{RAW_EXT}"
            frame_bytes = int(c["height"]) * int(c["width"]) * 3
            n_raw = p.stat().st_size // frame_bytes if p.exists() else 0
            n = min(n, n_raw)  # frames are written before the step; this only bites on damage
            raw_frames[cam] = p
    if n:
        records = np.fromfile(steps_path, dtype=dtype, count=n)
    else:
        records = np.zeros(0, dtype=dtype)
    steps = {name: np.ascontiguousarray(records[name]) for name in dtype.names}
    videos = {cam: directory / VIDEOS_DIR / f"{cam}{VIDEO_EXT}" for cam in cameras}
    videos = {cam: p for cam, p in videos.items() if p.exists()}
    chunks = read_chunks(directory / CHUNKS_FILE) if load_chunks else []
    return Episode(directory, meta, steps, chunks, videos, raw_frames, size - n * dtype.itemsize)


def is_episode_dir(directory: str | Path) -> bool:
    try:
        read_meta(directory)
        return True
    except EpisodeFormatError:
        return False


def list_episodes(root: str | Path) -> list[Path]:
    """Episode directories under root (root itself if it is one), sorted by path. Linked folders are
    followed: a selection of episodes is a folder of links to them."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{root} does not exist")
    if is_episode_dir(root):
        return [root]
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        if META_FILE in filenames and is_episode_dir(dirpath):
            found.append(Path(dirpath))
            dirnames[:] = []  # episodes do not nest
            continue
        dirnames.sort()
    return sorted(found)
