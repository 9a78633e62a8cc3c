"""`PolicyClient`: talks to `policy_server`. No torch and no gevent (numpy, msgpack, pyzmq).

Transport. The server is a zerorpc server. The client speaks zerorpc's wire format (v3) itself
on a plain zmq DEALER socket: one frame `msgpack([{"message_id", "v": 3}, method, [arg]])` out,
replies `OK` / `ERR` (and `_zpc_hb` heartbeats) routed back by `response_to`. While it waits,
it sends `_zpc_hb` every `heartbeat_s`, as zerorpc clients do, so the server never drops a long
call. Why not zerorpc's own client: it runs on gevent, whose objects belong to the thread (hub)
that made them, while the robot's control loop calls the policy from ordinary threads. Running
it in a private gevent thread works (an earlier version did) but costs two thread hand-offs and
zerorpc's greenlet machinery per call, ~0.7 ms of the ~2-3 ms loopback overhead for a 1 MB
observation measured here, and it puts gevent into the robot process. The plain socket is used
only by the thread that calls: each calling thread gets its own socket (thread-local), so any
thread may call, several at once, with no locks on the request path.

Failures. A structured server error (`ErrorReply`) raises `PolicyServerError` (code, message,
field) at once: it is deterministic, a retry would get the same answer. A transport failure
(timeout, zmq error) closes that thread's socket, waits with exponential backoff, reconnects and
retries, `retries` times at most; then `PolicyConnectionError`. Every reply names the server
instance; when it changes (the server restarted), the client repeats the handshake and refuses
to go on if the checkpoint, normaliser or observation layout changed.

Timing. Every call records round trip (client clock), server time (received -> reply ready, on
the server's clock) and their difference, the transport overhead (zmq, loopback, zerorpc
framing on the server).
"""

from __future__ import annotations

import collections
import itertools
import os
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any, Mapping

import msgpack
import numpy as np

from .protocol import (
    PROTOCOL_VERSION,
    ActionChunkReply,
    ErrorCode,
    ErrorReply,
    FramesReply,
    HelloReply,
    HelloRequest,
    ImagineRequest,
    InferRequest,
    InverseRequest,
    Message,
    PredictFutureRequest,
    ProtocolError,
    StatsReply,
    StatsRequest,
    decode_reply,
    unpackb,
)


class PolicyServerError(RuntimeError):
    """The server answered with an error: `code` (protocol.ErrorCode), `message`, `field`."""

    def __init__(self, code: str, message: str, field: str | None = None, request_id: str | None = None):
        super().__init__(f"[{code}] {message}" + (f" (field: {field})" if field else ""))
        self.code, self.message, self.field, self.request_id = code, message, field, request_id


class PolicyConnectionError(ConnectionError):
    """The server could not be reached (after retries), or came back as a different server."""


# Metadata that must not change across a reconnect: the robot would be driven by another model.
IDENTITY_KEYS = ("checkpoint_hash", "normalizer_hash", "cameras", "image_shape", "n_obs_steps", "action_len", "action_space")


@dataclass
class CallTiming:
    method: str
    round_trip_ms: float
    server_ms: float  # received -> reply ready, server clock
    transport_ms: float  # round trip - server
    inference_ms: float = 0.0
    queue_ms: float = 0.0
    batch_size: int = 0
    request_bytes: int = 0
    reply_bytes: int = 0


class _TransportError(ConnectionError):
    """No reply in time, or the socket failed: retried after a reconnect."""


class _RemoteError(RuntimeError):
    """The zerorpc layer answered ERR (e.g. an unknown method): not our protocol's ErrorReply."""

    def __init__(self, name: str, message: str):
        super().__init__(f"{name}: {message}")
        self.name, self.message = name, message


class _Wire:
    """One zmq DEALER socket speaking zerorpc's wire format; used by one thread only."""

    def __init__(self, address: str, heartbeat_s: float | None):
        import zmq

        self.zmq = zmq
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)  # closing never waits for unsent requests
        self.sock.connect(address)
        self.heartbeat_s = heartbeat_s

    def _send(self, header: dict, name: str, args: tuple) -> None:
        blob = msgpack.packb([header, name, list(args)], use_bin_type=True)
        try:
            self.sock.send_multipart([b"", blob], flags=self.zmq.NOBLOCK, copy=False)
        except self.zmq.ZMQError as e:
            raise _TransportError(f"cannot send: {e}") from None

    def call(self, method: str, arg: Any, timeout: float) -> Any:
        mid = uuid.uuid4().hex
        self._send({"message_id": mid, "v": 3}, method, (arg,))
        now = time.monotonic()
        deadline = now + timeout
        next_hb = now + self.heartbeat_s if self.heartbeat_s else float("inf")
        while True:
            wait = min(deadline, next_hb) - now
            try:
                ready = self.sock.poll(max(0, int(wait * 1000) + 1), self.zmq.POLLIN)
                frames = self.sock.recv_multipart(copy=False) if ready else None
            except self.zmq.ZMQError as e:
                raise _TransportError(f"socket failed: {e}") from None
            if frames is not None:
                try:
                    header, name, args = msgpack.unpackb(frames[-1].buffer, raw=False)
                except Exception:
                    continue  # not a zerorpc event: ignore it, as zerorpc does
                if not isinstance(header, dict) or header.get("response_to") != mid:
                    continue  # a late reply to an abandoned call
                if name == "OK":
                    return args[0]
                if name == "ERR":
                    err = list(args) + ["", ""]
                    raise _RemoteError(str(err[0]), str(err[1]))
                continue  # _zpc_hb: the server is alive and working on it
            now = time.monotonic()
            if now >= deadline:
                raise _TransportError(f"no reply within {timeout:g} s")
            if now >= next_hb:
                self._send({"message_id": uuid.uuid4().hex, "v": 3, "response_to": mid}, "_zpc_hb", (0,))
                next_hb = now + self.heartbeat_s

    def close(self) -> None:
        self.sock.close(linger=0)


class PolicyClient:
    """Client of one policy server. Thread-safe; use as a context manager or call `close()`."""

    def __init__(
        self,
        address: str,
        token: str | None = None,
        timeout_s: float = 10.0,
        retries: int = 2,
        backoff_initial_s: float = 0.05,
        backoff_max_s: float = 2.0,
        heartbeat_s: float | None = 2.0,
        expect: Mapping[str, Any] | None = None,
        validate: bool = True,
        client_name: str | None = None,
        timing_window: int = 10_000,
    ):
        """`expect`: metadata values the server must have (e.g. `{"checkpoint_hash": ...}`);
        `validate`: check observations against the server's metadata before sending;
        `heartbeat_s`: how often a waiting call tells the server it is still there (zerorpc drops a
        call after two of its own heartbeat periods, 5 s by default, without one; keep it shorter)."""
        self.address = address
        self.token = token
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self.backoff_initial_s = float(backoff_initial_s)
        self.backoff_max_s = float(backoff_max_s)
        self.heartbeat_s = heartbeat_s
        self.expect = dict(expect or {})
        self.validate = validate
        self.client_name = client_name or f"uwm_robot.client/{os.getpid()}"
        self.metadata: dict[str, Any] | None = None
        self.server_info: dict[str, Any] | None = None
        self.clock_offset_ns: int | None = None  # server monotonic - client monotonic (estimate)
        self.timings: collections.deque[CallTiming] = collections.deque(maxlen=timing_window)
        self.reconnects = 0
        self._ids = itertools.count()
        self._prefix = uuid.uuid4().hex[:8]
        self._lock = threading.Lock()
        self._failures = 0  # consecutive transport failures (drives the backoff)
        self._local = threading.local()  # each calling thread's _Wire
        self._wires: list[_Wire] = []
        self._closed = False

    # ---- connection (per calling thread) -----------------------------------------------------
    def _wire(self) -> _Wire:
        wire = getattr(self._local, "wire", None)
        if wire is None:
            wire = self._local.wire = _Wire(self.address, self.heartbeat_s)
            with self._lock:
                self._wires.append(wire)
        return wire

    def _drop_wire(self) -> None:
        wire = getattr(self._local, "wire", None)
        if wire is not None:
            self._local.wire = None
            with self._lock:
                self._wires.remove(wire)
            wire.close()

    def _new_id(self) -> str:
        return f"{self._prefix}-{next(self._ids)}"

    def _roundtrip(self, method: str, payload: Any, timeout: float | None) -> tuple[Any, float]:
        timeout = self.timeout_s if timeout is None else float(timeout)
        t0 = time.perf_counter()
        try:
            reply = self._wire().call(method, payload, timeout)
        except _RemoteError as e:
            code = ErrorCode.UNKNOWN_METHOD if e.name == "NameError" else ErrorCode.INTERNAL
            raise PolicyServerError(code, f"{method}: the server raised {e.name}: {e.message}") from None
        return reply, (time.perf_counter() - t0) * 1e3

    def _reconnect(self) -> None:
        """Close this thread's socket and back off (exponentially over consecutive failures)."""
        self._drop_wire()
        with self._lock:
            self._failures += 1
            self.reconnects += 1
            delay = min(self.backoff_max_s, self.backoff_initial_s * 2 ** (self._failures - 1))
        time.sleep(delay)

    def _call(self, method: str, request: Message, expected: type[Message], timeout: float | None = None) -> tuple[Message, CallTiming]:
        if self._closed:
            raise PolicyConnectionError("the client is closed")
        request.token = self.token
        blob = request.pack()
        last: BaseException | None = None
        for attempt in range(self.retries + 1):
            try:
                reply_blob, rt_ms = self._roundtrip(method, blob, timeout)
            except _TransportError as e:
                last = e
                if attempt < self.retries:
                    self._reconnect()
                continue
            self._failures = 0
            reply = decode_reply(reply_blob, expected)
            if isinstance(reply, ErrorReply):
                raise PolicyServerError(reply.code, reply.message, reply.field, reply.request_id)
            instance = getattr(reply, "server_instance", None)
            if instance and self.server_info is not None and instance != self.server_info.get("instance"):
                # The server restarted under us: make sure it still serves the same model.
                self._handshake(timeout)
            timing = getattr(reply, "timing", None) or {}
            server_ms = (timing.get("sent_ns", 0) - timing.get("received_ns", 0)) / 1e6 if timing else 0.0
            rec = CallTiming(
                method=method,
                round_trip_ms=rt_ms,
                server_ms=server_ms,
                transport_ms=rt_ms - server_ms,
                inference_ms=float(timing.get("inference_ms", 0.0)),
                queue_ms=float(timing.get("queue_ms", 0.0)),
                batch_size=int(timing.get("batch_size", 0)),
                request_bytes=len(blob),
                reply_bytes=len(reply_blob),
            )
            self.timings.append(rec)
            return reply, rec
        raise PolicyConnectionError(
            f"{method}: no answer from {self.address} after {self.retries + 1} attempt(s) "
            f"(timeout {self.timeout_s if timeout is None else timeout} s): {type(last).__name__}: {last}"
        ) from last

    # ---- handshake ---------------------------------------------------------------------------
    def _handshake(self, timeout: float | None = None) -> dict[str, Any]:
        t0 = time.monotonic_ns()
        reply, _ = self._call("hello", HelloRequest(request_id=self._new_id(), client=self.client_name), HelloReply, timeout)
        t1 = time.monotonic_ns()
        assert isinstance(reply, HelloReply)
        if reply.protocol_version != PROTOCOL_VERSION:
            raise PolicyServerError(
                "version_mismatch",
                f"the server speaks protocol {reply.protocol_version}, this client {PROTOCOL_VERSION}",
                "protocol_version",
            )
        meta = reply.metadata
        for key, want in self.expect.items():
            if meta.get(key) != want:
                raise PolicyConnectionError(f"server {self.address}: metadata {key}={meta.get(key)!r}, expected {want!r}")
        if self.metadata is not None:
            changed = [k for k in IDENTITY_KEYS if meta.get(k) != self.metadata.get(k)]
            if changed:
                raise PolicyConnectionError(
                    f"server {self.address} came back with different {changed} "
                    f"(checkpoint {self.metadata.get('checkpoint_id')} -> {meta.get('checkpoint_id')}); refusing to continue"
                )
        self.metadata, self.server_info = meta, reply.server
        self.clock_offset_ns = reply.server_time_ns - (t0 + t1) // 2
        return meta

    def hello(self, timeout: float | None = None) -> dict[str, Any]:
        """Handshake: checks the protocol version (and `expect`); returns the policy metadata."""
        return dict(self._handshake(timeout))

    def _meta(self) -> dict[str, Any]:
        return self.metadata if self.metadata is not None else self._handshake()

    # ---- requests ----------------------------------------------------------------------------
    @staticmethod
    def _arrays(d: Mapping[str, Any] | None, dtype: Any = None) -> dict[str, np.ndarray] | None:
        if d is None:
            return None
        return {str(k): np.asarray(v, dtype=dtype) if dtype is not None else np.asarray(v) for k, v in d.items()}

    def _observation(self, cls: type[InferRequest], images, timestamps, state, seed, request_id, **extra) -> InferRequest:
        req = cls(
            request_id=request_id or self._new_id(),
            images=self._arrays(images),
            timestamps=self._arrays(timestamps, np.int64),
            state=self._arrays(state),
            seed=None if seed is None else int(seed),
            sent_ns=time.monotonic_ns(),
            **extra,
        )
        if self.validate:
            req.validate()
            req.validate_against(self._meta())
        return req

    @staticmethod
    def _timings(rec: CallTiming) -> dict[str, float]:
        d = asdict(rec)
        d.pop("method")
        return d

    def _actions(self, reply: ActionChunkReply, rec: CallTiming) -> dict[str, Any]:
        return {
            "actions": reply.actions,
            "raw": reply.raw,
            "request_id": reply.request_id,
            "obs_timestamp_ns": reply.obs_timestamp_ns,
            "seed": reply.seed,
            "timings": self._timings(rec),
            "server_timing": dict(reply.timing),
        }

    def _frames(self, reply: FramesReply, rec: CallTiming) -> dict[str, Any]:
        return {
            "frames": reply.frames,
            "request_id": reply.request_id,
            "obs_timestamp_ns": reply.obs_timestamp_ns,
            "seed": reply.seed,
            "timings": self._timings(rec),
            "server_timing": dict(reply.timing),
        }

    def infer(
        self,
        images: Mapping[str, Any],
        state: Mapping[str, Any] | None = None,
        timestamps: Mapping[str, Any] | None = None,
        seed: int | None = None,
        request_id: str | None = None,
        timeout: float | None = None,
        prefix: Any = None,
        prefix_mask: Any = None,
        guide: Any = None,
        guide_mask: Any = None,
        noise_scale: float | None = None,
    ) -> dict[str, Any]:
        """One action chunk for the observation `images` (camera -> uint8 (n_obs, H, W, 3)).

        `prefix` (L, 10) normalised model actions (an earlier reply's `raw` rows) with a bool
        `prefix_mask` (L,): the server inpaints those rows, and the reply's masked `raw` rows equal them.
        `guide`/`guide_mask`, the same layout: a server drawing several samples per request returns
        the one nearest the guide on the masked rows (backward coherence) instead of their medoid.
        `noise_scale` in [0, 1]: this request's factor on the starting noise (None: the server's).

        Returns `{"actions": (L, 7) float32 DROID, "raw": (L, 10) normalised, "request_id",
        "obs_timestamp_ns" (newest capture time sent), "seed", "timings" (ms), "server_timing"}`.
        """
        extra = {}
        for rows, mask, values, flags in (("prefix", "prefix_mask", prefix, prefix_mask),
                                          ("guide", "guide_mask", guide, guide_mask)):
            if values is not None or flags is not None:
                extra[rows] = None if values is None else np.asarray(values, np.float32)
                extra[mask] = None if flags is None else np.asarray(flags, bool)
        if noise_scale is not None:
            extra["noise_scale"] = noise_scale
        req = self._observation(InferRequest, images, timestamps, state, seed, request_id, **extra)
        reply, rec = self._call("infer", req, ActionChunkReply, timeout)
        return self._actions(reply, rec)

    def inverse(self, images, goal_images, seed=None, timestamps=None, request_id=None, timeout=None) -> dict[str, Any]:
        """The chunk leading from `images` to `goal_images` (same layout); returns as `infer`."""
        req = self._observation(InverseRequest, images, timestamps, None, seed, request_id, goal_images=self._arrays(goal_images))
        reply, rec = self._call("inverse", req, ActionChunkReply, timeout)
        return self._actions(reply, rec)

    def predict_future(self, images, actions_raw, seed=None, timestamps=None, request_id=None, timeout=None) -> dict[str, Any]:
        """Predicted frames `{"frames": {camera: uint8 (T, h, w, 3)}, ...}` after the normalised
        model action chunk `actions_raw` (L, D) (e.g. an `infer` reply's `raw`)."""
        req = self._observation(
            PredictFutureRequest, images, timestamps, None, seed, request_id, actions_raw=np.asarray(actions_raw, np.float32)
        )
        reply, rec = self._call("predict_future", req, FramesReply, timeout)
        return self._frames(reply, rec)

    def imagine(self, images, seed=None, timestamps=None, request_id=None, timeout=None) -> dict[str, Any]:
        """Predicted frames with the actions marginalised out (video prediction)."""
        req = self._observation(ImagineRequest, images, timestamps, None, seed, request_id)
        reply, rec = self._call("imagine", req, FramesReply, timeout)
        return self._frames(reply, rec)

    def stats(self, timeout: float | None = None) -> dict[str, Any]:
        reply, _ = self._call("stats", StatsRequest(request_id=self._new_id()), StatsReply, timeout)
        return reply.stats

    def send_raw(self, method: str, payload: Any, timeout: float | None = None) -> Any:
        """Send any argument as is (no retries); returns the decoded reply (tests, diagnostics)."""
        reply_blob, _ = self._roundtrip(method, payload, timeout)
        return unpackb(reply_blob)

    # ---- timing summary ----------------------------------------------------------------------
    def timing_summary(self, method: str | None = "infer") -> dict[str, dict[str, float]]:
        recs = [t for t in self.timings if method is None or t.method == method]
        out = {}
        for key in ("round_trip_ms", "server_ms", "transport_ms", "inference_ms", "queue_ms"):
            a = np.asarray([getattr(t, key) for t in recs], dtype=np.float64)
            if a.size:
                out[key] = {"n": int(a.size), "p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)),
                            "p99": float(np.percentile(a, 99)), "mean": float(a.mean())}
        return out

    # ---- lifetime ----------------------------------------------------------------------------
    def close(self) -> None:
        """Close every thread's socket (call it when no call is in flight)."""
        if self._closed:
            return
        self._closed = True
        with self._lock:
            wires, self._wires = self._wires, []
        for wire in wires:
            wire.close()

    def __enter__(self) -> "PolicyClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


__all__ = ["CallTiming", "PolicyClient", "PolicyConnectionError", "PolicyServerError", "ProtocolError"]
