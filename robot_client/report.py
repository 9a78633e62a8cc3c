"""Evaluation report: success rates with Wilson intervals per task x ID/OOD condition (laid out like
UWM's Table IV), latency and loop-timing histograms, and a thumbnail + video link per trial.

    robot_client report <eval_dir>        -> <eval_dir>/report.html, <eval_dir>/report.md

Episodes are found recursively under eval_dir (the eval layout is
`<eval_dir>/<task>/<condition>/trial_XXX/`) and grouped by their meta.json task and condition.
A trial counts towards a rate when it finished and has a success label; crashed or unlabelled
episodes are listed and counted separately, never silently as failures.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import math
import os
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from uwm_robot.episode import (CATEGORY_ORDER, THUMBS_DIR, Episode, list_episodes, load_episode, ood_category,
                               task_progress)

Z95 = 1.959963984540054  # two-sided 95% normal quantile
CONDITION_ORDER = ("ID", "L1", "L2", "B1", "B2", "C1", "C2")
CATEGORY_LABEL = {"ID": "ID", "lighting": "Lighting", "background": "Background", "clutter": "Clutter"}
ASSETS_DIR = "report_assets"
PREFERRED_THUMB_CAMERAS = ("exterior_image_1_left", "exterior_image_2_left")


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95% by default). (0, 1) when trials == 0."""
    if trials < 0 or successes < 0 or successes > trials:
        raise ValueError(f"need 0 <= successes <= trials, got {successes}/{trials}")
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    z2 = z * z
    denom = 1.0 + z2 / trials
    center = (p + z2 / (2 * trials)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials))
    return max(0.0, center - half), min(1.0, center + half)


@dataclass
class Trial:
    path: Path
    task: str
    condition: str
    category: str
    success: bool | None
    finished: bool
    reason: str
    decided_by: str
    num_steps: int
    duration_s: float | None
    meta: dict
    stages: tuple[str, ...] = ()  # the task's stages in order (the sim's task_progress; empty without it)
    reached: tuple[str, ...] = ()  # the stages this trial reached
    latency_ms: np.ndarray = field(default_factory=lambda: np.zeros(0))
    period_ms: np.ndarray = field(default_factory=lambda: np.zeros(0))
    on_step_ms_p99: float | None = None

    @property
    def counted(self) -> bool:
        return self.finished and self.success is not None


def _trial(ep: Episode) -> Trial:
    m = ep.meta
    outcome = m.get("outcome") or {}
    cond = m.get("condition") or "ID"
    wall = ep.steps.get("wall_ns", np.zeros(0))
    period = np.diff(wall.astype(np.int64)) / 1e6 if len(wall) > 1 else np.zeros(0)
    lat = np.array([c.get("latency_s", np.nan) for c in ep.chunks], dtype=float) * 1e3
    stages, reached = task_progress(m)
    return Trial(
        path=ep.path, task=m.get("task") or "unknown", condition=cond,
        category=m.get("ood_category") or ood_category(cond) or "other",
        success=outcome.get("success") if ep.finished else None, finished=ep.finished,
        reason=outcome.get("reason") or ("crashed / still recording" if not ep.finished else ""),
        decided_by=outcome.get("decided_by") or "none", num_steps=ep.num_steps, duration_s=m.get("duration_s"),
        meta=m, stages=stages, reached=reached,
        latency_ms=lat[np.isfinite(lat)], period_ms=period,
        on_step_ms_p99=((m.get("timing") or {}).get("on_step_ms") or {}).get("p99"))


def collect_trials(eval_dir: str | Path, kind: str = "rollout") -> list[Trial]:
    """Every episode under eval_dir of the given kind ("rollout", "demo" or "any")."""
    out = []
    for d in list_episodes(eval_dir):
        ep = load_episode(d)
        if kind != "any" and ep.meta.get("kind", "rollout") != kind:
            continue
        out.append(_trial(ep))
    return out


# ---- tables -----------------------------------------------------------------------------------------
@dataclass
class Cell:
    k: int = 0
    n: int = 0
    excluded: int = 0  # crashed or unlabelled

    def add(self, t: Trial) -> None:
        if t.counted:
            self.n += 1
            self.k += int(bool(t.success))
        else:
            self.excluded += 1

    @property
    def rate(self) -> float | None:
        return self.k / self.n if self.n else None

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.k, self.n)

    def text(self) -> str:
        if self.n == 0:
            return "–" + (f" ({self.excluded} excl.)" if self.excluded else "")
        lo, hi = self.interval
        s = f"{self.k}/{self.n} = {100 * self.k / self.n:.0f}% [{100 * lo:.0f}–{100 * hi:.0f}]"
        return s + (f" (+{self.excluded} excl.)" if self.excluded else "")


def _order(values, preferred) -> list:
    pref = [v for v in preferred if v in values]
    return pref + sorted(v for v in values if v not in preferred)


def table_iv(trials: list[Trial]) -> tuple[list[str], list[tuple[str, str, dict[str, Cell]]]]:
    """Rows like UWM Table IV: per category its conditions then a category total, then all OOD and
    overall. Returns (columns = tasks + "all"), rows (category label, row label, column -> Cell)."""
    tasks = _order({t.task for t in trials}, ())
    columns = tasks + ["all tasks"]
    by_cond: dict[str, list[Trial]] = defaultdict(list)
    for t in trials:
        by_cond[t.condition].append(t)

    def cells(group: list[Trial]) -> dict[str, Cell]:
        out = {c: Cell() for c in columns}
        for t in group:
            out[t.task].add(t)
            out["all tasks"].add(t)
        return out

    rows = []
    categories = _order({t.category for t in trials}, CATEGORY_ORDER)
    for cat in categories:
        conds = _order({t.condition for t in trials if t.category == cat}, CONDITION_ORDER)
        label = CATEGORY_LABEL.get(cat, cat)
        for c in conds:
            rows.append((label, c, cells(by_cond[c])))
        if cat != "ID" and len(conds) > 1:
            rows.append((label, f"{label.lower()} (all)", cells([t for t in trials if t.category == cat])))
    ood = [t for t in trials if t.category != "ID"]
    if ood and any(t.category == "ID" for t in trials):
        rows.append(("OOD", "all OOD", cells(ood)))
    rows.append(("All", "all conditions", cells(trials)))
    return columns, rows


def stage_table(trials: list[Trial]) -> dict[str, tuple[list[str], list[tuple[str, dict[str, Cell]]]]]:
    """Where trials stop: per task with recorded stages, (its stages, rows of (condition, stage -> Cell of
    the labelled trials that reached it)), conditions in Table IV order. Trials without stages are left out."""
    out = {}
    for task in _order({t.task for t in trials if t.stages}, ()):
        group = [t for t in trials if t.task == task and t.stages and t.counted]
        stages = list(max((t.stages for t in group), key=len, default=()))
        rows = []
        for cond in _order({t.condition for t in group}, CONDITION_ORDER):
            members = [t for t in group if t.condition == cond]
            rows.append((cond, {s: Cell(sum(s in t.reached for t in members), len(members)) for s in stages}))
        if len(rows) > 1:
            rows.append(("all conditions", {s: Cell(sum(r[1][s].k for r in rows), sum(r[1][s].n for r in rows))
                                            for s in stages}))
        if rows:
            out[task] = (stages, rows)
    return out


def stage_text(stages, reached) -> str:
    """How far a trial got: '2/3: cup in the pot' (stages reached, the last of them); '–' without stages."""
    if not stages:
        return "–"
    return f"{len(reached)}/{len(stages)}" + (f": {reached[-1]}" if reached else "")


# ---- figures ----------------------------------------------------------------------------------------
def _histogram(values: np.ndarray, title: str, xlabel: str, path: Path, ref: float | None = None) -> str | None:
    """Save a histogram PNG; return it base64-encoded (None when there is nothing to plot)."""
    if values.size == 0:
        return None
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 3.2), dpi=100)
    hi = float(np.percentile(values, 99.5)) if values.size > 20 else float(values.max())
    lo = float(values.min())
    bins = np.linspace(lo, max(hi, lo + 1e-6), 40)
    ax.hist(np.clip(values, lo, bins[-1]), bins=bins, color="#4c72b0", edgecolor="white")
    p50, p99 = np.percentile(values, [50, 99])
    ax.axvline(p50, color="#dd8452", ls="--", lw=1.2, label=f"p50 {p50:.1f}")
    ax.axvline(p99, color="#c44e52", ls=":", lw=1.2, label=f"p99 {p99:.1f}")
    if ref is not None:
        ax.axvline(ref, color="#55a868", lw=1.2, label=f"target {ref:.1f}")
    ax.set_title(f"{title} (n={values.size}, max {values.max():.1f})", fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return base64.b64encode(buf.getvalue()).decode()


def _thumb_camera(t: Trial) -> str | None:
    cams = list(t.meta.get("cameras", {}))
    for c in PREFERRED_THUMB_CAMERAS:
        if c in cams:
            return c
    return cams[0] if cams else None


def _thumbs(t: Trial, eval_dir: Path) -> tuple[str | None, str | None]:
    """Relative paths (from eval_dir) of the first and last frame of the trial's thumbnail camera:
    the recorder's thumbs/ when present, else made now from the raw frames or the video."""
    cam = _thumb_camera(t)
    if cam is None:
        return None, None
    rec = (t.meta.get("thumbs") or {}).get(cam) or {}
    paths = [t.path / rec[w] if w in rec else None for w in ("first", "last")]
    if all(p is not None and p.exists() for p in paths):
        return tuple(os.path.relpath(p, eval_dir) for p in paths)
    out_dir = t.path / THUMBS_DIR
    first_p, last_p = out_dir / f"{cam}_first.png", out_dir / f"{cam}_last.png"
    if not (first_p.exists() and last_p.exists()):
        try:
            ep = load_episode(t.path, load_chunks=False)
            first = last = None
            for img in ep.iter_frames(cam):
                if first is None:
                    first = np.array(img)
                last = img
            if first is None:
                return None, None
            import imageio.v3 as iio

            out_dir.mkdir(exist_ok=True)
            iio.imwrite(first_p, first)
            iio.imwrite(last_p, np.array(last))
        except (OSError, KeyError, ValueError, RuntimeError):
            return None, None
    return os.path.relpath(first_p, eval_dir), os.path.relpath(last_p, eval_dir)


def _videos(t: Trial, eval_dir: Path) -> dict[str, str]:
    out = {}
    for cam in t.meta.get("cameras", {}):
        p = t.path / "videos" / f"{cam}.mp4"
        if p.exists():
            out[cam] = os.path.relpath(p, eval_dir)
    return out


# ---- writers ----------------------------------------------------------------------------------------
def _rate_color(cell: Cell) -> str:
    """Pale red (0%) -> pale yellow (50%) -> pale green (100%); grey when there is no trial."""
    if cell.n == 0:
        return "#f4f4f4"
    r = cell.k / cell.n
    stops = ((0.0, (246, 178, 178)), (0.5, (250, 236, 170)), (1.0, (168, 226, 168)))
    (r0, c0), (r1, c1) = (stops[0], stops[1]) if r <= 0.5 else (stops[1], stops[2])
    f = (r - r0) / (r1 - r0)
    return "rgb({},{},{})".format(*(int(round(a + f * (b - a))) for a, b in zip(c0, c1)))


def _timing_summary(trials: list[Trial]) -> list[tuple[str, str]]:
    lat = np.concatenate([t.latency_ms for t in trials]) if trials else np.zeros(0)
    per = np.concatenate([t.period_ms for t in trials]) if trials else np.zeros(0)
    fps = [float(t.meta.get("fps", 15.0)) for t in trials] or [15.0]
    target = 1e3 / float(np.median(fps))
    rows = []
    executed = sorted({str((t.meta.get("control") or {}).get("execute_k", "not recorded")) for t in trials})
    rows.append(("actions executed per chunk (execute_k)", ", ".join(executed)))
    if lat.size:
        p50, p95, p99 = np.percentile(lat, [50, 95, 99])
        rows.append(("inference latency (chunk round trip)", f"p50 {p50:.1f} ms, p95 {p95:.1f} ms, p99 {p99:.1f} ms, "
                                                             f"max {lat.max():.1f} ms over {lat.size} chunks"))
    if per.size:
        jit = np.abs(per - target)
        rows.append(("loop period", f"target {target:.1f} ms; p50 {np.percentile(per, 50):.2f} ms, "
                                    f"|jitter| p99 {np.percentile(jit, 99):.2f} ms, max period {per.max():.1f} ms; "
                                    f"{int((per > 1.5 * target).sum())} overruns (>1.5x) in {per.size} ticks"))
    rec = [t.on_step_ms_p99 for t in trials if t.on_step_ms_p99 is not None]
    if rec:
        rows.append(("recorder on_step p99 (worst trial)", f"{max(rec):.2f} ms"))
    drops = sum(v.get("dropped", 0) for t in trials for v in (t.meta.get("video") or {}).values())
    rows.append(("video frames replaced by repeats", str(drops)))
    return rows


def write_report(eval_dir: str | Path, title: str | None = None) -> tuple[Path, Path]:
    """Write <eval_dir>/report.html and report.md; returns their paths."""
    eval_dir = Path(eval_dir)
    trials = collect_trials(eval_dir)
    if not trials:
        raise FileNotFoundError(f"no rollout episodes under {eval_dir}")
    title = title or f"Evaluation report: {eval_dir.name}"
    assets = eval_dir / ASSETS_DIR
    columns, rows = table_iv(trials)
    lat = np.concatenate([t.latency_ms for t in trials])
    per = np.concatenate([t.period_ms for t in trials])
    fps = float(np.median([float(t.meta.get("fps", 15.0)) for t in trials]))
    lat_b64 = _histogram(lat, "Inference latency per chunk", "ms", assets / "latency_hist.png")
    per_b64 = _histogram(per, "Control loop period", "ms", assets / "loop_period_hist.png", ref=1e3 / fps)
    timing = _timing_summary(trials)
    groups: dict[tuple[str, str], list[Trial]] = defaultdict(list)
    for t in trials:
        groups[(t.task, t.condition)].append(t)
    group_keys = sorted(groups, key=lambda k: (k[0], _order({c for _, c in groups}, CONDITION_ORDER).index(k[1])))
    thumbs = {t.path: _thumbs(t, eval_dir) for t in trials}
    videos = {t.path: _videos(t, eval_dir) for t in trials}
    n_counted = sum(t.counted for t in trials)
    n_excl = len(trials) - n_counted
    checkpoints = sorted({str(_checkpoint_id(t.meta)) for t in trials})

    # ---- markdown
    md = [f"# {title}", "",
          f"{len(trials)} trials ({n_counted} labelled, {n_excl} crashed/unlabelled and excluded from rates); "
          f"checkpoint(s): {', '.join(checkpoints)}.", "",
          "## Success rate (Wilson 95% interval), by OOD category and condition (cf. UWM Table IV)", "",
          "| Category | Condition | " + " | ".join(columns) + " |",
          "|---|---|" + "---|" * len(columns)]
    for cat, label, cells in rows:
        md.append(f"| {cat} | {label} | " + " | ".join(cells[c].text() for c in columns) + " |")
    stages = stage_table(trials)
    if stages:
        md += ["", "## Stages reached (labelled trials that got at least that far)"]
    for task, (names, srows) in stages.items():
        md += ["", f"| {task} | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        md += [f"| {cond} | " + " | ".join(cells[n].text() for n in names) + " |" for cond, cells in srows]
    md += ["", "## Timing", ""] + [f"- {k}: {v}" for k, v in timing] + [""]
    if lat_b64:
        md.append(f"![latency]({ASSETS_DIR}/latency_hist.png)")
    if per_b64:
        md.append(f"![loop period]({ASSETS_DIR}/loop_period_hist.png)")
    md += ["", "## Trials", ""]
    for key in group_keys:
        md += [f"### {key[0]} / {key[1]}", "", "| trial | outcome | reason | stages | steps | first / last | videos |",
               "|---|---|---|---|---|---|---|"]
        for t in groups[key]:
            f, l = thumbs[t.path]
            thumb = f"![first]({f}) ![last]({l})" if f else ""
            vids = " ".join(f"[{c}]({p})" for c, p in videos[t.path].items())
            md.append(f"| {t.path.name} | {_outcome(t)} | {t.reason} | {stage_text(t.stages, t.reached)} | "
                      f"{t.num_steps} | {thumb} | {vids} |")
        md.append("")
    md_path = eval_dir / "report.md"
    md_path.write_text("\n".join(md))

    # ---- HTML
    e = html.escape
    h = ["<!DOCTYPE html><html><head><meta charset='utf-8'>", f"<title>{e(title)}</title>", "<style>",
         "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#222;max-width:1400px}",
         "table{border-collapse:collapse;margin:8px 0 20px}td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px}",
         "th{background:#eee}td.rate{text-align:center;white-space:nowrap}tr.total td{font-weight:600}",
         ".ok{color:#1a7f37;font-weight:600}.fail{color:#c62828;font-weight:600}.na{color:#777}",
         "img.thumb{height:72px;margin-right:2px;border:1px solid #ddd}.figs img{margin-right:12px;border:1px solid #ddd}",
         "small{color:#666}</style></head><body>",
         f"<h1>{e(title)}</h1>",
         f"<p>{len(trials)} trials: {n_counted} labelled, {n_excl} crashed or unlabelled (listed, not counted). "
         f"Checkpoint(s): {e(', '.join(checkpoints))}. Cells: successes/trials = rate "
         f"[Wilson 95% interval].</p>",
         "<h2>Success rate by OOD category and condition <small>(layout of UWM Table IV)</small></h2>",
         "<table><tr><th>Category</th><th>Condition</th>" + "".join(f"<th>{e(c)}</th>" for c in columns) + "</tr>"]
    for cat, label, cells in rows:
        cls = " class='total'" if label.endswith("(all)") or cat in ("OOD", "All") else ""
        h.append(f"<tr{cls}><td>{e(cat)}</td><td>{e(label)}</td>" + "".join(
            f"<td class='rate' style='background:{_rate_color(cells[c])}'>{e(cells[c].text())}</td>" for c in columns) + "</tr>")
    h.append("</table>")
    if stages:
        h.append("<h2>Stages reached <small>(labelled trials that got at least that far)</small></h2>")
    for task, (names, srows) in stages.items():
        h.append(f"<table><tr><th>{e(task)}</th>" + "".join(f"<th>{e(n)}</th>" for n in names) + "</tr>")
        h += [f"<tr><td>{e(cond)}</td>" + "".join(f"<td class='rate' style='background:{_rate_color(cells[n])}'>"
                                                  f"{e(cells[n].text())}</td>" for n in names) + "</tr>"
              for cond, cells in srows]
        h.append("</table>")
    h.append("<h2>Timing</h2><table>")
    h += [f"<tr><th style='text-align:left'>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in timing]
    h.append("</table><div class='figs'>")
    for b64, alt in ((lat_b64, "inference latency histogram"), (per_b64, "loop period histogram")):
        if b64:
            h.append(f"<img alt='{alt}' src='data:image/png;base64,{b64}'>")
    h.append("</div><h2>Trials</h2>")
    for key in group_keys:
        cell = Cell()
        for t in groups[key]:
            cell.add(t)
        h.append(f"<h3>{e(key[0])} / {e(key[1])} <small>{e(cell.text())}</small></h3>")
        h.append("<table><tr><th>trial</th><th>outcome</th><th>reason</th><th>decided by</th><th>stages</th><th>steps</th>"
                 "<th>first / last frame</th><th>videos</th></tr>")
        for t in groups[key]:
            f, l = thumbs[t.path]
            img = (f"<img class='thumb' src='{e(f)}' alt='first'><img class='thumb' src='{e(l)}' alt='last'>" if f else "")
            vids = " ".join(f"<a href='{e(p)}'>{e(c)}</a>" for c, p in videos[t.path].items())
            cls = "ok" if t.success is True and t.finished else ("fail" if t.success is False else "na")
            h.append(f"<tr><td>{e(t.path.name)}</td><td class='{cls}'>{e(_outcome(t))}</td><td>{e(t.reason)}</td>"
                     f"<td>{e(t.decided_by)}</td><td>{e(stage_text(t.stages, t.reached))}</td><td>{t.num_steps}</td>"
                     f"<td>{img}</td><td>{vids}</td></tr>")
        h.append("</table>")
    h.append("</body></html>")
    html_path = eval_dir / "report.html"
    html_path.write_text("\n".join(h))
    return html_path, md_path


def _checkpoint_id(meta: dict):
    ck = meta.get("checkpoint")
    if isinstance(ck, dict) and ck.get("id"):
        return ck["id"]
    return meta.get("checkpoint_id") or ck


def _outcome(t: Trial) -> str:
    if not t.finished:
        return "crashed"
    if t.success is None:
        return "unlabelled"
    return "success" if t.success else "failure"


# ---- CLI --------------------------------------------------------------------------------------------
def _report_cmd(args: argparse.Namespace) -> int:
    try:
        html_path, md_path = write_report(args.eval_dir, args.title)
    except FileNotFoundError as e:
        print(f"robot_client report: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {html_path}\nwrote {md_path}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """`robot_client report <eval_dir> [--title T]`."""
    p = subparsers.add_parser("report", help="HTML + Markdown report of an evaluation directory")
    p.add_argument("eval_dir", type=Path, help="directory holding the eval's episodes (<task>/<condition>/trial_XXX)")
    p.add_argument("--title", default=None)
    p.set_defaults(func=_report_cmd)
