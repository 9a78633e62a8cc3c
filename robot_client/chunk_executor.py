"""Receding-horizon execution of action chunks on a timeline.

Action i of a chunk answers the observation taken at `t_obs` and is scheduled at
`t_obs + i * dt` (UWM's action 0 is the action at the latest observed frame). At each control
tick the executor returns the action scheduled for that tick; actions whose time has passed are
dropped, never executed late. A chunk arriving `d` ticks after its observation starts at its
action `d` and runs for `k` actions (real-time-chunking semantics: one chunk per `k` ticks,
inference overlapping execution), or for its own `execute_k` where it has one (the control loop commits
further to a chunk asked while the hand was stalled); a new chunk replaces the old one from its own
schedule on.
Three ways to soften the boundary: blend the first actions of a new chunk with the old chunk's
still-pending ones (`blend_steps`), average every tick over the plans that the last few chunks
made for it (`ensemble_chunks`, ACT's temporal ensembling), or ask for a new chunk that is
inpainted on them (`pending_prefix`, real-time chunking's idea with a hard mask).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Chunk:
    actions: np.ndarray  # (L, A) executable actions (DROID 7-d)
    t_obs: float  # clock time of the observation the chunk answers (s)
    raw: np.ndarray | None = None  # (L, D) normalised model actions, for inpainting and logs
    request_id: int = 0
    latency_s: float = 0.0
    meta: dict = field(default_factory=dict)
    first_index: int = 0  # first action still in the future when the chunk arrived
    execute_k: int | None = None  # this chunk's own horizon (a stalled hand commits further), else the executor's

    def window_end(self, k: int) -> int:
        return min(len(self.actions), self.first_index + (self.execute_k or k))


def pending_prefix(chunk: Chunk, t_obs_new: float, dt: float, window_end: int, horizon: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The old chunk's still-pending raw actions, re-indexed for a request observed at `t_obs_new`.

    Index j of the new chunk is scheduled at t_obs_new + j*dt, i.e. at index
    i = round((t_obs_new + j*dt - chunk.t_obs) / dt) of the old one. Row j is fixed (mask True)
    when the old chunk will still execute action i before the new chunk takes over: j < `horizon`
    (the expected delay in ticks plus a margin) and first_index <= i < `window_end`. Returns
    (prefix (L, D) float32, mask (L,) bool), or None when the chunk has no raw actions or no row
    is fixed. With `window_end` = `horizon` = the chunk's length it is the chunk's whole remaining
    plan, executed or not (`ChunkExecutor.plan_for`, the guide for coherent sampling).
    """
    if chunk.raw is None:
        return None
    raw = np.asarray(chunk.raw, dtype=np.float32)
    prefix, mask = np.zeros_like(raw), np.zeros(len(raw), dtype=bool)
    offset = (t_obs_new - chunk.t_obs) / dt
    for j in range(min(horizon, len(raw))):
        i = int(np.floor(offset + j + 0.5))  # nearest tick, as ChunkExecutor.index_at rounds
        if chunk.first_index <= i < min(window_end, len(raw)):
            prefix[j], mask[j] = raw[i], True
    return (prefix, mask) if mask.any() else None


@dataclass
class ScheduledAction:
    action: np.ndarray
    index: int  # index within its chunk
    chunk: Chunk
    blended: bool = False


class ChunkExecutor:
    def __init__(self, dt: float, execute_k: int = 8, blend_steps: int = 0, ensemble_chunks: int = 1):
        if execute_k < 1:
            raise ValueError(f"execute_k must be >= 1, got {execute_k}")
        if blend_steps < 0:
            raise ValueError(f"blend_steps must be >= 0, got {blend_steps}")
        if ensemble_chunks < 1:
            raise ValueError(f"ensemble_chunks must be >= 1 (1 = the newest chunk alone), got {ensemble_chunks}")
        if blend_steps and ensemble_chunks > 1:
            raise ValueError("blend_steps and ensemble_chunks are two ways to soften a boundary: set one of them")
        self.dt = dt
        self.execute_k = execute_k
        self.blend_steps = blend_steps
        self.ensemble_chunks = ensemble_chunks
        self.chunk: Chunk | None = None
        self.previous: Chunk | None = None
        # the chunks before the current one that the ensemble averages in, newest last
        self._older: deque[Chunk] = deque(maxlen=ensemble_chunks - 1)
        self.dropped = 0  # actions skipped because their time had passed
        self._switch_time: float | None = None

    def index_at(self, chunk: Chunk, t: float) -> int:
        # Round to the nearest tick: a tick a few ms late still executes its own action.
        return int(np.floor((t - chunk.t_obs) / self.dt + 0.5))

    def add_chunk(self, chunk: Chunk, now: float) -> None:
        if self.chunk is not None:
            self.previous = self.chunk
            self._older.append(self.chunk)
        first = max(0, self.index_at(chunk, now))
        chunk.first_index = min(first, len(chunk.actions))
        self.dropped += chunk.first_index  # stale on arrival: their time has passed
        self.chunk = chunk
        self._switch_time = now

    def prefix_for(self, t_obs_new: float, horizon: int) -> tuple[np.ndarray, np.ndarray] | None:
        """`pending_prefix` of the current chunk (None without one)."""
        if self.chunk is None:
            return None
        return pending_prefix(self.chunk, t_obs_new, self.dt, self.chunk.window_end(self.execute_k), horizon)

    def plan_for(self, t_obs_new: float) -> tuple[np.ndarray, np.ndarray] | None:
        """The current chunk's whole remaining plan (executed or not) re-indexed for a request
        observed at `t_obs_new`: the guide for backward coherence (None without a chunk)."""
        if self.chunk is None:
            return None
        n = len(self.chunk.actions)
        return pending_prefix(self.chunk, t_obs_new, self.dt, n, n)

    def clear(self) -> None:
        """Forget every chunk (an operator took over): nothing executes until a new one arrives."""
        self.chunk = self.previous = None
        self._older.clear()
        self._switch_time = None

    def remaining(self, t: float) -> int:
        """Executable actions left in the current chunk at time t (this tick's included)."""
        if self.chunk is None:
            return 0
        return max(0, self.chunk.window_end(self.execute_k) - max(self.chunk.first_index, self.index_at(self.chunk, t)))

    def action_at(self, t: float) -> ScheduledAction | None:
        """The action for the tick at time t, or None (the arm then holds)."""
        if self.chunk is None:
            return None
        i = self.index_at(self.chunk, t)
        if i < self.chunk.first_index or i >= self.chunk.window_end(self.execute_k):
            return None
        action = np.array(self.chunk.actions[i], dtype=float)
        blended = False
        if self.blend_steps and self.previous is not None and self._switch_time is not None:
            since_switch = int(np.floor((t - self._switch_time) / self.dt + 0.5))
            j = self.index_at(self.previous, t)
            if 0 <= since_switch < self.blend_steps and 0 <= j < len(self.previous.actions):
                # Linear cross-fade of the arm motion from the old plan into the new one over blend_steps
                # ticks; the gripper is the new chunk's (a fade between open and closed half-opens a grip).
                w = (since_switch + 1) / (self.blend_steps + 1)
                action[:-1] = (1 - w) * np.asarray(self.previous.actions[j][:-1], dtype=float) + w * action[:-1]
                blended = True
        plans = [np.asarray(c.actions[j], dtype=float) for c in self._older
                 if c.first_index <= (j := self.index_at(c, t)) < len(c.actions)]
        if plans:
            # Temporal ensembling: the arm and wrist motion is the mean of every plan for this tick, so
            # a fresh sample that restarts a move (rise, then descend) cannot splice its start alone.
            # The gripper stays the newest chunk's: a mean of open and closed is neither.
            action[:-1] = np.mean([p[:-1] for p in plans] + [action[:-1]], axis=0)
            blended = True
        return ScheduledAction(action, i, self.chunk, blended)

