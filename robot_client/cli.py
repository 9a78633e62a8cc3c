"""`robot_client`: run policies on the arm (or the sim), evaluate, report, and the sim tools."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from robot_client.safety import EStop
from robot_client.settings import DEFAULT_PATH, load_settings
from robot_client.sim_cli import add_sim_subparser


def _common_policy_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", default="rice_cooker", help="task name (configs/tasks/<task>.yaml)")
    p.add_argument("--robot", choices=["sim", "franka"], default=None, help="default from configs/robot_client.yaml (sim)")
    p.add_argument("--server", default=None, help="policy server address tcp://HOST:PORT; default: start one on loopback")
    p.add_argument("--token-file", default=None, help="file holding the server's shared token")
    p.add_argument("--checkpoint", default=None, help="checkpoint for the loopback server (default from config)")
    p.add_argument("--condition", default="ID", help="ID or an OOD condition: L1 L2 B1 B2 C1 C2")
    p.add_argument("--seed", type=int, default=0, help="first trial's seed (trial i uses seed + i)")
    p.add_argument("--max-steps", type=int, default=None, help="stop a trial after this many control steps")
    p.add_argument("--realtime", action="store_true", help="sim: keep sim time = wall time (default: lockstep)")
    p.add_argument("--config", default=str(DEFAULT_PATH), help="robot_client settings YAML")
    p.add_argument("--operator", default="", help="who ran the trials (stored with each episode)")


def cmd_run(args: argparse.Namespace) -> int:
    from robot_client.keys import KeyListener
    from robot_client.runner import TrialSpec, open_policy, run_sim_trial

    settings = load_settings(args.config)
    robot = args.robot or settings.robot
    if robot == "franka":
        print("robot_client run --robot franka: the Franka path needs Polymetis and RealSense; see docs/hardware.md",
              file=sys.stderr)
        return _run_franka(args, settings)
    condition = args.condition.upper() if args.condition.lower() != "id" else "ID"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_root = Path(args.out) if args.out else Path(settings.out_root) / args.task / stamp
    estop = EStop()
    results = []
    with open_policy(settings, args.server, args.token_file, args.checkpoint) as (policy, metadata), \
            KeyListener({"e": lambda: estop.trip("operator key 'e'"), " ": lambda: estop.trip("operator key space")}):
        for i in range(args.trials):
            spec = TrialSpec(args.task, condition, args.seed + i, out_root / f"trial_{i:03d}", args.max_steps, args.operator)
            result = run_sim_trial(spec, policy, metadata, settings, estop, realtime=args.realtime)
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


def _run_franka(args, settings) -> int:
    try:
        from robot_client.backends.polymetis import make_robot  # noqa: F401
    except ImportError as e:
        print(f"robot_client: {e}", file=sys.stderr)
        return 2
    print("robot_client: the Franka runner is not wired yet; use --robot sim", file=sys.stderr)
    return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="robot_client", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the policy on the robot (default: the MuJoCo sim)")
    _common_policy_args(run)
    run.add_argument("--trials", type=int, default=1)
    run.add_argument("--out", default=None, help="episode root (default: rollouts/<task>/<time>/)")
    run.set_defaults(func=cmd_run)

    add_sim_subparser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"robot_client: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
