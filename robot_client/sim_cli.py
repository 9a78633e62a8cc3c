"""`robot_client sim ...`: bench (lockstep speed with cameras), contact-sheet (PNG per task), expert-eval."""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np


def parse_size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be HxW like 128x128, got {text!r}") from None
    return height, width


def bench(task: str, sizes, seconds: float, depth: bool) -> list[dict]:
    """Lockstep: physics + 3 camera reads per 15 Hz tick while the arm streams targets. Returns x real time."""
    from robot_client.sim.env import SimEnv

    results = []
    for height, width in sizes:
        with SimEnv(task, seed=0, camera_width=width, camera_height=height, depth=depth) as env:
            env.read_cameras()  # GL context creation is a one-off cost; keep it out of the timing
            expert = env.task.expert(env)
            dt = 1.0 / env.task.control_hz
            ticks = int(round(seconds / dt))
            t_sim0, t_wall0 = env.clock.now(), time.perf_counter()
            render_s = 0.0
            for i in range(ticks):
                expert.step() if not expert.finished else None
                t_render = time.perf_counter()
                env.read_cameras()
                render_s += time.perf_counter() - t_render
                env.clock.sleep_until(t_sim0 + (i + 1) * dt)
            wall = time.perf_counter() - t_wall0
            sim = env.clock.now() - t_sim0
        results.append(dict(size=f"{height}x{width}", sim_s=sim, wall_s=wall, x_realtime=sim / wall,
                            render_ms_per_tick=1000 * render_s / ticks))
    return results


def contact_sheet(task: str, out: Path, size: tuple[int, int], seed: int = 0, settle_s: float = 0.0) -> Path:
    """One row per condition (ID + OOD), one column per camera, labelled."""
    import cv2
    import imageio.v3 as iio

    from robot_client.sim.env import SimEnv
    from robot_client.tasks import load_task

    rows = []
    for name in load_task(task).config.conditions:
        with SimEnv(task, condition=name, seed=seed, camera_width=size[1], camera_height=size[0], depth=False) as env:
            env.clock.sleep(settle_s or 0.4)  # L2 flashes over time: show it mid-run
            frames = env.read_cameras()
        tiles = []
        for cam, frame in frames.items():
            tile = frame.color.copy()
            cv2.putText(tile, f"{name} {cam.replace('_image', '').replace('_left', '')}", (4, 14),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
            tiles.append(tile)
        rows.append(np.concatenate(tiles, axis=1))
    sheet = np.concatenate(rows, axis=0)
    out.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(out, sheet)
    return out


def expert_eval(task: str, seeds, condition: str) -> list[bool]:
    from robot_client.sim.env import SimEnv

    outcomes = []
    for seed in seeds:
        with SimEnv(task, condition=condition, seed=seed, camera_names=()) as env:
            result = env.task.expert(env).run()
        outcomes.append(result.success)
        print(f"{task} {condition} seed {seed}: {'success' if result.success else 'FAIL'} "
              f"({result.duration_s:.1f} s sim)", flush=True)
    return outcomes


def _run(args) -> int:
    from robot_client.tasks import TASK_NAMES

    if args.sim_command == "bench":
        for row in bench(args.task, args.sizes, args.seconds, not args.no_depth):
            print(f"{row['size']}: 3 cameras{'' if args.no_depth else ' RGB+depth'}, lockstep {row['x_realtime']:.1f}x "
                  f"real time ({row['sim_s']:.1f} s sim in {row['wall_s']:.1f} s wall; "
                  f"render {row['render_ms_per_tick']:.1f} ms/tick)")
        return 0
    if args.sim_command == "contact-sheet":
        for task in args.tasks or TASK_NAMES:
            path = contact_sheet(task, Path(args.out_dir) / f"sim_contact_sheet_{task}.png", args.size)
            print(f"wrote {path}")
        return 0
    if args.sim_command == "expert-eval":
        total_ok = True
        for task in args.tasks or TASK_NAMES:
            outcomes = expert_eval(task, range(args.seed0, args.seed0 + args.seeds), args.condition)
            rate = float(np.mean(outcomes))
            total_ok &= rate >= 0.95
            print(f"{task} {args.condition}: {sum(outcomes)}/{len(outcomes)} = {100 * rate:.0f}% success")
        return 0 if total_ok else 1
    raise ValueError(f"unknown sim command {args.sim_command!r}")


def add_sim_subparser(subparsers) -> argparse.ArgumentParser:
    """Register `sim bench`, `sim contact-sheet` and `sim expert-eval` on an argparse subparsers object."""
    sim = subparsers.add_parser("sim", help="MuJoCo stand-in for the Franka + RealSense cameras")
    sim_sub = sim.add_subparsers(dest="sim_command", required=True)
    b = sim_sub.add_parser("bench", help="lockstep speed (x real time) with 3 cameras")
    b.add_argument("--task", default="rice_cooker")
    b.add_argument("--sizes", type=parse_size, nargs="+", default=[(128, 128), (180, 320)], help="HxW ...")
    b.add_argument("--seconds", type=float, default=10.0, help="sim seconds per size")
    b.add_argument("--no-depth", action="store_true")
    c = sim_sub.add_parser("contact-sheet", help="PNG of every camera under every condition, per task")
    c.add_argument("--tasks", nargs="*")
    c.add_argument("--out-dir", default="docs")
    c.add_argument("--size", type=parse_size, default=(180, 320), help="HxW per tile")
    e = sim_sub.add_parser("expert-eval", help="scripted-expert success rate over seeds (lockstep)")
    e.add_argument("--tasks", nargs="*")
    e.add_argument("--seeds", type=int, default=20)
    e.add_argument("--seed0", type=int, default=0)
    e.add_argument("--condition", default="ID")
    sim.set_defaults(func=_run)
    return sim


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="robot_client")
    add_sim_subparser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["sim", *(argv if argv is not None else sys.argv[1:])])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
