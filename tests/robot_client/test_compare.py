"""robot_client compare: two evaluations paired by seed, read back from recorded trials."""
from pathlib import Path

import pytest

from robot_client.cli import main
from robot_client.compare import paired_rows, read_outcomes
from robot_client.recording import EpisodeWriter, synthetic_frames, synthetic_step

STAGES = ["lid opened", "cup in the pot", "lid closed"]
SHAPES = {"wrist_image_left": (8, 8)}


def _trial(path: Path, seed: int, reached: int, condition: str = "ID", finished: bool = True) -> None:
    """A recorded rice_cooker trial that reached `reached` of the 3 stages (all 3: success)."""
    w = EpisodeWriter(path, {"kind": "rollout", "task": "rice_cooker", "condition": condition, "seed": seed},
                      SHAPES, video=False)
    w.on_step(synthetic_step(0), synthetic_frames(0, SHAPES))
    if finished:
        w.finish(reached == 3, "sim_check", "success" if reached == 3 else "timeout",
                 extra={"task_progress": {"stage": reached, "stages": STAGES, "reached": STAGES[:reached]}})


def _eval(root: Path, reached_by_seed: dict[int, int], condition: str = "ID") -> Path:
    for i, (seed, reached) in enumerate(reached_by_seed.items()):
        _trial(root / "rice_cooker" / condition / f"trial_{i:03d}", seed, reached, condition)
    return root


# seeds 0-9: A solves 0-7, B solves 0, 1 and 8; so A alone 6 (2-7), B alone 1 (8), both miss 9
A_ID = {s: 3 for s in range(8)} | {8: 2, 9: 1}
B_ID = {0: 3, 1: 3, 8: 3} | {s: 2 for s in range(2, 8)} | {9: 1, 10: 3}  # seed 10: B only, unpaired


def test_pairs_by_seed_and_gives_the_exact_mcnemar_p(tmp_path):
    # A's trials split over two dirs, as parallel eval processes write them, plus an OOD condition
    a = [_eval(tmp_path / "a0", dict(list(A_ID.items())[:5])), _eval(tmp_path / "a1", dict(list(A_ID.items())[5:])),
         _eval(tmp_path / "a2", {0: 1, 1: 3}, "C1")]
    b = [_eval(tmp_path / "b0", B_ID), _eval(tmp_path / "b1", {0: 1, 1: 1}, "C1")]
    _trial(tmp_path / "a1" / "rice_cooker" / "ID" / "trial_099", 11, 3, finished=False)  # still recording: left out
    rows = paired_rows(read_outcomes(a), read_outcomes(b))
    assert [r.label for r in rows] == ["rice_cooker C1", "rice_cooker ID", "all"]
    c1, ident, total = rows
    assert (ident.pairs, ident.a, ident.b, ident.only_a, ident.only_b) == (10, 8, 3, 6, 1)
    assert ident.p_value == pytest.approx(2 * (1 + 7) / 2**7)  # P(X <= 1), X ~ Bin(7, 1/2), both tails
    assert ident.stages_a["cup in the pot"] == 9 and ident.stages_b["cup in the pot"] == 9
    assert ident.stages_only_a["cup in the pot"] == 0 and ident.stages_only_b["lid closed"] == 1
    assert (c1.pairs, c1.only_a, c1.only_b, c1.p_value) == (2, 1, 0, 1.0)
    assert (total.pairs, total.only_a, total.only_b) == (12, 7, 1)


def test_cli_prints_and_writes_the_table(tmp_path, capsys):
    a, b = _eval(tmp_path / "a", A_ID), _eval(tmp_path / "b", B_ID)
    out = tmp_path / "cmp.md"
    assert main(["compare", str(a), "--against", str(b), "--names", "new", "old", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| rice_cooker ID | 10 | 8 (80%) | 3 (30%) | 6 | 1 | 0.12 |" in printed
    assert "cup in the pot 9 against 9 (only new 0, only old 0); lid closed 8 against 3 (only new 6, only old 1)" in printed
    assert "Unpaired, left out: 0 trials of new, 1 of old." in printed
    assert out.read_text() in printed


def test_a_seed_twice_on_one_side_or_no_common_seed_is_a_clear_error(tmp_path, capsys):
    a = _eval(tmp_path / "a", {0: 3, 1: 3})
    again = _eval(tmp_path / "again", {1: 2})
    assert main(["compare", str(a), str(again), "--against", str(a)]) == 2
    assert "seed 1 was evaluated twice on one side" in capsys.readouterr().err
    other = _eval(tmp_path / "other", {5: 3})
    assert main(["compare", str(a), "--against", str(other)]) == 2
    assert "no (task, condition, seed) evaluated on both sides (2 trials against 1)" in capsys.readouterr().err
