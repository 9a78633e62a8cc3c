"""Successful rice_cooker rollouts with their hover chunks left out, for self-imitation (run 51).

    python scripts/select_chunks.py OUT EVAL_DIR... [--seeds LO HI] [--keep-before-lift-s 6]

For each trial of the EVAL_DIRs (`robot_client eval`, sim) that succeeded without a return to the start
pose, OUT gets an episode that links to the trial's files and holds a filtered `chunks.jsonl`. Left out:
chunks asked while the hand was stalled (their `execute_k` is set: hotter samples, run longer), and the
cup stage's chunks (from the lid first past OPEN_ANGLE, the check's "lid opened", to the cup lifted) asked
more than KEEP seconds before the cup left the table: a hover over the cup, down and back up, is what a
successful trial's labels must not teach (session 50). Train with `uwm_robot finetune --chunk-data OUT --skip-unlabelled-windows`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from robot_client.sim.object_log import load_object_state  # noqa: E402
from robot_client.tasks.rice_cooker import OPEN_ANGLE  # noqa: E402
from uwm_robot.episode import CHUNKS_FILE, read_meta  # noqa: E402
from uwm_robot.training_data import find_episodes  # noqa: E402

LIFTED = 0.02  # m above where the cup started: in the hand


def cup_stage(lid: np.ndarray, cup: np.ndarray) -> tuple[int, int] | None:
    """(first tick the lid is open, first tick after it the cup is lifted), or None."""
    opened = np.flatnonzero(lid > OPEN_ANGLE)
    if not len(opened):
        return None
    lifted = np.flatnonzero(cup[:, 2] > cup[0, 2] + LIFTED)
    lifted = lifted[lifted > opened[0]]
    return (int(opened[0]), int(lifted[0])) if len(lifted) else None


def keep_chunk(chunk: dict, fps: float, stage: tuple[int, int], keep_ticks: int) -> bool:
    tick = int(round(chunk["t_obs"] * fps))
    return not chunk.get("execute_k") and not stage[0] <= tick < stage[1] - keep_ticks


def select(trial: Path, meta: dict, out: Path, keep_before_lift_s: float) -> tuple[int, int] | None:
    """Link `trial` (whose meta.json holds `meta`) into `out` with the kept chunks; (kept, dropped), or None if
    the trial is not used."""
    if not (meta.get("outcome") or {}).get("success") or meta.get("loop_stats", {}).get("returns_to_start"):
        return None
    objects = load_object_state(trial)
    stage = cup_stage(objects["lid_hinge"], objects["cup"])
    if stage is None:
        return None
    fps = float(meta["fps"])
    out.mkdir(parents=True)
    for f in trial.iterdir():
        if f.name != CHUNKS_FILE:
            os.symlink(f.resolve(), out / f.name)
    keep_ticks = round(keep_before_lift_s * fps)
    kept = dropped = 0
    with open(trial / CHUNKS_FILE) as src, open(out / CHUNKS_FILE, "w") as dst:
        for line in src:
            if keep_chunk(json.loads(line), fps, stage, keep_ticks):
                dst.write(line)
                kept += 1
            else:
                dropped += 1
    return kept, dropped


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("evals", nargs="+", type=Path)
    p.add_argument("--seeds", nargs=2, type=int, metavar=("LO", "HI"), help="only trials with LO <= seed < HI")
    p.add_argument("--keep-before-lift-s", type=float, default=6.0)
    args = p.parse_args(argv)
    trials = kept = dropped = 0
    for ev in args.evals:
        for trial in find_episodes([ev]):
            meta = read_meta(trial)
            seed = meta.get("seed")
            if args.seeds and not (seed is not None and args.seeds[0] <= seed < args.seeds[1]):
                continue
            got = select(trial, meta, args.out / f"{ev.name}_{trial.parent.name}_{trial.name}", args.keep_before_lift_s)
            if got:
                trials, kept, dropped = trials + 1, kept + got[0], dropped + got[1]
    if not trials:
        print(f"select_chunks: no successful trial without a return under {[str(e) for e in args.evals]}",
              file=sys.stderr)
        return 1
    print(f"select_chunks: {trials} trials -> {args.out}: {kept} chunks kept, {dropped} left out")
    return 0


if __name__ == "__main__":
    sys.exit(main())
