"""Recording of rollouts and demos: one crash-safe episode directory per episode.

    with EpisodeWriter(out / "trial_000", metadata, {"wrist_image_left": (180, 320)}) as rec:
        loop = ControlLoop(..., on_step=rec.on_step, on_chunk=rec.on_chunk)
        result = loop.run()
        rec.finish(result.success, "sim_check", result.reason, result.stats)

The format (directory layout, step schema) is defined, and read back, by `uwm_robot.episode`.
What the loop thread pays per tick: one structured-record write (a single `write` syscall on an
unbuffered file), optional raw-frame writes, and a frame copy handed to one encoder thread per
camera through a bounded queue. Encoding never blocks the loop; a full queue costs a frame,
which the encoder replaces by repeating the previous one (so video frame i is still step i) and
which is counted in meta["video"][cam]["dropped"].

`python -m robot_client.recording bench` measures the per-tick cost (see `bench_recording`).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from uwm_robot import action_codec
from uwm_robot.images import resize_rgb
from uwm_robot.episode import (
    CHUNKS_FILE,
    DECIDED_BY,
    FORMAT_NAME,
    FORMAT_VERSION,
    META_FILE,
    RAW_DIR,
    RAW_EXT,
    STATUS_FINISHED,
    STATUS_RECORDING,
    STEPS_FILE,
    THUMBS_DIR,
    VIDEO_EXT,
    VIDEOS_DIR,
    Episode,
    camera_field,
    list_episodes,
    load_episode,
    ood_category,
    schema_dtype,
    step_schema,
    to_jsonable,
    write_json_atomic,
)

log = logging.getLogger(__name__)

__all__ = ["EpisodeWriter", "Episode", "load_episode", "list_episodes", "bench_recording", "RecordingError"]


class RecordingError(RuntimeError):
    """Recording cannot go on as asked (bad directory, wrong frame shape, missing camera...)."""


def _percentiles_ms(values_ns) -> dict:
    a = np.asarray(values_ns, dtype=np.float64) / 1e6
    if a.size == 0:
        return {"n": 0}
    return {"n": int(a.size), "mean": float(a.mean()), "p50": float(np.percentile(a, 50)),
            "p99": float(np.percentile(a, 99)), "max": float(a.max())}


def _write_all(fh, data) -> None:
    """Unbuffered write of all of data (raw file objects may write less than asked)."""
    view = memoryview(data).cast("B")
    while view:
        n = fh.write(view)
        if n is None:  # pragma: no cover - only for non-blocking files
            continue
        view = view[n:]


def _now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="milliseconds")


# ---- video ----------------------------------------------------------------------------------------
def ffmpeg_exe() -> str:
    """The ffmpeg binary imageio-ffmpeg ships (or finds)."""
    try:
        import imageio_ffmpeg
    except ImportError as e:  # pragma: no cover - imageio-ffmpeg is a dependency
        raise RecordingError("video recording needs imageio-ffmpeg (pip install imageio-ffmpeg)") from e
    return imageio_ffmpeg.get_ffmpeg_exe()


class _VideoEncoder:
    """H.264 (libx264, yuv420p) writer: a thread fed by the loop through a bounded queue, piping raw
    RGB frames into an ffmpeg process (niced) that does the encoding.

    Encoding in a separate process keeps x264 off this process's GIL, so on_step is never held up
    by it. put() never blocks. A frame the queue cannot take is counted as dropped; the thread then
    sends the previous frame again in its place, so the video keeps exactly one frame per step.
    If this process dies, ffmpeg sees EOF and still closes the file properly (frames still queued
    here are lost; raw frames, if enabled, are not).
    """

    def __init__(self, path: Path, height: int, width: int, fps: float, max_queue: int,
                 crf: int = 23, preset: str = "veryfast", gop: int | None = None, nice: int = 10):
        self.path = path
        self.height, self.width = height, width
        self.fps = fps
        self.crf, self.preset = crf, preset
        self.gop = gop or max(1, int(round(fps * 2)))
        self.queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self.max_queue = max_queue
        self.dropped: list[int] = []  # step indices whose frame was replaced by a repeat
        self.encoded = 0  # frames handed to ffmpeg, repeats included
        self.write_ns: list[int] = []
        self.max_backlog = 0
        self.error: str | None = None
        self._last: bytes | None = None
        self._log_path = path.with_suffix(".ffmpeg.log")
        rate = Fraction(fps).limit_denominator(1000)
        cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-framerate", str(rate),
               "-i", "pipe:0", "-an",
               # yuv420p needs even sizes: pad (the reader crops back to HxW).
               "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2",
               "-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-g", str(self.gop), "-pix_fmt", "yuv420p",
               "-threads", "1", "-movflags", "frag_keyframe+empty_moov+default_base_moof", "-f", "mp4", str(path)]
        self._log = open(self._log_path, "wb")
        try:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._log)
        except OSError as e:
            self._log.close()
            raise RecordingError(f"cannot start ffmpeg for {path.name}: {e}") from e
        try:  # encoding yields to the control loop
            os.setpriority(os.PRIO_PROCESS, self._proc.pid, nice)
        except (OSError, AttributeError):
            pass
        self._thread = threading.Thread(target=self._run, name=f"video-{path.stem}", daemon=True)
        self._thread.start()

    def put(self, index: int, frame: np.ndarray) -> bool:
        try:
            self.queue.put_nowait((index, frame))
        except queue.Full:
            self.dropped.append(index)
            if len(self.dropped) == 1 or len(self.dropped) % 100 == 0:
                log.warning("video encoder for %s is behind: %d frame(s) replaced by repeats so far",
                            self.path.name, len(self.dropped))
            return False
        self.max_backlog = max(self.max_backlog, self.queue.qsize())
        return True

    def close(self, total_frames: int, timeout: float | None = 120.0) -> None:
        """Finish: send what is queued, pad to `total_frames` with repeats, let ffmpeg close the file."""
        self.queue.put((None, total_frames))  # blocking: the loop is over, waiting is fine
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.error = self.error or f"encoder thread did not finish within {timeout} s"
        try:
            rc = self._proc.wait(timeout=timeout)
            if rc != 0:
                self.error = self.error or f"ffmpeg exited with {rc}: {self._log_path.read_text(errors='replace')[-500:]}"
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self.error = self.error or f"ffmpeg did not finish within {timeout} s"
        self._log.close()
        if self._log_path.exists() and self._log_path.stat().st_size == 0:
            self._log_path.unlink()

    def _send(self, data: bytes) -> None:
        t0 = time.perf_counter_ns()
        self._proc.stdin.write(data)
        self.encoded += 1
        self.write_ns.append(time.perf_counter_ns() - t0)

    def _run(self) -> None:
        total = None
        while True:
            index, item = self.queue.get()
            if index is None:
                total = item
                break
            if self.error:
                continue  # keep draining so put() never blocks and drops stay counted
            try:
                data = memoryview(np.ascontiguousarray(item)).cast("B")
                while self.encoded < index:  # frames dropped before this one: repeat the last
                    self._send(self._last if self._last is not None else bytes(len(data)))
                self._send(data)
                self._last = data
            except (OSError, ValueError) as e:
                self.error = f"ffmpeg stopped taking frames at frame {index}: {e}"
                log.error("video %s: %s", self.path.name, self.error)
        try:
            if not self.error:
                filler = self._last if self._last is not None else bytes(self.height * self.width * 3)
                while self.encoded < total:
                    self._send(filler)
        except (OSError, ValueError) as e:
            self.error = f"padding failed: {e}"
        finally:
            try:
                self._proc.stdin.close()
            except OSError:
                pass

    def summary(self) -> dict:
        return {"file": f"{VIDEOS_DIR}/{self.path.name}", "codec": "h264", "pix_fmt": "yuv420p",
                "crf": self.crf, "preset": self.preset, "gop": self.gop,
                "frames": self.encoded, "dropped": len(self.dropped), "dropped_steps": self.dropped[:1000],
                "queue_size": self.max_queue, "max_backlog": self.max_backlog,
                "pipe_write_ms": _percentiles_ms(self.write_ns), "error": self.error}


# ---- writer ---------------------------------------------------------------------------------------
class EpisodeWriter:
    """Writes one episode directory; see `uwm_robot.episode` for the layout.

    metadata: JSON-serialisable dict, stored in meta.json. Expected keys (all optional, None if
      unknown): kind ("rollout" | "demo", default "rollout"), task, instruction, condition
      (ood_category is derived from it when absent), seed, checkpoint {"id", "hash"}, server (the
      policy server's hello() metadata), calibration, operator, gripper_max_width (m, default 0.08).
    camera_shapes: camera name -> (H, W) of the frames on_step will get (checked every step).
    resize_frames: record frames of another size resized to camera_shapes (real cameras stream at
      their own resolution; the sim renders at the recorded one, so there a mismatch is an error).
    video_queue_frames: encoder backlog per camera before frames are replaced by repeats
      (default: 30 s of frames).
    """

    def __init__(self, directory: str | Path, metadata: dict, camera_shapes: dict[str, tuple[int, int]],
                 fps: float = 15.0, save_raw_frames: bool = False, *, resize_frames: bool = False, video: bool = True,
                 video_queue_frames: int | None = None, crf: int = 23, preset: str = "veryfast"):
        self.directory = Path(directory)
        if fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.cameras = {str(k): (int(v[0]), int(v[1])) for k, v in camera_shapes.items()}
        for cam, (h, w) in self.cameras.items():
            if h <= 0 or w <= 0:
                raise ValueError(f"camera {cam!r}: shape must be (H, W) > 0, got {(h, w)}")
        self.schema = step_schema(list(self.cameras))
        self._dtype = schema_dtype(self.schema)
        self.fps = float(fps)
        self.save_raw_frames = bool(save_raw_frames)
        self.resize_frames = bool(resize_frames)
        try:
            user_meta = to_jsonable(dict(metadata or {}))
        except TypeError as e:
            raise RecordingError(f"episode metadata must be JSON-serialisable: {e}") from e
        if self.directory.exists() and any(self.directory.iterdir()):
            raise RecordingError(f"{self.directory} exists and is not empty; refusing to overwrite an episode")
        self.directory.mkdir(parents=True, exist_ok=True)

        kind = user_meta.get("kind", "rollout")
        if kind not in ("rollout", "demo"):
            raise RecordingError(f"metadata kind must be 'rollout' or 'demo', got {kind!r}")
        user_meta.setdefault("kind", kind)
        if user_meta.get("condition") is not None and user_meta.get("ood_category") is None:
            user_meta["ood_category"] = ood_category(user_meta["condition"])
        for key in ("task", "instruction", "condition", "ood_category", "seed", "checkpoint", "server",
                    "calibration", "operator"):
            user_meta.setdefault(key, None)
        user_meta.setdefault("gripper_max_width", 0.08)
        self._started_ns = time.monotonic_ns()
        self.meta = {
            "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "status": STATUS_RECORDING,
            **user_meta,
            "fps": self.fps,
            "cameras": {cam: {"height": h, "width": w} for cam, (h, w) in self.cameras.items()},
            "save_raw_frames": self.save_raw_frames,
            "started_at": _now_iso(), "started_unix": time.time(),
            "ended_at": None, "outcome": None, "num_steps": None, "timing": None,
            "schema": self.schema, "pid": os.getpid(),
        }
        write_json_atomic(self.directory / META_FILE, self.meta)

        self._lock = threading.Lock()
        self._steps = open(self.directory / STEPS_FILE, "ab", buffering=0)
        self._chunks = open(self.directory / CHUNKS_FILE, "a", encoding="utf-8")
        self._raw = {}
        if self.save_raw_frames:
            (self.directory / RAW_DIR).mkdir(exist_ok=True)
            self._raw = {cam: open(self.directory / RAW_DIR / f"{cam}{RAW_EXT}", "ab", buffering=0) for cam in self.cameras}
        self._video: dict[str, _VideoEncoder] = {}
        if video:
            (self.directory / VIDEOS_DIR).mkdir(exist_ok=True)
            max_q = video_queue_frames or max(64, int(self.fps * 30))
            self._video = {cam: _VideoEncoder(self.directory / VIDEOS_DIR / f"{cam}{VIDEO_EXT}", h, w, self.fps, max_q,
                                              crf=crf, preset=preset)
                           for cam, (h, w) in self.cameras.items()}
        self._first: dict[str, np.ndarray] = {}
        self._last: dict[str, np.ndarray] = {}
        self.num_steps = 0
        self.num_chunks = 0
        self.interventions = 0
        self._on_step_ns: list[int] = []
        self._finished = False

    # ---- per tick ---------------------------------------------------------------------------------
    def on_step(self, record, frames: dict, intervention: bool = False) -> None:
        """Record one control tick: a `robot_client.control_loop.StepRecord` and camera name -> Frame."""
        t0 = time.perf_counter_ns()
        with self._lock:
            if self._finished:
                raise RecordingError("on_step after finish()")
            rec = np.zeros((), dtype=self._dtype)
            rec["t"] = record.t
            rec["wall_ns"] = time.monotonic_ns()
            rec["q"] = record.q
            rec["ee_pos"] = record.ee_pos
            rec["ee_quat"] = record.ee_quat
            rec["gripper_width"] = record.gripper_width
            action = record.action
            if action is None:
                rec["action_droid"] = np.nan
                rec["action_model"] = np.nan
            else:
                a = np.asarray(action, dtype=np.float64)
                rec["action_droid"] = a
                rec["action_model"] = action_codec.encode(a)
            cmd = record.command
            clipped = getattr(cmd, "clipped_action", None)
            rec["action_clipped"] = np.nan if clipped is None else np.asarray(clipped, dtype=np.float64)
            rec["q_target"] = cmd.q_target
            rec["gripper_command"] = cmd.gripper
            rec["hold"] = bool(cmd.hold)
            rec["action_index"] = record.action_index
            rec["chunk_id"] = record.chunk_id
            rec["blended"] = bool(record.blended)
            intervention = bool(intervention or getattr(record, "intervention", False))
            rec["intervention"] = intervention
            index = self.num_steps
            images = {}
            for cam, (h, w) in self.cameras.items():
                frame = frames.get(cam)
                if frame is None:
                    raise RecordingError(f"step {index}: no frame for camera {cam!r} (got {sorted(frames)})")
                color = frame.color
                if self.resize_frames and color.ndim == 3 and color.shape[:2] != (h, w):
                    color = resize_rgb(color, (h, w))
                if color.shape != (h, w, 3) or color.dtype != np.uint8:
                    raise RecordingError(f"step {index}: camera {cam!r} frame is {color.dtype} {color.shape}, "
                                         f"expected uint8 {(h, w, 3)} (the camera_shapes given to EpisodeWriter)")
                rec[camera_field("capture_ts", cam)] = frame.capture_ts
                rec[camera_field("receive_ts", cam)] = frame.receive_ts
                images[cam] = color
            # Frames first, then the step record: a readable step always has its raw frames.
            for cam, fh in self._raw.items():
                _write_all(fh, np.ascontiguousarray(images[cam]).data)
            _write_all(self._steps, rec.tobytes())
            for cam, img in images.items():
                copy = np.array(img, copy=True, order="C")  # the camera may reuse its buffer
                if cam in self._video:
                    self._video[cam].put(index, copy)
                if index == 0:
                    self._first[cam] = copy
                self._last[cam] = copy
            self.num_steps += 1
            self.interventions += int(bool(intervention))
        self._on_step_ns.append(time.perf_counter_ns() - t0)

    def on_chunk(self, chunk) -> None:
        """Record a received `robot_client.chunk_executor.Chunk`."""
        line = {
            "request_id": int(chunk.request_id), "t_obs": float(chunk.t_obs), "latency_s": float(chunk.latency_s),
            "received_ns": time.monotonic_ns(), "step": self.num_steps,
            "actions": np.asarray(chunk.actions, dtype=np.float64).tolist(),
            "raw": None if chunk.raw is None else np.asarray(chunk.raw, dtype=np.float64).tolist(),
            "execute_k": chunk.execute_k,  # set when the chunk has its own horizon (asked while stalled)
        }
        try:
            line["meta"] = to_jsonable(chunk.meta or {})
        except TypeError as e:
            line["meta"] = {"unserialisable": str(e)}
        text = json.dumps(line) + "\n"
        with self._lock:
            if self._finished:
                raise RecordingError("on_chunk after finish()")
            self._chunks.write(text)
            self._chunks.flush()
            self.num_chunks += 1

    # ---- end --------------------------------------------------------------------------------------
    def finish(self, success: bool | None, decided_by: str, reason: str, stats: dict | None = None,
               extra: dict | None = None) -> dict:
        """Close the episode: drain encoders, fsync, write the outcome into meta.json atomically.

        success: True/False, or None when unlabelled (demos, crashes). decided_by: "sim_check" |
        "operator_key" | "none". reason: termination reason (success, timeout, estop, ...).
        stats: e.g. `EpisodeResult.stats` (the loop's timing summary). Returns the final meta.
        Calling it again is a no-op that returns the same meta.
        """
        if decided_by not in DECIDED_BY:
            raise ValueError(f"decided_by must be one of {DECIDED_BY}, got {decided_by!r}")
        if success is not None and decided_by == "none":
            raise ValueError("a success label needs decided_by 'sim_check' or 'operator_key'")
        with self._lock:
            if self._finished:
                return self.meta
            self._finished = True
        for enc in self._video.values():
            enc.close(self.num_steps)
        for fh in [self._steps, *self._raw.values()]:
            os.fsync(fh.fileno())
            fh.close()
        self._chunks.flush()
        os.fsync(self._chunks.fileno())
        self._chunks.close()
        thumbs = self._write_thumbs()
        wall = np.fromfile(self.directory / STEPS_FILE, dtype=self._dtype)["wall_ns"] if self.num_steps > 1 else np.zeros(0)
        try:
            stats_json = to_jsonable(stats or {})
        except TypeError as e:
            stats_json = {"unserialisable": str(e)}
        self.meta.update({
            "status": STATUS_FINISHED,
            "ended_at": _now_iso(), "ended_unix": time.time(),
            "duration_s": (time.monotonic_ns() - self._started_ns) / 1e9,
            "num_steps": self.num_steps, "num_chunks": self.num_chunks, "intervention_steps": self.interventions,
            "outcome": {"success": None if success is None else bool(success), "decided_by": decided_by,
                        "reason": str(reason)},
            "timing": {"on_step_ms": _percentiles_ms(self._on_step_ns),
                       "tick_period_ms": _percentiles_ms(np.diff(wall)) if wall.size > 1 else {"n": 0}},
            "loop_stats": stats_json,
            "video": {cam: enc.summary() for cam, enc in self._video.items()},
            "thumbs": thumbs,
        })
        if extra:
            self.meta.update(to_jsonable(extra))
        write_json_atomic(self.directory / META_FILE, self.meta)
        dropped = sum(len(e.dropped) for e in self._video.values())
        errors = [f"{cam}: {e.error}" for cam, e in self._video.items() if e.error]
        if dropped:
            log.warning("%s: %d video frame(s) were replaced by repeats (encoder behind)", self.directory, dropped)
        if errors:
            log.error("%s: video errors: %s", self.directory, "; ".join(errors))
        return self.meta

    def _write_thumbs(self) -> dict:
        if not self._first:
            return {}
        try:
            import imageio.v3 as iio
        except ImportError:  # pragma: no cover - imageio is a dependency
            return {}
        out = {}
        (self.directory / THUMBS_DIR).mkdir(exist_ok=True)
        for cam in self.cameras:
            names = {}
            for which, img in (("first", self._first.get(cam)), ("last", self._last.get(cam))):
                if img is None:
                    continue
                rel = f"{THUMBS_DIR}/{cam}_{which}.png"
                iio.imwrite(self.directory / rel, img)
                names[which] = rel
            out[cam] = names
        return out

    @property
    def finished(self) -> bool:
        return self._finished

    def __enter__(self) -> "EpisodeWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._finished:
            reason = "interrupted" if exc_type is KeyboardInterrupt else (
                f"error: {exc_type.__name__}: {exc}" if exc_type else "not_finished")
            self.finish(None, "none", reason)


# ---- synthetic episodes (tests, report previews) -------------------------------------------------
def synthetic_step(i: int, dt: float = 1.0 / 15.0, with_action: bool = True):
    """A deterministic StepRecord for step i (values are simple functions of i)."""
    from robot_client.action_path import JointCommand
    from robot_client.control_loop import StepRecord

    q = np.linspace(-0.5, 0.5, 7) + 0.001 * i
    action = np.array([0.1, -0.05, 0.02, 0.03, -0.02, 0.01, min(1.0, i / 40.0)]) if with_action else None
    cmd = JointCommand(q + 0.002, 0.0 if action is None else float(action[6]), action is None, "" if action is not None else "no action",
                       None, None, None if action is None else np.clip(action, -0.05, 1.0))
    ang = 0.01 * i
    quat = np.array([np.sin(ang / 2), 0.0, 0.0, np.cos(ang / 2)])
    return StepRecord(i * dt, q, np.array([0.5 + 0.001 * i, 0.0, 0.4]), quat, 0.08 - 0.001 * (i % 40), cmd, action,
                      i % 8 if action is not None else -1, i // 8 if action is not None else -1, bool(i % 8 == 0))


def synthetic_frames(i: int, camera_shapes: dict[str, tuple[int, int]]) -> dict:
    """Deterministic smooth RGB Frames for step i (smooth, so H.264 reproduces them closely)."""
    from robot_client.cameras.base import Frame

    out = {}
    for k, (cam, (h, w)) in enumerate(sorted(camera_shapes.items())):
        yy, xx = np.mgrid[0:h, 0:w]
        img = np.stack([(xx * 200 // max(w - 1, 1) + 3 * i) % 256, (yy * 200 // max(h - 1, 1) + 40 * k) % 256,
                        np.full_like(xx, (20 * i) % 256)], -1).astype(np.uint8)
        ts = 1_000_000_000 + i * 66_666_667 + k
        out[cam] = Frame(img, None, ts, ts + 3_000_000, f"serial{k}")
    return out


def write_synthetic_episode(directory: str | Path, n_steps: int = 30, camera_shapes: dict | None = None,
                            metadata: dict | None = None, success: bool | None = True, decided_by: str = "sim_check",
                            reason: str | None = None, save_raw_frames: bool = False, no_action_steps: int = 2,
                            latency_s: float = 0.12, takeover_from: int | None = None) -> Path:
    """Record a small deterministic episode (steps, frames, one chunk per 8 steps) with the real writer;
    `takeover_from`: steps from this one on are tagged `intervention` (an operator had the arm)."""
    from robot_client.chunk_executor import Chunk

    camera_shapes = camera_shapes or {"exterior_image_1_left": (36, 64), "wrist_image_left": (36, 64)}
    meta = {"kind": "rollout", "task": "rice_cooker", "instruction": "put the rice in the cooker", "condition": "ID",
            "seed": 0, "checkpoint": {"id": "synthetic", "hash": "0" * 64}, "operator": "test"}
    meta.update(metadata or {})
    with EpisodeWriter(directory, meta, camera_shapes, save_raw_frames=save_raw_frames) as rec:
        for i in range(n_steps):
            if i % 8 == 0:
                rec.on_chunk(Chunk(np.tile(synthetic_step(i).action, (16, 1)), i / 15.0, None, i // 8,
                                   latency_s + 0.01 * (i // 8), {"server_ms": 80.0 + i}))
            rec.on_step(synthetic_step(i, with_action=i >= no_action_steps), synthetic_frames(i, camera_shapes),
                        intervention=takeover_from is not None and i >= takeover_from)
        if decided_by == "none":
            success = None
        rec.finish(success, decided_by, reason or ("success" if success else "timeout"),
                   {"steps": n_steps, "inference_ms_p50": latency_s * 1e3})
    return Path(directory)


# ---- benchmark ------------------------------------------------------------------------------------
def _synthetic_frame(rng: np.random.Generator, base: np.ndarray, step: int, h: int, w: int) -> np.ndarray:
    """A moving, textured image (so the encoder has real work), cheap to make."""
    shift = (step * 3) % w
    img = np.roll(base, shift, axis=1)
    img[(step * 2) % h, :, :] = 255
    return img


def bench_recording(seconds: float = 20.0, cameras: int = 3, shape: tuple[int, int] = (180, 320), fps: float = 15.0,
                    save_raw_frames: bool = False, out_dir: str | Path | None = None, paced: bool = True,
                    keep: bool = False) -> dict:
    """Record `seconds` of synthetic steps at `fps` from `cameras` cameras of `shape`, the way the
    control loop does (on_step once per tick, paced in real time unless paced=False), and report
    the on_step blocking time (p50/p99/max), finish() time, and per-camera video frame counts and
    drops (the check: decoded frames == steps, no drops)."""
    from robot_client.action_path import JointCommand
    from robot_client.cameras.base import Frame
    from robot_client.control_loop import StepRecord
    from uwm_robot.episode import decode_video

    h, w = shape
    names = [f"cam{i}" for i in range(cameras)]
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    bases = []
    for i in range(cameras):
        noise = rng.integers(0, 40, size=(h, w, 3), dtype=np.uint8)
        grad = np.stack([(xx * 255 // w), (yy * 255 // h), ((xx + yy + 40 * i) % 256)], -1).astype(np.uint8)
        bases.append((grad // 2 + noise).astype(np.uint8))
    tmp = None
    if out_dir is None:
        tmp = tempfile.mkdtemp(prefix="bench_recording_")
        out_dir = tmp
    ep_dir = Path(out_dir) / f"bench_{int(time.time())}"
    n_steps = int(round(seconds * fps))
    dt = 1.0 / fps
    writer = EpisodeWriter(ep_dir, {"kind": "rollout", "task": "bench", "condition": "ID"},
                           {n: shape for n in names}, fps=fps, save_raw_frames=save_raw_frames)
    q = np.zeros(7)
    late = 0
    t_start = time.perf_counter()
    for i in range(n_steps):
        t_tick = t_start + i * dt
        if paced:
            delay = t_tick - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            else:
                late += 1
        now = time.monotonic_ns()
        frames = {n: Frame(_synthetic_frame(rng, bases[k], i, h, w), None, now - 5_000_000, now, n)
                  for k, n in enumerate(names)}
        action = np.array([0.1, 0.0, -0.05, 0.0, 0.02, 0.0, 0.5])
        cmd = JointCommand(q + 0.01, 0.5, False, "", None, None, action)
        rec = StepRecord(i * dt, q, np.array([0.5, 0.0, 0.4]), np.array([1.0, 0.0, 0.0, 0.0]), 0.04, cmd, action,
                         i % 8, i // 8, False)
        writer.on_step(rec, frames)
    loop_s = time.perf_counter() - t_start
    t0 = time.perf_counter()
    meta = writer.finish(None, "none", "bench")
    finish_s = time.perf_counter() - t0
    ep = load_episode(ep_dir)
    decoded = {n: sum(1 for _ in decode_video(ep.videos[n])) for n in names}
    on_step = meta["timing"]["on_step_ms"]
    result = {
        "cameras": cameras, "shape": list(shape), "fps": fps, "seconds": seconds, "steps": n_steps,
        "save_raw_frames": save_raw_frames, "paced": paced, "cpu_count": os.cpu_count(),
        "on_step_ms_p50": on_step["p50"], "on_step_ms_p99": on_step["p99"], "on_step_ms_max": on_step["max"],
        "late_ticks": late, "loop_s": loop_s, "finish_s": finish_s,
        "steps_read_back": ep.num_steps,
        "video_frames_decoded": decoded,
        "video_dropped": {n: meta["video"][n]["dropped"] for n in names},
        "video_max_backlog": {n: meta["video"][n]["max_backlog"] for n in names},
        "pipe_write_ms_p50": {n: meta["video"][n]["pipe_write_ms"].get("p50") for n in names},
        "video_bytes": {n: ep.videos[n].stat().st_size for n in names},
        "ok": ep.num_steps == n_steps and all(v == n_steps for v in decoded.values())
              and not any(meta["video"][n]["dropped"] for n in names),
        "episode": str(ep_dir),
    }
    if tmp and not keep:
        shutil.rmtree(tmp, ignore_errors=True)
        result["episode"] = None
    return result


def _format_bench(r: dict) -> str:
    return (f"recording bench: {r['cameras']} cameras {r['shape'][0]}x{r['shape'][1]} @ {r['fps']:g} Hz, "
            f"{r['steps']} steps ({r['seconds']:g} s), raw frames {'on' if r['save_raw_frames'] else 'off'}, "
            f"{r['cpu_count']} CPUs\n"
            f"  on_step blocking: p50 {r['on_step_ms_p50']:.3f} ms, p99 {r['on_step_ms_p99']:.3f} ms, "
            f"max {r['on_step_ms_max']:.3f} ms; late ticks {r['late_ticks']}\n"
            f"  finish(): {r['finish_s'] * 1e3:.0f} ms; pipe write to ffmpeg p50 per frame (ms): "
            f"{ {k: round(v, 2) for k, v in r['pipe_write_ms_p50'].items()} }\n"
            f"  steps read back {r['steps_read_back']}; video frames decoded {r['video_frames_decoded']}; "
            f"dropped {r['video_dropped']}; max encoder backlog {r['video_max_backlog']}\n"
            f"  => {'OK: no frame dropped, video frames == steps' if r['ok'] else 'FAILED'}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m robot_client.recording", description="episode recording tools")
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("bench", help="per-tick cost of recording 3 cameras at 15 Hz")
    add_bench_arguments(b)
    args = p.parse_args(argv)
    return args.func(args)


def add_bench_arguments(b: argparse.ArgumentParser) -> None:
    b.add_argument("--seconds", type=float, default=20.0)
    b.add_argument("--cameras", type=int, default=3)
    b.add_argument("--shape", default="180x320", help="HxW of each camera (default 180x320)")
    b.add_argument("--fps", type=float, default=15.0)
    b.add_argument("--raw-frames", action="store_true", help="also save raw uint8 frames")
    b.add_argument("--unpaced", action="store_true", help="call on_step back to back instead of at fps")
    b.add_argument("--out", type=Path, default=None, help="keep the episode under this directory")
    b.add_argument("--json", action="store_true", help="print the result as JSON")
    b.set_defaults(func=_bench_cmd)


def _bench_cmd(args) -> int:
    try:
        h, w = (int(v) for v in args.shape.lower().split("x"))
    except ValueError:
        print(f"--shape must be HxW, e.g. 180x320, got {args.shape!r}", file=sys.stderr)
        return 2
    r = bench_recording(args.seconds, args.cameras, (h, w), args.fps, args.raw_frames, args.out,
                        paced=not args.unpaced, keep=args.out is not None)
    print(json.dumps(r, indent=2) if args.json else _format_bench(r))
    return 0 if r["ok"] else 1


def register_bench(subparsers) -> None:
    """`robot_client bench-recording` (for robot_client/cli.py)."""
    b = subparsers.add_parser("bench-recording", help="per-tick cost of recording cameras at the control rate")
    add_bench_arguments(b)


if __name__ == "__main__":
    sys.exit(main())
