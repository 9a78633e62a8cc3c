"""Optional live view of a rollout in Rerun (rerun-sdk): cameras, robot state, executed vs planned
actions and, when the policy returns them, predicted future frames beside the real ones.

    view = LiveView(spawn=True)                    # opens the Rerun viewer
    view = LiveView(save_path="rollout.rrd")       # or records to a file (rerun rollout.rrd)
    loop = ControlLoop(..., on_step=view.on_step, on_chunk=view.on_chunk)

Entities (timelines "time" = control clock seconds, "step" = tick index):
    cameras/<cam>        real frames                predicted/<cam>   predicted future frames
    state/q              7 joint positions           state/gripper_width
    state/ee             end-effector position (3D points + trail)
    action/executed      the DROID action executed at each tick (7 series)
    action/planned       every received chunk's actions at their scheduled times t_obs + i*dt
    events               chunk arrivals and holds (text log)

Without rerun-sdk installed the view logs one clear warning and every method does nothing, so a
rollout never fails for want of a viewer (pass required=True to get an error instead).
"""

from __future__ import annotations

import logging
from collections import deque
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

ACTION_NAMES = ["vx", "vy", "vz", "wx", "wy", "wz", "gripper"]
JOINT_NAMES = [f"q{i}" for i in range(7)]
INSTALL_HINT = "pip install 'rerun-sdk>=0.41,<0.42'"


class LiveViewUnavailable(RuntimeError):
    """rerun-sdk is missing (raised only with required=True)."""


def _import_rerun():
    try:
        import rerun as rr
        import rerun.blueprint as rrb
    except ImportError as e:
        return None, None, e
    return rr, rrb, None


class LiveView:
    def __init__(self, spawn: bool = False, save_path: str | Path | None = None, *, fps: float = 15.0,
                 cameras: list[str] | None = None, image_every: int = 1, trail: int = 150,
                 application_id: str = "uwm_franka", required: bool = False):
        """spawn: start (or connect to) a Rerun viewer; save_path: also write an .rrd file.
        cameras: names for the default layout (else learnt from the first step); image_every: log
        camera images every n-th tick (they dominate the bandwidth); trail: EE positions kept."""
        self.fps = float(fps)
        self.dt = 1.0 / self.fps
        self.image_every = max(1, int(image_every))
        self._trail: deque = deque(maxlen=max(2, int(trail)))
        self._cameras = list(cameras) if cameras else None
        self._step = 0
        self._blueprint_sent = False
        self.rr, self.rrb, err = _import_rerun()
        self.enabled = self.rr is not None
        self.rec = None
        self.save_path = Path(save_path) if save_path else None
        if not self.enabled:
            msg = f"live view disabled: rerun-sdk is not installed ({err}); install it with {INSTALL_HINT}"
            if required:
                raise LiveViewUnavailable(msg)
            log.warning(msg)
            return
        rr = self.rr
        self.rec = rr.RecordingStream(application_id)
        if self.save_path is not None:
            self.save_path.parent.mkdir(parents=True, exist_ok=True)
            self.rec.save(str(self.save_path))
        if spawn:
            try:
                self.rec.spawn(connect=self.save_path is None)
                if self.save_path is not None:  # both: the file sink stays, the viewer also gets the stream
                    self.rec.set_sinks(rr.FileSink(str(self.save_path)), rr.GrpcSink())
            except Exception as e:  # no display / viewer binary: keep recording to the file if any
                log.warning("live view: could not spawn the Rerun viewer (%s)%s", e,
                            f"; still saving to {self.save_path}" if self.save_path else "")
        self.rec.log("action/executed", rr.SeriesLines(names=ACTION_NAMES), static=True)
        self.rec.log("action/planned", rr.SeriesPoints(names=[f"{n} (planned)" for n in ACTION_NAMES], marker_sizes=1.5),
                     static=True)
        self.rec.log("state/q", rr.SeriesLines(names=JOINT_NAMES), static=True)
        self.rec.log("state/gripper_width", rr.SeriesLines(names=["gripper width (m)"]), static=True)
        if self._cameras:
            self._send_blueprint(self._cameras)

    # ---- layout ---------------------------------------------------------------------------------------
    def _send_blueprint(self, cameras: list[str]) -> None:
        rrb = self.rrb
        cam_views = []
        for cam in cameras:
            cam_views.append(rrb.Spatial2DView(origin=f"cameras/{cam}", name=cam))
            cam_views.append(rrb.Spatial2DView(origin=f"predicted/{cam}", name=f"{cam} (predicted)"))
        bp = rrb.Blueprint(rrb.Horizontal(
            rrb.Grid(*cam_views, grid_columns=2),
            rrb.Vertical(
                rrb.TimeSeriesView(origin="action", name="actions: executed vs planned"),
                rrb.TimeSeriesView(origin="state/q", name="joints"),
                rrb.TimeSeriesView(origin="state/gripper_width", name="gripper"),
                rrb.Spatial3DView(origin="state/ee", name="end effector"),
                rrb.TextLogView(origin="events", name="events"),
            ),
            column_shares=[3, 2]))
        self.rec.send_blueprint(bp)
        self._blueprint_sent = True

    def _time(self, t: float, step: int | None = None) -> None:
        self.rec.set_time("time", duration=float(t))
        if step is not None:
            self.rec.set_time("step", sequence=int(step))

    # ---- callbacks ------------------------------------------------------------------------------------
    def on_step(self, record, frames: dict) -> None:
        """ControlLoop on_step callback: StepRecord + camera name -> Frame."""
        if not self.enabled:
            return
        rr = self.rr
        if not self._blueprint_sent:
            self._send_blueprint(self._cameras or sorted(frames))
        self._time(record.t, self._step)
        if self._step % self.image_every == 0:
            for cam, frame in frames.items():
                self.rec.log(f"cameras/{cam}", rr.Image(frame.color))
        self.rec.log("state/q", rr.Scalars(np.asarray(record.q, dtype=float)))
        self.rec.log("state/gripper_width", rr.Scalars([float(record.gripper_width)]))
        pos = np.asarray(record.ee_pos, dtype=float)
        self._trail.append(pos)
        self.rec.log("state/ee", rr.Points3D([pos], radii=0.01, colors=[(230, 80, 60)]))
        self.rec.log("state/ee/trail", rr.LineStrips3D([np.asarray(self._trail)], radii=0.003, colors=[(80, 120, 220)]))
        if record.action is not None:
            self.rec.log("action/executed", rr.Scalars(np.asarray(record.action, dtype=float)))
        cmd = getattr(record, "command", None)
        if cmd is not None and getattr(cmd, "hold", False) and record.action is not None:
            self.rec.log("events", rr.TextLog(f"hold: {getattr(cmd, 'reason', '')}", level="WARN"))
        self._step += 1

    def on_chunk(self, chunk) -> None:
        """ControlLoop on_chunk callback: plot the chunk's actions at t_obs + i*dt."""
        if not self.enabled:
            return
        rr = self.rr
        actions = np.asarray(chunk.actions, dtype=float)
        times = float(chunk.t_obs) + self.dt * np.arange(len(actions))
        self.rec.send_columns("action/planned", indexes=[rr.TimeColumn("time", duration=times)],
                              columns=rr.Scalars.columns(scalars=actions))
        self._time(chunk.t_obs)
        self.rec.log("events", rr.TextLog(
            f"chunk {chunk.request_id}: {len(actions)} actions, latency {1e3 * float(chunk.latency_s):.0f} ms", level="INFO"))

    def log_prediction(self, t: float, frames_by_camera: dict, dt: float | None = None) -> None:
        """Predicted future frames (uint8 HxWx3, or a (T, H, W, 3) sequence) per camera, logged
        under predicted/<cam>: a single frame at time t, a sequence at t + i*dt (dt defaults to the
        control period)."""
        if not self.enabled:
            return
        rr = self.rr
        step_dt = self.dt if dt is None else float(dt)
        for cam, frames in frames_by_camera.items():
            arr = np.asarray(frames)
            if arr.dtype != np.uint8:
                arr = (np.clip(arr, 0.0, 1.0) * 255).astype(np.uint8) if arr.max() <= 1.0 else np.clip(arr, 0, 255).astype(np.uint8)
            seq = arr if arr.ndim == 4 else arr[None]
            for i, img in enumerate(seq):
                self._time(float(t) + i * step_dt)
                self.rec.log(f"predicted/{cam}", rr.Image(img))

    def close(self) -> None:
        if self.enabled and self.rec is not None:
            self.rec.flush()
            self.rec.disconnect()
            self.enabled = False

    def __enter__(self) -> "LiveView":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
