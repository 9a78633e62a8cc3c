"""The 15 Hz receding-horizon control loop: the same code for the sim and the Franka.

Per tick: read the robot and every camera; hand a finished chunk to the executor; ask for the
next chunk early enough (from the measured latency) that the executor never runs dry; take the
action scheduled for this tick; pass it through the safety layer and IK; stream the joint target
and the gripper command; record. Missing, stale or insane actions become "hold the current
joint positions". Ctrl-C and the e-stop stop the arm; the e-stop also latches.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np

from robot_client.action_path import JointCommand
from robot_client.chunk_executor import Chunk, ChunkExecutor
from robot_client.grasp_sink import GraspSink
from robot_client.inference_worker import InferenceWorker
from robot_client.observation import ObservationHistory
from robot_client.recovery import StallReturn
from robot_client.release_lift import ReleaseLift
from robot_client.safety import EStop
from robot_client.stall import StallDetector
from robot_client.watchdog import ControllerWatchdog
from uwm_robot.protocol import is_noise_scale

log = logging.getLogger(__name__)


def send_gripper(gripper, position: float, last: float | None, max_width: float, speed: float,
                 force: float) -> float:
    """DROID gripper position (0 open, 1 closed) -> a non-blocking `goto`, only when it changed.
    Returns the position now commanded."""
    if last is None or abs(position - last) > 1e-3:
        gripper.goto(width=max_width * (1.0 - position), speed=speed, force=force, blocking=False)
    return position


def latency_ticks(latency_s: float, dt: float) -> int:
    """Whole ticks a latency spans. A lockstep latency of exactly 3 ticks measures as 3.0000000000000027
    ticks in float clock time; it must not count as 4 (the chunk would be asked a tick early and run
    one action fewer than `execute_k` says)."""
    return math.ceil(latency_s / dt - 1e-6)


@dataclass(frozen=True)
class LoopConfig:
    control_hz: float = 15.0
    execute_k: int = 8  # actions executed per chunk before the next one takes over
    blend_steps: int = 0  # ticks of linear cross-fade at a chunk boundary (0 = off)
    ensemble_chunks: int = 1  # average each tick's arm motion over the plans of this many latest chunks
    inpaint: bool = False  # ask for chunks inpainted on the current chunk's still-pending actions
    coherent: bool = False  # send the current chunk's plan as a guide: a sampling server returns the sample nearest it
    # A request made while the hand has stayed within stall_radius_m for stall_window_s asks for this noise
    # scale instead of the server's (robot_client.stall; None = off).
    stall_noise_scale: float | None = None
    stall_window_s: float = 3.0
    stall_radius_m: float = 0.03
    stall_turn_deg: float | None = None  # ... and turned less than this (None: position alone)
    # A chunk asked while stalled runs this many actions before the next takes over (None: execute_k). A policy
    # that cannot count ticks re-plans the same "wait, then move" forever at a short horizon.
    stall_execute_k: int | None = None
    # A hand that has stayed within stall_return_radius_m for stall_return_s (a dither, not only a stall) is
    # driven back to the joint positions the episode started from, and the policy starts over from there, at
    # most stall_return_max times (robot_client.recovery; None = off). Only at the first stage: before the
    # fingers first close, or within stall_return_near_first_grasp_m of where they did (None: anywhere). For
    # a stuck state the demos never leave from, e.g. a lid that fell shut under the hand. Never with a takeover:
    # an operator (or DAgger's expert) is there to take the arm, and the stall is what its labels are for.
    stall_return_s: float | None = None
    stall_return_radius_m: float = 0.08
    stall_return_max: int = 2
    stall_return_near_first_grasp_m: float | None = 0.10
    # After the fingers let go of something the hand moved, hold the policy's sideways motion and turns until the
    # hand has risen release_lift_m (or release_lift_s has passed): a hand that leaves at once drags what is
    # still between its open fingers (robot_client.release_lift; None = off).
    release_lift_m: float | None = None
    release_lift_s: float = 3.0
    release_lift_max: int | None = None  # lifts per episode at most (None: after every pull or carry)
    # The episode's first grasp goes this much deeper than the policy put it: a bar held by its upper edge
    # slips out of the pull (robot_client.grasp_sink; None = off).
    grasp_sink_m: float | None = None
    max_steps: int = 900
    request_margin_ticks: int = 1  # ask this many ticks earlier than the latency estimate says
    initial_latency_s: float = 0.3  # latency guess before the first measurement
    sim_latency_s: float | None = None  # lockstep sim: delivery delay of a chunk, in sim time
    gripper_speed: float = 0.1  # m/s
    gripper_force: float = 20.0  # N
    stop_on_success: bool = True
    seed: int | None = None  # base seed for the policy's noise (request i uses seed + i)

    def __post_init__(self) -> None:
        if self.stall_noise_scale is not None and not is_noise_scale(self.stall_noise_scale):
            raise ValueError(f"stall_noise_scale must be in [0, 1] (the factor on a chunk's starting noise) or None "
                             f"(off), got {self.stall_noise_scale}")
        if self.stall_turn_deg is not None and self.stall_turn_deg <= 0:
            raise ValueError(f"stall_turn_deg must be > 0 or None (position alone), got {self.stall_turn_deg}")
        if self.stall_execute_k is not None and self.stall_execute_k < 1:
            raise ValueError(f"stall_execute_k must be >= 1 or None (execute_k), got {self.stall_execute_k}")
        if self.stall_return_s is not None and self.stall_return_s <= 0:
            raise ValueError(f"stall_return_s must be > 0 s or None (off), got {self.stall_return_s}")
        if self.stall_return_max < 1 or self.stall_return_radius_m <= 0:
            raise ValueError(f"stall_return_max must be >= 1 and stall_return_radius_m > 0, got "
                             f"{self.stall_return_max} and {self.stall_return_radius_m} m")
        if self.stall_return_near_first_grasp_m is not None and self.stall_return_near_first_grasp_m <= 0:
            raise ValueError(f"stall_return_near_first_grasp_m must be > 0 or None (anywhere), got "
                             f"{self.stall_return_near_first_grasp_m}")
        if ((self.release_lift_m is not None and self.release_lift_m <= 0) or self.release_lift_s <= 0
                or (self.release_lift_max is not None and self.release_lift_max < 1)):
            raise ValueError(f"release_lift_m must be > 0 or None (off), release_lift_s > 0 and release_lift_max >= 1 "
                             f"or None (no limit), got {self.release_lift_m} m, {self.release_lift_s} s and "
                             f"{self.release_lift_max}")
        if self.grasp_sink_m is not None and self.grasp_sink_m <= 0:
            raise ValueError(f"grasp_sink_m must be > 0 or None (off), got {self.grasp_sink_m}")
        if self.stall_window_s <= 0 or self.stall_radius_m <= 0:
            raise ValueError(f"stall_window_s and stall_radius_m must be > 0, got {self.stall_window_s} s and "
                             f"{self.stall_radius_m} m")

    @property
    def dt(self) -> float:
        return 1.0 / self.control_hz


@dataclass
class StepRecord:
    t: float
    q: np.ndarray
    ee_pos: np.ndarray
    ee_quat: np.ndarray
    gripper_width: float
    command: JointCommand
    action: np.ndarray | None
    action_index: int
    chunk_id: int
    blended: bool
    intervention: bool = False  # an operator had the arm (DAgger takeover)


@dataclass
class LoopStats:
    tick_starts: list[float] = field(default_factory=list)  # wall clock (s)
    inference_latency_s: list[float] = field(default_factory=list)
    queue_depth: list[int] = field(default_factory=list)  # executable actions left at each tick
    idle_ticks: int = 0  # ticks with no action after the first chunk arrived (waiting on inference)
    hold_ticks: int = 0  # ticks the safety layer turned into holds
    dropped_actions: int = 0
    chunks: int = 0
    overruns: int = 0  # ticks that took more than 1.5 periods
    intervention_ticks: int = 0  # ticks an operator drove (takeover)
    stalled_requests: int = 0  # chunks asked while the hand was stalled (robot_client.stall)
    returns_to_start: int = 0  # times a long stall sent the arm back to where the episode started
    release_lifts: int = 0  # times the hand rose clear after letting go (robot_client.release_lift)
    grasp_sinks: int = 0  # closes the hand went deeper on (robot_client.grasp_sink)
    errors: list[str] = field(default_factory=list)

    def summary(self, dt: float) -> dict:
        periods = np.diff(self.tick_starts) if len(self.tick_starts) > 1 else np.zeros(1)
        jitter = np.abs(periods - dt) * 1e3
        lat = np.asarray(self.inference_latency_s or [0.0]) * 1e3
        return {
            "steps": len(self.tick_starts),
            "period_ms_p50": float(np.percentile(periods * 1e3, 50)),
            "period_jitter_ms_p50": float(np.percentile(jitter, 50)),
            "period_jitter_ms_p99": float(np.percentile(jitter, 99)),
            "inference_ms_p50": float(np.percentile(lat, 50)),
            "inference_ms_p95": float(np.percentile(lat, 95)),
            "idle_s": self.idle_ticks * dt,
            "hold_ticks": self.hold_ticks,
            "dropped_actions": self.dropped_actions,
            "chunks": self.chunks,
            "overruns": self.overruns,
            "intervention_ticks": self.intervention_ticks,
            "stalled_requests": self.stalled_requests,
            "returns_to_start": self.returns_to_start,
            "release_lifts": self.release_lifts,
            "grasp_sinks": self.grasp_sinks,
            "queue_depth_min": int(min(self.queue_depth[1:] or [0])),
            "errors": list(self.errors),
        }


@dataclass
class EpisodeResult:
    success: bool
    steps: int
    reason: str  # success | timeout | estop | interrupted | error
    stats: dict


class ControlLoop:
    def __init__(self, robot, gripper, cameras: dict, clock, policy, action_path, config: LoopConfig,
                 image_shapes: dict[str, tuple[int, int]], n_obs_steps: int = 2, estop: EStop | None = None,
                 success_check=None, on_step=None, on_chunk=None, stop_check=None, takeover=None):
        self.robot, self.gripper, self.cameras, self.clock = robot, gripper, cameras, clock
        self.policy = policy
        self.action_path = action_path
        self.config = config
        self.history = ObservationHistory(image_shapes, n_obs_steps)
        self.estop = estop or EStop()
        self.success_check = success_check
        self.on_step = on_step  # f(StepRecord, frames) for recording
        self.on_chunk = on_chunk  # f(Chunk) for recording
        self.stop_check = stop_check  # f() -> reason to end the episode now (operator label) or None
        self.takeover = takeover  # robot_client.teleop.Takeover: an operator may take the arm
        self.watchdog = ControllerWatchdog(robot)
        self.max_width = float(getattr(gripper.get_state(), "max_width", 0.08))
        self.stats = LoopStats()

    # ---- helpers ------------------------------------------------------------------------------
    def _latency_estimate(self) -> float:
        lat = self.stats.inference_latency_s
        # The worst recent latency: one late chunk would leave the arm without actions.
        return float(max(lat[-10:])) if lat else self.config.initial_latency_s

    def _lead_ticks(self) -> int:
        """Ticks until a chunk requested now is expected to take over (latency + margin)."""
        return latency_ticks(self._latency_estimate(), self.config.dt) + self.config.request_margin_ticks

    def _needs_request(self, executor: ChunkExecutor, t: float) -> bool:
        # Ask when the actions left would run out before a new chunk could arrive.
        return executor.remaining(t) <= self._lead_ticks()

    def _send_gripper(self, position: float, last: float | None) -> float:
        return send_gripper(self.gripper, position, last, self.max_width, self.config.gripper_speed,
                            self.config.gripper_force)

    def _hold(self) -> None:
        """Stop the arm where it is: the running controller keeps the current position."""
        try:
            q = np.asarray(self.robot.get_joint_positions(), dtype=float)
            if self.robot.is_running_policy():
                self.watchdog.send(q)
        except Exception as e:  # the arm is already holding when the controller is gone
            log.warning("hold failed: %s", e)

    # ---- the loop -----------------------------------------------------------------------------
    def run(self) -> EpisodeResult:
        cfg = self.config
        dt = cfg.dt
        executor = ChunkExecutor(dt, cfg.execute_k, cfg.blend_steps, cfg.ensemble_chunks)
        worker = InferenceWorker(self.policy, cfg.sim_latency_s)
        stall = (StallDetector(cfg.stall_window_s, cfg.stall_radius_m, cfg.stall_turn_deg)
                 if cfg.stall_noise_scale is not None or cfg.stall_execute_k is not None else None)
        stall_return = (StallReturn(self.action_path.safety, dt, cfg.stall_return_s, cfg.stall_return_radius_m,
                                    cfg.stall_return_max, cfg.stall_return_near_first_grasp_m,
                                    restart_detectors=(stall,) if stall is not None else ())
                        if cfg.stall_return_s is not None and self.takeover is None else None)
        release_lift = (ReleaseLift(cfg.release_lift_m, cfg.release_lift_s, cfg.release_lift_max)
                        if cfg.release_lift_m is not None else None)
        grasp_sink = (GraspSink(cfg.grasp_sink_m, self.action_path.safety.config.max_translation_per_step)
                      if cfg.grasp_sink_m is not None else None)
        last_request_id, stale_below = 0, 0  # chunks asked before a return to the start are dropped
        self.history.reset()
        self.watchdog.start()
        gripper_cmd: float | None = None
        first_chunk_seen = False
        reason, success, step = "timeout", False, 0
        for cam in self.cameras.values():  # the first read starts renderers/streams: keep it off the schedule
            cam.read()
        t_next = self.clock.now()
        try:
            for step in range(cfg.max_steps):
                if self.estop.tripped:
                    reason = "estop"
                    break
                self.stats.tick_starts.append(time.perf_counter())
                t = self.clock.now()
                q = np.asarray(self.robot.get_joint_positions(), dtype=float)
                ee_pos, ee_quat = (np.asarray(x, dtype=float) for x in self.robot.get_ee_pose())
                g_state = self.gripper.get_state()
                if stall is not None:
                    stall.push(t, ee_pos, ee_quat)
                if stall_return is not None:  # fingers at least half closed: a grasp
                    stall_return.push(t, q, ee_pos, fingers_closed=float(g_state.width) <= self.max_width / 2)
                frames = {name: cam.read() for name, cam in self.cameras.items()}
                self.history.push(frames, t, {"q": q, "ee_pos": ee_pos, "ee_quat": ee_quat,
                                              "gripper_width": float(g_state.width)})

                result = worker.poll(t)
                if isinstance(result, Chunk):
                    self.stats.inference_latency_s.append(result.latency_s)
                    if result.request_id >= stale_below:  # else asked before a return to the start: dropped
                        executor.add_chunk(result, t)
                        self.stats.chunks += 1
                        first_chunk_seen = True
                        if self.on_chunk:
                            self.on_chunk(result)
                elif isinstance(result, BaseException):
                    self.stats.errors.append(f"inference failed: {result}")
                    log.error("inference failed: %s", result)
                operator_action = self.takeover.action() if self.takeover is not None else None
                back_command = None
                if stall_return is not None and operator_action is None:
                    if stall_return.due():
                        stall_return.begin(t)
                        executor.clear()
                        stale_below = last_request_id + 1
                        self.stats.returns_to_start += 1
                        log.warning("hand stalled for %.1f s: back to the start pose", cfg.stall_return_s)
                    back_command = stall_return.command(q, t)
                if operator_action is not None:
                    executor.clear()  # the policy's plan is void; on release it asks afresh
                elif back_command is not None:
                    pass  # no requests on the way back: their observations would be stale on arrival
                elif not worker.busy and self._needs_request(executor, t):
                    seed = None if cfg.seed is None else cfg.seed + self.stats.chunks + len(self.stats.errors)
                    obs = self.history.snapshot()
                    # Inpainting: the actions the old chunk still executes before the new one takes over.
                    prefix = executor.prefix_for(obs.t, self._lead_ticks()) if cfg.inpaint else None
                    # Backward coherence: the sample that carries on the current plan (with --samples N).
                    guide = executor.plan_for(obs.t) if cfg.coherent else None
                    stalled = stall is not None and stall.stalled()
                    self.stats.stalled_requests += stalled
                    last_request_id = worker.submit(obs, t, seed=seed, prefix=prefix, guide=guide,
                                  noise_scale=cfg.stall_noise_scale if stalled else None,
                                  execute_k=cfg.stall_execute_k if stalled else None)

                scheduled = None if back_command is not None else executor.action_at(t)
                self.stats.queue_depth.append(executor.remaining(t))
                gripper_now = 1.0 - float(g_state.width) / self.max_width
                action = None if scheduled is None else scheduled.action
                if action is not None and release_lift is not None:
                    action = release_lift.filter(action, ee_pos, float(g_state.width), t)
                    self.stats.release_lifts = release_lift.lifts
                if action is not None and grasp_sink is not None:
                    action = grasp_sink.filter(action, float(g_state.width))
                    self.stats.grasp_sinks = grasp_sink.sinks
                if operator_action is not None:
                    action = np.asarray(operator_action, dtype=float)
                command = back_command if back_command is not None else self.action_path(
                    action, q, ee_pos, ee_quat, gripper_cmd if gripper_cmd is not None else gripper_now)
                # An expert leading the trial to a stage drives without labelling (its steps stay untagged).
                labelled = operator_action is not None and getattr(self.takeover, "labelling", True)
                if labelled:
                    self.stats.intervention_ticks += 1
                elif scheduled is None and first_chunk_seen and back_command is None:
                    self.stats.idle_ticks += 1
                elif command.hold and scheduled is not None:
                    self.stats.hold_ticks += 1
                if self.estop.tripped:
                    reason = "estop"
                    break
                self.watchdog.send(command.q_target)
                if not command.hold:
                    gripper_cmd = self._send_gripper(command.gripper, gripper_cmd)
                if self.on_step:
                    self.on_step(StepRecord(t, q, ee_pos, ee_quat, float(g_state.width), command, action,
                                            -1 if scheduled is None else scheduled.index,
                                            -1 if scheduled is None else scheduled.chunk.request_id,
                                            bool(scheduled and scheduled.blended), labelled), frames)
                if self.success_check is not None and self.success_check():
                    success = True
                    if cfg.stop_on_success:
                        reason = "success"
                        step += 1
                        break
                if self.stop_check is not None and (stop := self.stop_check()):
                    reason = stop
                    step += 1
                    break
                t_next += dt
                now = self.clock.now()
                if now > t_next + dt / 2:
                    # Overran by more than half a period: re-anchor rather than burst to catch up.
                    self.stats.overruns += 1
                    t_next = now
                self.clock.sleep_until(t_next)
            else:
                step = cfg.max_steps
        except KeyboardInterrupt:
            reason = "interrupted"
        except Exception as e:
            reason = "error"
            self.stats.errors.append(f"{type(e).__name__}: {e}")
            log.exception("control loop failed")
        finally:
            worker.close()
            self.stats.dropped_actions = executor.dropped
            if reason == "estop":
                self._terminate()
            else:
                self._hold()
        return EpisodeResult(success, step, reason, self.stats.summary(dt))

    def _terminate(self) -> None:
        try:
            self.robot.terminate_current_policy()
        except Exception as e:
            log.warning("terminate_current_policy failed: %s", e)
