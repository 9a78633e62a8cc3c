"""Client side of inpainting and coherence: the prefix and the guide built from the current chunk,
and the loop sending them."""

from __future__ import annotations

import numpy as np
import pytest

from robot_client.action_path import CartesianVelocityActionPath
from robot_client.chunk_executor import Chunk, ChunkExecutor, pending_prefix
from robot_client.control_loop import ControlLoop, LoopConfig
from robot_client.policy import PolicyReply
from robot_client.safety import SafetyMonitor
from robot_client.sim.env import SimEnv

DT = 1 / 15


def chunk(t_obs=2.0, first_index=3, L=16, D=10):
    raw = np.arange(L, dtype=np.float32)[:, None] * np.ones(D, np.float32)  # row i holds i
    c = Chunk(np.zeros((L, 7)), t_obs, raw)
    c.first_index = first_index
    return c


def test_prefix_holds_the_pending_actions_reindexed_to_the_new_observation():
    old = chunk()  # window: indices 3..10 (k = 8)
    # Observed at old index 7 (+4 ms of jitter): 4 actions (7..10) still pending, expected delay 4 + margin 1.
    prefix, mask = pending_prefix(old, 2.0 + 7 * DT + 0.004, DT, window_end=old.window_end(8), horizon=5)
    assert prefix.shape == (16, 10) and prefix.dtype == np.float32 and mask.dtype == bool
    assert mask.tolist() == [True] * 4 + [False] * 12  # index 11 is past the old window
    assert prefix[:4, 0].tolist() == [7, 8, 9, 10] and not prefix[4:].any()


def test_prefix_stops_at_the_expected_delay():
    old = chunk()
    _, mask = pending_prefix(old, 2.0 + 5 * DT, DT, window_end=old.window_end(8), horizon=2)
    assert mask.tolist() == [True, True] + [False] * 14  # old 5, 6; the new chunk takes over after


def test_no_prefix_without_raw_actions_or_pending_ones():
    old = chunk()
    assert pending_prefix(Chunk(np.zeros((16, 7)), 2.0), 2.0, DT, 8, 4) is None
    assert pending_prefix(old, 2.0 + 11 * DT, DT, window_end=old.window_end(8), horizon=4) is None


def test_executor_prefix_uses_its_window():
    ex = ChunkExecutor(DT, execute_k=8)
    assert ex.prefix_for(0.0, 4) is None
    c = chunk(t_obs=1.0, first_index=0)
    ex.add_chunk(c, now=1.0 + 3 * DT)  # arrives 3 ticks late: window 3..10
    _, mask = ex.prefix_for(1.0 + 9 * DT, 5)
    assert mask.tolist() == [True, True] + [False] * 14


class RecordingPolicy:
    """Chunks whose raw row i of request n holds n * 100 + i; remembers each request's prefix."""

    def __init__(self):
        self.calls = []
        self.guides = []

    def hello(self):
        return {}

    def infer(self, obs, seed=None, prefix=None, prefix_mask=None, guide=None, guide_mask=None):
        n = len(self.calls)
        self.calls.append((obs.t, prefix, prefix_mask))
        self.guides.append((guide, guide_mask))
        raw = (n * 100 + np.arange(16, dtype=np.float32))[:, None] * np.ones(10, np.float32)
        return PolicyReply(np.tile([0.1, 0, 0, 0, 0, 0, 0.0], (16, 1)), raw)


@pytest.fixture
def env():
    e = SimEnv("rice_cooker", condition="ID", seed=0)
    yield e
    e.close()


def run_loop(env, policy, **cfg):
    shapes = {k: (90, 160) for k in env.cameras}
    config = LoopConfig(**{"max_steps": 40, "sim_latency_s": 0.2, **cfg})
    chunks = []
    loop = ControlLoop(env.robot, env.gripper, env.cameras, env.clock, policy,
                       CartesianVelocityActionPath(SafetyMonitor()), config, shapes, on_chunk=chunks.append)
    return loop.run(), chunks


def test_lockstep_loop_sends_the_pending_actions_as_prefix(env):
    policy = RecordingPolicy()
    result, chunks = run_loop(env, policy, inpaint=True)
    assert result.stats["idle_s"] == 0.0 and len(policy.calls) >= 4
    assert policy.calls[0][1] is None  # nothing pending before the first chunk
    for n, (t_obs, prefix, mask) in enumerate(policy.calls[1:], start=1):
        assert mask is not None and mask[0] and mask.sum() >= 3, f"request {n}: mask {mask}"
        fixed = int(mask.sum())
        assert mask[:fixed].all() and not mask[fixed:].any()  # a contiguous head
        # Row j is the chunk then executing (request n - 1's) at t_obs + j*dt: consecutive indices.
        old = chunks[n - 1]
        i0 = int(round((t_obs - old.t_obs) / DT))
        assert prefix[:fixed, 0].tolist() == [(n - 1) * 100 + i0 + j for j in range(fixed)]
        assert i0 + fixed == old.window_end(8)  # exactly the pending actions, up to the window end
    assert all(c.meta["inpainted_rows"] > 0 for c in chunks[1:])


def test_inpaint_off_sends_no_prefix(env):
    policy = RecordingPolicy()
    run_loop(env, policy, max_steps=20)
    assert all(p is None for _, p, _ in policy.calls)


def test_executor_plan_is_the_whole_remaining_chunk():
    ex = ChunkExecutor(DT, execute_k=4)
    assert ex.plan_for(0.0) is None
    ex.add_chunk(chunk(t_obs=1.0, first_index=0), now=1.0 + 3 * DT)
    plan, mask = ex.plan_for(1.0 + 6 * DT)  # observed at old index 6: rows 0..9 are old 6..15, past the k = 4 window
    assert mask.tolist() == [True] * 10 + [False] * 6
    assert plan[:10, 0].tolist() == list(range(6, 16))


def test_coherent_loop_sends_the_current_plan_as_guide(env):
    policy = RecordingPolicy()
    _, chunks = run_loop(env, policy, coherent=True, execute_k=4)
    assert len(policy.calls) >= 4 and policy.guides[0] == (None, None)
    assert all(p is None for _, p, _ in policy.calls)  # coherence without inpainting
    for n, (guide, mask) in enumerate(policy.guides[1:], start=1):
        old, t_obs = chunks[n - 1], policy.calls[n][0]
        i0 = int(round((t_obs - old.t_obs) / DT))
        assert mask.tolist() == [True] * (16 - i0) + [False] * i0, f"request {n}"
        assert guide[: 16 - i0, 0].tolist() == [(n - 1) * 100 + i for i in range(i0, 16)]
    assert all(c.meta["guided_rows"] > 0 for c in chunks[1:])
