"""`robot_client`: run policies on the arm (or the sim), evaluate, report, and the sim tools."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from pathlib import Path

from robot_client.safety import EStop
from robot_client.settings import DEFAULT_PATH, load_settings
from robot_client.compare import register as compare_register
from robot_client.report import register as report_register
from robot_client.boundary_bench import register as boundary_register
from robot_client.sim_cli import add_sim_subparser, parse_size
from uwm_robot.protocol import is_noise_scale, sampling_problem


def _common_policy_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", default="rice_cooker", help="task name (configs/tasks/<task>.yaml)")
    p.add_argument("--robot", choices=["sim", "franka"], default=None, help="default from configs/robot_client.yaml (sim)")
    p.add_argument("--server", default=None, help="policy server address tcp://HOST:PORT; default: start one on loopback")
    p.add_argument("--token-file", default=None, help="file holding the server's shared token")
    p.add_argument("--checkpoint", default=None, help="checkpoint for the loopback server (default from config)")
    p.add_argument("--condition", default="ID", help="ID or an OOD condition: L1 L2 B1 B2 C1 C2 (eval: also a comma list or 'all')")
    p.add_argument("--seed", type=int, default=0, help="first trial's seed (trial i uses seed + i)")
    p.add_argument("--max-steps", type=int, default=None, help="stop a trial after this many control steps")
    p.add_argument("--realtime", action="store_true", help="sim: keep sim time = wall time (default: lockstep)")
    p.add_argument("--config", default=str(DEFAULT_PATH), help="robot_client settings YAML")
    p.add_argument("--operator", default="", help="who ran the trials (stored with each episode)")
    p.add_argument("--raw-frames", action="store_true",
                   help="also keep each camera's lossless frames beside its H.264 video: rollouts meant as training "
                        "data (DAgger rounds, --chunk-data); the video's frames are lossy (docs/results.md session 41)")
    p.add_argument("--execute-k", type=int, default=None,
                   help="actions executed per 16-action chunk before the next takes over (default from config)")
    p.add_argument("--inpaint", action="store_true",
                   help="ask for chunks inpainted on the actions still in flight (control.inpaint; RTC-style)")
    p.add_argument("--ensemble", type=int, default=None, metavar="N",
                   help="average each tick's arm motion over the plans of the N latest chunks (control.ensemble_chunks; "
                        "ACT's temporal ensembling; default from config: 1 = off)")
    p.add_argument("--samples", type=int, default=None,
                   help="loopback server: chunks sampled per request, the medoid executed (default from config: 1)")
    p.add_argument("--noise-scale", type=float, default=None, metavar="S",
                   help="loopback server: multiply each chunk's starting noise by S in [0, 1], a sampling temperature "
                        "(default from config; 1 = the official sampler)")
    p.add_argument("--stall-noise-scale", default=None, metavar="S",
                   help="ask for chunks at noise scale S while the hand has stayed within control.stall_radius_m "
                        "(3 cm) and control.stall_turn_deg (10 deg) for control.stall_window_s (3 s): a stuck policy "
                        "samples further afield (control.stall_noise_scale; default from config: 1); 'off' never does")
    p.add_argument("--stall-execute-k", default=None, metavar="K",
                   help="run K actions of each chunk asked while the hand is stalled (the same test as "
                        "--stall-noise-scale) instead of --execute-k: a policy that re-plans 'wait, then move' at "
                        "every chunk gets to the move (control.stall_execute_k; default from config: 12); 'off' keeps --execute-k")
    p.add_argument("--stall-return-s", default=None, metavar="S",
                   help="drive the arm back to the joint positions the episode started from when the hand has stayed "
                        "within control.stall_return_radius_m (8 cm) for S seconds at the task's first stage (before the "
                        "fingers first close, or within control.stall_return_near_first_grasp_m of where they did), and "
                        "let the policy start over, at most control.stall_return_max times (control.stall_return_s; "
                        "default from config); 'off' never does")
    p.add_argument("--release-lift-m", default=None, metavar="M",
                   help="after the fingers let go of something the hand pulled or carried (5 cm or more), hold the "
                        "policy's sideways motion and turns until the hand has risen M metres (at most "
                        "control.release_lift_s, 3 s): a hand that leaves at once drags what is still between its open "
                        "fingers (control.release_lift_m; default from config: 0.08); 'off' never does")
    p.add_argument("--release-lift-max", default=None, metavar="N",
                   help="lift after the first N such releases of an episode only (control.release_lift_max; 1: off "
                        "the lid's bar, not off the cup let go of in the pot; default from config: 1); 'off' lifts after "
                        "every one")
    p.add_argument("--grasp-sink-m", default=None, metavar="M",
                   help="the episode's first grasp goes M metres deeper than the policy puts it: the hand is moved "
                        "down during the first 3 ticks of each close given to open fingers, until they have first held "
                        "something; a bar held by its upper edge slips out of the pull (control.grasp_sink_m; default "
                        "from config: 0.005); 'off' never does")
    p.add_argument("--coherent", action="store_true",
                   help="send each request the current chunk's plan; a server sampling several chunks (--samples N) "
                        "returns the one nearest it instead of the medoid (control.coherent; bidirectional "
                        "decoding's backward coherence)")


def _value_or_off(text: str, flag: str, convert, valid, expected: str):
    """An optional setting's value: 'off' (any case) is None; else `convert(text)`, refused unless `valid`."""
    if text.strip().lower() == "off":
        return None
    try:
        value = convert(text)
    except ValueError:
        value = None
    if value is None or not valid(value):
        raise SystemExit(f"{flag} must be {expected} or 'off', got {text!r}")
    return value


def _stall_noise_scale(text: str) -> float | None:
    return _value_or_off(text, "--stall-noise-scale", float, is_noise_scale,
                         "in [0, 1] (the factor on a chunk's starting noise)")


_CHUNK_HORIZONS = range(1, 17)  # actions a 16-action chunk can run: --execute-k, --stall-execute-k


def _stall_execute_k(text: str) -> int | None:
    return _value_or_off(text, "--stall-execute-k", int, lambda k: k in _CHUNK_HORIZONS,
                         "in 1..16 (actions of a 16-action chunk)")


def _stall_return_s(text: str) -> float | None:
    return _value_or_off(text, "--stall-return-s", float, lambda s: s > 0, "seconds > 0")


def _release_lift_m(text: str) -> float | None:
    return _value_or_off(text, "--release-lift-m", float, lambda m: 0 < m <= 0.3, "metres in (0, 0.3]")


def _release_lift_max(text: str) -> int | None:
    return _value_or_off(text, "--release-lift-max", int, lambda n: n >= 1, "a count >= 1")


def _grasp_sink_m(text: str) -> float | None:
    return _value_or_off(text, "--grasp-sink-m", float, lambda m: 0 < m <= 0.02, "metres in (0, 0.02]")


def _policy_settings(args: argparse.Namespace):
    """The settings file with this command line's overrides applied."""
    settings = load_settings(args.config)
    control = settings.control
    if args.execute_k is not None:
        if args.execute_k not in _CHUNK_HORIZONS:
            raise SystemExit(f"--execute-k must be in 1..16 (actions of a 16-action chunk), got {args.execute_k}")
        control = dataclasses.replace(control, execute_k=args.execute_k)
    if args.inpaint:
        control = dataclasses.replace(control, inpaint=True)
    if args.coherent:
        control = dataclasses.replace(control, coherent=True)
    if args.stall_noise_scale is not None:
        control = dataclasses.replace(control, stall_noise_scale=_stall_noise_scale(args.stall_noise_scale))
    if args.stall_execute_k is not None:
        control = dataclasses.replace(control, stall_execute_k=_stall_execute_k(args.stall_execute_k))
    if args.stall_return_s is not None:
        control = dataclasses.replace(control, stall_return_s=_stall_return_s(args.stall_return_s))
    if args.release_lift_m is not None:
        control = dataclasses.replace(control, release_lift_m=_release_lift_m(args.release_lift_m))
    if args.release_lift_max is not None:
        control = dataclasses.replace(control, release_lift_max=_release_lift_max(args.release_lift_max))
    if args.grasp_sink_m is not None:
        control = dataclasses.replace(control, grasp_sink_m=_grasp_sink_m(args.grasp_sink_m))
    if args.ensemble is not None:
        if args.ensemble < 1:
            raise SystemExit(f"--ensemble must be >= 1 (latest chunks averaged; 1 = off), got {args.ensemble}")
        control = dataclasses.replace(control, ensemble_chunks=args.ensemble)
    if args.samples is not None:
        settings = dataclasses.replace(settings, samples=args.samples)
    if args.noise_scale is not None:
        settings = dataclasses.replace(settings, noise_scale=args.noise_scale)
    problem = sampling_problem(settings.samples, settings.noise_scale)
    if problem:
        raise SystemExit(problem)
    if control.coherent and settings.samples == 1 and not (args.server or settings.server):
        raise SystemExit("--coherent picks among several sampled chunks: add --samples N (N > 1) "
                         "for the loopback server (control.coherent; one sample per request has nothing to pick)")
    return dataclasses.replace(settings, control=control)


def cmd_run(args: argparse.Namespace) -> int:
    from robot_client.keys import KeyListener
    from robot_client.runner import TrialSpec, open_policy, run_sim_trial

    settings = _policy_settings(args)
    robot = args.robot or settings.robot
    if robot == "franka":
        return _run_franka(args, settings)
    condition = args.condition.upper() if args.condition.lower() != "id" else "ID"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_root = Path(args.out) if args.out else Path(settings.out_root) / args.task / stamp
    estop = EStop()
    results = []
    live = None
    if args.live or args.live_save:
        from robot_client.live_view import LiveView

        live = LiveView(spawn=args.live, save_path=args.live_save)
    takeover = _takeover(args.takeover, args.takeover_stall_s, args.takeover_hand_back, args.takeover_stall_only,
                         args.takeover_lead_until, args.takeover_off_course)
    keys = {**(takeover.key_handlers() if takeover else {}), "e": lambda: estop.trip("operator key 'e'"),
            " ": lambda: estop.trip("operator key space")}
    with open_policy(settings, args.server, args.token_file, args.checkpoint) as (policy, metadata), KeyListener(keys):
        for i in range(args.trials):
            spec = TrialSpec(args.task, condition, args.seed + i, out_root / f"trial_{i:03d}", args.max_steps,
                             args.operator, args.raw_frames)
            result = run_sim_trial(spec, policy, metadata, settings, estop, realtime=args.realtime, live_view=live,
                                   takeover=takeover)
            results.append(result)
            s = result.stats
            print(f"[robot_client] trial {i} seed={spec.seed} {condition}: {result.reason} success={result.success} "
                  f"steps={result.steps} chunks={s['chunks']} inference p50={s['inference_ms_p50']:.0f} ms "
                  f"idle={s['idle_s']:.2f} s jitter p99={s['period_jitter_ms_p99']:.1f} ms -> {spec.out_dir}", flush=True)
            if result.reason in ("estop", "interrupted"):
                break
    n_ok = sum(r.success for r in results)
    print(f"[robot_client] {n_ok}/{len(results)} successful; episodes in {out_root}")
    return 0


def _takeover(device_name: str | None, stall_s: float = 15.0, hand_back: bool = False, stall_only: bool = False,
              lead_until: str | None = None, off_course_only: str | None = None):
    """`--takeover DEVICE`: the operator toggles control with `t` (DAgger-style, steps tagged); `expert`
    (sim): the scripted expert takes the arm by itself when the policy goes off course or stalls."""
    for flag, given in (("--takeover-hand-back", hand_back), ("--takeover-stall-only", stall_only),
                        ("--takeover-lead-until", lead_until), ("--takeover-off-course", off_course_only)):
        if given and device_name != "expert":
            raise SystemExit(f"{flag} is for --takeover expert (an operator decides when to take and give back with t)")
    if stall_only and off_course_only:
        raise SystemExit("--takeover-off-course picks which off-course calls count; --takeover-stall-only counts none")
    if not device_name:
        return None
    from robot_client.teleop import ExpertTakeover, Takeover, make_device

    if device_name == "expert":
        until = "the stage it took over for is reached" if hand_back else "the end of the trial"
        when = "" if stall_only else (f"goes off course ('{off_course_only}') or " if off_course_only
                                      else "goes off course or ")
        lead = f"leads each trial until '{lead_until}', then " if lead_until else ""
        print(f"[robot_client] takeover: the sim's expert {lead}takes the arm when the policy {when}"
              f"stalls for {stall_s:g} s, until {until}", flush=True)
        return ExpertTakeover(stall_s, hand_back, off_course=not stall_only, lead_until=lead_until,
                              off_course_only=off_course_only)

    print("[robot_client] takeover: t = take / give back the arm", flush=True)
    return Takeover(make_device(device_name))


def _conditions(arg: str, task: str) -> list[str]:
    from robot_client.tasks import load_task

    available = list(load_task(task).config.conditions)
    if arg.lower() == "all":
        return available
    out = []
    for c in arg.split(","):
        c = "ID" if c.strip().lower() == "id" else c.strip().upper()
        if c not in available:
            raise ValueError(f"task {task!r} has no condition {c!r}; it has {available} (or 'all')")
        out.append(c)
    return out


def cmd_eval(args: argparse.Namespace) -> int:
    """Trials per condition under <out>/<task>/<condition>/trial_XXX; finished trials are kept and
    skipped on a re-run (resume); an unfinished one (a crash) is kept aside and run again."""
    from robot_client.keys import KeyListener
    from robot_client.report import stage_text, write_report
    from robot_client.runner import TrialSpec, open_policy, run_sim_trial
    from uwm_robot.episode import is_episode_dir, read_meta, task_progress

    settings = _policy_settings(args)
    if (args.robot or settings.robot) == "franka":
        return _run_franka(args, settings)
    conditions = _conditions(args.condition, args.task)
    out = Path(args.out) if args.out else Path(settings.out_root) / "eval" / f"{args.task}-{time.strftime('%Y%m%d-%H%M%S')}"
    estop = EStop()
    stopped = False
    with open_policy(settings, args.server, args.token_file, args.checkpoint) as (policy, metadata), \
            KeyListener({"e": lambda: estop.trip("operator key 'e'")}):
        for condition in conditions:
            done = 0
            for i in range(args.trials):
                trial_dir = out / args.task / condition / f"trial_{i:03d}"
                if is_episode_dir(trial_dir):
                    if read_meta(trial_dir).get("status") == "finished":
                        done += 1
                        continue
                    aside = trial_dir.with_name(f"{trial_dir.name}.incomplete-{time.strftime('%Y%m%d-%H%M%S')}")
                    trial_dir.rename(aside)
                    print(f"[eval] kept unfinished {trial_dir.name} as {aside.name}; running it again", flush=True)
                spec = TrialSpec(args.task, condition, args.seed + i, trial_dir, args.max_steps,
                             args.operator, args.raw_frames)
                r = run_sim_trial(spec, policy, metadata, settings, estop, realtime=args.realtime)
                done += 1
                stages = stage_text(*task_progress(read_meta(trial_dir))) if is_episode_dir(trial_dir) else "–"
                print(f"[eval] {args.task} {condition} trial {i} seed={spec.seed}: success={r.success} ({r.reason}, "
                      f"{r.steps} steps; stages {stages})", flush=True)
                if r.reason in ("estop", "interrupted"):
                    stopped = True
                    break
            if stopped:
                break
    html, md = write_report(out)
    print(f"[eval] report: {html} and {md}" + ("  (stopped early: re-run the same command to resume)" if stopped else ""))
    return 0


def cmd_bench_loop(args: argparse.Namespace) -> int:
    """Realtime sim + a CPU policy server: idle time waiting for inference and loop jitter."""
    from robot_client.runner import TrialSpec, open_policy, run_sim_trial

    settings = load_settings(args.config)
    steps = int(args.seconds * settings.control.control_hz)
    with open_policy(settings, args.server, args.token_file, args.checkpoint) as (policy, metadata):
        spec = TrialSpec(args.task, "ID", args.seed, Path(args.out), steps)
        r = run_sim_trial(spec, policy, metadata, settings, EStop(), realtime=True)
    s = r.stats
    print(f"bench-loop: {s['steps']} ticks at {settings.control.control_hz:g} Hz (realtime sim, 3 cameras "
          f"{metadata['image_shape'][0]}x{metadata['image_shape'][1]}, CPU server, recording on)")
    print(f"  idle waiting for inference: {s['idle_s']:.3f} s   overruns: {s['overruns']}")
    print(f"  loop period p50 {s['period_ms_p50']:.2f} ms, jitter p50 {s['period_jitter_ms_p50']:.2f} ms, "
          f"p99 {s['period_jitter_ms_p99']:.2f} ms")
    print(f"  inference (request -> chunk) p50 {s['inference_ms_p50']:.0f} ms, p95 {s['inference_ms_p95']:.0f} ms; "
          f"chunks {s['chunks']}, stale actions dropped {s['dropped_actions']}")
    return 0


def _run_franka(args, settings) -> int:
    """Trials on the real arm; the operator ends each with s (success) / f (failure) / d (discard)."""
    from robot_client.backends.polymetis import import_polymetis
    from robot_client.keys import KeyListener
    from robot_client.runner import OperatorLabel, TrialSpec, open_policy, run_franka_trial

    if getattr(args, "takeover", None) == "expert":
        raise SystemExit("--takeover expert plans from the simulator's state: use it with --robot sim; "
                         "on the real arm take over with keyboard or spacemouse")
    import_polymetis()  # fail early, with its install message, before a server is started
    condition = "ID" if args.condition.lower() == "id" else args.condition.upper()
    out_root = Path(args.out) if getattr(args, "out", None) else Path(settings.out_root) / args.task / time.strftime("%Y%m%d-%H%M%S")
    estop = EStop()
    takeover = _takeover(getattr(args, "takeover", None), hand_back=getattr(args, "takeover_hand_back", False))
    with open_policy(settings, args.server, args.token_file, args.checkpoint) as (policy, metadata):
        for i in range(getattr(args, "trials", 1)):
            label = OperatorLabel()
            keys = {**(takeover.key_handlers() if takeover else {}), **label.handlers(),
                    "e": lambda: estop.trip("operator key 'e'")}
            print(f"[robot_client] trial {i}: s = success, f = failure, d = discard, e = E-STOP", flush=True)
            with KeyListener(keys):
                spec = TrialSpec(args.task, condition, args.seed + i, out_root / f"trial_{i:03d}", args.max_steps,
                             args.operator, args.raw_frames)
                r = run_franka_trial(spec, policy, metadata, settings, estop, label, takeover=takeover)
            print(f"[robot_client] trial {i}: {r.reason} label={label.label}", flush=True)
            if r.reason in ("estop", "interrupted"):
                break
    return 0


def cmd_teleop(args: argparse.Namespace) -> int:
    """Record demos: the device drives the arm through the policy's action path; keys label each one."""
    from tqdm import tqdm

    from robot_client.keys import KeyListener
    from robot_client.safety import SafetyMonitor
    from robot_client.teleop import OperatorEvents, collect_robot_demos, collect_sim_demos, make_device

    settings = load_settings(args.config)
    on_franka = (args.robot or settings.robot) == "franka"
    if on_franka and args.device == "expert":
        raise ValueError("--device expert plans from the simulator's state; on the real arm use keyboard or spacemouse")
    if on_franka:
        from robot_client.backends.polymetis import import_polymetis

        import_polymetis()  # fail early, with its install message
    options = {"practice_miss_prob": args.practice_misses, "off_centre_prob": args.off_centre_approaches,
               "lid_slip_prob": args.lid_slips, "action_noise": args.action_noise}
    device = make_device(args.device, **{k: v for k, v in options.items() if v})
    out = Path(args.out) if args.out else Path("demos") / args.task / time.strftime("%Y%m%d-%H%M%S")
    cameras = tuple(args.cameras.split(",")) if args.cameras else None
    events, estop = OperatorEvents(), EStop()
    keys = {**events.handlers(), **device.key_handlers(), "e": lambda: estop.trip("operator key 'e'"),
            " ": lambda: estop.trip("operator key space")}
    if args.device != "expert":
        print("[teleop] Enter/y = save, n = discard, r = reset, q = quit, e/space = E-STOP", flush=True)
    bar = tqdm(total=args.episodes, desc=f"demos {args.task}", unit="demo")

    def progress(result, saved: int) -> None:
        bar.n = saved
        bar.set_postfix_str(f"last: {'saved' if result.saved else result.reason} ({result.steps} steps)")
        bar.refresh()

    common = dict(camera_shape=args.camera_shape, save_raw_frames=not args.no_raw_frames, operator=args.operator,
                  safety=SafetyMonitor(settings.safety), progress=progress, events=events, estop=estop)
    try:
        with KeyListener(keys):
            if on_franka:
                results = _teleop_franka(args.task, device, out, args.episodes, cameras, common)
            else:
                condition = "ID" if args.condition.lower() == "id" else args.condition.upper()
                results = collect_sim_demos(args.task, device, out, args.episodes, condition=condition, seed=args.seed,
                                            cameras=cameras, realtime=True if args.realtime else None, **common)
    finally:
        bar.close()
        device.close()
    saved = sum(r.saved for r in results)
    print(f"[teleop] {saved} demo(s) saved, {len(results) - saved} discarded -> {out}")
    return 0 if saved >= args.episodes else 1


def _teleop_franka(task: str, device, out: Path, episodes: int, cameras: tuple[str, ...] | None, common: dict) -> list:
    """Polymetis (configs/franka.yaml) + RealSense (configs/cameras.yaml), paced on the wall clock."""
    from robot_client.backends.polymetis import make_robot
    from robot_client.cameras.factory import load_camera_config, make_cameras, start_cameras, stop_cameras
    from robot_client.sim.clock import WallClock
    from robot_client.teleop import collect_robot_demos

    camera_config = load_camera_config()
    if cameras:
        missing = sorted(set(cameras) - set(camera_config["cameras"]))
        if missing:
            raise ValueError(f"--cameras {missing} are not in {camera_config.get('source', 'configs/cameras.yaml')} "
                             f"(it has {sorted(camera_config['cameras'])})")
        camera_config = {**camera_config, "cameras": {k: camera_config["cameras"][k] for k in cameras}}
    robot, gripper = make_robot("franka")
    streams = make_cameras("realsense", camera_config)
    start_cameras(streams)
    try:
        return collect_robot_demos(task, device, out, episodes, robot, gripper, streams, WallClock(),
                                   calibration=camera_config, **common)
    finally:
        stop_cameras(streams)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="robot_client", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the policy on the robot (default: the MuJoCo sim)")
    _common_policy_args(run)
    run.add_argument("--trials", type=int, default=1)
    run.add_argument("--out", default=None, help="episode root (default: rollouts/<task>/<time>/)")
    run.add_argument("--live", action="store_true", help="stream cameras, state and actions to a Rerun viewer")
    run.add_argument("--live-save", default=None, help="also write the live stream to this .rrd file")
    run.add_argument("--takeover", choices=["keyboard", "spacemouse", "expert"], default=None,
                     help="let an operator take the arm with this device (t toggles; steps tagged 'intervention'); "
                          "expert (sim): the scripted expert takes it by itself when the policy goes off course "
                          "and finishes the trial, or the stage with --takeover-hand-back (DAgger data)")
    run.add_argument("--takeover-stall-s", type=float, default=15.0,
                     help="expert takeover: also take the arm when a task stage makes no progress for this long")
    run.add_argument("--takeover-hand-back", action="store_true",
                     help="expert takeover: give the arm back to the policy once the stage it took over for is "
                          "reached (the policy then drives, and gets labels for, the later stages too)")
    run.add_argument("--takeover-stall-only", action="store_true",
                     help="expert takeover: only on a stall, not when the task calls the policy off course (the "
                          "policy commits to its own approach; labels come from where it got stuck)")
    run.add_argument("--takeover-off-course", default=None, metavar="TEXT",
                     help="expert takeover: only the off-course calls whose reason contains TEXT (e.g. 'lid fell "
                          "shut'): a round aimed at one kind of mistake")
    run.add_argument("--takeover-lead-until", default=None, metavar="STAGE",
                     help="expert takeover: the expert drives each trial until this stage of the task's success "
                          "check is reached (e.g. 'cup in the pot'), untagged, then the policy: a round spent on "
                          "the later stages")
    run.set_defaults(func=cmd_run)

    ev = sub.add_parser("eval", help="ID/OOD evaluation: N trials per condition, resumable, then a report")
    _common_policy_args(ev)
    ev.add_argument("--trials", type=int, default=20)
    ev.add_argument("--out", default=None, help="eval directory (default: rollouts/eval/<task>-<time>/)")
    ev.set_defaults(func=cmd_eval)

    bl = sub.add_parser("bench-loop", help="realtime sim + CPU server: idle time and loop jitter")
    _common_policy_args(bl)
    bl.add_argument("--seconds", type=float, default=20.0)
    bl.add_argument("--out", default="runs/bench_loop")
    bl.set_defaults(func=cmd_bench_loop)

    tp = sub.add_parser("teleop", help="record demos by teleoperation (expert | keyboard | spacemouse)")
    tp.add_argument("--task", default="rice_cooker")
    tp.add_argument("--device", choices=["expert", "keyboard", "spacemouse"], default="keyboard")
    tp.add_argument("--episodes", type=int, default=10, help="demos to save")
    tp.add_argument("--out", default=None, help="demo root (default: demos/<task>/<time>/)")
    tp.add_argument("--robot", choices=["sim", "franka"], default=None,
                    help="franka: Polymetis (configs/franka.yaml) + RealSense (configs/cameras.yaml), DROID reset before each demo")
    tp.add_argument("--condition", default="ID", help="sim only")
    tp.add_argument("--seed", type=int, default=0, help="sim: first episode's seed (attempt i uses seed + i)")
    tp.add_argument("--camera-shape", type=parse_size, default=(128, 128),
                    help="HxW of the recorded frames (the sim renders at it; real cameras are resized to it)")
    tp.add_argument("--cameras", default=None, help="comma list of cameras to record (default: all three)")
    tp.add_argument("--realtime", action="store_true", help="expert: pace on the wall clock (people always do)")
    tp.add_argument("--no-raw-frames", action="store_true", help="keep only the H.264 videos (lossy)")
    tp.add_argument("--operator", default="")
    tp.add_argument("--practice-misses", type=float, default=0.0, metavar="P",
                    help="--device expert: fraction of demos whose first grasp is aimed off on purpose, then "
                         "re-tried (recovery data; rice_cooker)")
    tp.add_argument("--off-centre-approaches", type=float, default=0.0, metavar="P",
                    help="--device expert: fraction of demos whose hand arrives 1.5-4 cm off centre above the "
                         "cup and steers back onto it on the way down (correction data; rice_cooker)")
    tp.add_argument("--lid-slips", type=float, default=0.0, metavar="P",
                    help="--device expert: fraction of demos whose lid's bar slips out of the fingers mid-pull; "
                         "the lid falls shut and the expert reopens it (recovery data; rice_cooker)")
    tp.add_argument("--action-noise", type=float, default=0.0, metavar="SIGMA",
                    help="--device expert: now and then push the arm off course by SIGMA (fraction of full scale) "
                         "for 2 ticks, while the demo records the expert's own corrective action (DART-style)")
    tp.add_argument("--config", default=str(DEFAULT_PATH))
    tp.set_defaults(func=cmd_teleop)

    report_register(sub)
    compare_register(sub)
    boundary_register(sub)
    add_sim_subparser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, ValueError, RuntimeError, ImportError) as e:
        print(f"robot_client: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
