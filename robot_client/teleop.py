"""Demo collection by teleoperation: a device gives one DROID action per tick, the same action path
as the policy's executes it, and every tick is recorded in the episode format (kind "demo").

Devices: `expert` (the sim task's scripted expert, labels itself with the sim's success check),
`keyboard` (terminal keys) and `spacemouse` (3Dconnexion through pyspacemouse). Operator keys:
    Enter / y  save the episode as a success      n  discard it      r  discard and reset
    q          quit after this episode            e / space  e-stop (terminates the controller)
Discarded episodes are not deleted: they move to <out>/discarded/ (finetuning skips them).
"""

from __future__ import annotations

import inspect
import logging
import math
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from robot_client.action_path import make_action_path
from robot_client.control_loop import StepRecord, send_gripper
from robot_client.safety import EStop, SafetyMonitor

log = logging.getLogger(__name__)

DISCARDED_DIR = "discarded"


# ---- devices -------------------------------------------------------------------------------------
class TeleopDevice:
    """One DROID action per tick: (6-d cartesian velocity in [-1, 1], gripper 0 open .. 1 closed)."""

    name = "device"

    def reset(self, env) -> None:
        """A new episode starts (env: the SimEnv, or None on the real robot)."""

    def action(self) -> np.ndarray | None:
        """The action for this tick, or None to hold still."""
        raise NotImplementedError

    def executed(self, action: np.ndarray) -> np.ndarray:
        """What the arm runs for `action` this tick; the demo records `action` itself as the label."""
        return action

    def finished(self) -> str | None:
        """'save' / 'discard' when the device itself ends the episode (the expert), else None."""
        return None

    def labels(self) -> bool | None:
        """Whether this tick's action labels the demo; None: every tick does (nothing is tagged). A demo
        with unlabelled ticks tags its labels `intervention`, and training leaves the others unlabelled."""
        return None

    def key_handlers(self) -> dict:
        return {}

    def meta(self) -> dict:
        """What each demo's meta.json records about this device's settings."""
        return {}

    def close(self) -> None:
        pass


class ExpertDevice(TeleopDevice):
    """The sim task's scripted expert as an operator: it ends the episode 1 s after its plan is done
    and labels it with the sim's success check (no success -> discard).

    `action_noise` (DART-style): now and then (PUSH_RATE per tick) the arm is pushed for PUSH_TICKS
    ticks: the expert's translation plus a random direction of this size (a fraction of DROID's
    full-scale step). The demo records the expert's own action. The expert is closed-loop, so the
    demos show off-course views labelled with the way back; between pushes its tolerances are met."""

    PUSH_RATE, PUSH_TICKS = 0.05, 2

    name = "expert"

    def __init__(self, settle_s: float = 1.0, action_noise: float = 0.0, **expert_options):
        if not 0.0 <= action_noise <= 1.0:
            raise ValueError(f"action_noise must be in [0, 1] (of DROID's full-scale step), got {action_noise}")
        self.settle_s = settle_s
        self.action_noise = action_noise
        self.expert_options = expert_options  # passed to the task's expert(), e.g. practice_miss_prob
        self.expert = None
        self.env = None
        self._noise = np.random.default_rng()
        self._push, self._push_left = np.zeros(3), 0
        self._done_at: float | None = None

    def reset(self, env) -> None:
        if env is None:
            raise ValueError("the expert device needs the sim (--robot sim): it plans from the simulator's state")
        self.env = env
        try:  # checked against the signature, so a TypeError raised inside the expert is not misreported
            inspect.signature(env.task.expert).bind(env, **self.expert_options)
        except TypeError:
            raise ValueError(f"task {env.task.name!r}'s expert takes no options {sorted(self.expert_options)}") from None
        self.expert = env.task.expert(env, **self.expert_options)
        self.expert.actuate = False  # the teleop loop executes the action through the action path
        self._noise = np.random.default_rng([env.seed, 2])  # per seed, so a demo can be re-made exactly
        self._push_left = 0
        self._done_at = None

    def meta(self) -> dict:
        meta = {"expert_options": dict(self.expert_options)} if self.expert_options else {}
        return {**meta, "action_noise": self.action_noise} if self.action_noise else meta

    def action(self) -> np.ndarray:
        return self.expert.step().as_array()  # after the plan: holds the last goal while settling

    def executed(self, action: np.ndarray) -> np.ndarray:
        if not self.action_noise:
            return action
        if self._push_left == 0 and self._noise.random() < self.PUSH_RATE:
            direction = self._noise.normal(size=3)
            self._push, self._push_left = self.action_noise * direction / np.linalg.norm(direction), self.PUSH_TICKS
        if self._push_left == 0:
            return action
        self._push_left -= 1
        pushed = np.array(action, dtype=float)
        pushed[:3] = np.clip(pushed[:3] + self._push, -1.0, 1.0)
        return pushed

    def labels(self) -> bool | None:
        return self.expert.labelling if self.expert.marks_labels else None

    def finished(self) -> str | None:
        if self.env.check_success():
            return "save"
        if self.expert.finished:
            now = self.env.clock.now()
            self._done_at = self._done_at if self._done_at is not None else now
            if now - self._done_at >= self.settle_s:
                return "discard"
        return None


@dataclass
class KeyboardDevice(TeleopDevice):
    """Terminal keys, each press a velocity pulse that decays over `hold_ticks` ticks:
    w/s +x/-x, a/d +y/-y, r/f +z/-z, i/k roll, j/l pitch, u/o yaw, g toggles the gripper."""

    speed: float = 0.5  # fraction of DROID's full-scale step
    hold_ticks: int = 3
    name: str = "keyboard"
    _velocity: np.ndarray = field(default_factory=lambda: np.zeros(6))
    _ticks_left: int = 0
    _gripper: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    AXES = {"w": (0, 1), "s": (0, -1), "a": (1, 1), "d": (1, -1), "r": (2, 1), "f": (2, -1),
            "i": (3, 1), "k": (3, -1), "j": (4, 1), "l": (4, -1), "u": (5, 1), "o": (5, -1)}

    def reset(self, env) -> None:
        with self._lock:
            self._velocity[:] = 0
            self._ticks_left = 0
            self._gripper = 0.0

    def press(self, key: str) -> None:
        with self._lock:
            if key == "g":
                self._gripper = 1.0 - self._gripper
                return
            axis, sign = self.AXES[key]
            self._velocity[:] = 0
            self._velocity[axis] = sign * self.speed
            self._ticks_left = self.hold_ticks

    def key_handlers(self) -> dict:
        return {k: (lambda k=k: self.press(k)) for k in [*self.AXES, "g"]}

    def action(self) -> np.ndarray:
        with self._lock:
            v = self._velocity.copy() if self._ticks_left > 0 else np.zeros(6)
            self._ticks_left = max(0, self._ticks_left - 1)
            return np.concatenate([v, [self._gripper]])


class SpaceMouseDevice(TeleopDevice):
    """A 3Dconnexion SpaceMouse through pyspacemouse (HID): the 6 axes are the velocity (deadband,
    scaled by `speed`); the left button toggles the gripper."""

    name = "spacemouse"

    def __init__(self, speed: float = 1.0, deadband: float = 0.05):
        try:
            import pyspacemouse
        except ImportError as e:
            raise ImportError("--device spacemouse needs pyspacemouse (pip install pyspacemouse; "
                              "on Linux also apt-get install libhidapi-dev and a udev rule for the device)") from e
        if not pyspacemouse.open():
            raise RuntimeError("no SpaceMouse found: plug it in and check the HID permissions (udev rule)")
        self._sm = pyspacemouse
        self.speed, self.deadband = speed, deadband
        self._gripper = 0.0
        self._button_was_down = False

    def action(self) -> np.ndarray:
        state = self._sm.read()
        # SpaceMouse axes are the device's frame; DROID's base frame has x away from the robot.
        raw = np.array([state.y, -state.x, state.z, -state.roll, -state.pitch, -state.yaw], dtype=float)
        raw[np.abs(raw) < self.deadband] = 0.0
        button = bool(state.buttons and state.buttons[0])
        if button and not self._button_was_down:
            self._gripper = 1.0 - self._gripper
        self._button_was_down = button
        return np.concatenate([np.clip(raw * self.speed, -1, 1), [self._gripper]])

    def close(self) -> None:
        self._sm.close()


def make_device(name: str, **expert_options) -> TeleopDevice:
    """`expert_options`: the expert device's (action_noise) and its task expert's (e.g. practice_miss_prob)."""
    if name == "expert":
        return ExpertDevice(**expert_options)
    if expert_options:
        raise ValueError(f"{sorted(expert_options)} apply to --device expert only, not {name!r}")
    if name == "keyboard":
        return KeyboardDevice()
    if name == "spacemouse":
        return SpaceMouseDevice()
    raise ValueError(f"unknown teleop device {name!r}; expected expert, keyboard or spacemouse")


# ---- the recorder ---------------------------------------------------------------------------------
class OperatorEvents:
    """Operator keys -> the next episode decision ('save' | 'discard' | 'reset'), plus quit."""

    def __init__(self):
        self.decision: str | None = None
        self.quit = False

    def handlers(self) -> dict:
        def decide(what):
            return lambda: setattr(self, "decision", what)

        return {"\n": decide("save"), "y": decide("save"), "n": decide("discard"), "r": decide("reset"),
                "q": lambda: setattr(self, "quit", True)}

    def take(self) -> str | None:
        decision, self.decision = self.decision, None
        return decision


@dataclass
class DemoResult:
    path: Path
    saved: bool
    steps: int
    reason: str


def record_demo(env_robot, env_gripper, cameras: dict, clock, device: TeleopDevice, writer, events: OperatorEvents,
                estop: EStop, safety: SafetyMonitor, control_hz: float, max_steps: int,
                gripper_speed: float = 0.1, gripper_force: float = 20.0) -> tuple[str, int]:
    """Tick at control_hz until the device or the operator decides; returns (decision, steps).

    Every tick goes through the policy's own action path (clip, scale, IK, safety), so a demo
    records exactly the command stream a policy reproducing it would send."""
    action_path = make_action_path("cartesian_velocity", safety)
    max_width = float(getattr(env_gripper.get_state(), "max_width", 0.08))
    dt = 1.0 / control_hz
    if not env_robot.is_running_policy():
        env_robot.start_cartesian_impedance()
    gripper_sent: float | None = None
    t_next = clock.now()
    decision = "timeout"
    for step in range(max_steps):
        if estop.tripped:
            decision = "estop"
            break
        t = clock.now()
        q = np.asarray(env_robot.get_joint_positions(), dtype=float)
        ee_pos, ee_quat = (np.asarray(x, dtype=float) for x in env_robot.get_ee_pose())
        g_state = env_gripper.get_state()
        frames = {name: cam.read() for name, cam in cameras.items()}
        action = device.action()
        gripper_now = 1.0 - float(g_state.width) / max_width
        executed = None if action is None else device.executed(action)
        command = action_path(executed, q, ee_pos, ee_quat, gripper_sent if gripper_sent is not None else gripper_now)
        env_robot.update_desired_joint_positions(command.q_target)
        if not command.hold:
            gripper_sent = send_gripper(env_gripper, command.gripper, gripper_sent, max_width, gripper_speed,
                                        gripper_force)
        labelled = device.labels()
        writer.on_step(StepRecord(t, q, ee_pos, ee_quat, float(g_state.width), command, action, -1, -1, False,
                                  intervention=bool(labelled)), frames)
        decided = events.take() or device.finished()
        if decided:
            decision = decided
            break
        t_next += dt
        clock.sleep_until(max(t_next, clock.now()))
    else:
        step = max_steps - 1
    return decision, step + 1


def finish_demo(writer, decision: str, decided_by: str, out_root: Path) -> DemoResult:
    """Close the episode; a discarded one is moved under <out_root>/discarded/, never deleted."""
    saved = decision == "save"
    writer.finish(True if saved else None, decided_by if saved else "none", "saved" if saved else decision,
                  extra={"discarded": not saved})
    path = writer.directory
    if not saved:
        target = out_root / DISCARDED_DIR / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            target = target.with_name(f"{path.name}-{time.strftime('%Y%m%d-%H%M%S')}")
        shutil.move(str(path), str(target))
        path = target
    return DemoResult(path, saved, writer.num_steps, decision)


def next_demo_index(out_root: Path) -> int:
    """Demos are numbered on from what is already in out_root (collection can be resumed)."""
    taken = [p.name for p in [*out_root.glob("demo_*"), *(out_root / DISCARDED_DIR).glob("demo_*")]]
    numbers = [int(n.split("_")[1].split("-")[0]) for n in taken if n.split("_")[1].split("-")[0].isdigit()]
    return max(numbers, default=-1) + 1


def record_and_finish(robot, gripper, cameras: dict, clock, device: TeleopDevice, out_root: Path, index: int,
                      meta: dict, shapes: dict, control_hz: float, max_steps: int, *, events: OperatorEvents,
                      estop: EStop, safety: SafetyMonitor, decided_by: str, save_raw_frames: bool = True,
                      resize_frames: bool = False) -> DemoResult:
    """One demo, start to finish: record until decided, then keep it or move it to discarded/."""
    from robot_client.recording import EpisodeWriter

    writer = EpisodeWriter(out_root / f"demo_{index:03d}", meta, shapes, fps=control_hz,
                           save_raw_frames=save_raw_frames, resize_frames=resize_frames)
    with writer:
        decision, _ = record_demo(robot, gripper, cameras, clock, device, writer, events, estop, safety,
                                  control_hz, max_steps)
        return finish_demo(writer, "discard" if decision == "reset" else decision, decided_by, out_root)


def collect_until_saved(out_root: Path, episodes: int, max_attempts: int | None, events: OperatorEvents,
                        estop: EStop, progress, attempt) -> list[DemoResult]:
    """Call attempt(index, n) for demo directory index and attempt number n until `episodes` are saved,
    `max_attempts` (default 3x) are spent, the operator quits or the E-STOP trips; returns every attempt.
    Numbering goes on from what out_root already holds."""
    out_root.mkdir(parents=True, exist_ok=True)
    max_attempts = max_attempts or 3 * episodes
    results: list[DemoResult] = []
    index = next_demo_index(out_root)
    while (sum(r.saved for r in results) < episodes and len(results) < max_attempts and not events.quit
           and not estop.tripped):
        results.append(attempt(index, len(results)))
        index += 1
        if progress is not None:
            progress(results[-1], sum(r.saved for r in results))
    return results


def collect_sim_demos(task: str, device: TeleopDevice, out_root: Path, episodes: int, *, condition: str = "ID",
                      seed: int = 0, camera_shape: tuple[int, int] = (128, 128), cameras: tuple[str, ...] | None = None,
                      realtime: bool | None = None, save_raw_frames: bool = True, operator: str = "",
                      safety: SafetyMonitor | None = None, max_attempts: int | None = None, progress=None,
                      events: OperatorEvents | None = None, estop: EStop | None = None) -> list[DemoResult]:
    """Record `episodes` saved demos in the sim (seed, seed+1, ... per attempt); returns every attempt."""
    from robot_client.safety import SafetyConfig
    from robot_client.sim.env import SimEnv

    out_root = Path(out_root)
    events = events or OperatorEvents()
    estop = estop or EStop()
    safety = safety or SafetyMonitor(SafetyConfig())
    realtime = device.name != "expert" if realtime is None else realtime  # people need wall-clock time
    env_kw = {"camera_width": camera_shape[1], "camera_height": camera_shape[0],
              "mode": "realtime" if realtime else "lockstep"}
    if cameras:
        env_kw["camera_names"] = tuple(cameras)

    def attempt(index: int, n: int) -> DemoResult:
        env = SimEnv(task, condition=condition, seed=seed + n, **env_kw)
        try:
            device.reset(env)
            meta = {"kind": "demo", "task": task, "instruction": env.task.instruction, "condition": condition,
                    "seed": seed + n, "operator": operator or device.name, "teleop_device": device.name,
                    "robot": "sim", "sim_mode": env_kw["mode"], "initial_state": env.initial_state, **device.meta()}
            return record_and_finish(
                env.robot, env.gripper, env.cameras, env.clock, device, out_root, index, meta,
                {name: camera_shape for name in env.cameras}, env.task.control_hz,
                int(env.task.max_duration_s * env.task.control_hz), events=events, estop=estop, safety=safety,
                decided_by="sim_check" if device.name == "expert" else "operator_key", save_raw_frames=save_raw_frames)
        finally:
            env.close()

    return collect_until_saved(out_root, episodes, max_attempts, events, estop, progress, attempt)


# DROID's reset pose (RobotEnv.reset_joints); the real arm returns there before every demo.
DROID_RESET_JOINTS = (0.0, -math.pi / 5, 0.0, -4 * math.pi / 5, 0.0, 3 * math.pi / 5, 0.0)


def reset_arm(robot, gripper, joints=DROID_RESET_JOINTS, gripper_speed: float = 0.1, gripper_force: float = 20.0) -> None:
    """DROID's blocking reset: open the gripper, stop the streaming controller, min-jerk move to `joints`
    (Polymetis picks the time to go from the joint distance)."""
    import torch

    max_width = float(getattr(gripper.get_state(), "max_width", 0.08))
    gripper.goto(width=max_width, speed=gripper_speed, force=gripper_force, blocking=True)
    if robot.is_running_policy():
        robot.terminate_current_policy()
    robot.move_to_joint_positions(torch.tensor(joints, dtype=torch.float32))


def collect_robot_demos(task: str, device: TeleopDevice, out_root: Path, episodes: int, robot, gripper,
                        cameras: dict, clock, *, camera_shape: tuple[int, int] = (128, 128), operator: str = "",
                        calibration: dict | None = None, save_raw_frames: bool = True,
                        safety: SafetyMonitor | None = None, max_attempts: int | None = None, progress=None,
                        events: OperatorEvents | None = None, estop: EStop | None = None,
                        reset=reset_arm) -> list[DemoResult]:
    """Record `episodes` saved demos on a Polymetis arm (the real Franka; the sim's stand-ins answer the
    same API): reset, then the operator drives and ends each demo with a key. Frames are recorded
    resized to `camera_shape`, the model's input, whatever the cameras stream."""
    from robot_client.safety import SafetyConfig
    from robot_client.tasks import load_task

    spec = load_task(task)
    out_root = Path(out_root)
    events = events or OperatorEvents()
    estop = estop or EStop()
    safety = safety or SafetyMonitor(SafetyConfig())
    meta = {"kind": "demo", "task": task, "instruction": spec.instruction, "condition": "ID",
            "operator": operator or device.name, "teleop_device": device.name, "robot": "franka",
            "calibration": calibration}

    def attempt(index: int, n: int) -> DemoResult:
        reset(robot, gripper)
        device.reset(None)
        events.take()  # a key pressed during the reset decides nothing
        log.warning("demo %d: drive the arm; Enter/y = save, n = discard, r = reset, q = quit after this one", index)
        return record_and_finish(
            robot, gripper, cameras, clock, device, out_root, index, meta, {name: camera_shape for name in cameras},
            spec.control_hz, int(spec.max_duration_s * spec.control_hz), events=events, estop=estop, safety=safety,
            decided_by="operator_key", save_raw_frames=save_raw_frames, resize_frames=True)

    return collect_until_saved(out_root, episodes, max_attempts, events, estop, progress, attempt)


# ---- DAgger-style takeover during a policy run ------------------------------------------------------
class Takeover:
    """An operator takes the arm from the policy and gives it back: `t` toggles. While active the
    device's actions replace the policy's (through the same action path) and the recorded steps
    are tagged `intervention`; on release the loop asks for a fresh chunk."""

    def __init__(self, device: TeleopDevice):
        self.device = device
        self._active = threading.Event()

    @property
    def active(self) -> bool:
        return self._active.is_set()

    def toggle(self) -> None:
        if self._active.is_set():
            self._active.clear()
        else:
            self.device.reset(None)
            self._active.set()
        log.warning("operator takeover %s", "ON" if self.active else "OFF (policy resumes)")

    def key_handlers(self) -> dict:
        return {**self.device.key_handlers(), "t": self.toggle}

    def action(self) -> np.ndarray | None:
        """The operator's action this tick, or None when the policy has the arm."""
        return self.device.action() if self.active else None

    def start_trial(self, env) -> None:
        """A new trial (env: the sim, None on the real arm); the operator keeps the device."""


class ExpertTakeover:
    """Sim DAgger with no one at the keyboard: the task's scripted expert watches the policy and takes
    the arm when the task calls it off course (`Task.off_course`) or a stage of the success check
    stalls for `stall_s`. It plans from the scene as it is then, so the steps it drives (tagged
    `intervention`) label the policy's own mistakes with the way out. It keeps the arm for the rest of
    the trial, or with `hand_back` until the stage it took over for is reached: then the policy drives
    the later stages from where the expert left them, and their mistakes get labels too (else a policy
    that stalls early is never seen, nor labelled, in the later stages). `off_course=False`: only
    stalls count, so the policy is left to commit to (and finish or fail) its own approach. `off_course_only`
    (text): of the task's off-course calls only those whose reason contains it count (a round aimed at one
    kind of mistake: the others are left to the policy).

    `lead_until` (a stage name): the expert drives from the trial's start until that stage is reached and
    only then gives the policy the arm, so a round spends its trials on the later stages (DAgger from a
    mid-task reset). Its lead is scene setting, not a label: those steps are left untagged."""

    def __init__(self, stall_s: float = 15.0, hand_back: bool = False, off_course: bool = True,
                 lead_until: str | None = None, off_course_only: str | None = None):
        if stall_s <= 0:
            raise ValueError(f"stall_s must be > 0 s, got {stall_s}")
        if off_course_only is not None and not off_course:
            raise ValueError("off_course_only picks among the off-course calls: it needs off_course=True")
        self.stall_s = stall_s
        self.hand_back = hand_back
        self.off_course = off_course
        self.off_course_only = off_course_only
        self.lead_until = lead_until
        self.lead: dict | None = None  # this trial's lead: {"until", "handed_over_t"} (None: no lead)
        self._leading = False
        self.device = ExpertDevice(resume=True)
        self.env = None
        self.takeovers: list[dict] = []  # this trial's: {"t", "reason", "stage"[, "handed_back_t"]}
        self._current: dict | None = None  # the takeover under way (None: the policy has the arm)

    @property
    def active(self) -> bool:
        return self._current is not None

    @property
    def labelling(self) -> bool:
        """Whether the expert's action this tick is a label (a takeover), not its lead to a stage."""
        return not self._leading

    @property
    def reason(self) -> str | None:
        """Why the expert first took the arm this trial (None: the policy kept it)."""
        return self.takeovers[0]["reason"] if self.takeovers else None

    @property
    def taken_at_s(self) -> float | None:
        return self.takeovers[0]["t"] if self.takeovers else None

    def key_handlers(self) -> dict:
        return {}

    def start_trial(self, env) -> None:
        if env is None:
            raise ValueError("the expert takeover needs the sim (--robot sim): it plans from the simulator's state")
        self.env, self.takeovers, self._current = env, [], None
        self._stage, self._stage_since = env.success.stage, env.clock.now()
        self.lead, self._leading = None, False
        if self.lead_until is not None:
            stages = list(env.success.stages)
            if self.lead_until not in stages:
                raise ValueError(f"lead_until must be one of task {env.task.name!r}'s stages {stages}, "
                                 f"got {self.lead_until!r}")
            self._lead_stage = stages.index(self.lead_until) + 1  # the check's stage once it is reached
            self.lead, self._leading = {"until": self.lead_until, "handed_over_t": None}, True
            self.device.reset(env)

    def action(self) -> np.ndarray | None:
        if self.env is None:
            raise RuntimeError("ExpertTakeover.start_trial(env) was not called")
        now, stage = self.env.clock.now(), self.env.success.stage
        if self._leading:
            if stage < self._lead_stage:
                return self.device.action()
            self._leading, self.lead["handed_over_t"] = False, now
            self._stage, self._stage_since = stage, now  # the policy's stall clock starts here
            log.warning("expert hands the arm to the policy at t=%.1f s: %s", now, self.lead_until)
        if self._current is not None and self.hand_back and stage > self._current["stage"]:
            self._current["handed_back_t"] = now
            self._current = None
            self._stage, self._stage_since = stage, now
            log.warning("expert gives the arm back at t=%.1f s: %s", now, self.env.success.stages[stage - 1])
        if self._current is None:
            reason = self._why_take_over(now, stage)
            if reason is None:
                return None
            self._current = {"t": now, "reason": reason, "stage": stage}
            self.takeovers.append(self._current)
            log.warning("expert takes the arm at t=%.1f s: %s", now, reason)
            self.device.reset(self.env)
        return self.device.action()

    def _why_take_over(self, now: float, stage: int) -> str | None:
        if stage != self._stage:
            self._stage, self._stage_since = stage, now
        if now - self._stage_since > self.stall_s:
            stages = self.env.success.stages
            return f"no progress for {self.stall_s:g} s (next: {stages[stage] if stage < len(stages) else 'success'})"
        reason = self.env.task.off_course(self.env) if self.off_course else None
        if reason is not None and self.off_course_only is not None and self.off_course_only not in reason:
            return None
        return reason
