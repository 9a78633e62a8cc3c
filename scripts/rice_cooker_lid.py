"""What the lid did in rice_cooker sim trials, from each episode's object_state.npz (docs/results.md, run 18).

Per set of episodes: trials whose lid was opened (past 1.2 rad, the check's "lid opened"), those
whose lid then fell shut again (below 0.3 rad) before the cup was in the pot, and where the lid
came to rest after the first pull (its angle 2 s after it first passed 1.2 rad).

    python scripts/rice_cooker_lid.py runs/eval_r18_s0 runs/eval_r18_s10
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from robot_client.sim.object_log import OBJECT_STATE_FILE, load_object_state
from robot_client.tasks.rice_cooker import CAVITY_CENTRE, CAVITY_HALF, OPEN_ANGLE, STAYS_OPEN_ANGLE

SHUT_ANGLE = 0.3  # rad: fallen shut (gravity takes a lid down from about 1.3 rad)


def lid_story(episode: Path) -> dict:
    meta = json.loads((episode / "meta.json").read_text())
    objects = load_object_state(episode)
    lid, cup = objects["lid_hinge"], objects["cup"]
    cooker = np.array([*meta["initial_state"]["cooker_xy"], 0.0])
    cup_in = np.all(np.abs(cup - cooker - np.array(CAVITY_CENTRE)) <= np.array(CAVITY_HALF), axis=1)
    opened = np.flatnonzero(lid > OPEN_ANGLE)
    story = {"success": bool((meta.get("outcome") or {}).get("success")), "opened": len(opened) > 0,
             "fell_shut": False, "rest_angle": None}
    if len(opened):
        first = opened[0]
        story["rest_angle"] = float(lid[min(first + int(2 * meta["fps"]), len(lid) - 1)])
        cup_first_in = np.flatnonzero(cup_in)
        until = cup_first_in[cup_first_in > first][0] if np.any(cup_first_in > first) else len(lid)
        story["fell_shut"] = bool(np.any(lid[first:until] < SHUT_ANGLE))
    return story


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+", help="eval output folders (searched for episodes)")
    args = parser.parse_args()
    for root in args.roots:
        stories = [lid_story(p.parent) for p in sorted(Path(root).rglob(OBJECT_STATE_FILE))]
        if not stories:
            print(f"{root}: no episodes with {OBJECT_STATE_FILE}")
            continue
        opened = [s for s in stories if s["opened"]]
        rest = np.array([s["rest_angle"] for s in opened])
        line = (f"{root}: {len(stories)} trials, {sum(s['success'] for s in stories)} succeeded; lid opened in "
                f"{len(opened)}, fell shut again before the cup was in {sum(s['fell_shut'] for s in opened)}")
        if len(rest):
            line += (f"; rest angle after the first pull: median {np.median(rest):.2f} rad "
                     f"(min {rest.min():.2f}, {np.sum(rest < STAYS_OPEN_ANGLE)} below {STAYS_OPEN_ANGLE})")
        print(line)


if __name__ == "__main__":
    main()
