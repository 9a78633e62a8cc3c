"""Asks the policy for the next chunk in a background thread, so the arm never stops for it.

Realtime (hardware, realtime sim): a finished chunk is delivered at the first tick after it
arrives. Lockstep sim: sim time only moves when the loop waits, so wall-clock inference time
means nothing there; a chunk is instead delivered `sim_latency_s` of sim time after its request
(the loop blocks in wall time at that tick if the computation is not done yet). That keeps runs
deterministic while still exercising the asynchronous schedule.

A request may carry an inpainting prefix and a coherence guide (raw actions + mask each, see
`chunk_executor.pending_prefix`) and its own noise scale; the policy is then asked with
`prefix=`/`prefix_mask=`, `guide=`/`guide_mask=` and `noise_scale=`, and the chunk's meta says how
many rows were fixed and compared, and the noise scale asked for (None: the server's). A request may
also set the chunk's own horizon (`Chunk.execute_k`), which is the loop's, not the policy's, concern.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from robot_client.chunk_executor import Chunk
from robot_client.observation import Observation
from robot_client.policy import Policy


@dataclass
class _Job:
    obs: Observation
    t_request: float
    request_id: int
    seed: int | None
    prefix: tuple[np.ndarray, np.ndarray] | None = None
    guide: tuple[np.ndarray, np.ndarray] | None = None
    noise_scale: float | None = None
    execute_k: int | None = None
    wall_start: float = 0.0
    wall_end: float = 0.0
    chunk: Chunk | None = None
    error: BaseException | None = None


class InferenceWorker:
    def __init__(self, policy: Policy, sim_latency_s: float | None = None):
        self.policy = policy
        self.sim_latency_s = sim_latency_s
        self._job: _Job | None = None
        self._done = threading.Event()
        self._wake = threading.Event()
        self._stop = False
        self._next_id = 0
        self.wall_latencies_s: list[float] = []
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._run, name="inference", daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        return self._job is not None

    def submit(self, obs: Observation, t_request: float, seed: int | None = None,
               prefix: tuple[np.ndarray, np.ndarray] | None = None,
               guide: tuple[np.ndarray, np.ndarray] | None = None, noise_scale: float | None = None,
               execute_k: int | None = None) -> int:
        """Start a request; `prefix` = (raw actions (L, D), bool mask (L,)) to inpaint, `guide` the
        same to select the sample nearest it, `noise_scale` this request's sampling temperature,
        `execute_k` the actions its chunk runs (else the executor's); each may be None."""
        if self.busy:
            raise RuntimeError("a request is already in flight")
        self._next_id += 1
        self._done.clear()
        self._job = _Job(obs, t_request, self._next_id, seed, prefix, guide, noise_scale, execute_k)
        self._wake.set()
        return self._next_id

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stop:
                return
            job = self._job
            job.wall_start = time.perf_counter()
            try:
                # None of them: the plain call, so policies without these options keep working.
                kw = {}
                if job.prefix is not None:
                    kw.update(prefix=job.prefix[0], prefix_mask=job.prefix[1])
                if job.guide is not None:
                    kw.update(guide=job.guide[0], guide_mask=job.guide[1])
                if job.noise_scale is not None:
                    kw.update(noise_scale=job.noise_scale)
                reply = self.policy.infer(job.obs, seed=job.seed, **kw)
                meta = {"timings": reply.timings, "inpainted_rows": 0 if job.prefix is None else int(job.prefix[1].sum()),
                        "guided_rows": 0 if job.guide is None else int(job.guide[1].sum()),
                        "noise_scale": job.noise_scale}
                job.chunk = Chunk(reply.actions, job.obs.t, reply.raw, job.request_id, meta=meta,
                                  execute_k=job.execute_k)
            except BaseException as e:  # delivered to the loop, which holds the arm
                job.error = e
            job.wall_end = time.perf_counter()
            self._done.set()

    def poll(self, now: float) -> Chunk | BaseException | None:
        """The finished chunk (or the error) if it is due at `now`, else None."""
        job = self._job
        if job is None:
            return None
        if self.sim_latency_s is not None:
            if now + 1e-9 < job.t_request + self.sim_latency_s:
                return None
            self._done.wait()  # lockstep: the sim waits for the computer
        elif not self._done.is_set():
            return None
        self._job = None
        wall = job.wall_end - job.wall_start
        self.wall_latencies_s.append(wall)
        if job.error is not None:
            self.errors.append(f"{type(job.error).__name__}: {job.error}")
            return job.error
        job.chunk.latency_s = (now - job.t_request) if self.sim_latency_s is not None else wall
        job.chunk.meta["wall_latency_s"] = wall
        return job.chunk

    def close(self) -> None:
        self._stop = True
        self._wake.set()
        self._thread.join(timeout=5)
