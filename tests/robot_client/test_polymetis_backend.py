"""The Polymetis backend against a fake `polymetis` module.

The fake follows fairo's polymetis API (commit 0a01a7fa) by name and argument: RobotInterface(
time_to_go_default, use_grav_comp, ip_address=, port=, enforce_version=) reading its gains from server
metadata into Kq/Kqd/Kx/Kxd_default, start_joint_impedance(Kq=None, Kqd=None, adaptive=True),
update_desired_joint_positions raising grpc.RpcError without a running controller, is_running_policy;
GripperInterface(ip_address, port) with .metadata.max_width (absent when the server has none),
get_state() -> GripperState without max_width, goto(width, speed, force, blocking=True), grasp(...).
"""

from __future__ import annotations

import sys
import threading
import time
import types
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from robot_client.backends import polymetis as pm
from robot_client.watchdog import ControllerWatchdog

try:
    import grpc as _grpc
except ImportError:  # CI has no grpc: a module with grpc's exception class name
    _grpc = types.ModuleType("grpc")

    class RpcError(Exception):
        pass

    _grpc.RpcError = RpcError

RpcError = _grpc.RpcError
VERSION = "0.2.0"
SERVERS: dict[tuple[str, int], object] = {}


class FakeArmServer:
    def __init__(self, version=VERSION):
        self.version = version
        self.running = False
        self.starts: list[dict] = []
        self.targets: list[torch.Tensor] = []
        self.fail_next_update: BaseException | None = None
        self.q = torch.tensor([0.0, -0.6, 0.0, -2.5, 0.0, 1.9, 0.0])

    def kill(self):
        """What the server does after a reflex or a >1 s gap: drop the user controller."""
        self.running = False


class FakeRobotInterface:
    def __init__(self, time_to_go_default: float = 1.0, use_grav_comp: bool = True, ip_address: str = "localhost",
                 port: int = 50051, enforce_version=True, **kwargs):
        self.server = SERVERS.get((ip_address, port))
        if self.server is None:
            raise RpcError("failed to connect to all addresses")
        self.metadata = SimpleNamespace(
            polymetis_version=self.server.version, hz=1000, ee_link_name="panda_link8", rest_pose=self.server.q.tolist(),
            default_Kq=[20.0] * 7, default_Kqd=[2.0] * 7, default_Kx=[750.0, 750, 750, 15, 15, 15],
            default_Kxd=[37.0, 37, 37, 2, 2, 2])
        if enforce_version:
            assert VERSION == self.metadata.polymetis_version, (
                "Version mismatch between client & server detected! Set enforce_version=False to bypass this error.")
        self.Kq_default = torch.Tensor(self.metadata.default_Kq)
        self.Kqd_default = torch.Tensor(self.metadata.default_Kqd)
        self.Kx_default = torch.Tensor(self.metadata.default_Kx)
        self.Kxd_default = torch.Tensor(self.metadata.default_Kxd)
        self.time_to_go_default = time_to_go_default
        self.address = (ip_address, port)

    def get_robot_state(self):
        return SimpleNamespace(joint_positions=self.server.q.tolist(), joint_velocities=[0.0] * 7, error_code=0)

    def get_joint_positions(self) -> torch.Tensor:
        return self.server.q.clone()

    def get_ee_pose(self):
        return torch.tensor([0.4, 0.0, 0.4]), torch.tensor([1.0, 0.0, 0.0, 0.0])

    def is_running_policy(self) -> bool:
        return self.server.running

    def start_joint_impedance(self, Kq=None, Kqd=None, adaptive=True, **kwargs):
        self.server.starts.append({
            "Kq": self.Kq_default if Kq is None else Kq, "Kqd": self.Kqd_default if Kqd is None else Kqd,
            "Kx": self.Kx_default, "Kxd": self.Kxd_default, "adaptive": adaptive})
        self.server.running = True
        return []

    def start_cartesian_impedance(self, Kx=None, Kxd=None, **kwargs):
        return self.start_joint_impedance()

    def update_desired_joint_positions(self, positions: torch.Tensor) -> int:
        if self.server.fail_next_update is not None:
            err, self.server.fail_next_update = self.server.fail_next_update, None
            raise err
        if not self.server.running:
            raise RpcError("POLYMETIS SERVER ERROR --\nno controller running")
        self.server.targets.append(positions)
        return len(self.server.targets)

    def terminate_current_policy(self, return_log: bool = True, timeout: float = None):
        self.server.running = False
        return []

    def move_to_joint_positions(self, positions, time_to_go=None, delta=False, Kq=None, Kqd=None, **kwargs):
        self.server.q = torch.as_tensor(positions, dtype=torch.float32)
        return []

    def go_home(self, *args, **kwargs):
        return self.move_to_joint_positions(torch.Tensor(self.metadata.rest_pose))


class FakeGripperServer:
    def __init__(self, max_width: float | None = 0.085, goto_delay_s: float = 0.0):
        self.max_width = max_width
        self.width = 0.085 if max_width is None else max_width
        self.target, self.speed, self.t0, self.start_width = self.width, 0.1, 0.0, self.width
        self.commands: list[tuple] = []
        self.goto_delay_s = goto_delay_s
        self.block = threading.Event()  # set: the Goto RPC hangs
        self.fail_next: BaseException | None = None

    def current_width(self) -> float:
        travel = abs(self.target - self.start_width)
        done = min(1.0, (time.monotonic() - self.t0) * self.speed / travel) if travel > 0 else 1.0
        return self.start_width + (self.target - self.start_width) * done


class FakeGripperInterface:
    def __init__(self, ip_address: str = "localhost", port: int = 50052):
        self.server = SERVERS.get((ip_address, port))
        if self.server is not None and self.server.max_width is not None:
            self.metadata = SimpleNamespace(polymetis_version=VERSION, hz=60, max_width=self.server.max_width)
        # else: like polymetis, only a logged warning and no `metadata` attribute

    def get_state(self):
        if self.server is None:
            raise RpcError("failed to connect to all addresses")
        w = self.server.current_width()
        return SimpleNamespace(timestamp=None, width=w, is_grasped=False, is_moving=abs(w - self.server.target) > 1e-6,
                               prev_command_successful=True, error_code=0)

    def goto(self, width: float, speed: float, force: float, blocking: bool = True):
        s = self.server
        while s.block.is_set():
            time.sleep(0.01)
        time.sleep(s.goto_delay_s)
        if s.fail_next is not None:
            err, s.fail_next = s.fail_next, None
            raise err
        s.commands.append(("goto", width, speed, force, blocking))
        s.start_width, s.target, s.speed, s.t0 = s.current_width(), width, speed, time.monotonic()

    def grasp(self, speed: float, force: float, grasp_width: float = 0.0, epsilon_inner: float = -1.0,
              epsilon_outer: float = -1.0, blocking: bool = True):
        self.server.commands.append(("grasp", grasp_width, speed, force, blocking))
        self.goto(grasp_width, speed, force, blocking)
        self.server.commands.pop()


@pytest.fixture
def fake_polymetis(monkeypatch):
    mod = types.ModuleType("polymetis")
    mod.__version__ = VERSION
    mod.RobotInterface = FakeRobotInterface
    mod.GripperInterface = FakeGripperInterface
    monkeypatch.setitem(sys.modules, "polymetis", mod)
    SERVERS.clear()
    arm, hand = FakeArmServer(), FakeGripperServer()
    SERVERS[("172.16.0.2", 50051)] = arm
    SERVERS[("172.16.0.2", 50052)] = hand
    yield SimpleNamespace(module=mod, arm=arm, hand=hand)
    SERVERS.clear()


def _connect(**kw):
    return pm.connect_franka("172.16.0.2", config=pm.load_franka_config(), **kw)


# ---- import errors -----------------------------------------------------------------------------------

def test_missing_polymetis_says_what_it_is_and_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "polymetis", None)  # import raises ImportError
    for call in (lambda: pm.connect_franka(), lambda: pm.make_robot("franka", config={})):
        with pytest.raises(pm.PolymetisUnavailableError) as info:
            call()
        msg = str(info.value)
        assert isinstance(info.value, ImportError)
        assert "conda install -c pytorch -c fair-robotics -c aihabitat -c conda-forge polymetis" in msg
        assert "NUC" in msg and "placeholder" in msg and "--robot sim" in msg


def test_the_pypi_placeholder_is_recognised(monkeypatch):
    monkeypatch.setitem(sys.modules, "polymetis", types.ModuleType("polymetis"))
    with pytest.raises(pm.PolymetisUnavailableError, match="has no RobotInterface, GripperInterface: it is not Polymetis"):
        pm.connect_franka()


def test_importing_the_backend_does_not_need_polymetis(monkeypatch):
    monkeypatch.setitem(sys.modules, "polymetis", None)
    from robot_client.backends.polymetis import make_robot  # what the CLI imports

    robot, gripper = make_robot("sim", sim_env=SimpleNamespace(robot="R", gripper="G"))
    assert (robot, gripper) == ("R", "G")


# ---- wiring ----------------------------------------------------------------------------------------------

def test_connect_franka_wires_robot_and_gripper(fake_polymetis):
    robot, gripper = _connect()
    assert isinstance(robot, FakeRobotInterface) and robot.address == ("172.16.0.2", 50051)
    assert gripper.gripper.server is fake_polymetis.hand  # gripper_ip null -> the robot's host, port 50052
    # configs/franka.yaml gains (DROID's) replace the server's defaults
    torch.testing.assert_close(robot.Kq_default, torch.tensor([40.0, 30, 50, 25, 35, 25, 10]))
    torch.testing.assert_close(robot.Kx_default, torch.tensor([400.0, 400, 400, 15, 15, 15]))
    robot.start_joint_impedance()
    torch.testing.assert_close(fake_polymetis.arm.starts[-1]["Kqd"], torch.tensor([4.0, 6, 5, 5, 3, 2, 1]))
    state = gripper.get_state()
    assert gripper.max_width == state.max_width == 0.085 and state.width == pytest.approx(0.085)
    gripper.close()


def test_server_gains_are_kept_when_the_config_has_none(fake_polymetis):
    robot, gripper = pm.connect_franka("172.16.0.2", config=pm.FrankaConfig(), gripper=False)
    assert gripper is None
    torch.testing.assert_close(robot.Kx_default, torch.tensor([750.0, 750, 750, 15, 15, 15]))


def test_make_robot_franka_reads_the_yaml(fake_polymetis, tmp_path):
    path = tmp_path / "franka.yaml"
    path.write_text("robot_ip: 172.16.0.2\nKq: null\ngripper: {type: franka_hand}\n")
    robot, gripper = pm.make_robot("franka", path)
    assert robot.address == ("172.16.0.2", 50051) and gripper.config.type == "franka_hand"
    gripper.close()
    path.write_text("robot_ip: 172.16.0.2\nrobot_prot: 50051\n")
    with pytest.raises(ValueError, match=r"franka.yaml: unknown key\(s\) \['robot_prot'\]"):
        pm.make_robot("franka", path)
    path.write_text("gripper: {max_widht: 0.08}\n")
    with pytest.raises(ValueError, match=r"franka.yaml: gripper: unknown key\(s\) \['max_widht'\]"):
        pm.make_robot("franka", path)
    with pytest.raises(ValueError, match="Kq must be 7 finite gains"):
        pm.franka_config_from_dict({"Kq": [1, 2, 3]})


def test_make_robot_kinds():
    with pytest.raises(ValueError, match="needs sim_env"):
        pm.make_robot("sim")
    with pytest.raises(ValueError, match="'sim' or 'franka'"):
        pm.make_robot("ur5")


def test_unreachable_servers_and_version_mismatch(fake_polymetis):
    with pytest.raises(RuntimeError, match=r"controller server at 10\.0\.0\.9:50051 .*launch_robot.py robot_client=franka_hardware"):
        pm.connect_franka("10.0.0.9", config=pm.FrankaConfig())
    SERVERS[("10.0.0.9", 50051)] = FakeArmServer()
    with pytest.raises(RuntimeError, match=r"gripper server at 10\.0\.0\.9:50052 .*launch_gripper.py"):
        pm.connect_franka("10.0.0.9", config=pm.FrankaConfig())
    fake_polymetis.arm.version = "0.1.9"
    with pytest.raises(RuntimeError, match="(?s)Version mismatch.*enforce_version: false"):
        _connect()
    robot, gripper = _connect(enforce_version=False)
    assert robot.metadata.polymetis_version == "0.1.9"
    gripper.close()


# ---- the controller watchdog over the real API surface --------------------------------------------------

def test_watchdog_restarts_a_dead_controller(fake_polymetis):
    robot, gripper = _connect()
    arm = fake_polymetis.arm
    wd = ControllerWatchdog(robot)
    wd.start()
    assert len(arm.starts) == 1 and arm.running
    torch.testing.assert_close(arm.starts[0]["Kq"], torch.tensor([40.0, 30, 50, 25, 35, 25, 10]))
    q = np.array([0.1, -0.5, 0.0, -2.4, 0.0, 1.9, 0.1])
    wd.send(q)
    assert len(arm.starts) == 1 and len(wd.events) == 0
    arm.kill()  # is_running_policy() -> False
    wd.send(q + 0.01)
    assert len(arm.starts) == 2 and arm.running
    assert [e.reason for e in wd.events] == ["controller not running"]
    torch.testing.assert_close(arm.targets[-1], torch.tensor(q + 0.01, dtype=torch.float32))
    gripper.close()


def test_watchdog_restarts_when_an_update_raises_rpc_error(fake_polymetis):
    robot, gripper = _connect()
    arm = fake_polymetis.arm
    wd = ControllerWatchdog(robot)
    wd.start()
    # the controller dies between the is_running_policy() check and the update
    arm.fail_next_update = RpcError("POLYMETIS SERVER ERROR --\ncontroller terminated")
    wd.send(np.zeros(7))
    assert len(arm.starts) == 2 and len(arm.targets) == 1
    assert len(wd.events) == 1 and "RpcError" in wd.events[0].reason
    # other errors are not swallowed
    arm.fail_next_update = ValueError("positions must have 7 elements")
    with pytest.raises(ValueError):
        wd.send(np.zeros(7))
    assert len(arm.starts) == 2
    gripper.close()


# ---- gripper adapter --------------------------------------------------------------------------------------

def _gripper(server: FakeGripperServer, **cfg) -> pm.PolymetisGripper:
    SERVERS[("g", 1)] = server
    return pm.PolymetisGripper(FakeGripperInterface("g", 1), pm.GripperConfig(**cfg), poll_s=0.01)


def test_max_width_falls_back_to_the_config_without_metadata(caplog):
    g = _gripper(FakeGripperServer(max_width=None))
    assert g.max_width == 0.085 and "no max_width" in caplog.text
    g.close()
    g = _gripper(FakeGripperServer(max_width=None), type="franka_hand")
    assert g.max_width == 0.08 and g.get_state().max_width == 0.08
    g.close()
    g = _gripper(FakeGripperServer(max_width=0.081), type="franka_hand", max_width=0.05)
    assert g.max_width == 0.081  # the server's metadata wins
    g.close()


def test_nonblocking_goto_never_stalls_and_the_newest_command_wins():
    server = FakeGripperServer(goto_delay_s=0.3)  # a slow Goto RPC
    g = _gripper(server)
    g.goto(width=0.07, speed=0.1, force=20.0, blocking=False)
    time.sleep(0.1)  # the worker is now inside the slow RPC for 0.07
    t0 = time.monotonic()
    for w in (0.05, 0.03):
        g.goto(width=w, speed=0.1, force=20.0, blocking=False)
    assert time.monotonic() - t0 < 0.05
    deadline = time.monotonic() + 2
    while len(server.commands) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    assert [c[1] for c in server.commands] == [0.07, 0.03]  # 0.05 was superseded before it was sent
    g.close()


def test_blocking_goto_returns_when_the_fingers_stopped():
    server = FakeGripperServer()
    g = _gripper(server)
    t0 = time.monotonic()
    g.goto(width=0.065, speed=0.1, force=20.0, blocking=True)  # 20 mm at 0.1 m/s: 0.2 s
    assert time.monotonic() - t0 >= 0.2
    state = g.get_state()
    assert state.width == pytest.approx(0.065) and not state.is_moving
    g.grasp(speed=0.1, force=10.0, blocking=True)
    assert g.get_state().width == pytest.approx(0.0)
    g.close()


def test_gripper_command_checks():
    server = FakeGripperServer()
    g = _gripper(server, max_speed=0.1, max_force=50.0)
    with pytest.raises(ValueError, match=r"width must be in \[0, 0.0850\]"):
        g.goto(width=0.2, speed=0.1, force=1.0)
    with pytest.raises(ValueError, match="width"):
        g.goto(width=float("nan"), speed=0.1, force=1.0)
    with pytest.raises(ValueError, match="speed must be finite and >= 0"):
        g.goto(width=0.05, speed=-1.0, force=1.0)
    g.goto(width=0.0855, speed=0.5, force=80.0, blocking=False)  # within 1 mm: clipped; speed/force clipped
    deadline = time.monotonic() + 2
    while not server.commands and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.commands[0][:4] == ("goto", 0.085, 0.1, 50.0)
    g.close()


def test_a_stuck_gripper_is_reported():
    server = FakeGripperServer()
    server.block.set()  # the Goto RPC hangs (server or its executor thread stuck)
    g = _gripper(server, command_timeout_s=0.2)
    g.goto(width=0.05, speed=0.1, force=1.0, blocking=False)
    time.sleep(0.3)
    with pytest.raises(pm.GripperTimeoutError, match="pending for"):
        g.goto(width=0.04, speed=0.1, force=1.0, blocking=False)
    server.block.clear()
    g.close()


def test_a_failed_gripper_rpc_surfaces_on_the_next_command():
    server = FakeGripperServer()
    server.fail_next = RpcError("GRIPPER SERVER ERROR --\nunavailable")
    g = _gripper(server)
    with pytest.raises(RuntimeError, match="gripper command failed") as info:
        g.goto(width=0.05, speed=0.1, force=1.0, blocking=True)
    assert isinstance(info.value.__cause__, RpcError)
    g.goto(width=0.05, speed=0.1, force=1.0, blocking=True)  # and it recovers
    assert g.get_state().width == pytest.approx(0.05)
    g.close()
