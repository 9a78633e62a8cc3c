"""Intel RealSense (D4xx) camera behind the Camera interface, via pyrealsense2.

One `rs.pipeline` per serial. The pieces are separable so that all but the pipeline open can run
without a camera (the tests drive them with `rs.software_device` frames):

- `import_pyrealsense2()`      the lazy import, with the fix in the error message;
- `list_realsense_devices()`   what is plugged in (serial, name, product line, firmware, USB);
- `configure_color_sensor()`   manual exposure / white balance / gain on the RGB sensor;
- `enable_global_time()`       `global_time_enabled = 1` on every sensor that has the option;
- `TimestampMapper`            device frame timestamp (ms) -> this host's `time.monotonic_ns()`;
- `FrameConverter`             `rs.composite_frame` -> `Frame` (depth aligned to colour, in mm);
- `FrameReader`                background thread keeping the latest converted frame;
- `RealSenseCamera`            the above around `rs.pipeline` (`_open_stream` is the only part that
                               needs a device).

Timestamps
----------
`Frame.capture_ts` is on the project's clock, `time.monotonic_ns()`. With global time enabled
(the D400 default, and what `RealSenseCamera` sets) librealsense reports `frame.get_timestamp()`
in the `global_time` domain: the device's hardware timestamp (start of the frame's USB transfer,
read-out after exposure; needs the kernel metadata patch, otherwise librealsense falls back to the
`system_time` domain = host arrival time) converted to the host's *system* clock, in milliseconds
since the Unix epoch (`time.time()` scale). For every frame, at the moment the reader thread
receives it, `TimestampMapper` samples `time.monotonic_ns()`, `time.time_ns()`, `time.monotonic_ns()`
back to back and takes `offset = midpoint(monotonic) - wall`; then
`capture_ts = round(timestamp_ms * 1e6) + offset`. Re-sampling per frame follows NTP slews and
steps of the wall clock; the error is the sampling gap (microseconds).
If a device reports the raw `hardware_clock` domain (global time off or unsupported) its clock has
an arbitrary origin and wraps; the mapper then uses the smallest `receive - device` difference over
the last `window` frames as the offset, so `capture_ts <= receive_ts` and frame-to-frame spacing is
the device's, biased late by the minimum transport delay (logged once as a warning).
`receive_ts` is `time.monotonic_ns()` right after the frameset arrived (before alignment).
Staleness (`max_age_s`) is judged on `receive_ts`, which needs no clock mapping.

Defaults (set once per lab and keep them for demos and rollouts, or ID/OOD comparisons break):
640x480 @ 30 fps colour (rgb8) + depth (z16, aligned to colour), exposure 12 ms (diffusion_policy's
real-robot setting, 120 x 100 us on the D4xx RGB sensor), white balance 5900 K, gain left at the
device's value (auto-exposure off freezes it; it is read back and logged).
"""

from __future__ import annotations

import collections
import importlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from robot_client.cameras.base import Camera, CameraIntrinsics, Frame

log = logging.getLogger(__name__)

DEFAULT_EXPOSURE_US = 12000.0
DEFAULT_WHITE_BALANCE_K = 5900.0

INSTALL_HINT = (
    "pyrealsense2 (Intel RealSense SDK Python bindings) is needed for RealSense cameras: "
    "`pip install pyrealsense2`; its wheel loads libusb, which on Debian/Ubuntu is "
    "`apt-get install libusb-1.0-0`. Without a camera, use the sim cameras (--robot sim)."
)


class RealSenseUnavailableError(ImportError):
    """pyrealsense2 cannot be imported (not installed, or libusb missing)."""


class CameraNotFoundError(RuntimeError):
    """The requested serial is not connected."""


class FrameTimeoutError(TimeoutError):
    """No frame arrived within the timeout."""


class StaleFrameError(RuntimeError):
    """The newest frame is older than max_age."""


def import_pyrealsense2():
    """`import pyrealsense2`, or RealSenseUnavailableError saying how to install it."""
    try:
        return importlib.import_module("pyrealsense2")
    except (ImportError, OSError) as e:
        raise RealSenseUnavailableError(f"cannot import pyrealsense2 ({type(e).__name__}: {e}). {INSTALL_HINT}") from e


# ---- devices --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RealSenseDeviceInfo:
    serial: str
    name: str
    product_line: str = ""
    firmware_version: str = ""
    usb_type: str = ""

    def __str__(self) -> str:
        extra = ", ".join(x for x in (self.product_line, f"fw {self.firmware_version}" if self.firmware_version else "",
                                      f"USB {self.usb_type}" if self.usb_type else "") if x)
        return f"{self.serial} ({self.name}{', ' + extra if extra else ''})"


def describe_device(device) -> RealSenseDeviceInfo:
    """RealSenseDeviceInfo of an `rs.device` (fields the device does not report are '')."""
    rs = import_pyrealsense2()

    def info(key) -> str:
        try:
            return device.get_info(key) if device.supports(key) else ""
        except RuntimeError:
            return ""

    return RealSenseDeviceInfo(
        serial=info(rs.camera_info.serial_number), name=info(rs.camera_info.name),
        product_line=info(rs.camera_info.product_line), firmware_version=info(rs.camera_info.firmware_version),
        usb_type=info(rs.camera_info.usb_type_descriptor))


def list_realsense_devices(context=None) -> list[RealSenseDeviceInfo]:
    """The RealSense devices connected now, sorted by serial."""
    rs = import_pyrealsense2()
    ctx = context if context is not None else rs.context()
    return sorted((describe_device(d) for d in ctx.query_devices()), key=lambda d: d.serial)


def _connected_summary(devices: list[RealSenseDeviceInfo]) -> str:
    if not devices:
        return "no RealSense device is connected (check the USB 3 cable/port and `rs-enumerate-devices`)"
    return "connected: " + "; ".join(str(d) for d in devices)


# ---- sensor options ---------------------------------------------------------------------------------

def _set_option(sensor, option, value: float, what: str) -> float:
    """Set `option` to `value` (snapped to the option's step); ValueError naming the allowed range."""
    if not sensor.supports(option):
        raise ValueError(f"{_sensor_name(sensor)}: does not support {what}")
    r = sensor.get_option_range(option)
    if r.step > 0:
        value = r.min + round((value - r.min) / r.step) * r.step
    if not (r.min - 1e-9 <= value <= r.max + 1e-9):
        raise ValueError(f"{_sensor_name(sensor)}: {what} {value:g} is outside [{r.min:g}, {r.max:g}] (step {r.step:g})")
    sensor.set_option(option, float(value))
    return float(sensor.get_option(option))


def _sensor_name(sensor) -> str:
    try:
        return sensor.get_info(import_pyrealsense2().camera_info.name)
    except Exception:  # noqa: BLE001 - only used in messages
        return "sensor"


def exposure_unit_us(sensor) -> float:
    """Microseconds per unit of `rs.option.exposure` on this sensor.

    The separate UVC "RGB Camera" of D415/D435/D455 counts in 100 us (range 1..10000); sensors
    whose colour comes from the stereo module (D405) and the depth sensors count in microseconds.
    """
    return 100.0 if _sensor_name(sensor) == "RGB Camera" else 1.0


@dataclass(frozen=True)
class ColorSettings:
    """What the RGB sensor reports after configure_color_sensor (read back, in device units)."""

    exposure_us: float
    white_balance: float | None
    gain: float | None


def configure_color_sensor(sensor, exposure_us: float | None = DEFAULT_EXPOSURE_US,
                           white_balance: float | None = DEFAULT_WHITE_BALANCE_K, gain: float | None = None,
                           unit_us: float | None = None) -> ColorSettings:
    """Manual exposure (auto-exposure off) and white balance (auto-WB off); `None` keeps auto.

    exposure_us is converted to the sensor's unit (see exposure_unit_us; `unit_us` overrides).
    Returns the values read back from the sensor.
    """
    rs = import_pyrealsense2()
    unit = unit_us or exposure_unit_us(sensor)
    if exposure_us is None:
        _set_option(sensor, rs.option.enable_auto_exposure, 1, "enable_auto_exposure")
    else:
        if not exposure_us > 0:
            raise ValueError(f"exposure_us must be > 0, got {exposure_us}")
        _set_option(sensor, rs.option.enable_auto_exposure, 0, "enable_auto_exposure")
        _set_option(sensor, rs.option.exposure, exposure_us / unit, f"exposure ({exposure_us:g} us = {exposure_us / unit:g} x {unit:g} us)")
        if gain is not None:
            _set_option(sensor, rs.option.gain, gain, "gain")
    if white_balance is None:
        if sensor.supports(rs.option.enable_auto_white_balance):
            _set_option(sensor, rs.option.enable_auto_white_balance, 1, "enable_auto_white_balance")
    else:
        _set_option(sensor, rs.option.enable_auto_white_balance, 0, "enable_auto_white_balance")
        _set_option(sensor, rs.option.white_balance, white_balance, "white_balance")
    read = lambda opt: float(sensor.get_option(opt)) if sensor.supports(opt) else None  # noqa: E731
    return ColorSettings(exposure_us=float(sensor.get_option(rs.option.exposure)) * unit,
                         white_balance=read(rs.option.white_balance), gain=read(rs.option.gain))


def enable_global_time(sensors) -> int:
    """`global_time_enabled = 1` on each sensor that has the option; returns how many did."""
    rs = import_pyrealsense2()
    n = 0
    for s in sensors:
        if s.supports(rs.option.global_time_enabled):
            s.set_option(rs.option.global_time_enabled, 1)
            n += 1
    return n


def find_color_sensor(device):
    """The sensor that streams colour: the "RGB Camera" (D415/D435/D455) or the stereo module (D405)."""
    rs = import_pyrealsense2()
    for s in device.query_sensors():
        if any(p.stream_type() == rs.stream.color for p in s.get_stream_profiles()):
            return s
    raise ValueError(f"{describe_device(device)} has no colour stream")


# ---- frames -----------------------------------------------------------------------------------------

def intrinsics_from_profile(profile) -> CameraIntrinsics:
    """CameraIntrinsics of an `rs.stream_profile` (a video stream)."""
    i = profile.as_video_stream_profile().get_intrinsics()
    return CameraIntrinsics(int(i.width), int(i.height), float(i.fx), float(i.fy), float(i.ppx), float(i.ppy),
                            str(i.model).split(".")[-1], tuple(float(c) for c in i.coeffs))


class TimestampMapper:
    """Device frame timestamps (ms, per their `rs.timestamp_domain`) -> `time.monotonic_ns()` (see module doc)."""

    def __init__(self, window: int = 300, wall_ns: Callable[[], int] = time.time_ns,
                 mono_ns: Callable[[], int] = time.monotonic_ns) -> None:
        self._wall_ns, self._mono_ns = wall_ns, mono_ns
        self._hw_offsets: collections.deque[int] = collections.deque(maxlen=window)
        self._last_hw_ns: int | None = None
        self._warned = False
        self.last_offset_ns: int | None = None  # monotonic - domain, for logging

    def wall_to_monotonic_offset_ns(self) -> int:
        before = self._mono_ns()
        wall = self._wall_ns()
        after = self._mono_ns()
        return (before + after) // 2 - wall

    def to_monotonic_ns(self, timestamp_ms: float, domain: str, receive_ns: int) -> int:
        """domain: 'global_time', 'system_time' (host wall clock, ms) or 'hardware_clock' (device clock)."""
        ms = float(timestamp_ms)
        whole = int(ms)  # split: ms since 1970 times 1e6 overflows a double's 53-bit mantissa
        ts_ns = whole * 1_000_000 + int(round((ms - whole) * 1e6))
        if domain in ("global_time", "system_time"):
            self.last_offset_ns = self.wall_to_monotonic_offset_ns()
        elif domain == "hardware_clock":
            if not self._warned:
                log.warning("RealSense frames carry raw hardware_clock timestamps (global time off?): capture times "
                            "are estimated from the fastest recent delivery")
                self._warned = True
            if self._last_hw_ns is not None and ts_ns < self._last_hw_ns:
                self._hw_offsets.clear()  # device clock wrapped or reset
            self._last_hw_ns = ts_ns
            self._hw_offsets.append(receive_ns - ts_ns)
            self.last_offset_ns = min(self._hw_offsets)
        else:
            raise ValueError(f"unknown timestamp domain {domain!r}")
        return ts_ns + self.last_offset_ns


def _domain_name(domain) -> str:
    return str(getattr(domain, "name", domain)).split(".")[-1]


def depth_to_mm(raw: np.ndarray, units_m: float) -> np.ndarray:
    """uint16 depth in device units (metres per unit = units_m) -> uint16 millimetres, 0 stays 0."""
    if not units_m > 0:
        raise ValueError(f"depth units must be > 0 m, got {units_m}")
    raw = np.asarray(raw)
    if abs(units_m - 0.001) < 1e-9:
        return raw.astype(np.uint16, copy=True)
    mm = np.rint(raw.astype(np.float64) * (units_m * 1000.0))
    return np.clip(mm, 0, 65535).astype(np.uint16)


@dataclass(frozen=True)
class FrameInfo:
    """Per-frame details not in Frame, for logs: device timestamp and domain, frame number."""

    frame_number: int
    device_timestamp_ms: float
    domain: str


class FrameConverter:
    """`rs.composite_frame` -> (Frame, FrameInfo): RGB uint8 HxWx3, depth aligned to colour in mm.

    Returns None for a frameset without colour (or without depth when depth is wanted), which the
    pipeline's syncer can hand out while streams start.
    """

    def __init__(self, serial: str, depth: bool = True, align: bool = True,
                 mapper: TimestampMapper | None = None) -> None:
        rs = import_pyrealsense2()
        self._rs = rs
        self.serial, self.depth = serial, bool(depth)
        self._align = rs.align(rs.stream.color) if depth and align else None
        self.mapper = mapper or TimestampMapper()

    def color_array(self, color_frame) -> np.ndarray:
        rs = self._rs
        fmt = color_frame.get_profile().format()
        data = np.asanyarray(color_frame.get_data())
        if fmt == rs.format.rgb8:
            return np.array(data, dtype=np.uint8, copy=True)
        if fmt == rs.format.bgr8:
            return np.ascontiguousarray(data[..., ::-1])
        if fmt == rs.format.rgba8:
            return np.ascontiguousarray(data[..., :3])
        if fmt == rs.format.bgra8:
            return np.ascontiguousarray(data[..., 2::-1])
        raise ValueError(f"camera {self.serial}: colour format {fmt} is not supported; stream rgb8 or bgr8")

    def convert(self, frames, receive_ns: int) -> tuple[Frame, FrameInfo] | None:
        frameset = frames.as_frameset() if hasattr(frames, "as_frameset") else frames
        if self.depth:
            if not (frameset.get_color_frame() and frameset.get_depth_frame()):
                return None
            if self._align is not None:
                frameset = self._align.process(frameset)
        color_frame = frameset.get_color_frame()
        if not color_frame:
            return None
        color = self.color_array(color_frame)
        depth = None
        if self.depth:
            depth_frame = frameset.get_depth_frame()
            if not depth_frame:
                return None
            depth = depth_to_mm(np.asanyarray(depth_frame.get_data()), depth_frame.get_units())
        ts_ms = color_frame.get_timestamp()
        domain = _domain_name(color_frame.get_frame_timestamp_domain())
        capture_ns = self.mapper.to_monotonic_ns(ts_ms, domain, receive_ns)
        info = FrameInfo(int(color_frame.get_frame_number()), float(ts_ms), domain)
        return Frame(color, depth, capture_ns, int(receive_ns), self.serial), info


class FrameReader:
    """A daemon thread: `source.try_wait_for_frames(ms)` -> converter -> the latest Frame.

    `source` is an `rs.pipeline` on hardware or an `rs.syncer` fed by a software device in tests.
    """

    def __init__(self, source, converter: FrameConverter, name: str = "realsense", poll_ms: int = 100,
                 clock_ns: Callable[[], int] = time.monotonic_ns) -> None:
        self.source, self.converter, self.name = source, converter, name
        self.poll_ms = int(poll_ms)
        self._clock_ns = clock_ns
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self.latest_info: FrameInfo | None = None
        self.frames_received = 0
        self.incomplete_framesets = 0
        self.dropped_frames = 0  # gaps in the device frame counter
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"{self.name}-reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                ok, frames = self.source.try_wait_for_frames(self.poll_ms)
                if not ok:
                    continue
                receive_ns = self._clock_ns()
                result = self.converter.convert(frames, receive_ns)
                del frames
                if result is None:
                    self.incomplete_framesets += 1
                    continue
                frame, info = result
                with self._cond:
                    if self.latest_info is not None and info.frame_number > self.latest_info.frame_number + 1:
                        self.dropped_frames += info.frame_number - self.latest_info.frame_number - 1
                    self._latest, self.latest_info = frame, info
                    self.frames_received += 1
                    self._cond.notify_all()
        except BaseException as e:  # noqa: BLE001 - surfaced by latest()
            log.exception("%s: frame reader stopped", self.name)
            with self._cond:
                self.error = e
                self._cond.notify_all()

    def latest(self, timeout_s: float = 1.0, max_age_s: float | None = None) -> Frame:
        """The newest frame; waits up to timeout_s for one that is no older than max_age_s (by receive time).

        FrameTimeoutError if none ever arrived, StaleFrameError if only old ones did, RuntimeError if
        the reader thread died (chained to its exception).
        """
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                if self.error is not None:
                    raise RuntimeError(f"{self.name}: frame reader failed: {self.error!r}") from self.error
                frame = self._latest
                if frame is not None:
                    age = (self._clock_ns() - frame.receive_ts) / 1e9
                    if max_age_s is None or age <= max_age_s:
                        return frame
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self.running:
                    break
                self._cond.wait(remaining)
        if frame is None:
            raise FrameTimeoutError(f"{self.name}: no frame within {timeout_s:g} s"
                                    + ("" if self.running else " (reader not running)"))
        raise StaleFrameError(f"{self.name}: newest frame is {age * 1e3:.0f} ms old (> max_age {max_age_s * 1e3:.0f} ms) "
                              f"and none newer arrived within {timeout_s:g} s")

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                raise RuntimeError(f"{self.name}: reader thread did not stop within {timeout_s} s")
        self._thread = None


# ---- the camera ---------------------------------------------------------------------------------------

@dataclass
class OpenStream:
    """What opening a device yields: a frame source, the device, the colour stream profile, a closer."""

    source: Any
    device: Any
    color_profile: Any
    close: Callable[[], None]


class RealSenseCamera(Camera):
    """One RealSense by serial: colour (RGB) and optionally depth aligned to colour, in mm.

    start() opens the pipeline, fixes exposure/white balance, turns on global time, starts the reader
    thread and waits for the first frame (start_timeout_s). read() returns the newest frame, waiting
    up to timeout_s when there is none no older than max_age_s.
    """

    def __init__(self, serial: str, width: int = 640, height: int = 480, fps: int = 30, depth: bool = True,
                 exposure_us: float | None = DEFAULT_EXPOSURE_US,
                 white_balance: float | None = DEFAULT_WHITE_BALANCE_K, gain: float | None = None,
                 name: str | None = None, depth_width: int | None = None, depth_height: int | None = None,
                 timeout_s: float = 0.5, max_age_s: float = 0.25, start_timeout_s: float = 5.0,
                 exposure_unit_us: float | None = None, context=None) -> None:
        serial = str(serial).strip()
        if not serial:
            raise ValueError("RealSense serial must be a non-empty string")
        for what, v in (("width", width), ("height", height), ("fps", fps)):
            if int(v) <= 0:
                raise ValueError(f"{what} must be positive, got {v}")
        self.serial = serial
        self.name = name or f"realsense-{serial}"
        self.width, self.height, self.fps, self.depth = int(width), int(height), int(fps), bool(depth)
        self.depth_width = int(depth_width or width)
        self.depth_height = int(depth_height or height)
        self.exposure_us, self.white_balance, self.gain = exposure_us, white_balance, gain
        self.exposure_unit_us = exposure_unit_us
        self.timeout_s, self.max_age_s, self.start_timeout_s = float(timeout_s), float(max_age_s), float(start_timeout_s)
        self.context = context
        self.color_settings: ColorSettings | None = None
        self._stream: OpenStream | None = None
        self._reader: FrameReader | None = None
        self._intrinsics: CameraIntrinsics | None = None

    # -- device access (the only hardware-bound part) --
    def _open_stream(self) -> OpenStream:
        rs = import_pyrealsense2()
        ctx = self.context if self.context is not None else rs.context()
        devices = list_realsense_devices(ctx)
        if self.serial not in {d.serial for d in devices}:
            raise CameraNotFoundError(f"{self.name}: RealSense serial {self.serial!r} is not connected; "
                                      f"{_connected_summary(devices)}")
        cfg = rs.config()
        cfg.enable_device(self.serial)
        cfg.enable_stream(rs.stream.color, self.width, self.height, rs.format.rgb8, self.fps)
        if self.depth:
            cfg.enable_stream(rs.stream.depth, self.depth_width, self.depth_height, rs.format.z16, self.fps)
        pipeline = rs.pipeline(ctx)
        try:
            profile = pipeline.start(cfg)
        except RuntimeError as e:
            want = f"colour {self.width}x{self.height} rgb8" + (
                f" + depth {self.depth_width}x{self.depth_height} z16" if self.depth else "")
            raise RuntimeError(f"{self.name}: cannot start {want} @ {self.fps} fps on {self.serial}: {e}. "
                               "Check the modes with `rs-enumerate-devices -s {serial}`; USB 2 links offer fewer."
                               .replace("{serial}", self.serial)) from e
        return OpenStream(pipeline, profile.get_device(), profile.get_stream(rs.stream.color), pipeline.stop)

    # -- Camera interface --
    def start(self) -> None:
        if self._reader is not None:
            return
        stream = self._open_stream()
        self._stream = stream
        try:
            enable_global_time(stream.device.query_sensors())
            self.color_settings = configure_color_sensor(
                find_color_sensor(stream.device), self.exposure_us, self.white_balance, self.gain, self.exposure_unit_us)
            log.info("%s (%s): %s", self.name, self.serial, self.color_settings)
            self._intrinsics = intrinsics_from_profile(stream.color_profile)
            self._reader = FrameReader(stream.source, FrameConverter(self.serial, self.depth), name=self.name)
            self._reader.start()
            self._reader.latest(timeout_s=self.start_timeout_s)
        except BaseException:
            self.stop()
            raise

    def read(self) -> Frame:
        if self._reader is None or self._stream is None:
            raise RuntimeError(f"{self.name}: read() before start()")
        return self._reader.latest(timeout_s=self.timeout_s, max_age_s=self.max_age_s)

    @property
    def intrinsics(self) -> CameraIntrinsics:
        if self._intrinsics is None:
            raise RuntimeError(f"{self.name}: intrinsics are known after start()")
        return self._intrinsics

    @property
    def last_frame_info(self) -> FrameInfo | None:
        return None if self._reader is None else self._reader.latest_info

    @property
    def stats(self) -> dict:
        r = self._reader
        if r is None:
            return {}
        return {"frames": r.frames_received, "dropped": r.dropped_frames, "incomplete": r.incomplete_framesets,
                "offset_ns": r.converter.mapper.last_offset_ns}

    def stop(self) -> None:
        reader, stream = self._reader, self._stream
        self._reader, self._stream = None, None
        try:
            if reader is not None:
                reader.stop()
        finally:
            if stream is not None:
                stream.close()
