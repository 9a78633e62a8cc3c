"""What the lid did in rice_cooker sim trials, from each episode's object_state.npz and steps (docs/results.md,
run 18 and session 36).

Per set of episodes: trials whose lid was opened (past 1.2 rad, the check's "lid opened"), those whose lid
then fell shut again (below 0.3 rad) before the cup was in the pot, why it fell and how many of those
still succeeded, and where the lid came to rest after the first pull (its angle 2 s after it first passed
1.2 rad). Why a lid fell, from the first fall:
- "slipped": the bar left the fingers mid-pull (they closed on nothing while commanded shut); the hand's
  roll about the bar at 1.2 rad is given, the drift that precedes it (`bar_roll`);
- "let go short": the fingers opened on a lid that never came near the stop;
- "knocked": the lid reached the stop and was knocked off it later.
Of the lids that fell: how many were opened again (past 1.2 rad) and how long after the fall (median).

    python scripts/rice_cooker_lid.py runs/eval_r18_s0 runs/eval_r18_s10
"""
from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np

from robot_client.sim.object_log import OBJECT_STATE_FILE, load_object_state
from robot_client.tasks.rice_cooker import (CAVITY_CENTRE, CAVITY_HALF, EMPTY_WIDTH, FELL_SHUT_ANGLE, LID_STOP,
                                            OPEN_ANGLE, STAYS_OPEN_ANGLE, bar_roll)
from uwm_robot.episode import load_episode

NEAR_STOP = LID_STOP - 0.1  # a lid that got this far was pulled to the stop


def why_it_fell(episode: Path, lid: np.ndarray, opened: int, fell: int) -> tuple[str, float]:
    """("slipped" | "let go short" | "knocked", the hand's roll about the bar in degrees at `opened`)."""
    steps = load_episode(episode, load_chunks=False).steps
    roll = float(np.degrees(bar_roll(steps["ee_quat"][opened])))
    pull = slice(opened, fell)
    empty_while_closing = (steps["gripper_width"][pull] < EMPTY_WIDTH) & (steps["gripper_command"][pull] > 0.9)
    if lid[pull].max() < NEAR_STOP:
        return ("slipped" if empty_while_closing.any() else "let go short"), roll
    return "knocked", roll


def lid_story(episode: Path) -> dict:
    meta = json.loads((episode / "meta.json").read_text())
    objects = load_object_state(episode)
    lid, cup = objects["lid_hinge"], objects["cup"]
    cooker = np.array([*meta["initial_state"]["cooker_xy"], 0.0])
    cup_in = np.all(np.abs(cup - cooker - np.array(CAVITY_CENTRE)) <= np.array(CAVITY_HALF), axis=1)
    opened = np.flatnonzero(lid > OPEN_ANGLE)
    story = {"success": bool((meta.get("outcome") or {}).get("success")), "opened": len(opened) > 0,
             "fell_shut": False, "rest_angle": None, "why": None, "roll_deg": None, "reopened_after_s": None}
    if len(opened):
        first = opened[0]
        story["rest_angle"] = float(lid[min(first + int(2 * meta["fps"]), len(lid) - 1)])
        cup_first_in = np.flatnonzero(cup_in)
        until = cup_first_in[cup_first_in > first][0] if np.any(cup_first_in > first) else len(lid)
        shut = np.flatnonzero(lid[first:until] < FELL_SHUT_ANGLE)
        if len(shut):
            story["fell_shut"] = True
            fell = first + shut[0]
            story["why"], story["roll_deg"] = why_it_fell(episode, lid, first, fell)
            again = np.flatnonzero(lid[fell:] > OPEN_ANGLE)
            if len(again):
                story["reopened_after_s"] = float(again[0] / meta["fps"])
    return story


def summary(stories: list[dict]) -> str:
    opened = [s for s in stories if s["opened"]]
    fell = [s for s in opened if s["fell_shut"]]
    rest = np.array([s["rest_angle"] for s in opened])
    line = (f"{len(stories)} trials, {sum(s['success'] for s in stories)} succeeded; lid opened in "
            f"{len(opened)}, fell shut again before the cup was in {len(fell)}")
    if fell:
        why = Counter(s["why"] for s in fell)
        slipped = [abs(s["roll_deg"]) for s in fell if s["why"] == "slipped"]
        line += (f" ({', '.join(f'{k} {n}' for k, n in why.most_common())}; {sum(s['success'] for s in fell)} "
                 "of them still succeeded")
        line += f"; hand roll at 1.2 rad where it slipped: median {np.median(slipped):.1f} deg" if slipped else ""
        # A policy that reopens the lid too late (session 40: it hovers over the shut lid's bar) times out all the same.
        reopened = [s["reopened_after_s"] for s in fell if s["reopened_after_s"] is not None]
        line += (f"; reopened in {len(reopened)}, median {np.median(reopened):.0f} s after the fall)" if reopened
                 else "; none reopened)")
    if len(rest):
        line += (f"; rest angle after the first pull: median {np.median(rest):.2f} rad "
                 f"(min {rest.min():.2f}, {np.sum(rest < STAYS_OPEN_ANGLE)} below {STAYS_OPEN_ANGLE})")
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+", help="eval output folders (searched for episodes)")
    args = parser.parse_args()
    everything = []
    for root in args.roots:
        stories = [lid_story(p.parent) for p in sorted(Path(root).rglob(OBJECT_STATE_FILE))]
        everything += stories
        print(f"{root}: {summary(stories)}" if stories else f"{root}: no episodes with {OBJECT_STATE_FILE}")
    if len(args.roots) > 1 and everything:
        print(f"all: {summary(everything)}")


if __name__ == "__main__":
    main()
