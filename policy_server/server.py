"""The zerorpc service around a `UWMPolicy`: handshake, validation, auth, batching, timing.

Concurrency. zerorpc runs on gevent: one hub thread receives, decodes and validates requests
and answers heartbeats. The model runs on ONE worker OS thread (a `gevent.threadpool` of size
1, whose results come back to the hub through gevent's thread-safe async watcher), so a long
forward pass never blocks the hub: heartbeats, `hello`/`stats` and other clients' decoding go on
while it computes (torch releases the GIL inside its kernels).

Batching. Validated `infer` requests go into a queue that one batcher greenlet drains: it takes
the first request, waits up to `batch_window_s` for more (while the worker is busy, requests
pile up anyway), and hands up to `max_batch` of them to the worker as ONE
`UWMPolicy.infer_batch` call; results are split back per request. Each request keeps its own
noise generator (and its own inpainting prefix, if any), so a batched chunk is the chunk it
would get alone, up to float rounding (a BLAS may block a GEMM differently for more rows). The other
modes (predict_future, imagine, inverse) run one request per worker call.

Errors. Every method takes one msgpack blob and returns one: the reply or an `ErrorReply`
(code, message saying what was expected, field). Bad input never raises through zerorpc and
never stops the server.
"""

from __future__ import annotations

import collections
import hmac
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import gevent
import gevent.event
import gevent.queue
import gevent.threadpool
import numpy as np

from uwm_robot.protocol import (
    DEFAULT_MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    REQUESTS,
    ActionChunkReply,
    ErrorCode,
    ErrorReply,
    FramesReply,
    HelloReply,
    InferRequest,
    Message,
    ProtocolError,
    ServerTiming,
    StatsReply,
    peek_envelope,
    unpackb,
)

log = logging.getLogger("policy_server")

SERVER_VERSION = "0.1.0"
_WINDOW = 1000  # recent requests kept for the latency percentiles in `stats`


@dataclass
class Job:
    """One validated request on its way to the worker thread."""

    kind: str  # "policy" (batchable), "predict_future", "imagine", "inverse"
    args: dict
    received_ns: int
    result: gevent.event.AsyncResult = field(default_factory=gevent.event.AsyncResult)
    started_ns: int = 0
    finished_ns: int = 0
    batch_size: int = 1


class Batcher:
    """Collects jobs on the gevent side and runs them on one worker thread."""

    OVERLAP_MEMORY_S = 2.0  # after requests last overlapped, batches keep waiting the window this long

    def __init__(self, policy: Any, max_batch: int = 4, batch_window_s: float = 0.002):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.policy = policy
        self.max_batch = int(max_batch)
        self.batch_window_s = float(batch_window_s)
        self.pool = gevent.threadpool.ThreadPool(1)
        self.queue: gevent.queue.Queue = gevent.queue.Queue()
        self._held: collections.deque[Job] = collections.deque()  # non-batchable jobs met while batching
        self.batch_sizes: collections.Counter = collections.Counter()
        self.in_flight = 0
        self._overlap_until = 0.0
        self._task = gevent.spawn(self._run)

    def submit(self, job: Job) -> Any:
        """The job's output; blocks the calling greenlet (only) until it is done; re-raises its error."""
        if self.in_flight:  # requests overlap: for a while, let each batch wait for partners
            self._overlap_until = time.monotonic() + self.OVERLAP_MEMORY_S
        self.in_flight += 1
        try:
            self.queue.put(job)
            return job.result.get()
        finally:
            self.in_flight -= 1

    def _next(self, timeout: float | None = None) -> Job | None:
        if self._held:
            return self._held.popleft()
        try:
            return self.queue.get(timeout=timeout) if timeout is None or timeout > 0 else self.queue.get_nowait()
        except gevent.queue.Empty:
            return None

    def _collect(self) -> list[Job]:
        first = self._next()
        batch = [first]
        if first.kind != "policy":
            return batch
        # A lone client never waits for partners; once requests overlap, batches wait the window.
        now = time.monotonic()
        deadline = now + self.batch_window_s if now < self._overlap_until else now
        while len(batch) < self.max_batch:
            job = self._next(timeout=max(0.0, deadline - time.monotonic()))
            if job is None:
                break
            if job.kind == "policy":
                batch.append(job)
            else:
                self._held.append(job)
                break
        return batch

    def _run(self) -> None:
        while True:
            batch = self._collect()
            try:
                outputs = self.pool.spawn(self._compute, batch).get()
            except BaseException as e:  # the model failed: every job of the batch hears it
                if isinstance(e, gevent.GreenletExit):
                    for job in batch:
                        job.result.set_exception(RuntimeError("server shutting down"))
                    raise
                for job in batch:
                    job.result.set_exception(e)
                continue
            self.batch_sizes[len(batch)] += 1
            for job, out in zip(batch, outputs):
                job.result.set(out)

    def _compute(self, batch: list[Job]) -> list[Any]:
        """On the worker thread."""
        started = time.monotonic_ns()
        if batch[0].kind == "policy":
            outputs = self.policy.infer_batch([j.args for j in batch])
        else:
            outputs = [getattr(self.policy, batch[0].kind)(**batch[0].args)]
        finished = time.monotonic_ns()
        for job in batch:
            job.started_ns, job.finished_ns, job.batch_size = started, finished, len(batch)
        return outputs

    def close(self) -> None:
        self._task.kill()
        self.pool.kill()


class LatencyLog:
    def __init__(self) -> None:
        self.values: dict[str, collections.deque] = collections.defaultdict(lambda: collections.deque(maxlen=_WINDOW))

    def add(self, **ms: float) -> None:
        for k, v in ms.items():
            self.values[k].append(v)

    def summary(self) -> dict[str, dict[str, float]]:
        out = {}
        for k, v in self.values.items():
            a = np.asarray(v)
            out[k] = {
                "n": int(a.size),
                "mean": float(a.mean()),
                "p50": float(np.percentile(a, 50)),
                "p95": float(np.percentile(a, 95)),
                "p99": float(np.percentile(a, 99)),
            }
        return out


class PolicyService:
    """The zerorpc methods; `methods()` is what the zerorpc server exposes."""

    def __init__(
        self,
        policy: Any,
        token: str | None = None,
        max_batch: int = 4,
        batch_window_s: float = 0.002,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ):
        self.policy = policy
        self.meta = policy.metadata()
        self._token = token.encode() if token else None
        self.max_message_bytes = int(max_message_bytes)
        self.batcher = Batcher(policy, max_batch=max_batch, batch_window_s=batch_window_s)
        self.started = time.monotonic()
        self.instance = uuid.uuid4().hex  # replies carry it: a client notices a restarted server
        self.requests: collections.Counter = collections.Counter()
        self.errors: collections.Counter = collections.Counter()
        self.latency = LatencyLog()

    def methods(self) -> dict[str, Callable[..., bytes]]:
        return {name: self._method(name) for name in REQUESTS}

    def server_info(self) -> dict[str, Any]:
        return {
            "instance": self.instance,
            "version": SERVER_VERSION,
            "max_batch": self.batcher.max_batch,
            "batch_window_ms": self.batcher.batch_window_s * 1e3,
            "max_message_bytes": self.max_message_bytes,
            "auth": "token" if self._token else "none",
        }

    def close(self) -> None:
        self.batcher.close()

    # ---- dispatch -----------------------------------------------------------------------------
    def _method(self, name: str) -> Callable[..., bytes]:
        def method(*args: Any) -> bytes:
            return self.handle(name, *args)

        method.__name__ = name
        method.__doc__ = f"{name}(msgpack request blob) -> msgpack reply blob (see uwm_robot.protocol)"
        return method

    def handle(self, name: str, *args: Any) -> bytes:
        received = time.monotonic_ns()
        rid = None
        self.requests[name] += 1
        try:
            if len(args) != 1:
                raise ProtocolError(
                    f"{name}: expected exactly one argument (a msgpack request blob), got {len(args)}", ErrorCode.BAD_MESSAGE
                )
            data = unpackb(args[0], max_bytes=self.max_message_bytes)
            version, token, rid = peek_envelope(data)
            self._check_token(token)
            if version != PROTOCOL_VERSION:
                raise ProtocolError(
                    f"protocol version mismatch: the request speaks {version!r}, this server speaks {PROTOCOL_VERSION}; "
                    "update the client or the server so both match",
                    ErrorCode.VERSION_MISMATCH,
                    "protocol_version",
                )
            request = REQUESTS[name].from_wire(data)
            reply = getattr(self, "_" + name)(request, received)
        except ProtocolError as e:
            self.errors[e.code] += 1
            reply = e.to_reply(rid)
        except Exception as e:  # the model failed on valid input: say so, keep serving
            log.exception("%s failed", name)
            self.errors[ErrorCode.INTERNAL] += 1
            reply = ErrorReply(code=ErrorCode.INTERNAL, message=f"{name} failed on the server: {type(e).__name__}: {e}", request_id=rid)
        return reply.pack()

    def _check_token(self, token: Any) -> None:
        if self._token is None:
            return
        if not isinstance(token, str) or not token:
            raise ProtocolError(
                "this server requires a token: pass the shared token (PolicyClient(token=...) / --token-file)",
                ErrorCode.UNAUTHORIZED,
                "token",
            )
        if not hmac.compare_digest(token.encode(), self._token):
            raise ProtocolError("wrong token: it does not match the server's --token-file", ErrorCode.UNAUTHORIZED, "token")

    # ---- methods ------------------------------------------------------------------------------
    def _hello(self, request: Any, received: int) -> Message:
        return HelloReply(
            protocol_version=PROTOCOL_VERSION,
            metadata=self.meta,
            server=self.server_info(),
            server_time_ns=time.monotonic_ns(),
        )

    def _stats(self, request: Any, received: int) -> Message:
        return StatsReply(
            stats={
                "uptime_s": time.monotonic() - self.started,
                "checkpoint_id": self.meta.get("checkpoint_id"),
                "requests": dict(self.requests),
                "errors": dict(self.errors),
                "batch_sizes": {str(k): v for k, v in sorted(self.batcher.batch_sizes.items())},
                "in_flight": self.batcher.in_flight,
                "latency_ms": self.latency.summary(),
                "server": self.server_info(),
            }
        )

    def _run(self, kind: str, request: InferRequest, received: int, **args: Any) -> tuple[Job, dict]:
        request.validate_against(self.meta)
        state = {k: request.state[k] for k in self.meta.get("state_shapes") or {}}  # the model's keys; the rest is logged only
        job = Job(kind, {"images": _batched({**request.images, **state}), "seed": request.seed, **args}, received)
        return job, self.batcher.submit(job)

    def _timing(self, job: Job) -> dict:
        sent = time.monotonic_ns()
        t = ServerTiming(
            received_ns=job.received_ns,
            started_ns=job.started_ns,
            finished_ns=job.finished_ns,
            sent_ns=sent,
            inference_ms=(job.finished_ns - job.started_ns) / 1e6,
            queue_ms=(job.started_ns - job.received_ns) / 1e6,
            batch_size=job.batch_size,
        )
        self.latency.add(inference_ms=t.inference_ms, queue_ms=t.queue_ms, server_ms=t.server_ms)
        return t.to_wire()

    def _actions(self, request: InferRequest, job: Job, out: dict) -> Message:
        return ActionChunkReply(
            request_id=request.request_id,
            actions=out["actions"][0],
            raw=out["raw"][0],
            obs_timestamp_ns=request.obs_timestamp_ns(),
            seed=out["seed"],
            timing=self._timing(job),
            server_instance=self.instance,
        )

    def _frames(self, request: InferRequest, job: Job, out: dict) -> Message:
        return FramesReply(
            request_id=request.request_id,
            frames={cam: f[0] for cam, f in out["frames"].items()},
            obs_timestamp_ns=request.obs_timestamp_ns(),
            seed=out["seed"],
            timing=self._timing(job),
            server_instance=self.instance,
        )

    def _infer(self, request: Any, received: int) -> Message:
        # The prefix, guide and noise scale stay with their request through batching (infer_batch
        # inpaints, samples and selects per request).
        return self._actions(request, *self._run("policy", request, received, prefix=request.prefix,
                                                 prefix_mask=request.prefix_mask, guide=request.guide,
                                                 guide_mask=request.guide_mask, noise_scale=request.noise_scale))

    def _inverse(self, request: Any, received: int) -> Message:
        return self._actions(request, *self._run("inverse", request, received, goal_images=_batched(request.goal_images)))

    def _predict_future(self, request: Any, received: int) -> Message:
        actions_raw = request.actions_raw[None].astype(np.float32)
        return self._frames(request, *self._run("predict_future", request, received, actions_raw=actions_raw))

    def _imagine(self, request: Any, received: int) -> Message:
        return self._frames(request, *self._run("imagine", request, received))


def _batched(images: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """(n_obs, H, W, 3) per camera (and (n_obs, D) per state key) -> a batch of one (views, no copy)."""
    return {cam: img[None] for cam, img in images.items()}


# ---- serving ----------------------------------------------------------------------------------
def make_zerorpc_server(service: PolicyService, heartbeat_s: float = 5.0, hard_limit_bytes: int | None = None):
    """A zerorpc server exposing exactly the protocol's methods (bind it, then `run()`)."""
    import zerorpc
    import zmq

    server = zerorpc.Server(service.methods(), name="policy_server", heartbeat=heartbeat_s)
    if hard_limit_bytes:
        # Beyond this zmq drops the connection instead of buffering the message; messages between
        # max_message_bytes and this get a `too_large` ErrorReply.
        server._events.setsockopt(zmq.MAXMSGSIZE, int(hard_limit_bytes))
    return server


def bound_endpoint(server) -> str:
    import zmq

    ep = server._events._socket.getsockopt(zmq.LAST_ENDPOINT)
    return ep.decode() if isinstance(ep, bytes) else str(ep)
