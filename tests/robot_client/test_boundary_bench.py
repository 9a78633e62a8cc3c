"""bench-boundary: the jerk windows, and the command end to end on a loopback server."""

from __future__ import annotations

import json

import numpy as np
import pytest

from robot_client.boundary_bench import jerk_windows, parse_blends
from robot_client.cli import main

DT = 1 / 15
SCALE = np.array([0.075] * 3 + [0.15] * 3)


def act(vx):
    return np.array([vx, 0, 0, 0, 0, 0, 0.0])


def test_a_velocity_step_at_a_switch_is_boundary_jerk():
    # Chunk 1 commands 0.2, chunk 2 (from tick 4) 0.6: constant within each chunk.
    actions = [act(0.2)] * 4 + [act(0.6)] * 4
    w = jerk_windows(actions, [1] * 4 + [2] * 4, [False] * 8, DT, SCALE)
    assert w["interior"]["linear"] == [0.0] * 4
    step = 0.4 * 0.075 / DT / DT**2  # the velocity jump over dt^2
    assert np.allclose(w["boundary"]["linear"], [step, step])  # windows (2,3,4) and (3,4,5)
    assert w["boundary"]["angular"] == [0.0, 0.0]


def test_blended_ticks_count_as_boundary_and_holds_are_skipped():
    actions = [act(0.2)] * 3 + [act(0.3), act(0.4), act(0.5)] + [None] + [act(0.5)] * 3
    ids = [1] * 3 + [2] * 7
    blended = [False] * 3 + [True, True, False] + [False] * 4
    w = jerk_windows(actions, ids, blended, DT, SCALE)
    assert len(w["boundary"]["linear"]) == 3  # windows ending at ticks 3, 4 (switch) and 5 (blended)
    assert len(w["interior"]["linear"]) == 2  # ticks 2 and 9; 6, 7, 8 contain the hold


def test_the_end_of_an_inpainted_prefix_is_a_boundary():
    # Chunk 2 starts with the old plan's actions (its prefix rows), then its own from tick 5.
    actions = [act(0.2)] * 5 + [act(0.6)] * 3
    plans = [(1, False)] * 3 + [(2, True)] * 2 + [(2, False)] * 3
    w = jerk_windows(actions, plans, [False] * 8, DT, SCALE)
    assert len(w["boundary"]["linear"]) == 4  # windows ending at 3, 4 (switch) and 5, 6 (prefix end)
    assert w["boundary"]["linear"][:2] == [0.0, 0.0] and min(w["boundary"]["linear"][2:]) > 0


def test_blend_list_parsing():
    assert parse_blends("0,4,4") == [0, 4]
    with pytest.raises(ValueError, match="--blend"):
        parse_blends("a,b")


def test_bench_boundary_command_runs_every_variant(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "jerk.json"
    rc = main(["bench-boundary", "--checkpoint", str(tiny_checkpoint), "--seeds", "1", "--max-steps", "20",
               "--blend", "0,3", "--out", str(out)])
    assert rc == 0
    report = json.loads(out.read_text())
    assert [r["variant"] for r in report["results"]] == ["no blend", "blend 3", "inpaint"]
    assert all(r["chunks"] >= 2 and r["boundary_linear"]["n"] > 0 for r in report["results"])
    assert "| inpaint |" in capsys.readouterr().out
