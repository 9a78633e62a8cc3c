"""Live view: a Rerun recording saved to an .rrd file; graceful without rerun-sdk."""
from __future__ import annotations

import logging
import sys

import numpy as np
import pytest

from robot_client.chunk_executor import Chunk
from robot_client.live_view import LiveView, LiveViewUnavailable
from robot_client.recording import synthetic_frames, synthetic_step

CAMS = {"exterior_image_1_left": (36, 64), "wrist_image_left": (36, 64)}


def _drive(view: LiveView, n: int = 20) -> None:
    for i in range(n):
        if i % 8 == 0:
            view.on_chunk(Chunk(np.tile(synthetic_step(i).action, (16, 1)), i / 15.0, None, i // 8, 0.1))
        view.on_step(synthetic_step(i, with_action=i >= 2), synthetic_frames(i, CAMS))
    view.log_prediction(0.5, {"exterior_image_1_left": np.zeros((4, 36, 64, 3), np.uint8),
                              "wrist_image_left": np.random.default_rng(0).random((36, 64, 3))})


def test_saves_rrd(tmp_path):
    pytest.importorskip("rerun")
    path = tmp_path / "live" / "rollout.rrd"
    with LiveView(save_path=path) as view:
        assert view.enabled
        _drive(view)
    data = path.read_bytes()
    assert data[:4] == b"RRF2" and len(data) > 10_000
    for entity in (b"cameras/exterior_image_1_left", b"predicted/wrist_image_left", b"action/planned",
                   b"action/executed", b"state/q", b"state/ee"):
        assert entity in data, entity


def test_without_rerun_is_a_noop_with_a_clear_message(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "rerun", None)  # import rerun -> ImportError
    monkeypatch.setitem(sys.modules, "rerun.blueprint", None)
    with caplog.at_level(logging.WARNING, logger="robot_client.live_view"):
        view = LiveView(spawn=True)
    assert not view.enabled
    assert "rerun-sdk is not installed" in caplog.text and "pip install" in caplog.text
    _drive(view, 3)  # nothing happens, nothing raises
    view.close()
    with pytest.raises(LiveViewUnavailable, match="rerun-sdk"):
        LiveView(required=True)
