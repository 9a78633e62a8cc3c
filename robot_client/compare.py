"""Paired comparison of two evaluations run on the same seeds (an A/B test of two policies or settings).

    robot_client compare runs/eval_new_s0 runs/eval_new_s10 --against runs/eval_old_s0 runs/eval_old_s10

Trials are paired by (task, condition, seed); only finished trials with a success label on both sides
count. Per task and condition, and over all pairs, it prints both success counts, the discordant pairs
(seeds only one side solved) and the exact McNemar p-value: the two-sided binomial test of those
discordant pairs against 1/2. With the same seeds, the scene is the same on both sides, so the
discordant pairs carry all of the evidence; two unpaired rates of 50 trials each would need a far
larger difference to mean anything. Stage counts (the sim's `task_progress`) show where the two differ.
"""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from scipy.stats import binomtest

from uwm_robot.episode import list_episodes, read_meta, task_progress

Key = tuple[str, str, int]  # task, condition, seed


@dataclass
class Outcome:
    success: bool
    stages: tuple[str, ...]  # stages reached, in task order (empty without task progress)
    path: Path


def read_outcomes(roots: list[str | Path]) -> dict[Key, Outcome]:
    """Every finished, labelled rollout under roots by (task, condition, seed). A seed found twice is an
    error: which of the two to pair would be a guess."""
    found: dict[Key, Outcome] = {}
    for root in roots:
        for episode in list_episodes(root):
            meta = read_meta(episode)
            success = (meta.get("outcome") or {}).get("success")
            if meta.get("kind", "rollout") != "rollout" or meta.get("status") != "finished" or success is None:
                continue
            if meta.get("seed") is None:
                raise ValueError(f"{episode}: trial has no seed; a paired comparison needs seeded trials")
            key = (meta.get("task") or "unknown", meta.get("condition") or "ID", int(meta["seed"]))
            if key in found:
                raise ValueError(f"task {key[0]} condition {key[1]} seed {key[2]} was evaluated twice on one side: "
                                 f"{found[key].path} and {episode}; pass each trial once")
            found[key] = Outcome(bool(success), task_progress(meta)[1], Path(episode))
    return found


@dataclass
class PairedRow:
    label: str
    pairs: int = 0
    a: int = 0  # successes of side A
    b: int = 0
    only_a: int = 0  # seeds A solved and B did not
    only_b: int = 0
    stages_a: Counter = field(default_factory=Counter)  # trials that reached each stage
    stages_b: Counter = field(default_factory=Counter)
    stages_only_a: Counter = field(default_factory=Counter)  # seeds where only A reached the stage
    stages_only_b: Counter = field(default_factory=Counter)

    def add(self, a: Outcome, b: Outcome) -> None:
        self.pairs += 1
        self.a += a.success
        self.b += b.success
        self.only_a += a.success and not b.success
        self.only_b += b.success and not a.success
        self.stages_a.update(a.stages)
        self.stages_b.update(b.stages)
        self.stages_only_a.update(set(a.stages) - set(b.stages))
        self.stages_only_b.update(set(b.stages) - set(a.stages))

    @property
    def p_value(self) -> float:
        """Exact McNemar: two-sided binomial test of the discordant pairs against 1/2 (1.0 when none)."""
        discordant = self.only_a + self.only_b
        return 1.0 if discordant == 0 else float(binomtest(self.only_a, discordant, 0.5).pvalue)


def paired_rows(a: dict[Key, Outcome], b: dict[Key, Outcome]) -> list[PairedRow]:
    """One row per (task, condition) with pairs, then an "all" row when there are several."""
    common = sorted(set(a) & set(b))
    if not common:
        raise ValueError(f"no (task, condition, seed) evaluated on both sides ({len(a)} trials against {len(b)}); "
                         "a paired comparison needs the same seeds")
    rows: dict[tuple[str, str], PairedRow] = {}
    total = PairedRow("all")
    for key in common:
        rows.setdefault(key[:2], PairedRow(f"{key[0]} {key[1]}")).add(a[key], b[key])
        total.add(a[key], b[key])
    return list(rows.values()) + ([total] if len(rows) > 1 else [])


def markdown(rows: list[PairedRow], name_a: str, name_b: str, unpaired: tuple[int, int]) -> str:
    """The comparison as a Markdown table, with stage counts under it."""
    lines = [f"| trials | pairs | {name_a} | {name_b} | only {name_a} | only {name_b} | exact McNemar p |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.label} | {r.pairs} | {r.a} ({r.a / r.pairs:.0%}) | {r.b} ({r.b / r.pairs:.0%}) | "
                     f"{r.only_a} | {r.only_b} | {r.p_value:.2g} |")
    for r in rows:
        stages = list(dict.fromkeys([*r.stages_a, *r.stages_b]))
        if stages:
            counts = "; ".join(f"{s} {r.stages_a[s]} against {r.stages_b[s]} (only {name_a} {r.stages_only_a[s]}, "
                               f"only {name_b} {r.stages_only_b[s]})" for s in stages)
            lines.append(f"\n{r.label}, stages reached ({name_a} against {name_b}): {counts}")
    if any(unpaired):
        lines.append(f"\nUnpaired, left out: {unpaired[0]} trials of {name_a}, {unpaired[1]} of {name_b}.")
    return "\n".join(lines) + "\n"


def _compare_cmd(args: argparse.Namespace) -> int:
    a, b = read_outcomes(args.eval_dirs), read_outcomes(args.against)
    rows = paired_rows(a, b)
    text = markdown(rows, args.names[0], args.names[1], (len(set(a) - set(b)), len(set(b) - set(a))))
    print(text, end="")
    if args.out:
        Path(args.out).write_text(text)
        print(f"[compare] written to {args.out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """`robot_client compare EVAL_DIR... --against EVAL_DIR... [--names A B] [--out FILE.md]`."""
    p = subparsers.add_parser("compare", help="paired A/B comparison of two evaluations on the same seeds")
    p.add_argument("eval_dirs", nargs="+", type=Path, help="side A: eval directories (their trials pooled)")
    p.add_argument("--against", nargs="+", type=Path, required=True, help="side B: eval directories")
    p.add_argument("--names", nargs=2, default=("A", "B"), metavar=("A", "B"), help="column names of the two sides")
    p.add_argument("--out", default=None, help="also write the Markdown table here")
    p.set_defaults(func=_compare_cmd)
