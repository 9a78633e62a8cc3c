"""Evaluation report: Wilson intervals, success counts per task x condition, HTML/MD output."""
from __future__ import annotations

import argparse
import math
import re

import numpy as np
import pytest

from robot_client.recording import EpisodeWriter, synthetic_frames, synthetic_step, write_synthetic_episode
from robot_client.report import (Cell, collect_trials, register, stage_table, table_iv, wilson_interval,
                                 write_report)


@pytest.mark.parametrize("k,n,lo,hi", [
    (0, 10, 0.0, 0.2775),      # textbook values (e.g. Newcombe 1998, Brown-Cai-DasGupta 2001)
    (5, 10, 0.2366, 0.7634),
    (8, 10, 0.4902, 0.9433),
    (10, 10, 0.7225, 1.0),
    (1, 3, 0.0615, 0.7923),
    (0, 1, 0.0, 0.7935),
])
def test_wilson_known_values(k, n, lo, hi):
    got = wilson_interval(k, n)
    assert got == pytest.approx((lo, hi), abs=1e-4)


def test_wilson_bounds_solve_the_score_equation():
    z = 1.959963984540054
    for k, n in [(3, 7), (17, 20), (81, 263), (1, 50)]:
        p_hat = k / n
        for p in wilson_interval(k, n):
            # a Wilson bound is where the score statistic equals z
            assert (p_hat - p) ** 2 == pytest.approx(z * z * p * (1 - p) / n, rel=1e-9, abs=1e-12)


def test_wilson_edge_cases():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)
    lo, hi = wilson_interval(50, 100, z=1.0)
    assert lo < 0.5 < hi and hi - lo < wilson_interval(50, 100)[1] - wilson_interval(50, 100)[0]


# task -> condition -> outcomes
OUTCOMES = {
    "rice_cooker": {"ID": [True, True, False], "L1": [True, False], "C2": [False, False]},
    "stack_bowls": {"ID": [True, True], "B1": [True, False, True, True]},
}


RICE_STAGES = ("lid opened", "cup in the pot", "lid closed")


@pytest.fixture(scope="module")
def eval_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    cams = {"exterior_image_1_left": (18, 32), "wrist_image_left": (18, 32)}
    for task, conds in OUTCOMES.items():
        for cond, outs in conds.items():
            for i, s in enumerate(outs):
                meta = {"task": task, "condition": cond}
                if task == "rice_cooker":  # the sim's stage checks: a failure here stops after the first stage
                    meta["task_progress"] = {"stages": list(RICE_STAGES), "reached": list(RICE_STAGES[:3 if s else 1])}
                write_synthetic_episode(root / task / cond / f"trial_{i:03d}", n_steps=10, camera_shapes=cams,
                                        metadata=meta, success=s,
                                        decided_by="sim_check" if task == "rice_cooker" else "operator_key")
    # a crashed trial and an unlabelled one: listed, not counted
    w = EpisodeWriter(root / "rice_cooker" / "ID" / "trial_099", {"task": "rice_cooker", "condition": "ID"}, cams,
                      save_raw_frames=True, video=False)
    for i in range(4):
        w.on_step(synthetic_step(i), synthetic_frames(i, cams))
    del w
    write_synthetic_episode(root / "rice_cooker" / "L1" / "trial_050", n_steps=5, camera_shapes=cams,
                            metadata={"task": "rice_cooker", "condition": "L1"}, decided_by="none", reason="interrupted")
    # demos in the same tree are not trials
    write_synthetic_episode(root / "demos" / "d0", n_steps=5, camera_shapes=cams, metadata={"kind": "demo"},
                            decided_by="none")
    return root


def test_success_counts_and_intervals(eval_dir):
    trials = collect_trials(eval_dir)
    assert len(trials) == 15  # 13 labelled + crashed + unlabelled; no demo
    columns, rows = table_iv(trials)
    assert columns == ["rice_cooker", "stack_bowls", "all tasks"]
    by = {label: cells for _, label, cells in rows}
    assert [label for _, label, _ in rows] == ["ID", "L1", "B1", "C2", "all OOD", "all conditions"]
    assert [cat for cat, _, _ in rows] == ["ID", "Lighting", "Background", "Clutter", "OOD", "All"]

    def kn(cell: Cell):
        return cell.k, cell.n, cell.excluded

    assert kn(by["ID"]["rice_cooker"]) == (2, 3, 1)
    assert kn(by["ID"]["stack_bowls"]) == (2, 2, 0)
    assert kn(by["ID"]["all tasks"]) == (4, 5, 1)
    assert kn(by["L1"]["rice_cooker"]) == (1, 2, 1)
    assert kn(by["B1"]["stack_bowls"]) == (3, 4, 0)
    assert kn(by["C2"]["rice_cooker"]) == (0, 2, 0)
    assert kn(by["C2"]["stack_bowls"]) == (0, 0, 0)
    assert kn(by["all OOD"]["all tasks"]) == (4, 8, 1)
    assert kn(by["all conditions"]["all tasks"]) == (8, 13, 2)
    assert by["B1"]["stack_bowls"].interval == pytest.approx(wilson_interval(3, 4))
    assert by["B1"]["stack_bowls"].text() == "3/4 = 75% [30–95]"


def test_stages_reached_per_condition_for_tasks_that_record_them(eval_dir):
    table = stage_table(collect_trials(eval_dir))
    assert list(table) == ["rice_cooker"]  # stack_bowls' synthetic trials record no stages
    names, rows = table["rice_cooker"]
    assert names == list(RICE_STAGES)
    counts = {cond: [(c[n].k, c[n].n) for n in names] for cond, c in rows}
    # labelled trials only: ID's crashed trial and L1's unlabelled one are left out
    assert counts == {"ID": [(3, 3), (2, 3), (2, 3)], "L1": [(2, 2), (1, 2), (1, 2)], "C2": [(2, 2), (0, 2), (0, 2)],
                      "all conditions": [(7, 7), (3, 7), (3, 7)]}


def test_report_files(eval_dir):
    html_path, md_path = write_report(eval_dir, title="synthetic eval")
    assert html_path == eval_dir / "report.html" and md_path == eval_dir / "report.md"
    md = md_path.read_text()
    html = html_path.read_text()
    lo, hi = wilson_interval(4, 5)
    cell = f"4/5 = 80% [{100 * lo:.0f}–{100 * hi:.0f}] (+1 excl.)"
    assert cell in md and cell in html
    assert "| Clutter | C2 | 0/2 = 0% [0–66] | – | 0/2 = 0% [0–66] |" in md
    assert "15 trials" in md and "13 labelled, 2 crashed" in md
    # where trials stop: the stage table, and each trial's last stage
    assert "| C2 | 2/2 = 100% [34–100] | 0/2 = 0% [0–66] | 0/2 = 0% [0–66] |" in md
    assert md.count("| 1/3: lid opened |") == 4 and md.count("| 3/3: lid closed |") == 3
    assert html.count("<td>1/3: lid opened</td>") == 4
    # histograms: files for the markdown, embedded PNGs in the HTML
    assert (eval_dir / "report_assets" / "latency_hist.png").stat().st_size > 1000
    assert (eval_dir / "report_assets" / "loop_period_hist.png").stat().st_size > 1000
    assert len(re.findall(r"src='data:image/png;base64,", html)) == 2
    # one row per trial with thumbnails and video links that exist
    assert html.count("<tr><td>trial_") == 15
    for rel in re.findall(r"<img class='thumb' src='([^']+)'", html):
        assert (eval_dir / rel).is_file(), rel
    links = re.findall(r"<a href='([^']+\.mp4)'>", html)
    assert len(links) == 2 * 14  # the crashed trial recorded no video
    assert all((eval_dir / rel).is_file() for rel in links)
    assert "crashed" in html and "unlabelled" in html and "operator_key" in html
    # the crashed trial got thumbnails made from its raw frames
    assert (eval_dir / "rice_cooker" / "ID" / "trial_099" / "thumbs" / "exterior_image_1_left_first.png").is_file()


def test_cli(eval_dir, capsys, tmp_path):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["report", str(eval_dir)])
    assert args.func(args) == 0
    assert "report.html" in capsys.readouterr().out
    args = parser.parse_args(["report", str(tmp_path)])
    assert args.func(args) == 2
