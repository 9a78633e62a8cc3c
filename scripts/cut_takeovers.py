"""Copies of expert-takeover trials cut where the expert let go of the lid's bar at the stop (run 39).

    python scripts/cut_takeovers.py OUT ROUND... [--reason rolled] [--max-pull-ticks 60] [--after-release 5]
                                    [--unlabel-near-cup 0.15]

For each trial of the ROUND directories (`robot_client run --takeover expert`) that succeeded and whose
first takeover's reason contains REASON, OUT gets a copy holding only the steps up to AFTER_RELEASE ticks
after the expert opened the fingers with the lid past PULLED (1.6 rad). Finetuned with
`uwm_robot finetune --data OUT --skip-unlabelled-windows`, only the expert's turn back and pull label
actions; the policy's own steps before the takeover are left out. Takeovers whose pull took more than
MAX_PULL_TICKS to get past PULLED are left out too: their labels are mostly the expert fighting the lid.
With --unlabel-near-cup R, the takeover's first steps, until the hand is first more than R (m, across the
table) from the cup, label nothing either: a lid that fell while the hand was over the cup would otherwise
teach "leave the cup" in the view where every demo goes down to grasp it (session 45).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from robot_client.sim.object_log import OBJECT_STATE_FILE, load_object_state  # noqa: E402
from uwm_robot.episode import META_FILE, STEPS_FILE, is_episode_dir, load_episode, schema_dtype  # noqa: E402

PULLED = 1.6  # rad: past 1.55 the lid rests on its stop once let go
OPEN_FINGERS = 0.04  # m: wider than the bar (1.6 cm) by far: the expert has let go


def cut_at(episode, lid: np.ndarray, max_pull_ticks: int, after_release: int) -> int | None:
    """The step count to keep, or None (no takeover, or a pull too slow or never past PULLED)."""
    steps = episode.steps
    if not steps["intervention"].any():
        return None
    taken = int(np.argmax(steps["intervention"]))
    past = np.nonzero(lid[taken:] > PULLED)[0]
    if not len(past) or past[0] > max_pull_ticks:
        return None
    pulled = taken + int(past[0])
    opened = np.nonzero(steps["gripper_width"][pulled:] > OPEN_FINGERS)[0]
    if not len(opened):
        return None
    return min(episode.num_steps, pulled + int(opened[0]) + after_release)


def near_cup_steps(episode, cup: np.ndarray, radius: float) -> np.ndarray:
    """(N,) bool: the takeover's steps before the hand first gets more than `radius` (m, in x-y) from the cup."""
    steps = episode.steps
    taken = int(np.argmax(steps["intervention"]))
    far = np.linalg.norm(steps["ee_pos"][taken:, :2] - cup[taken:, :2], axis=1) > radius
    away = taken + (int(np.argmax(far)) if far.any() else len(far))
    out = np.zeros(episode.num_steps, dtype=bool)
    out[taken:away] = True
    return out


def copy_cut(episode, objects: dict[str, np.ndarray], dst: Path, n: int, intervention: np.ndarray) -> None:
    """The episode's first n steps as an episode of its own: steps (`intervention`, (n,) bool, saying which
    are the operator's), videos (read back up to num_steps), raw frames, its object state `objects`; the
    meta says where it was cut from."""
    src, meta = Path(episode.path), dict(episode.meta)
    dst.mkdir(parents=True)
    dtype = schema_dtype(meta["schema"])
    with open(src / STEPS_FILE, "rb") as f:
        records = np.frombuffer(f.read(n * dtype.itemsize), dtype=dtype).copy()
    records["intervention"] = intervention
    (dst / STEPS_FILE).write_bytes(records.tobytes())
    for folder in ("videos", "raw"):
        if (src / folder).is_dir():
            shutil.copytree(src / folder, dst / folder)
    if meta.get("save_raw_frames"):  # fixed-size records: cut them to n too
        for cam, c in meta["cameras"].items():
            raw = dst / "raw" / f"{cam}.rgb"
            with open(raw, "r+b") as f:
                f.truncate(n * int(c["height"]) * int(c["width"]) * 3)
    np.savez_compressed(dst / OBJECT_STATE_FILE, **{k: v[:n] for k, v in objects.items()})
    meta.update(num_steps=n, cut_from={"path": str(src), "num_steps": meta.get("num_steps")})
    (dst / META_FILE).write_text(json.dumps(meta, indent=1))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("rounds", type=Path, nargs="+")
    p.add_argument("--reason", default="rolled", help="a substring of the first takeover's reason")
    p.add_argument("--max-pull-ticks", type=int, default=60)
    p.add_argument("--after-release", type=int, default=5)
    p.add_argument("--unlabel-near-cup", type=float, default=None, metavar="R",
                   help="leave the takeover's steps unlabelled until the hand is more than R m (x-y) from the cup")
    args = p.parse_args(argv)
    kept = 0
    for trial in sorted(d for root in args.rounds for d in root.iterdir() if is_episode_dir(d)):
        meta = json.loads((trial / META_FILE).read_text())
        reason = (meta.get("expert_takeover") or {}).get("reason") or ""
        if args.reason not in reason or not (meta.get("outcome") or {}).get("success"):
            continue
        episode, objects = load_episode(trial, load_chunks=False), load_object_state(trial)
        n = cut_at(episode, objects["lid_hinge"], args.max_pull_ticks, args.after_release)
        if n is None:
            print(f"{trial}: left out (the pull did not pass {PULLED} rad within {args.max_pull_ticks} ticks)")
            continue
        dst = args.out / f"{trial.parent.name}_{trial.name}"
        expert = episode.steps["intervention"][:n].astype(bool)
        if args.unlabel_near_cup is not None:
            expert &= ~near_cup_steps(episode, objects["cup"], args.unlabel_near_cup)[:n]
        copy_cut(episode, objects, dst, n, expert)
        print(f"{trial}: {n} of {episode.num_steps} steps kept, {int(expert.sum())} of them the expert's -> {dst}")
        kept += 1
    print(f"{kept} episodes in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
