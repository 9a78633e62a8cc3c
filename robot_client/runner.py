"""One trial end to end: robot + cameras, policy connection, control loop, episode on disk.

Shared by `robot_client run` and `robot_client eval`. The policy is always reached over zerorpc;
with no server address a local server is started on loopback (the embedded default).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from robot_client.action_path import make_action_path
from robot_client.control_loop import ControlLoop, EpisodeResult, LoopConfig
from robot_client.policy import RemotePolicy
from robot_client.safety import EStop, SafetyMonitor
from robot_client.settings import ClientSettings
from robot_client.sim.clock import WallClock

log = logging.getLogger(__name__)


@dataclass
class TrialSpec:
    task: str
    condition: str
    seed: int
    out_dir: Path
    max_steps: int | None = None
    operator: str = ""
    raw_frames: bool = False  # also keep lossless frames: rollouts meant as training data (DAgger, self-imitation)


def camera_shapes(metadata: dict) -> dict[str, tuple[int, int]]:
    """camera -> (H, W) the server expects, from its hello metadata."""
    cams = metadata["cameras"]
    if isinstance(cams, dict):
        return {name: tuple(int(v) for v in (spec["shape"] if isinstance(spec, dict) else spec)[:2]) for name, spec in cams.items()}
    shape = tuple(int(v) for v in metadata["image_shape"][:2])
    return {name: shape for name in cams}


def read_token(token_file: str | None) -> str | None:
    if not token_file:
        return None
    token = Path(token_file).read_text().strip()
    if not token:
        raise ValueError(f"token file {token_file} is empty")
    return token


def sampling_mismatch(settings: ClientSettings, metadata: dict) -> str | None:
    """A warning when a running server samples otherwise than the settings ask for: its noise scale
    and its chunks per request are its own options (`policy_server serve --noise-scale/--samples`),
    which the settings cannot change; None when they agree."""
    # servers from before an option report nothing for it: the official 1 for both
    served = {"noise-scale": float(metadata.get("action_noise_scale", 1.0)),
              "samples": int(metadata.get("samples_per_chunk", 1))}
    asked = {"noise-scale": float(settings.noise_scale)}
    if settings.samples > 1:  # the default 1 leaves a server's own --samples alone (e.g. for --coherent)
        asked["samples"] = int(settings.samples)
    differ = [flag for flag in asked if abs(served[flag] - asked[flag]) > 1e-9]
    if settings.control.coherent and served["samples"] == 1 and "samples" not in differ:
        return ("--coherent picks among several sampled chunks, but the policy server samples one per request: "
                "restart it with `policy_server serve --samples 8`")
    if not differ:
        return None
    return ("the policy server samples with " + ", ".join(f"{flag} {served[flag]:g}" for flag in differ)
            + " but the settings ask for " + ", ".join(f"{flag} {asked[flag]:g}" for flag in differ)
            + ": restart it with `policy_server serve " + " ".join(f"--{flag} {asked[flag]:g}" for flag in differ)
            + "` (docs/results.md)")


@contextlib.contextmanager
def open_policy(settings: ClientSettings, server: str | None, token_file: str | None, checkpoint: str | None):
    """Yields (RemotePolicy, metadata). Starts and later stops a loopback server if needed."""
    from uwm_robot.client import PolicyClient

    token = read_token(token_file)
    with contextlib.ExitStack() as stack:
        address = server or settings.server
        if address is None:
            from uwm_robot.local_server import LocalServer

            ckpt = Path(checkpoint) if checkpoint else settings.checkpoint_path()
            if not ckpt.exists():
                raise FileNotFoundError(
                    f"no policy checkpoint at {ckpt}: pass --checkpoint, --server, or make one with "
                    f"`uwm_robot init --preset tiny --out {ckpt}` (random weights)"
                )
            print(f"[robot_client] starting a local policy server for {ckpt} ...", flush=True)
            # Sharing this machine with the control loop: the server runs at a lower priority with
            # one compute thread, so inference never delays a control tick.
            extra = ["--device", settings.device, "--samples", str(settings.samples),
                     "--noise-scale", repr(settings.noise_scale)]
            srv = stack.enter_context(LocalServer(ckpt, extra=extra, niceness=10,
                                                  cpu_threads=1 if settings.device == "cpu" else None))
            print(f"[robot_client] {srv.ready_line}", flush=True)
            address = srv.address
        client = PolicyClient(address, token=token)
        stack.callback(client.close)
        policy = RemotePolicy(client)
        metadata = policy.hello()
        warning = sampling_mismatch(settings, metadata)
        if warning:
            log.warning(warning)
        yield policy, metadata


def loop_config(settings: ClientSettings, control_hz: float, max_steps: int, lockstep: bool, seed: int | None) -> LoopConfig:
    return dataclasses.replace(settings.control, control_hz=control_hz, max_steps=max_steps, seed=seed,
                               sim_latency_s=settings.sim.sim_latency_s if lockstep else None)


def make_recorder(spec: TrialSpec, metadata: dict, shapes: dict, extra_meta: dict, cfg: LoopConfig,
                  resize_frames: bool = False):
    from robot_client.recording import EpisodeWriter

    meta = {
        "kind": "rollout",
        "task": spec.task,
        "condition": spec.condition,
        "seed": spec.seed,
        "operator": spec.operator,
        "checkpoint": {"id": metadata.get("checkpoint_id"), "hash": metadata.get("checkpoint_hash")},
        "server": metadata,
        "control": dataclasses.asdict(cfg),  # execute_k, latency... the same checkpoint behaves differently under others
        **extra_meta,
    }
    return EpisodeWriter(spec.out_dir, meta, shapes, fps=cfg.control_hz, save_raw_frames=spec.raw_frames,
                         resize_frames=resize_frames)


def fan_out(observers: list, method: str):
    """One callback that calls `method` on every observer (recorder, live view) in order."""
    calls = [getattr(o, method) for o in observers if o is not None]
    if not calls:
        return None

    def call_all(*args) -> None:
        for call in calls:
            call(*args)

    return call_all


def run_sim_trial(spec: TrialSpec, policy, metadata: dict, settings: ClientSettings, estop: EStop,
                  realtime: bool = False, record: bool = True, live_view=None, takeover=None) -> EpisodeResult:
    from robot_client.sim.env import SimEnv
    from robot_client.sim.object_log import ObjectStateLog

    shapes = camera_shapes(metadata)
    h, w = next(iter(shapes.values()))
    mode = "realtime" if realtime else settings.sim.mode
    env = SimEnv(spec.task, condition=spec.condition, seed=spec.seed, mode=mode, camera_width=w, camera_height=h)
    try:
        task = env.task
        if takeover is not None:
            takeover.start_trial(env)
        max_steps = spec.max_steps or int(task.max_duration_s * task.control_hz)
        cfg = loop_config(settings, task.control_hz, max_steps, lockstep=(mode == "lockstep"), seed=spec.seed * 1000)
        recorder = objects = None
        if record:
            objects = ObjectStateLog(env.world)
            recorder = make_recorder(spec, metadata, shapes, {
                "instruction": task.instruction, "robot": "sim", "sim_mode": mode,
                "initial_state": env.initial_state, "calibration": None}, cfg)
        # Realtime: pace on the wall clock (sim time follows it in physics chunks, too coarse to pace on).
        clock = WallClock() if mode == "realtime" else env.clock
        loop = ControlLoop(env.robot, env.gripper, env.cameras, clock, policy,
                           make_action_path("cartesian_velocity", SafetyMonitor(settings.safety)), cfg, shapes,
                           n_obs_steps=int(metadata.get("n_obs_steps", 2)), estop=estop, success_check=env.check_success,
                           on_step=fan_out([recorder, objects, live_view], "on_step"),
                           on_chunk=fan_out([recorder, live_view], "on_chunk"), takeover=takeover)
        t0 = time.monotonic()
        result = loop.run()
        result.stats["wall_s"] = time.monotonic() - t0
        if recorder:
            check = env.success
            objects.save(recorder.directory)  # before finish(): a finished episode has all its files
            recorder.finish(success=result.success, decided_by="sim_check", reason=result.reason, stats=result.stats,
                            extra={"task_progress": {"stage": check.stage, "stages": list(check.stages),
                                                     "reached": list(check.stages[:check.stage])},
                                   **expert_takeover_meta(takeover)})
        return result
    finally:
        env.close()


def expert_takeover_meta(takeover) -> dict:
    """When and why the sim's expert took the arm (meta.json), so DAgger data can be sorted by cause."""
    lead = getattr(takeover, "lead", None)
    meta = {"expert_lead": lead} if lead else {}
    takeovers = getattr(takeover, "takeovers", None)
    if not takeovers:
        return meta
    first = {"t": takeovers[0]["t"], "reason": takeovers[0]["reason"]}
    return {**meta, "expert_takeover": first, **({"expert_takeovers": takeovers} if takeover.hand_back else {})}


class OperatorLabel:
    """Keys on the real robot: s = success, f = failure, d = discard (each ends the trial)."""

    KEYS = {"s": "success", "f": "failure", "d": "discard"}

    def __init__(self):
        self.label: str | None = None

    def handlers(self) -> dict:
        return {k: (lambda v=v: setattr(self, "label", v)) for k, v in self.KEYS.items()}

    def stop_reason(self) -> str | None:
        return None if self.label is None else f"operator_{self.label}"


def run_franka_trial(spec: TrialSpec, policy, metadata: dict, settings: ClientSettings, estop: EStop,
                     label: OperatorLabel, robot_config=None, camera_config=None, record: bool = True,
                     takeover=None) -> EpisodeResult:
    """The same loop on the real arm: Polymetis + RealSense, wall clock, operator labels."""
    from robot_client.backends.polymetis import make_robot
    from robot_client.cameras.factory import make_cameras, start_cameras, stop_cameras
    from robot_client.tasks import load_task

    task = load_task(spec.task)
    if takeover is not None:
        takeover.start_trial(None)
    robot, gripper = make_robot("franka", robot_config)
    shapes = camera_shapes(metadata)
    cameras = make_cameras("realsense", camera_config)
    start_cameras(cameras)
    try:
        max_steps = spec.max_steps or int(task.max_duration_s * task.control_hz)
        cfg = loop_config(settings, task.control_hz, max_steps, lockstep=False, seed=None)
        recorder = make_recorder(spec, metadata, shapes, {"instruction": task.instruction, "robot": "franka",
                                                          "calibration": camera_config}, cfg,
                                 resize_frames=True) if record else None
        loop = ControlLoop(robot, gripper, cameras, WallClock(), policy,
                           make_action_path("cartesian_velocity", SafetyMonitor(settings.safety)), cfg, shapes,
                           n_obs_steps=int(metadata.get("n_obs_steps", 2)), estop=estop,
                           on_step=recorder.on_step if recorder else None,
                           on_chunk=recorder.on_chunk if recorder else None, stop_check=label.stop_reason,
                           takeover=takeover)
        result = loop.run()
        result.success = label.label == "success"
        if recorder:
            recorder.finish(success=None if label.label in (None, "discard") else result.success,
                            decided_by="operator_key", reason=result.reason, stats=result.stats)
        return result
    finally:
        stop_cameras(cameras)
