"""Receding-horizon scheduling: timing, stale drops, k-action windows, replacement, blending,
temporal ensembling."""

import numpy as np
import pytest

from robot_client.chunk_executor import Chunk, ChunkExecutor

DT = 1 / 15


def chunk(t_obs, value=0.0, n=16, rid=1):
    a = np.zeros((n, 7))
    a[:, 0] = value + np.arange(n)  # action i carries i in x
    return Chunk(a, t_obs, request_id=rid)


def test_action_i_is_scheduled_at_t_obs_plus_i_dt():
    ex = ChunkExecutor(DT, execute_k=8)
    ex.add_chunk(chunk(10.0), now=10.0)
    for i in range(8):
        s = ex.action_at(10.0 + i * DT + 0.004)  # a few ms late still executes its own action
        assert s.index == i and s.action[0] == i
    assert ex.action_at(10.0 + 8 * DT) is None  # only k actions per chunk


def test_actions_already_in_the_past_are_dropped():
    ex = ChunkExecutor(DT, execute_k=8)
    ex.add_chunk(chunk(10.0), now=10.0 + 3 * DT)  # arrived 3 ticks after its observation
    assert ex.dropped == 3
    s = ex.action_at(10.0 + 3 * DT)
    assert s.index == 3
    assert ex.remaining(10.0 + 3 * DT) == 8  # still k actions: indices 3..10
    assert ex.action_at(10.0 + 10 * DT).index == 10
    assert ex.action_at(10.0 + 11 * DT) is None


def test_a_chunk_with_its_own_horizon_runs_that_many_actions():
    """A chunk asked while the hand was stalled commits further than the executor's k (its execute_k)."""
    ex = ChunkExecutor(DT, execute_k=4)
    committed = chunk(10.0)
    committed.execute_k = 12
    ex.add_chunk(committed, now=10.0 + 3 * DT)
    assert ex.remaining(10.0 + 3 * DT) == 12  # indices 3..14
    assert ex.action_at(10.0 + 14 * DT).index == 14 and ex.action_at(10.0 + 15 * DT) is None
    ex.add_chunk(chunk(20.0, rid=2), now=20.0)  # the next, asked unstalled, runs k again
    assert ex.remaining(20.0) == 4 and ex.action_at(20.0 + 4 * DT) is None


def test_new_chunk_replaces_old_from_its_schedule():
    ex = ChunkExecutor(DT, execute_k=8)
    ex.add_chunk(chunk(0.0, value=0, rid=1), now=0.0)
    ex.add_chunk(chunk(5 * DT, value=100, rid=2), now=6 * DT)
    s = ex.action_at(6 * DT)
    assert s.chunk.request_id == 2 and s.index == 1 and s.action[0] == 101


def test_blend_cross_fades_the_arm_motion_old_into_new_and_keeps_the_new_gripper():
    ex = ChunkExecutor(DT, execute_k=8, blend_steps=2)
    ex.add_chunk(chunk(0.0, value=0, rid=1), now=0.0)  # gripper open (0)
    closing = chunk(4 * DT, value=100, rid=2)
    closing.actions[:, 6] = 1.0
    ex.add_chunk(closing, now=4 * DT)
    s0 = ex.action_at(4 * DT)  # old index 4 (x=4), new index 0 (x=100); weight 1/3 on new
    assert s0.blended and np.isclose(s0.action[0], 4 + (100 - 4) / 3) and s0.action[6] == 1.0
    s1 = ex.action_at(5 * DT)
    assert s1.blended and np.isclose(s1.action[0], 5 + 2 * (101 - 5) / 3) and s1.action[6] == 1.0
    s2 = ex.action_at(6 * DT)
    assert not s2.blended and s2.action[0] == 102


def test_empty_executor_returns_no_action():
    ex = ChunkExecutor(DT)
    assert ex.action_at(0.0) is None and ex.remaining(0.0) == 0


def test_ensemble_averages_the_arm_motion_of_the_latest_chunks_and_keeps_the_newest_gripper():
    ex = ChunkExecutor(DT, execute_k=4, ensemble_chunks=3)
    for r, value in enumerate([0, 100, 200, 300]):  # one chunk every 4 ticks, each carrying value + index
        c = chunk(4 * r * DT, value=value, rid=r)
        c.actions[:, 2] = -value  # a second arm axis, averaged alike
        c.actions[:, 6] = r % 2  # gripper: 0, 1, 0, 1
        ex.add_chunk(c, now=4 * r * DT)
    s = ex.action_at(12 * DT)
    # The plans of rid 3 (index 0), rid 2 (index 4) and rid 1 (index 8) for this tick; rid 0 is
    # one chunk too old. Only the newest's window decides that an action runs at all.
    assert s.chunk.request_id == 3 and s.index == 0 and s.blended
    assert np.isclose(s.action[0], (300 + 204 + 108) / 3) and np.isclose(s.action[2], -(300 + 200 + 100) / 3)
    assert s.action[6] == 1
    assert ex.action_at(16 * DT) is None  # past the newest chunk's window: hold, whatever old plans say


def test_ensemble_skips_plans_that_end_before_the_tick_and_clear_forgets_them():
    ex = ChunkExecutor(DT, execute_k=4, ensemble_chunks=2)
    ex.add_chunk(chunk(0.0, value=0, n=4, rid=1), now=0.0)  # plans ticks 0..3 only
    ex.add_chunk(chunk(4 * DT, value=100, rid=2), now=4 * DT)
    s = ex.action_at(4 * DT)
    assert not s.blended and s.action[0] == 100
    ex.add_chunk(chunk(5 * DT, value=200, rid=3), now=5 * DT)
    assert np.isclose(ex.action_at(5 * DT).action[0], (101 + 200) / 2)
    ex.clear()
    ex.add_chunk(chunk(6 * DT, value=300, rid=4), now=6 * DT)
    s = ex.action_at(6 * DT)
    assert not s.blended and s.action[0] == 300


def test_ensemble_and_blend_are_exclusive_and_checked():
    with pytest.raises(ValueError, match="set one of them"):
        ChunkExecutor(DT, blend_steps=2, ensemble_chunks=2)
    with pytest.raises(ValueError, match="ensemble_chunks must be >= 1"):
        ChunkExecutor(DT, ensemble_chunks=0)
