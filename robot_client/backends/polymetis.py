"""The real Franka through Polymetis (facebookresearch/fairo), and the robot factory.

`connect_franka()` opens `polymetis.RobotInterface` (controller manager, port 50051) and
`polymetis.GripperInterface` (gripper server, port 50052). Polymetis is imported only here and
only when called: it is a conda package (Python 3.8, built against libfranka 0.9.0) installed on the
NUC, not a PyPI dependency (the PyPI `polymetis` is an empty placeholder).

What the robot side returns is the real `RobotInterface`, with the configured impedance gains set as
its `Kq/Kqd/Kx/Kxd_default` attributes, which `start_joint_impedance()` /
`start_cartesian_impedance()` use when called without gains (as ControllerWatchdog does).
The gripper comes wrapped in `PolymetisGripper`, which keeps `GripperInterface`'s method names and
arguments and adds what the control loop relies on:

- `get_state().max_width` (Polymetis' `GripperState` protobuf has none; it is in the gripper
  metadata, which is missing when the gripper client was not up: then the config's value is used);
- `goto(..., blocking=False)` that never blocks the 15 Hz loop: the newest command wins and is sent
  by a worker thread (Polymetis' own non-blocking goto blocks while a command is pending, and hangs
  for good once its executor thread has died on an RpcError); a command stuck for longer than
  `command_timeout_s` is reported as GripperTimeoutError on the next call;
- `goto(..., blocking=True)` that returns when the fingers stopped (Polymetis returns when the RPC
  is acknowledged, before the motion), which is what the sim does;
- width/speed/force checks (a width outside [0, max_width] beyond 1 mm is an error, speed/force are
  clipped to the configured maxima).
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from uwm_robot.typed_yaml import checked_fields, read_yaml_mapping

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG_PATH = REPO_ROOT / "configs" / "franka.yaml"

POLYMETIS_INSTALL = "conda install -c pytorch -c fair-robotics -c aihabitat -c conda-forge polymetis"
POLYMETIS_HINT = (
    "Polymetis (facebookresearch/fairo) is the Franka controller stack: a gRPC controller-manager server "
    "plus the Python client `polymetis.RobotInterface`/`GripperInterface`. It is a conda package that runs "
    f"on the NUC next to the arm (Python 3.8, libfranka 0.9.0): `{POLYMETIS_INSTALL}`, or a source build "
    "of fairo/polymetis for FR3/newer libfranka. The PyPI package named `polymetis` is an empty placeholder, "
    "do not pip-install it. Without a robot, use --robot sim. See docs/hardware.md."
)


class PolymetisUnavailableError(ImportError):
    """The real polymetis package is not importable."""


class GripperTimeoutError(RuntimeError):
    """A gripper command did not complete in time (gripper server or client stuck)."""


def _is_rpc_error(e: BaseException) -> bool:
    return any(cls.__name__ == "RpcError" for cls in type(e).__mro__)


def import_polymetis():
    """`import polymetis` (the real one), or PolymetisUnavailableError explaining what it is and how to get it."""
    try:
        mod = importlib.import_module("polymetis")
    except (ImportError, OSError) as e:
        raise PolymetisUnavailableError(f"cannot import polymetis ({type(e).__name__}: {e}). {POLYMETIS_HINT}") from e
    missing = [n for n in ("RobotInterface", "GripperInterface") if not hasattr(mod, n)]
    if missing:
        where = getattr(mod, "__file__", None) or "?"
        raise PolymetisUnavailableError(
            f"the installed `polymetis` ({where}) has no {', '.join(missing)}: it is not Polymetis "
            f"(the PyPI placeholder?); `pip uninstall polymetis`. {POLYMETIS_HINT}")
    return mod


# ---- configuration -------------------------------------------------------------------------------

@dataclass(frozen=True)
class GripperConfig:
    type: str = "robotiq_2f"  # robotiq_2f | franka_hand (sets the default max_width)
    max_width: float | None = None  # m; used when the server's GripperMetadata has none
    max_speed: float = 0.1  # m/s
    max_force: float = 100.0  # Robotiq: % of max force; Franka Hand: N
    command_timeout_s: float = 2.0  # a pending command older than this is an error

    def fallback_max_width(self) -> float:
        if self.max_width is not None:
            return float(self.max_width)
        return {"robotiq_2f": 0.085, "franka_hand": 0.08}[self.type]


@dataclass(frozen=True)
class FrankaConfig:
    robot_ip: str = "localhost"
    robot_port: int = 50051
    gripper_ip: str | None = None  # None: same host as the robot server
    gripper_port: int = 50052
    enforce_version: bool = True
    time_to_go_default: float = 1.0
    Kq: tuple | None = None  # None keeps the server's metadata default
    Kqd: tuple | None = None
    Kx: tuple | None = None
    Kxd: tuple | None = None
    gripper: GripperConfig = field(default_factory=GripperConfig)

    def __post_init__(self) -> None:
        for name, n in (("Kq", 7), ("Kqd", 7), ("Kx", 6), ("Kxd", 6)):
            v = getattr(self, name)
            if v is None:
                continue
            if len(v) != n or not all(isinstance(x, (int, float)) and math.isfinite(x) and x >= 0 for x in v):
                raise ValueError(f"{name} must be {n} finite gains >= 0, got {list(v)}")
        if self.gripper.type not in ("robotiq_2f", "franka_hand"):
            raise ValueError(f"gripper.type must be robotiq_2f or franka_hand, got {self.gripper.type!r}")


def franka_config_from_dict(data: dict, where: str = "franka config") -> FrankaConfig:
    values = checked_fields(FrankaConfig, dict(data or {}), where)
    if "gripper" in values:
        values["gripper"] = GripperConfig(**checked_fields(GripperConfig, values["gripper"] or {}, f"{where}: gripper"))
    try:
        return FrankaConfig(**values)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: {e}") from e


def load_franka_config(path: str | Path = DEFAULT_CONFIG_PATH) -> FrankaConfig:
    """configs/franka.yaml -> FrankaConfig (unknown keys are errors naming the file and the key)."""
    return franka_config_from_dict(read_yaml_mapping(path, "Franka config"), str(path))


# ---- gripper ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GripperStateView:
    """Polymetis GripperState fields plus max_width."""

    timestamp: Any
    width: float
    is_grasped: bool
    is_moving: bool
    prev_command_successful: bool
    error_code: int
    max_width: float


class PolymetisGripper:
    """GripperInterface with max_width in the state and a goto that never stalls the control loop."""

    def __init__(self, gripper, config: GripperConfig | None = None, poll_s: float = 0.02) -> None:
        self.gripper = gripper
        self.config = config or GripperConfig()
        self.poll_s = poll_s
        meta_width = getattr(getattr(gripper, "metadata", None), "max_width", 0.0) or 0.0
        if meta_width > 0:
            self.max_width = float(meta_width)
        else:
            self.max_width = self.config.fallback_max_width()
            log.warning("gripper metadata has no max_width (was the gripper client up when the server started?); "
                        "using %.4f m from the config (%s)", self.max_width, self.config.type)
        self.metadata = getattr(gripper, "metadata", None)
        self._cond = threading.Condition()
        self._pending: tuple | None = None  # (seq, method, kwargs)
        self._seq = 0
        self._done_seq = 0
        self._busy_since: float | None = None
        self._error: BaseException | None = None
        self._closed = False
        self._worker = threading.Thread(target=self._run, name="gripper-commands", daemon=True)
        self._worker.start()

    # -- state --
    def get_state(self) -> GripperStateView:
        s = self.gripper.get_state()
        return GripperStateView(getattr(s, "timestamp", None), float(s.width), bool(s.is_grasped), bool(s.is_moving),
                                bool(getattr(s, "prev_command_successful", True)), int(getattr(s, "error_code", 0)),
                                self.max_width)

    # -- commands --
    def _check(self, name: str, value: float, high: float, clip: bool) -> float:
        value = float(value)
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"gripper {name} must be finite and >= 0, got {value}")
        if value > high:
            if not clip:
                raise ValueError(f"gripper {name} {value:.4f} is above {high:.4f}")
            value = high
        return value

    def goto(self, width: float, speed: float, force: float, blocking: bool = True) -> None:
        width = float(width)
        if not math.isfinite(width) or not -1e-3 <= width <= self.max_width + 1e-3:
            raise ValueError(f"gripper width must be in [0, {self.max_width:.4f}] m, got {width}")
        width = min(max(width, 0.0), self.max_width)
        speed = self._check("speed", speed, self.config.max_speed, clip=True)
        force = self._check("force", force, self.config.max_force, clip=True)
        self._submit("goto", {"width": width, "speed": speed, "force": force}, blocking, speed)

    def grasp(self, speed: float, force: float, grasp_width: float = 0.0, epsilon_inner: float = -1.0,
              epsilon_outer: float = -1.0, blocking: bool = True) -> None:
        speed = self._check("speed", speed, self.config.max_speed, clip=True)
        force = self._check("force", force, self.config.max_force, clip=True)
        grasp_width = self._check("grasp_width", grasp_width, self.max_width, clip=False)
        self._submit("grasp", {"speed": speed, "force": force, "grasp_width": grasp_width,
                               "epsilon_inner": float(epsilon_inner), "epsilon_outer": float(epsilon_outer)},
                     blocking, speed)

    def _submit(self, method: str, kwargs: dict, blocking: bool, speed: float) -> None:
        with self._cond:
            self._raise_if_stuck()
            self._seq += 1
            seq = self._seq
            if self._pending is not None:
                log.debug("gripper: command %d replaced by %d before it was sent", self._pending[0], seq)
            self._pending = (seq, method, kwargs)
            self._cond.notify_all()
            if not blocking:
                return
            deadline = time.monotonic() + self.config.command_timeout_s
            while self._done_seq < seq and self._error is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise GripperTimeoutError(f"gripper {method} not acknowledged within {self.config.command_timeout_s} s")
                self._cond.wait(left)
            self._raise_if_stuck()
        self._wait_until_stopped(self.max_width / max(speed, 1e-3) + self.config.command_timeout_s)

    def _raise_if_stuck(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise RuntimeError(f"gripper command failed: {err}") from err
        if self._busy_since is not None and time.monotonic() - self._busy_since > self.config.command_timeout_s:
            raise GripperTimeoutError(
                f"a gripper command has been pending for {time.monotonic() - self._busy_since:.1f} s "
                f"(> {self.config.command_timeout_s} s): is the gripper server/client running? "
                "(see docs/hardware.md, 'gripper stuck')")

    def _wait_until_stopped(self, timeout_s: float) -> None:
        """After an acknowledged command: wait for the gripper client to pick it up and the fingers to stop."""
        deadline = time.monotonic() + timeout_s
        time.sleep(max(self.poll_s, 0.05))  # the Robotiq client polls the server at 60 Hz
        last, still = None, 0
        while time.monotonic() < deadline:
            s = self.get_state()
            still = still + 1 if (not s.is_moving and last is not None and abs(s.width - last) < 5e-4) else 0
            if still >= 2:
                return
            last = s.width
            time.sleep(self.poll_s)
        raise GripperTimeoutError(f"gripper still moving after {timeout_s:.1f} s (width {last})")

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                seq, method, kwargs = self._pending
                self._pending = None
                self._busy_since = time.monotonic()
            try:
                getattr(self.gripper, method)(**kwargs, blocking=True)  # blocking here = until the RPC returned
            except BaseException as e:  # noqa: BLE001 - handed to the caller's next command
                log.error("gripper %s failed: %s", method, e)
                with self._cond:
                    self._error = e
            with self._cond:
                self._busy_since = None
                self._done_seq = max(self._done_seq, seq)
                self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __getattr__(self, name: str):
        if name == "gripper":  # not set yet (failed __init__)
            raise AttributeError(name)
        return getattr(self.gripper, name)


# ---- robot -----------------------------------------------------------------------------------------

def apply_gains(robot, config: FrankaConfig) -> None:
    """Set the configured gains as the RobotInterface's defaults (None keeps the server's)."""
    import torch

    for name in ("Kq", "Kqd", "Kx", "Kxd"):
        value = getattr(config, name)
        if value is not None:
            setattr(robot, f"{name}_default", torch.tensor(value, dtype=torch.float32))


def connect_franka(robot_ip: str = "localhost", robot_port: int = 50051, gripper_ip: str | None = None,
                   gripper_port: int = 50052, *, config: FrankaConfig | None = None, gripper: bool = True,
                   **overrides):
    """(RobotInterface, PolymetisGripper | None) connected to the Polymetis servers.

    Addresses come from the arguments; everything else (gains, enforce_version, gripper limits) from
    `config` (default FrankaConfig(), i.e. the server's gains) with keyword overrides of its fields.
    """
    polymetis = import_polymetis()
    config = config or FrankaConfig()
    config = dataclasses.replace(config, robot_ip=robot_ip, robot_port=int(robot_port),
                                 gripper_ip=gripper_ip, gripper_port=int(gripper_port), **overrides)
    addr = f"{config.robot_ip}:{config.robot_port}"
    try:
        robot = polymetis.RobotInterface(ip_address=config.robot_ip, port=config.robot_port,
                                         enforce_version=config.enforce_version,
                                         time_to_go_default=config.time_to_go_default)
    except AssertionError as e:
        raise RuntimeError(f"Polymetis at {addr}: {e} (client polymetis {getattr(polymetis, '__version__', '?')}); "
                           "install the same version on both sides, or set enforce_version: false in "
                           "configs/franka.yaml") from e
    except Exception as e:
        if not _is_rpc_error(e):
            raise
        raise RuntimeError(
            f"cannot reach the Polymetis controller server at {addr} ({_rpc_text(e)}). On the NUC start it with "
            "`launch_robot.py robot_client=franka_hardware` (and check robot_ip in its franka_hardware.yaml); "
            "see docs/hardware.md") from e
    apply_gains(robot, config)
    if not gripper:
        return robot, None
    g_ip = config.gripper_ip or config.robot_ip
    g_addr = f"{g_ip}:{config.gripper_port}"
    raw = polymetis.GripperInterface(ip_address=g_ip, port=config.gripper_port)
    try:
        raw.get_state()  # GripperInterface() itself only warns when the server is not there
    except Exception as e:
        if not _is_rpc_error(e):
            raise
        raise RuntimeError(
            f"cannot reach the Polymetis gripper server at {g_addr} ({_rpc_text(e)}). On the NUC start it with "
            "`launch_gripper.py gripper=robotiq_2f gripper.comport=/dev/ttyUSB0` (or gripper=franka_hand); "
            "see docs/hardware.md") from e
    return robot, PolymetisGripper(raw, config.gripper)


def _rpc_text(e: BaseException) -> str:
    details = getattr(e, "details", None)
    try:
        return str(details()) if callable(details) else str(e)
    except Exception:  # noqa: BLE001 - only for a message
        return str(e)


def make_robot(kind: str, config: FrankaConfig | dict | str | Path | None = None, sim_env=None):
    """(robot, gripper) for `kind`: "sim" (the SimEnv's Polymetis stand-ins) or "franka" (connect_franka).

    For "franka", config is a FrankaConfig, a dict in the configs/franka.yaml layout, a path to such
    a YAML file, or None for configs/franka.yaml.
    """
    if kind == "sim":
        if sim_env is None:
            raise ValueError("make_robot('sim') needs sim_env (a robot_client.sim.env.SimEnv)")
        return sim_env.robot, sim_env.gripper
    if kind == "franka":
        if config is None:
            config = load_franka_config()
        elif isinstance(config, (str, Path)):
            config = load_franka_config(config)
        elif isinstance(config, dict):
            config = franka_config_from_dict(config)
        return connect_franka(config.robot_ip, config.robot_port, config.gripper_ip, config.gripper_port, config=config)
    raise ValueError(f"robot kind must be 'sim' or 'franka', got {kind!r}")
