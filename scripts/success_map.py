"""Where on the table rice_cooker trials succeed: outcome against the objects' start positions.

Reads each finished trial's meta.json (`initial_state` cup and cooker xy, `task_progress`), prints
success and the furthest stage per quartile of the cup-to-cooker distance, and draws a top-down map
(each trial's cup where it started, coloured by the furthest stage) beside success against that
distance.

    python scripts/success_map.py --out runs/success_map.png runs/eval_a1823_s0 runs/eval_a1823_s10 ...
"""
from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from robot_client.report import wilson_interval  # noqa: E402
from uwm_robot.episode import list_episodes, read_meta  # noqa: E402

COLOURS = ["tab:grey", "tab:orange", "tab:blue", "tab:green"]  # furthest stage: none, 1, 2, all


def read_trials(roots: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(cup xy (n, 2), cooker xy (n, 2), stages reached (n,), stage names) of every finished trial."""
    cups, cookers, reached, names = [], [], [], None
    for root in roots:
        for episode in list_episodes(root):
            meta = read_meta(episode)
            progress, start = meta.get("task_progress"), meta.get("initial_state") or {}
            if meta.get("status") != "finished" or not progress or "cup_xy" not in start:
                continue
            names = names or list(progress["stages"])
            cups.append(start["cup_xy"])
            cookers.append(start["cooker_xy"])
            reached.append(len(progress["reached"]))
    if not cups:
        raise SystemExit(f"no finished rice_cooker trial with task progress under {roots}")
    return np.array(cups, float), np.array(cookers, float), np.array(reached), names


def quantile_bins(x: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(edges (n + 1,), bin of each value (len(x),)): n bins of equal count, each closed on the left,
    the last also on the right."""
    edges = np.quantile(x, np.linspace(0, 1, n + 1))
    return edges, np.clip(np.searchsorted(edges, x, side="right") - 1, 0, n - 1)


def quartile_table(distance: np.ndarray, reached: np.ndarray, names: list[str]) -> list[str]:
    """One line per quartile of the cup-to-cooker distance: trials reaching each stage."""
    edges, bins = quantile_bins(distance, 4)
    lines = []
    for b in range(4):
        inside = bins == b
        counts = ", ".join(f"{name} {int((reached[inside] > s).sum())}" for s, name in enumerate(names))
        lines.append(f"cup-cooker {edges[b] * 100:.1f}-{edges[b + 1] * 100:.1f} cm: {int(inside.sum())} trials, {counts}")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dirs", nargs="+", help="eval output directories (searched for meta.json)")
    p.add_argument("--out", required=True, help="PNG to write")
    args = p.parse_args()
    cups, cookers, reached, names = read_trials(args.dirs)
    distance = np.linalg.norm(cups - cookers, axis=1)
    success = reached == len(names)
    print(f"{len(cups)} trials, {int(success.sum())} successes")
    print("\n".join(quartile_table(distance, reached, names)))

    fig, (top, rate) = plt.subplots(1, 2, figsize=(11, 4.8), gridspec_kw={"width_ratios": [1.2, 1]})
    labels = ["no stage", *names]
    for s, colour in enumerate(COLOURS[:len(names) + 1]):
        pick = reached == s
        top.scatter(cups[pick, 1], cups[pick, 0], s=22, c=colour, label=f"cup: {labels[s]} ({int(pick.sum())})")
    top.set(xlabel="cup start y (m, robot base)", ylabel="cup start x (m)", aspect="equal",
            title="Where the cup started, by the furthest stage reached")
    top.invert_xaxis()  # as seen from behind the robot: +y to the left
    top.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    _, bins = quantile_bins(distance, 5)
    centres = np.array([distance[bins == b].mean() for b in range(5)]) * 100
    hits = [(int(success[bins == b].sum()), int((bins == b).sum())) for b in range(5)]
    rates = np.array([k / n for k, n in hits])
    lo, hi = np.array([wilson_interval(k, n) for k, n in hits]).T
    rate.errorbar(centres, rates, yerr=[rates - lo, hi - rates], marker="o", capsize=3)
    rate.set(xlabel="cup-to-cooker distance (cm)", ylabel="success rate", ylim=(0, 1),
             title=f"Success by distance\n(quintiles of {len(cups)} trials, Wilson 95% intervals)")
    rate.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)


if __name__ == "__main__":
    main()
