"""RealSense backend, driven through pyrealsense2 itself.

A `rs.software_device` with a "Stereo Module" (depth, z16) and an "RGB Camera" (colour) sensor
injects real frames (`software_video_frame` -> `on_video_frame`) into an `rs.syncer`; what comes
out are genuine `rs.composite_frame`/`rs.video_frame`/`rs.depth_frame` objects with timestamps,
timestamp domains, depth units and stream-profile intrinsics. The software sensors also carry the
RGB options (auto exposure, exposure, white balance, gain, global time) with D435-like ranges, so
the option code runs against real `rs.sensor` objects. Only the `rs.pipeline` open needs a camera
(a software device does not resolve through a pipeline on 2.59); see docs/hardware.md.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace
import time

import numpy as np
import pytest

rs = pytest.importorskip("pyrealsense2", exc_type=ImportError)

from robot_client.cameras import realsense as rsc  # noqa: E402
from robot_client.cameras.base import Camera  # noqa: E402

W, H = 64, 48  # colour
DW, DH = 80, 60  # depth (a different size, so alignment has to resample)
SERIAL = "123456789012"


def _intrinsics(w: int, h: int, f: float, model=None, coeffs=(0.0, 0.0, 0.0, 0.0, 0.0)):
    i = rs.intrinsics()
    i.width, i.height, i.fx, i.fy, i.ppx, i.ppy = w, h, f, f * 1.01, (w - 1) / 2, (h - 1) / 2
    i.model = model if model is not None else rs.distortion.none
    i.coeffs = list(coeffs)
    return i


def _range(lo, hi, step, default):
    r = rs.option_range()
    r.min, r.max, r.step, r.default = lo, hi, step, default
    return r


class SoftwareRealSense:
    """A D435-shaped software device: depth (units 0.1 mm) + colour, opened into an rs.syncer."""

    def __init__(self, color_format=None, depth_units: float = 0.0001, depth: bool = True):
        self.color_format = color_format if color_format is not None else rs.format.rgb8
        self.depth_units = depth_units
        self.dev = rs.software_device()
        self.dev.register_info(rs.camera_info.serial_number, SERIAL)
        self.dev.register_info(rs.camera_info.name, "Intel RealSense D435 (software)")
        self.dev.register_info(rs.camera_info.product_line, "D400")
        self.depth_sensor = self.dev.add_sensor("Stereo Module") if depth else None
        self.color_sensor = self.dev.add_sensor("RGB Camera")
        cs = rs.video_stream()
        cs.type, cs.index, cs.uid, cs.width, cs.height, cs.fps = rs.stream.color, 0, 1, W, H, 30
        cs.bpp, cs.fmt = (4 if self.color_format in (rs.format.rgba8, rs.format.bgra8) else 3), self.color_format
        cs.intrinsics = _intrinsics(W, H, 50.0, rs.distortion.brown_conrady, (0.1, -0.05, 0.001, 0.002, 0.0))
        self.color_profile = self.color_sensor.add_video_stream(cs, True).as_video_stream_profile()
        c = self.color_sensor
        c.add_option(rs.option.enable_auto_exposure, _range(0, 1, 1, 1), True)
        c.add_option(rs.option.exposure, _range(1, 10000, 1, 156), True)
        c.add_option(rs.option.gain, _range(0, 128, 1, 64), True)
        c.add_option(rs.option.enable_auto_white_balance, _range(0, 1, 1, 1), True)
        c.add_option(rs.option.white_balance, _range(2800, 6500, 10, 4600), True)
        c.add_option(rs.option.global_time_enabled, _range(0, 1, 1, 0), True)
        self.sensors = [c]
        if depth:
            ds = rs.video_stream()
            ds.type, ds.index, ds.uid, ds.width, ds.height, ds.fps = rs.stream.depth, 0, 0, DW, DH, 30
            ds.bpp, ds.fmt = 2, rs.format.z16
            ds.intrinsics = _intrinsics(DW, DH, 62.5)
            self.depth_profile = self.depth_sensor.add_video_stream(ds, True).as_video_stream_profile()
            self.depth_sensor.add_read_only_option(rs.option.depth_units, depth_units)
            self.depth_sensor.add_option(rs.option.global_time_enabled, _range(0, 1, 1, 0), True)
            ext = rs.extrinsics()
            ext.rotation, ext.translation = [1, 0, 0, 0, 1, 0, 0, 0, 1], [0.0, 0.0, 0.0]
            self.depth_profile.register_extrinsics_to(self.color_profile, ext)
            self.sensors.insert(0, self.depth_sensor)
        self.dev.create_matcher(rs.matchers.dic if depth else rs.matchers.default)
        self.syncer = rs.syncer()
        if depth:
            self.depth_sensor.open(self.depth_profile)
        self.color_sensor.open(self.color_profile)
        for s in self.sensors:
            s.start(self.syncer)
        self.n = 0
        self._feeder: threading.Thread | None = None
        self._feeding = threading.Event()
        self.closed = False

    def color_image(self, n: int) -> np.ndarray:
        img = np.zeros((H, W, 3), np.uint8)
        img[..., 0] = 200  # R
        img[..., 1] = (n * 7) % 256  # G carries the frame number
        img[..., 2] = 10  # B
        img[:, : W // 2, 2] = 90
        return img

    def inject(self, ts_ms: float | None = None, domain=None, depth_raw: int = 5000, frame_number: int | None = None):
        """One colour frame (and one depth frame) with the same timestamp; returns the timestamp (ms)."""
        n = self.n if frame_number is None else frame_number
        self.n = n + 1
        ts = time.time() * 1000.0 if ts_ms is None else ts_ms
        domain = rs.timestamp_domain.global_time if domain is None else domain
        if self.depth_sensor is not None:
            d = rs.software_video_frame()
            d.pixels = np.full((DH, DW), depth_raw, np.uint16)
            d.stride, d.bpp, d.timestamp, d.domain, d.frame_number = DW * 2, 2, ts, domain, n
            d.profile, d.depth_units = self.depth_profile, self.depth_units
            self.depth_sensor.on_video_frame(d)
        rgb = self.color_image(n)
        if self.color_format == rs.format.bgr8:
            pixels = np.ascontiguousarray(rgb[..., ::-1])
        elif self.color_format == rs.format.rgba8:
            pixels = np.concatenate([rgb, np.full((H, W, 1), 255, np.uint8)], axis=2)
        else:
            pixels = rgb
        c = rs.software_video_frame()
        c.pixels = pixels
        c.stride, c.bpp, c.timestamp, c.domain, c.frame_number = W * pixels.shape[2], pixels.shape[2], ts, domain, n
        c.profile = self.color_profile
        self.color_sensor.on_video_frame(c)
        return ts

    def next_frameset(self, timeout_ms: int = 1000):
        """Inject until the syncer hands out a frameset with colour and depth (the first one is colour only)."""
        for _ in range(5):
            self.inject()
            ok, fs = self.syncer.try_wait_for_frames(timeout_ms)
            while ok:
                fs = fs.as_frameset()
                if fs.get_color_frame() and (self.depth_sensor is None or fs.get_depth_frame()):
                    return fs
                ok, fs = self.syncer.try_wait_for_frames(20)
        raise AssertionError("software device produced no complete frameset")

    def feed(self, hz: float = 30.0, latency_ms: float = 0.0) -> None:
        """Inject frames in a background thread until stop_feeding() (at the stream's 30 fps: the
        syncer does not pair frames that come faster than the profile's rate)."""
        self._feeding.set()

        def run():
            while self._feeding.is_set():
                self.inject(ts_ms=time.time() * 1000.0 - latency_ms)
                time.sleep(1.0 / hz)

        self._feeder = threading.Thread(target=run, daemon=True)
        self._feeder.start()

    def stop_feeding(self) -> None:
        self._feeding.clear()
        if self._feeder is not None:
            self._feeder.join(2)
            self._feeder = None

    def open_stream(self) -> rsc.OpenStream:
        return rsc.OpenStream(self.syncer, self.dev, self.color_profile, self.close)

    def close(self) -> None:
        self.stop_feeding()
        if self.closed:
            return
        self.closed = True
        for s in self.sensors:
            s.stop()
            s.close()


@pytest.fixture
def rig():
    r = SoftwareRealSense()
    yield r
    r.close()


# ---- import and device errors ---------------------------------------------------------------------

@pytest.mark.parametrize("exc", [ImportError("libusb-1.0.so.0: cannot open shared object file"),
                                 OSError("libusb-1.0.so.0: cannot open shared object file")])
def test_missing_pyrealsense2_says_how_to_install(monkeypatch, exc):
    def fail(name):
        raise exc

    monkeypatch.setattr(rsc.importlib, "import_module", fail)
    with pytest.raises(rsc.RealSenseUnavailableError) as info:
        rsc.RealSenseCamera(SERIAL).start()
    msg = str(info.value)
    assert isinstance(info.value, ImportError)
    assert "apt-get install libusb-1.0-0" in msg and "pip install pyrealsense2" in msg and "libusb-1.0.so.0" in msg


def test_describe_and_list_devices():
    sw = rs.software_device()
    sw.register_info(rs.camera_info.serial_number, "987654321098")
    sw.register_info(rs.camera_info.name, "Intel RealSense D435")
    sw.register_info(rs.camera_info.firmware_version, "5.16.0.1")
    info = rsc.describe_device(sw)
    assert (info.serial, info.name, info.firmware_version, info.product_line) == (
        "987654321098", "Intel RealSense D435", "5.16.0.1", "")
    assert str(info) == "987654321098 (Intel RealSense D435, fw 5.16.0.1)"
    devices = rsc.list_realsense_devices()  # whatever is plugged in (nothing in CI): a sorted list of infos
    assert all(isinstance(d, rsc.RealSenseDeviceInfo) for d in devices)
    assert [d.serial for d in devices] == sorted(d.serial for d in devices)


def test_unknown_serial_lists_what_is_connected(monkeypatch):
    sw = rs.software_device()
    sw.register_info(rs.camera_info.serial_number, "111111111111")
    sw.register_info(rs.camera_info.name, "Intel RealSense D415")
    monkeypatch.setattr(rsc, "list_realsense_devices", lambda ctx=None: [rsc.describe_device(sw)])
    with pytest.raises(rsc.CameraNotFoundError, match=r"'000000000000' is not connected; connected: "
                                                      r"111111111111 \(Intel RealSense D415\)"):
        rsc.RealSenseCamera("000000000000", name="wrist_image_left").start()
    monkeypatch.setattr(rsc, "list_realsense_devices", lambda ctx=None: [])
    with pytest.raises(rsc.CameraNotFoundError, match="no RealSense device is connected"):
        rsc.RealSenseCamera("000000000000").start()


def test_camera_arguments_are_checked():
    with pytest.raises(ValueError, match="serial"):
        rsc.RealSenseCamera("  ")
    with pytest.raises(ValueError, match="fps must be positive"):
        rsc.RealSenseCamera(SERIAL, fps=0)
    cam = rsc.RealSenseCamera(SERIAL)
    assert isinstance(cam, Camera)
    with pytest.raises(RuntimeError, match="before start"):
        cam.read()
    with pytest.raises(RuntimeError, match="after start"):
        _ = cam.intrinsics


# ---- sensor options on real rs.sensor objects --------------------------------------------------------

def test_color_sensor_gets_fixed_exposure_and_white_balance(rig):
    sensor = rsc.find_color_sensor(rig.dev)
    assert sensor.get_info(rs.camera_info.name) == "RGB Camera"
    assert rsc.exposure_unit_us(sensor) == 100.0
    settings = rsc.configure_color_sensor(sensor, exposure_us=12000, white_balance=5900, gain=32)
    assert sensor.get_option(rs.option.enable_auto_exposure) == 0
    assert sensor.get_option(rs.option.exposure) == 120  # 100 us units on the RGB sensor
    assert sensor.get_option(rs.option.enable_auto_white_balance) == 0
    assert sensor.get_option(rs.option.white_balance) == 5900
    assert sensor.get_option(rs.option.gain) == 32
    assert settings == rsc.ColorSettings(exposure_us=12000.0, white_balance=5900.0, gain=32.0)
    # values snap to the option's step; out-of-range ones name the range
    rsc.configure_color_sensor(sensor, exposure_us=12000, white_balance=5904)
    assert sensor.get_option(rs.option.white_balance) == 5900
    with pytest.raises(ValueError, match=r"exposure .* outside \[1, 10000\]"):
        rsc.configure_color_sensor(sensor, exposure_us=2_000_000)
    with pytest.raises(ValueError, match="exposure_us must be > 0"):
        rsc.configure_color_sensor(sensor, exposure_us=0)
    # None = leave it to the camera
    rsc.configure_color_sensor(sensor, exposure_us=None, white_balance=None)
    assert sensor.get_option(rs.option.enable_auto_exposure) == 1
    assert sensor.get_option(rs.option.enable_auto_white_balance) == 1


def test_exposure_in_microseconds_on_a_stereo_module_sensor():
    dev = rs.software_device()
    s = dev.add_sensor("Stereo Module")
    s.add_option(rs.option.enable_auto_exposure, _range(0, 1, 1, 1), True)
    s.add_option(rs.option.exposure, _range(1, 165000, 1, 8500), True)
    assert rsc.exposure_unit_us(s) == 1.0
    rsc.configure_color_sensor(s, exposure_us=12000, white_balance=None)
    assert s.get_option(rs.option.exposure) == 12000
    with pytest.raises(ValueError, match="does not support enable_auto_white_balance"):
        rsc.configure_color_sensor(s, exposure_us=12000, white_balance=5000)


def test_global_time_is_enabled_on_every_sensor_that_has_it(rig):
    assert rsc.enable_global_time(rig.dev.query_sensors()) == 2
    assert all(s.get_option(rs.option.global_time_enabled) == 1 for s in rig.sensors)


# ---- frame conversion -----------------------------------------------------------------------------------

def test_intrinsics_from_the_stream_profile(rig):
    k = rsc.intrinsics_from_profile(rig.color_profile)
    assert (k.width, k.height) == (W, H)
    assert k.fx == pytest.approx(50.0) and k.fy == pytest.approx(50.5)
    assert (k.ppx, k.ppy) == pytest.approx(((W - 1) / 2, (H - 1) / 2))
    assert k.model == "brown_conrady"
    assert k.coeffs == pytest.approx((0.1, -0.05, 0.001, 0.002, 0.0))
    assert k.K[0, 2] == pytest.approx((W - 1) / 2)


def test_frameset_becomes_a_frame_with_aligned_depth_in_mm(rig):
    conv = rsc.FrameConverter(SERIAL, depth=True)
    fs = rig.next_frameset()
    color_frame = fs.get_color_frame()
    assert isinstance(fs, rs.composite_frame) and fs.get_depth_frame().get_units() == pytest.approx(1e-4)
    receive = time.monotonic_ns()
    frame, info = conv.convert(fs, receive)
    n = color_frame.get_frame_number()
    assert info.frame_number == n and info.domain == "global_time"
    assert frame.serial == SERIAL and frame.receive_ts == receive
    assert frame.color.dtype == np.uint8 and frame.color.shape == (H, W, 3)
    np.testing.assert_array_equal(frame.color, rig.color_image(n))
    # depth resampled onto the colour grid, 5000 units x 0.1 mm = 500 mm
    assert frame.depth.dtype == np.uint16 and frame.depth.shape == (H, W)
    valid = frame.depth[frame.depth > 0]
    assert valid.size > 0.9 * H * W
    assert np.all(valid == 500)
    # the converted arrays own their memory (the rs frame buffer is recycled)
    assert frame.color.flags.owndata and frame.depth.flags.owndata


def test_incomplete_frameset_is_skipped(rig):
    conv = rsc.FrameConverter(SERIAL, depth=True)
    rig.inject()  # the first frameset out of the syncer holds colour only
    ok, fs = rig.syncer.try_wait_for_frames(1000)
    assert ok and not fs.as_frameset().get_depth_frame()
    assert conv.convert(fs, time.monotonic_ns()) is None


@pytest.mark.parametrize("fmt", ["bgr8", "rgba8"])
def test_other_color_formats_come_out_rgb(fmt):
    r = SoftwareRealSense(color_format=getattr(rs.format, fmt), depth=False)
    try:
        fs = r.next_frameset()
        frame, _ = rsc.FrameConverter(SERIAL, depth=False).convert(fs, time.monotonic_ns())
        np.testing.assert_array_equal(frame.color, r.color_image(fs.get_color_frame().get_frame_number()))
        assert frame.depth is None
    finally:
        r.close()


def test_depth_units_to_millimetres():
    raw = np.array([[0, 1, 10000, 65535]], np.uint16)
    np.testing.assert_array_equal(rsc.depth_to_mm(raw, 0.001), raw)  # D435 default: already mm
    np.testing.assert_array_equal(rsc.depth_to_mm(raw, 0.0001), [[0, 0, 1000, 6554]])  # D405 default
    np.testing.assert_array_equal(rsc.depth_to_mm(raw, 0.002), [[0, 2, 20000, 65535]])  # saturates
    with pytest.raises(ValueError):
        rsc.depth_to_mm(raw, 0.0)


def test_capture_time_from_global_timestamp(rig):
    """A frame stamped 40 ms before injection (host clock) lands 40 ms before injection on the monotonic clock."""
    conv = rsc.FrameConverter(SERIAL, depth=True)
    injected = {}
    result = None
    for _ in range(5):
        injected[rig.n] = time.monotonic_ns()
        rig.inject(ts_ms=time.time() * 1000.0 - 40.0)
        ok, fs = rig.syncer.try_wait_for_frames(1000)
        assert ok
        result = conv.convert(fs, time.monotonic_ns())
        if result is not None:
            break
        time.sleep(1 / 30)
    frame, info = result
    inject_mono = injected[info.frame_number]
    assert info.domain == "global_time"
    assert abs(frame.capture_ts - (inject_mono - 40_000_000)) < 3_000_000
    assert frame.receive_ts - frame.capture_ts >= 40_000_000 - 1_000_000


def test_timestamp_mapper_domains():
    wall, mono = [1_700_000_000_000_000_000], [5_000_000_000]
    m = rsc.TimestampMapper(window=3, wall_ns=lambda: wall[0], mono_ns=lambda: mono[0])
    # global/system time: host wall clock in ms
    assert m.to_monotonic_ns(1_700_000_000_000.0 - 30.0, "global_time", 0) == 5_000_000_000 - 30_000_000
    wall[0] += 1_000_000_000  # the wall clock is stepped by 1 s (NTP): the per-frame offset follows it
    assert m.to_monotonic_ns(1_700_000_000_000.0 - 30.0, "system_time", 0) == 4_000_000_000 - 30_000_000
    # hardware clock: offset = least (receive - device) over the window
    assert m.to_monotonic_ns(1000.0, "hardware_clock", receive_ns=9_010_000_000) == 9_010_000_000
    assert m.to_monotonic_ns(1033.0, "hardware_clock", receive_ns=9_048_000_000) == 9_048_000_000 - 5_000_000
    assert m.to_monotonic_ns(1066.0, "hardware_clock", receive_ns=9_077_000_000) == 9_077_000_000 - 1_000_000
    # the window (3) forgets the first frame's least delay
    assert m.to_monotonic_ns(1099.0, "hardware_clock", receive_ns=9_115_000_000) == 9_115_000_000 - 5_000_000
    # a device clock that wraps starts a fresh estimate
    assert m.to_monotonic_ns(5.0, "hardware_clock", receive_ns=9_100_000_000) == 9_100_000_000
    with pytest.raises(ValueError, match="unknown timestamp domain"):
        m.to_monotonic_ns(1.0, "sometime", 0)


# ---- reader thread -------------------------------------------------------------------------------------

def test_reader_keeps_the_latest_frame_and_detects_staleness(rig):
    reader = rsc.FrameReader(rig.syncer, rsc.FrameConverter(SERIAL, depth=True), name="ext1", poll_ms=20)
    with pytest.raises(rsc.FrameTimeoutError, match="reader not running"):
        reader.latest(timeout_s=0.05)
    reader.start()
    try:
        with pytest.raises(rsc.FrameTimeoutError, match="no frame within"):
            reader.latest(timeout_s=0.1)
        rig.feed(latency_ms=20)
        first = reader.latest(timeout_s=2.0, max_age_s=0.2)
        time.sleep(0.1)
        second = reader.latest(timeout_s=2.0, max_age_s=0.2)
        assert second.capture_ts > first.capture_ts and second.receive_ts > first.receive_ts
        assert 15e6 <= second.receive_ts - second.capture_ts < 200e6  # the injected 20 ms (+ delivery)
        assert reader.frames_received >= 2 and reader.latest_info.domain == "global_time"
        rig.stop_feeding()
        time.sleep(0.15)
        with pytest.raises(rsc.StaleFrameError, match=r"ms old \(> max_age 100 ms\)"):
            reader.latest(timeout_s=0.05, max_age_s=0.1)
        # a new frame clears the condition: latest() waits for it within its timeout
        threading.Timer(0.05, rig.feed).start()
        assert reader.latest(timeout_s=1.0, max_age_s=0.1).receive_ts > second.receive_ts
    finally:
        reader.stop()
    assert not reader.running


def test_reader_counts_dropped_frames(rig):
    reader = rsc.FrameReader(rig.syncer, rsc.FrameConverter(SERIAL, depth=True), poll_ms=20)
    # Warm up before the reader starts: once it polls, it and a warm-up here would race for the
    # same framesets (a loaded machine lost that race). The reader takes what comes next.
    rig.next_frameset()
    reader.start()
    try:
        t = time.time() * 1000.0
        for i, n in enumerate([10, 11, 15, 16, 17]):  # frames 12..14 never arrive
            rig.inject(ts_ms=t + 33.3 * i, frame_number=n)
            time.sleep(0.02)
        deadline = time.monotonic() + 2
        while (reader.latest_info is None or reader.latest_info.frame_number < 16) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert reader.latest_info.frame_number >= 16
        assert reader.dropped_frames >= 3
    finally:
        reader.stop()


def test_reader_failure_is_raised_to_the_caller():
    class Broken:
        def try_wait_for_frames(self, ms):
            raise RuntimeError("Frame didn't arrive within 100")

    reader = rsc.FrameReader(Broken(), rsc.FrameConverter(SERIAL, depth=False), name="wrist")
    reader.start()
    with pytest.raises(RuntimeError, match="wrist: frame reader failed") as info:
        reader.latest(timeout_s=1.0)
    assert isinstance(info.value.__cause__, RuntimeError)
    reader.stop()


# ---- the camera, everything but the pipeline open ----------------------------------------------------

class SoftwareRealSenseCamera(rsc.RealSenseCamera):
    def __init__(self, rig: SoftwareRealSense, **kw):
        super().__init__(SERIAL, width=W, height=H, **kw)
        self.rig = rig

    def _open_stream(self) -> rsc.OpenStream:
        return self.rig.open_stream()


def test_camera_start_read_stop(rig):
    rig.feed()
    cam = SoftwareRealSenseCamera(rig, name="exterior_image_1_left", exposure_us=10000, white_balance=4600)
    with cam:
        assert rig.color_sensor.get_option(rs.option.enable_auto_exposure) == 0
        assert rig.color_sensor.get_option(rs.option.exposure) == 100
        assert rig.color_sensor.get_option(rs.option.white_balance) == 4600
        assert all(s.get_option(rs.option.global_time_enabled) == 1 for s in rig.sensors)
        assert cam.color_settings.exposure_us == 10000
        assert cam.intrinsics == rsc.intrinsics_from_profile(rig.color_profile)
        frames = [cam.read() for _ in range(3)]
        for f in frames:
            assert f.serial == SERIAL and f.color.shape == (H, W, 3) and f.depth.shape == (H, W)
            assert f.capture_ts <= f.receive_ts <= time.monotonic_ns()
            assert np.all(f.depth[f.depth > 0] == 500)
        assert cam.stats["frames"] >= 1 and cam.last_frame_info.domain == "global_time"
        reader = cam._reader
    assert not reader.running and rig.closed
    with pytest.raises(RuntimeError, match="before start"):
        cam.read()


def test_camera_start_times_out_without_frames_and_cleans_up(rig):
    cam = SoftwareRealSenseCamera(rig, start_timeout_s=0.2)
    with pytest.raises(rsc.FrameTimeoutError):
        cam.start()
    assert rig.closed and cam._reader is None


def test_camera_read_raises_when_frames_stop(rig):
    rig.feed()
    cam = SoftwareRealSenseCamera(rig, timeout_s=0.1, max_age_s=0.1)
    cam.start()
    try:
        cam.read()
        rig.stop_feeding()
        time.sleep(0.15)
        with pytest.raises(rsc.StaleFrameError):
            cam.read()
    finally:
        cam.stop()


# ---- camera factory (configs/cameras.yaml) -------------------------------------------------------------

from robot_client.cameras import factory  # noqa: E402


def _config(**cams):
    return {"defaults": {"width": 640, "height": 480, "fps": 30, "exposure_us": 8000, "white_balance": 4600},
            "cameras": cams}


def test_shipped_camera_config_has_placeholders_that_are_refused():
    config = factory.load_camera_config()
    assert list(config["cameras"]) == list(factory.DROID_ROLES)
    with pytest.raises(ValueError) as info:
        factory.make_cameras("realsense", config)
    msg = str(info.value)
    assert "cameras.yaml" in msg and "connected" in msg
    assert all(f"cameras.{r}.serial is still the placeholder" in msg for r in factory.DROID_ROLES)


def test_realsense_cameras_by_role():
    cams = factory.make_cameras("realsense", _config(
        exterior_image_1_left={"serial": "035622060001"},
        wrist_image_left={"serial": "130322270002", "width": 424, "height": 240, "depth": False, "exposure_us": None}))
    assert list(cams) == ["exterior_image_1_left", "wrist_image_left"]
    ext, wrist = cams["exterior_image_1_left"], cams["wrist_image_left"]
    assert isinstance(ext, rsc.RealSenseCamera) and ext.name == "exterior_image_1_left"
    assert (ext.serial, ext.width, ext.height, ext.fps, ext.depth, ext.exposure_us, ext.white_balance) == (
        "035622060001", 640, 480, 30, True, 8000, 4600)
    assert (wrist.serial, wrist.width, wrist.height, wrist.depth, wrist.exposure_us) == ("130322270002", 424, 240, False, None)
    assert ext._reader is None  # built, not started


@pytest.mark.parametrize("cams, match", [
    ({"wrist_image_left": {}}, r"cameras.wrist_image_left has no serial"),
    ({"wrist_image_left": {"serial": 35622060001}}, r"must be a quoted string .*35622060001"),
    ({"exterior_image_1_left": {"serial": "1"}, "exterior_image_2_left": {"serial": "1"}}, "have the same serial 1"),
    ({"left_cam": {"serial": "1"}}, r"unknown camera role\(s\) \['left_cam'\]"),
    ({"wrist_image_left": {"serial": "1", "exposure": 100}}, r"cameras.wrist_image_left: unknown key\(s\) \['exposure'\]"),
    ({}, "no cameras"),
])
def test_camera_config_errors(cams, match):
    with pytest.raises(ValueError, match=match):
        factory.make_cameras("realsense", _config(**cams))


def test_camera_config_file_errors_name_the_file(tmp_path):
    path = tmp_path / "cameras.yaml"
    path.write_text("defaults: {fps: 30, exposur_us: 100}\ncameras: {wrist_image_left: {serial: '1'}}\n")
    with pytest.raises(ValueError, match=r"cameras.yaml: defaults: unknown key\(s\) \['exposur_us'\]"):
        factory.load_camera_config(path)
    with pytest.raises(ValueError, match="camera kind must be 'sim' or 'realsense'"):
        factory.make_cameras("zed", _config(wrist_image_left={"serial": "1"}))


def test_sim_cameras_by_role():
    env = SimpleNamespace(cameras={r: object() for r in factory.DROID_ROLES})
    cams = factory.make_cameras("sim", _config(exterior_image_1_left={"serial": "x"}, wrist_image_left={}), sim_env=env)
    assert cams == {"exterior_image_1_left": env.cameras["exterior_image_1_left"],
                    "wrist_image_left": env.cameras["wrist_image_left"]}
    with pytest.raises(ValueError, match="needs sim_env"):
        factory.make_cameras("sim", _config(wrist_image_left={}))
    env.cameras.pop("wrist_image_left")
    with pytest.raises(ValueError, match=r"no camera\(s\) \['wrist_image_left'\]"):
        factory.make_cameras("sim", _config(wrist_image_left={}), sim_env=env)


def test_start_cameras_stops_the_started_ones_on_failure():
    events = []

    class Cam(Camera):
        def __init__(self, name, fail=False):
            self.serial, self.fail = name, fail

        def start(self):
            if self.fail:
                raise rsc.CameraNotFoundError(f"{self.serial} not connected")
            events.append(("start", self.serial))

        def read(self):
            raise NotImplementedError

        @property
        def intrinsics(self):
            raise NotImplementedError

        def stop(self):
            events.append(("stop", self.serial))

    cams = {"a": Cam("a"), "b": Cam("b"), "c": Cam("c", fail=True)}
    with pytest.raises(rsc.CameraNotFoundError):
        factory.start_cameras(cams)
    assert events == [("start", "a"), ("start", "b"), ("stop", "b"), ("stop", "a")]
