"""Where the hand goes down for the cup in rice_cooker episodes (docs/results.md, run 8).

For each episode: the flange's xy at its lowest point within 8 cm (xy) of the cup and below 0.3 m,
minus the cup's start xy from meta.json. Prints the mean and rms offset per set and plots them.

    python scripts/plot_cup_aim.py --out docs/results_cup_aim.png \
        "demos=runs/demos/rc_a:40" "run 6=runs/eval_m7000_k8_id,runs/eval_m7000_k11_id"
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from uwm_robot.episode import load_episode  # noqa: E402

NEAR_XY, BELOW_Z, CUP_RADIUS = 0.08, 0.3, 0.025


def aim_offsets(roots: list[str], limit: int | None = None) -> np.ndarray:
    """(n, 2) hand-minus-cup xy offsets in metres, one per episode that went near the cup."""
    offsets = []
    for root in roots:
        for meta_path in sorted(Path(root).rglob("meta.json"))[:limit]:
            cup = np.asarray(json.loads(meta_path.read_text())["initial_state"]["cup_xy"])
            ee = np.asarray(load_episode(meta_path.parent, load_chunks=False).steps["ee_pos"])
            near = np.flatnonzero((np.linalg.norm(ee[:, :2] - cup, axis=1) < NEAR_XY) & (ee[:, 2] < BELOW_Z))
            if len(near):
                offsets.append(ee[near[np.argmin(ee[near, 2])], :2] - cup)
    return np.array(offsets).reshape(-1, 2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sets", nargs="+", help="LABEL=DIR[,DIR...][:MAX_EPISODES_PER_DIR]")
    p.add_argument("--out", required=True, help="PNG to write")
    args = p.parse_args()
    fig, ax = plt.subplots(figsize=(5.2, 5))
    ax.add_patch(plt.Circle((0, 0), CUP_RADIUS * 100, color="tab:cyan", alpha=0.35, label="cup (r = 2.5 cm)"))
    for spec in args.sets:
        label, _, dirs = spec.rpartition("=")  # labels may hold "=", paths do not
        dirs, _, limit = dirs.partition(":")
        cm = aim_offsets(dirs.split(","), int(limit) if limit else None) * 100
        if not len(cm):
            raise SystemExit(f"{label}: no episode went within {NEAR_XY * 100:.0f} cm of the cup")
        ax.scatter(cm[:, 0], cm[:, 1], s=24, label=f"{label} ({len(cm)})")
        mean, rms = np.round(cm.mean(0), 1) + 0.0, np.sqrt((cm ** 2).mean(0))  # + 0.0: no "-0.0"
        print(f"{label}: {len(cm)} episodes, mean offset x {mean[0]:+.1f} y {mean[1]:+.1f} cm, "
              f"rms x {rms[0]:.1f} y {rms[1]:.1f} cm")
    ax.axhline(0, lw=0.5, c="grey")
    ax.axvline(0, lw=0.5, c="grey")
    ax.set(xlim=(-8, 8), ylim=(-8, 8), aspect="equal", xlabel="hand x − cup x (cm)", ylabel="hand y − cup y (cm)",
           title="Where the hand goes down for the cup\n(lowest point within 8 cm of it)")
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)


if __name__ == "__main__":
    main()
