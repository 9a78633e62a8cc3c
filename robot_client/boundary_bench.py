"""`robot_client bench-boundary`: jerk at chunk boundaries, plain vs blended vs inpainted chunks.

The same seeds run in the lockstep sim (deterministic; a chunk arrives `sim.sim_latency_s` of sim
time after its request) once per variant: each `--blend` value (0 = plain receding horizon), then
inpainting (`control.inpaint`, no blend). Jerk is measured on what the loop commanded: the
DROID linear velocity after the safety clip, v_t = a_t[:3] * max_translation_per_step / dt (m/s),
whose second difference over dt^2 is the third difference of the commanded end-effector path:
jerk_t = |v_t - 2 v_{t-1} + v_{t-2}| / dt^2 (m/s^3). The same for the angular part (rad/s^3).
A window (t-2, t-1, t) is a *boundary* window when its actions come from more than one plan,
else *interior*; windows with a hold or no action are left out. A plan is a chunk, except that
an inpainted chunk's fixed rows (the old chunk's actions, executed as they were) are a plan of
their own: with inpainting the switch to new actions happens where the prefix ends, and that
window must count as a boundary too. A blended tick always makes its window a boundary one (the
blend's own ticks count against it). The loop is closed, so the variants' trajectories part after
the first boundary and their interior numbers differ too; the mean over all windows is the
overall figure.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from robot_client.control_loop import StepRecord


@dataclass(frozen=True)
class Variant:
    name: str
    blend_steps: int = 0
    inpaint: bool = False


class StepCollector:
    """Observer for `run_sim_trial`: the commanded (clipped) action, its plan and blend flag per tick."""

    def __init__(self) -> None:
        self.actions: list[np.ndarray | None] = []
        self.plans: list[tuple[int, bool]] = []  # (chunk id, from the inpainted prefix)
        self.blended: list[bool] = []
        self.prefix_rows: dict[int, int] = {}

    @property
    def chunks(self) -> int:
        return len(self.prefix_rows)

    def on_chunk(self, chunk) -> None:
        # The fixed rows are a head of the chunk (pending_prefix fixes rows 0..n-1).
        self.prefix_rows[chunk.request_id] = int(chunk.meta.get("inpainted_rows", 0))

    def on_step(self, rec: StepRecord, frames) -> None:
        cmd = rec.command
        self.actions.append(None if cmd.hold or cmd.clipped_action is None else np.asarray(cmd.clipped_action, float))
        self.plans.append((rec.chunk_id, 0 <= rec.action_index < self.prefix_rows.get(rec.chunk_id, 0)))
        self.blended.append(rec.blended)


def jerk_windows(actions: list[np.ndarray | None], plans: list, blended: list[bool], dt: float,
                 step_scale: np.ndarray) -> dict[str, dict[str, list[float]]]:
    """{"boundary"|"interior": {"linear": [...], "angular": [...]}} jerk per window (see module doc)."""
    out = {kind: {"linear": [], "angular": []} for kind in ("boundary", "interior")}
    for t in range(2, len(actions)):
        window = actions[t - 2 : t + 1]
        if any(a is None for a in window):
            continue
        v = np.stack([a[:6] for a in window]) * step_scale / dt  # (3, 6) velocities
        jerk = (v[2] - 2 * v[1] + v[0]) / dt**2
        kind = "boundary" if len(set(plans[t - 2 : t + 1])) > 1 or any(blended[t - 2 : t + 1]) else "interior"
        out[kind]["linear"].append(float(np.linalg.norm(jerk[:3])))
        out[kind]["angular"].append(float(np.linalg.norm(jerk[3:])))
    return out


def summarize(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=float)
    if a.size == 0:
        return {"n": 0, "mean": float("nan"), "p95": float("nan")}
    return {"n": int(a.size), "mean": float(a.mean()), "p95": float(np.percentile(a, 95))}


def variants(blends: list[int]) -> list[Variant]:
    out = [Variant("no blend" if b == 0 else f"blend {b}", blend_steps=b) for b in blends]
    return out + [Variant("inpaint", inpaint=True)]


def parse_blends(text: str) -> list[int]:
    try:
        blends = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--blend: expected comma-separated tick counts like 0,4, got {text!r}") from None
    if not blends or any(b < 0 for b in blends):
        raise ValueError(f"--blend: expected non-negative tick counts like 0,4, got {text!r}")
    return list(dict.fromkeys(blends))


def run_bench(args: argparse.Namespace) -> dict:
    from robot_client.runner import TrialSpec, open_policy, run_sim_trial
    from robot_client.safety import EStop
    from robot_client.settings import load_settings
    from robot_client.tasks import load_task

    settings = load_settings(args.config)
    settings = dataclasses.replace(settings, sim=dataclasses.replace(settings.sim, mode="lockstep"))
    safety = settings.safety
    step_scale = np.array([safety.max_translation_per_step] * 3 + [safety.max_rotation_per_step] * 3)
    seeds = [args.seed + i for i in range(args.seeds)]
    dt = 1.0 / load_task(args.task).control_hz  # the task sets the control rate
    results = []
    with open_policy(settings, args.server, args.token_file, args.checkpoint) as (policy, metadata):
        for variant in variants(parse_blends(args.blend)):
            # Every trial runs max_steps (no early stop on success), so the variants see the same ticks.
            control = dataclasses.replace(settings.control, blend_steps=variant.blend_steps, inpaint=variant.inpaint,
                                          stop_on_success=False)
            vset = dataclasses.replace(settings, control=control)
            pooled = {kind: {"linear": [], "angular": []} for kind in ("boundary", "interior")}
            chunks, prefix_rows, successes = 0, [], 0
            for seed in seeds:
                t0 = time.monotonic()
                collector = StepCollector()
                spec = TrialSpec(args.task, "ID", seed, Path("unused"), args.max_steps)
                r = run_sim_trial(spec, policy, metadata, vset, EStop(), record=False, live_view=collector)
                if r.stats["errors"]:
                    raise RuntimeError(f"{variant.name}, seed {seed}: {r.stats['errors'][0]}")
                w = jerk_windows(collector.actions, collector.plans, collector.blended, dt, step_scale)
                for kind in pooled:
                    for part in pooled[kind]:
                        pooled[kind][part] += w[kind][part]
                chunks += collector.chunks
                successes += bool(r.success)  # the task's check held at some tick (trials do not stop on it)
                prefix_rows += [n for n in collector.prefix_rows.values() if n]
                print(f"[bench-boundary] {variant.name:>9} seed {seed}: {r.steps} steps, {collector.chunks} chunks, success={r.success}, "
                      f"boundary lin jerk mean {summarize(w['boundary']['linear'])['mean']:.2f} m/s^3 "
                      f"({time.monotonic() - t0:.0f} s)", flush=True)
            results.append({
                "variant": variant.name, "blend_steps": variant.blend_steps, "inpaint": variant.inpaint, "chunks": chunks,
                "successes": successes, "trials": len(seeds),
                "prefix_rows": {"chunks": len(prefix_rows), "min": min(prefix_rows, default=0), "max": max(prefix_rows, default=0),
                                "mean": float(np.mean(prefix_rows)) if prefix_rows else 0.0},
                **{f"{kind}_{part}": summarize(pooled[kind][part]) for kind in pooled for part in pooled[kind]},
                # Over every window: a blend that only moves jerk off the boundary does not win here.
                "all_linear": summarize(pooled["boundary"]["linear"] + pooled["interior"]["linear"]),
                "all_angular": summarize(pooled["boundary"]["angular"] + pooled["interior"]["angular"]),
            })
    return {
        "checkpoint": metadata.get("checkpoint_id"), "checkpoint_hash": metadata.get("checkpoint_hash"),
        "task": args.task, "seeds": seeds, "max_steps": args.max_steps,
        "sim_latency_s": settings.sim.sim_latency_s, "execute_k": settings.control.execute_k,
        "results": results,
    }


def markdown_table(report: dict) -> str:
    lines = [
        "| variant | success | chunks | boundary lin jerk mean | p95 | interior lin jerk mean | p95 | boundary / interior | all windows lin mean | p95 | boundary ang jerk mean | interior ang jerk mean | all windows ang mean |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        bl, il, ba, ia = r["boundary_linear"], r["interior_linear"], r["boundary_angular"], r["interior_angular"]
        al, aa = r["all_linear"], r["all_angular"]
        ratio = bl["mean"] / il["mean"] if il["mean"] else float("nan")
        lines.append(f"| {r['variant']} | {r['successes']}/{r['trials']} | {r['chunks']} | {bl['mean']:.2f} | {bl['p95']:.2f} | {il['mean']:.2f} | "
                     f"{il['p95']:.2f} | {ratio:.2f} | {al['mean']:.2f} | {al['p95']:.2f} | {ba['mean']:.2f} | "
                     f"{ia['mean']:.2f} | {aa['mean']:.2f} |")
    return "\n".join(lines)


def cmd_bench_boundary(args: argparse.Namespace) -> int:
    report = run_bench(args)
    n_b = report["results"][0]["boundary_linear"]["n"]
    n_i = report["results"][0]["interior_linear"]["n"]
    print(f"\nbench-boundary: {report['task']}, checkpoint {report['checkpoint']}, seeds {report['seeds']}, "
          f"{report['max_steps']} steps, lockstep latency {report['sim_latency_s']} s, k = {report['execute_k']} "
          f"(no blend: {n_b} boundary / {n_i} interior windows)")
    print("jerk of the commanded velocity: linear m/s^3, angular rad/s^3\n")
    table = markdown_table(report)
    print(table)
    for r in report["results"]:
        pr = r["prefix_rows"]
        if pr["chunks"]:
            print(f"{r['variant']}: {pr['chunks']} of {r['chunks']} chunks inpainted, fixed rows per chunk "
                  f"min {pr['min']}, mean {pr['mean']:.1f}, max {pr['max']}")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix == ".json":
            out.write_text(json.dumps(report, indent=1) + "\n")
        else:
            out.write_text(table + "\n")
        print(f"\nwritten to {out}")
    return 0


def register(sub) -> None:
    from robot_client.settings import DEFAULT_PATH

    p = sub.add_parser("bench-boundary", help="lockstep sim: jerk at chunk boundaries, no blend vs blend vs inpainting")
    p.add_argument("--checkpoint", default=None, help="checkpoint for the loopback server (default from config)")
    p.add_argument("--server", default=None, help="policy server address tcp://HOST:PORT instead of a loopback one")
    p.add_argument("--token-file", default=None, help="file holding the server's shared token")
    p.add_argument("--task", default="rice_cooker")
    p.add_argument("--seeds", type=int, default=3, help="trials per variant (seeds seed .. seed + N - 1)")
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--max-steps", type=int, default=150, help="control steps per trial")
    p.add_argument("--blend", default="0,4", help="blend_steps values to compare (0 = no blend); inpainting is always added")
    p.add_argument("--config", default=str(DEFAULT_PATH), help="robot_client settings YAML")
    p.add_argument("--out", default=None, help="also write the table (.md) or the full report (.json) here")
    p.set_defaults(func=cmd_bench_boundary)
