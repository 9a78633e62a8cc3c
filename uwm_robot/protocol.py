"""The policy-server wire protocol, shared by `policy_server` and `uwm_robot.client`.

Importable without torch (numpy + msgpack only): the robot side never loads the network.

Transport: every zerorpc method (`hello`, `infer`, `predict_future`, `imagine`, `inverse`,
`stats`) takes ONE argument, a msgpack blob of a request message, and returns ONE msgpack
blob: the reply message or an `ErrorReply`. The server answers bad input with an
`ErrorReply` (it never raises through zerorpc), so a client always gets a message it can read.

Codec: msgpack, with each numpy array as a map
    {"__ndarray__": 1, "dtype": "<u1", "shape": [2, 180, 320, 3], "data": <bin>}
Only bool/int/uint/float/complex dtypes are allowed; object, void, string and datetime dtypes
are refused both ways, so nothing ever needs pickle. Decoded arrays are read-only views of the
received buffer (no copy).

Every request carries `protocol_version`, an optional `token` (checked by the server with
`hmac.compare_digest`) and a `request_id`. Timestamps are `time.monotonic_ns()` of the host
that took them; durations are milliseconds.
"""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import msgpack
import numpy as np

PROTOCOL_VERSION = 1
DEFAULT_PORT = 4242
DEFAULT_ADDRESS = f"tcp://127.0.0.1:{DEFAULT_PORT}"
DEFAULT_MAX_MESSAGE_BYTES = 16 << 20  # a droid observation is ~1 MiB

_ND_KEY = "__ndarray__"
_DTYPE_RE = re.compile(r"^[<>|=]?[biufc][0-9]{1,2}$")
_MAX_NDIM = 8


def is_noise_scale(value) -> bool:
    """A factor on a chunk's starting DDIM noise: a real number in [0, 1] (1: the official sampler)."""
    return not isinstance(value, bool) and isinstance(value, numbers.Real) and 0.0 <= value <= 1.0


def sampling_problem(samples: int, noise_scale: float) -> str | None:
    """Why a server's sampling settings are refused, in `policy_server serve`'s flag names; None
    when they are valid. One wording for the server, the client's loopback settings and UWMPolicy."""
    if samples < 1:
        return f"--samples must be >= 1 (chunks sampled per request), got {samples}"
    if not is_noise_scale(noise_scale):
        return f"--noise-scale must be in [0, 1] (the factor on each chunk's starting noise), got {noise_scale}"
    return None


# ---- errors -----------------------------------------------------------------------------------
class ErrorCode:
    BAD_MESSAGE = "bad_message"  # not msgpack / not a message of the expected type
    TOO_LARGE = "too_large"  # over the server's message size limit
    VERSION_MISMATCH = "version_mismatch"
    UNAUTHORIZED = "unauthorized"  # missing or wrong token
    INVALID_FIELD = "invalid_field"  # a field has the wrong type, dtype, shape, value (NaN, inf)
    UNKNOWN_METHOD = "unknown_method"
    INTERNAL = "internal"  # the model failed; the server keeps serving


class ProtocolError(ValueError):
    """A message that does not follow the protocol; `code`, `field` as in `ErrorReply`."""

    def __init__(self, message: str, code: str = ErrorCode.INVALID_FIELD, field: str | None = None):
        super().__init__(message)
        self.code = code
        self.field = field
        self.message = message

    def to_reply(self, request_id: str | None = None) -> "ErrorReply":
        return ErrorReply(code=self.code, message=self.message, field=self.field, request_id=request_id)


# ---- codec ------------------------------------------------------------------------------------
def _check_dtype(dtype: np.dtype, where: str) -> None:
    if dtype.kind not in "biufc" or dtype.fields is not None or dtype.subdtype is not None:
        raise ProtocolError(
            f"{where}: dtype {dtype.str!r} cannot go on the wire; expected a numeric dtype "
            "(bool, int, uint, float, complex); object/void/string arrays are refused",
            field=where,
        )


def _encode_default(obj: Any, where: str = "value") -> Any:
    if isinstance(obj, np.ndarray):
        _check_dtype(obj.dtype, where)
        arr = np.ascontiguousarray(obj)
        if arr.dtype.byteorder == ">":
            arr = arr.astype(arr.dtype.newbyteorder("<"))
        # memoryview: msgpack copies the bytes once, straight into its buffer.
        return {_ND_KEY: 1, "dtype": arr.dtype.str, "shape": list(obj.shape), "data": arr.reshape(-1).view(np.uint8).data}
    if isinstance(obj, np.generic):
        if obj.dtype.kind not in "biuf":
            raise ProtocolError(f"{where}: numpy scalar of dtype {obj.dtype.str!r} cannot go on the wire", field=where)
        return obj.item()
    raise ProtocolError(f"{where}: cannot encode a {type(obj).__name__}; expected numbers, str, bytes, lists, dicts or numpy arrays")


def _decode_ndarray(obj: dict) -> Any:
    if obj.get(_ND_KEY) is None:
        return obj
    if set(obj) != {_ND_KEY, "dtype", "shape", "data"}:
        raise ProtocolError(f"malformed array: keys {sorted(obj)}; expected {sorted([_ND_KEY, 'dtype', 'shape', 'data'])}", ErrorCode.BAD_MESSAGE)
    dtype_s, shape, data = obj["dtype"], obj["shape"], obj["data"]
    if not isinstance(dtype_s, str) or not _DTYPE_RE.match(dtype_s):
        raise ProtocolError(
            f"array dtype {dtype_s!r} is not allowed; expected a numeric dtype string like '<f4' or '|u1' "
            "(object/void/string dtypes are refused)",
            ErrorCode.BAD_MESSAGE,
        )
    try:
        dtype = np.dtype(dtype_s)
    except TypeError:
        raise ProtocolError(f"array dtype {dtype_s!r} is not a numpy dtype", ErrorCode.BAD_MESSAGE) from None
    _check_dtype(dtype, "array")
    if (
        not isinstance(shape, list)
        or len(shape) > _MAX_NDIM
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)
    ):
        raise ProtocolError(f"array shape {shape!r} is not a list of at most {_MAX_NDIM} non-negative ints", ErrorCode.BAD_MESSAGE)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ProtocolError(f"array data must be bytes, got {type(data).__name__}", ErrorCode.BAD_MESSAGE)
    expected = math.prod(shape) * dtype.itemsize
    if len(data) != expected:
        raise ProtocolError(
            f"array data has {len(data)} bytes; dtype {dtype.str} x shape {shape} needs {expected}", ErrorCode.BAD_MESSAGE
        )
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def packb(obj: Any) -> bytes:
    """msgpack with the ndarray codec. Raises ProtocolError for values it refuses to encode."""
    return msgpack.packb(obj, default=_encode_default, use_bin_type=True)


def unpackb(data: Any, max_bytes: int | None = None) -> Any:
    """Inverse of `packb`. Anything that is not a well-formed message raises ProtocolError."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ProtocolError(f"expected a msgpack blob (bytes), got {type(data).__name__}", ErrorCode.BAD_MESSAGE)
    if max_bytes is not None and len(data) > max_bytes:
        raise ProtocolError(
            f"message is {len(data)} bytes; this server accepts at most {max_bytes} bytes", ErrorCode.TOO_LARGE
        )
    try:
        return msgpack.unpackb(data, raw=False, object_hook=_decode_ndarray, strict_map_key=True)
    except ProtocolError:
        raise
    except Exception as e:  # msgpack raises several unrelated types for garbage
        detail = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        raise ProtocolError(f"not a valid msgpack message ({detail})", ErrorCode.BAD_MESSAGE) from None


# ---- field validation helpers (shared by messages and the server) ----------------------------
def _type_name(x: Any) -> str:
    if isinstance(x, np.ndarray):
        return f"{x.dtype} array of shape {tuple(x.shape)}"
    return type(x).__name__


def check_int(value: Any, name: str, optional: bool = False, lo: int | None = None, hi: int | None = None) -> int | None:
    if value is None and optional:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise ProtocolError(f"{name}: expected an int{' or null' if optional else ''}, got {_type_name(value)}", field=name)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ProtocolError(f"{name}: expected an int in [{lo}, {hi}], got {value}", field=name)
    return value


def check_str(value: Any, name: str, optional: bool = False, max_len: int = 256) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise ProtocolError(f"{name}: expected a string{' or null' if optional else ''}, got {_type_name(value)}", field=name)
    if len(value) > max_len:
        raise ProtocolError(f"{name}: expected at most {max_len} characters, got {len(value)}", field=name)
    return value


def check_array(
    value: Any,
    name: str,
    kinds: str,
    shape: tuple[int | None, ...] | None = None,
    finite: bool = False,
    what: str = "",
) -> np.ndarray:
    """An ndarray whose dtype kind is in `kinds` and whose shape matches (None = any size)."""
    if not isinstance(value, np.ndarray):
        raise ProtocolError(f"{name}: expected {what or 'an array'}, got {_type_name(value)}", field=name)
    if value.dtype.kind not in kinds:
        raise ProtocolError(f"{name}: expected {what or 'an array'}, got dtype {value.dtype}", field=name)
    if shape is not None and (
        value.ndim != len(shape) or any(s is not None and s != v for s, v in zip(shape, value.shape))
    ):
        want = str(tuple("N" if s is None else s for s in shape)).replace("'", "")
        raise ProtocolError(f"{name}: expected {what or 'an array'} of shape {want}, got shape {tuple(value.shape)}", field=name)
    if finite and value.dtype.kind in "fc" and not np.isfinite(value).all():
        bad = int((~np.isfinite(value)).sum())
        raise ProtocolError(f"{name}: expected finite values, got {bad} NaN/inf entries", field=name)
    return value


def check_images(images: Any, name: str, cameras: list[str] | tuple[str, ...], n_obs: int, hw: tuple[int, int]) -> dict[str, np.ndarray]:
    """Per-camera uint8 (n_obs, H, W, 3) frames for exactly the model's cameras."""
    if not isinstance(images, dict):
        raise ProtocolError(f"{name}: expected a map camera -> uint8 ({n_obs}, {hw[0]}, {hw[1]}, 3), got {_type_name(images)}", field=name)
    missing = [c for c in cameras if c not in images]
    unknown = sorted(str(c) for c in images if c not in cameras)
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"missing camera(s) {missing}")
        if unknown:
            parts.append(f"unknown camera(s) {unknown}")
        raise ProtocolError(f"{name}: {' and '.join(parts)}; the model expects exactly {list(cameras)}", field=name)
    out = {}
    for cam in cameras:
        out[cam] = check_array(
            images[cam], f"{name}.{cam}", "u", (n_obs, hw[0], hw[1], 3), what="uint8 frames"
        )
        if out[cam].dtype != np.uint8:
            raise ProtocolError(f"{name}.{cam}: expected uint8 frames, got dtype {out[cam].dtype}", field=f"{name}.{cam}")
    return out


def _check_array_map(value: Any, name: str, kinds: str, finite: bool, what: str) -> dict[str, np.ndarray] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ProtocolError(f"{name}: expected a map name -> {what} or null, got {_type_name(value)}", field=name)
    out = {}
    for k, v in value.items():
        if isinstance(v, (list, tuple)):
            v = np.asarray(v)
        out[k] = check_array(v, f"{name}.{k}", kinds, finite=finite, what=what)
    return out


# ---- messages ---------------------------------------------------------------------------------
@dataclass
class Message:
    """Base: `to_wire()` -> dict with "type"; `from_wire(dict)` validates types and raises ProtocolError."""

    TYPE: ClassVar[str] = ""

    def to_wire(self) -> dict[str, Any]:
        d = {"type": self.TYPE}
        for f in fields(self):
            d[f.name] = getattr(self, f.name)
        return d

    def pack(self) -> bytes:
        return packb(self.to_wire())

    @classmethod
    def _fields_of(cls, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise ProtocolError(f"expected a {cls.TYPE!r} message (a map), got {_type_name(data)}", ErrorCode.BAD_MESSAGE)
        if data.get("type") != cls.TYPE:
            raise ProtocolError(f"expected a message of type {cls.TYPE!r}, got type {data.get('type')!r}", ErrorCode.BAD_MESSAGE, "type")
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(k) for k in data if k != "type" and k not in known)
        if unknown:
            raise ProtocolError(f"{cls.TYPE}: unknown field(s) {unknown}; expected some of {sorted(known)}", field=unknown[0])
        return {k: v for k, v in data.items() if k != "type"}

    @classmethod
    def from_wire(cls, data: Any) -> "Message":
        m = cls(**cls._fields_of(data))
        m.validate()
        return m

    def validate(self) -> None:
        """Type checks of the fields (ProtocolError naming the field); subclasses extend it."""


@dataclass
class Request(Message):
    """Fields every request has. The server checks the version before anything else."""

    protocol_version: int = PROTOCOL_VERSION
    token: str | None = None
    request_id: str = ""

    def validate(self) -> None:
        check_int(self.protocol_version, "protocol_version")
        check_str(self.token, "token", optional=True, max_len=4096)
        check_str(self.request_id, "request_id", max_len=128)


def peek_envelope(data: Any) -> tuple[Any, Any, Any]:
    """(protocol_version, token, request_id) of a decoded request, unchecked; for early rejection."""
    if not isinstance(data, dict):
        return None, None, None
    rid = data.get("request_id")
    return data.get("protocol_version"), data.get("token"), rid if isinstance(rid, str) else None


@dataclass
class HelloRequest(Request):
    TYPE: ClassVar[str] = "hello"
    client: str = ""

    def validate(self) -> None:
        super().validate()
        check_str(self.client, "client")


@dataclass
class HelloReply(Message):
    """The handshake: protocol version, the policy's metadata, server limits and clock."""

    TYPE: ClassVar[str] = "hello"
    protocol_version: int = PROTOCOL_VERSION
    metadata: dict = field(default_factory=dict)  # UWMPolicy.metadata()
    server: dict = field(default_factory=dict)  # instance, max_batch, max_message_bytes, auth, version
    server_time_ns: int = 0  # server monotonic clock, for a clock-offset estimate

    def validate(self) -> None:
        check_int(self.protocol_version, "protocol_version")
        for name in ("metadata", "server"):
            if not isinstance(getattr(self, name), dict):
                raise ProtocolError(f"hello.{name}: expected a map", field=name)
        check_int(self.server_time_ns, "server_time_ns")


@dataclass
class InferRequest(Request):
    """p(a | o): the current observation -> an action chunk."""

    TYPE: ClassVar[str] = "infer"
    images: dict = field(default_factory=dict)  # camera -> uint8 (n_obs, H, W, 3), oldest first
    timestamps: dict | None = None  # camera -> int64 (n_obs,) capture times (ns, client clock)
    state: dict | None = None  # low-dim robot state, key -> float (n_obs, D); the model's `state_shapes` are required
    seed: int | None = None  # None: the server draws one and returns it
    sent_ns: int | None = None  # client clock when sent
    # Optional inpainting (infer only): normalised model actions (action_len, raw_action_dim) and a
    # bool (action_len,) mask; the chunk's masked rows come back equal to the prefix. Left off the
    # wire when None, so a client that does not use it still talks to an older server.
    prefix: Any = None
    prefix_mask: Any = None
    # Optional backward coherence (infer only), the same layout: the previous chunk's plan for the
    # masked rows; a server drawing several samples returns the one nearest it instead of their medoid.
    guide: Any = None
    guide_mask: Any = None
    # Optional (infer only): this request's factor in [0, 1] on the starting action noise, in place of the
    # server's --noise-scale (a client raises it while the arm is stalled); left off the wire when None.
    noise_scale: float | None = None

    TAKES_POLICY_OPTIONS: ClassVar[bool] = True  # action rows and a noise scale: infer only
    # (rows, mask, what a True mask entry means) of the optional action-row fields
    _ROW_FIELDS: ClassVar[tuple[tuple[str, str, str], ...]] = (("prefix", "prefix_mask", "fixed"),
                                                                ("guide", "guide_mask", "compared"))
    _OPTIONAL: ClassVar[tuple[str, ...]] = (*(name for rows, mask, _ in _ROW_FIELDS for name in (rows, mask)),
                                            "noise_scale")

    def to_wire(self) -> dict[str, Any]:
        d = super().to_wire()
        for name in self._OPTIONAL:
            if d[name] is None:
                del d[name]
        return d

    def validate(self) -> None:
        super().validate()
        if not isinstance(self.images, dict):
            raise ProtocolError(f"images: expected a map camera -> uint8 frames, got {_type_name(self.images)}", field="images")
        self.timestamps = _check_array_map(self.timestamps, "timestamps", "iu", False, "int capture times")
        self.state = _check_array_map(self.state, "state", "biuf", True, "a finite float array")
        check_int(self.seed, "seed", optional=True, lo=0, hi=2**63 - 1)
        check_int(self.sent_ns, "sent_ns", optional=True)
        self._validate_action_rows(None)
        if self.noise_scale is not None:
            if not self.TAKES_POLICY_OPTIONS:
                raise ProtocolError(f"noise_scale: only 'infer' requests take one, not {self.TYPE!r}", field="noise_scale")
            if not is_noise_scale(self.noise_scale):
                raise ProtocolError(f"noise_scale: expected a number in [0, 1] (the factor on the chunk's starting "
                                    f"noise), got {self.noise_scale!r}", field="noise_scale")
            self.noise_scale = float(self.noise_scale)

    def _validate_action_rows(self, shape: tuple[int, int] | None) -> None:
        """Each optional row field (prefix, guide): both or neither of it and its mask; float (L, D)
        finite and bool (L,); `shape` = (L, D) when known."""
        for rows, mask, meaning in self._ROW_FIELDS:
            self._validate_rows(rows, mask, meaning, shape)

    def _validate_rows(self, rows: str, mask: str, meaning: str, shape: tuple[int, int] | None) -> None:
        values, flags = getattr(self, rows), getattr(self, mask)
        if values is None and flags is None:
            return
        if not self.TAKES_POLICY_OPTIONS:
            raise ProtocolError(f"{rows}: only 'infer' requests take a {rows}, not {self.TYPE!r}", field=rows)
        L, D = shape if shape is not None else (None, None)
        if values is None or flags is None:
            missing = rows if values is None else mask
            raise ProtocolError(f"{missing}: {rows} and {mask} go together; got only one of them", field=missing)
        if isinstance(values, (list, tuple)):
            values = np.asarray(values, dtype=np.float32)
        if isinstance(flags, (list, tuple)):
            flags = np.asarray(flags)
        values = check_array(values, rows, "f", (L, D), finite=True,
                             what="float normalised model actions (action_len, raw_action_dim)")
        flags = check_array(flags, mask, "b", (values.shape[0],), what=f"a bool mask (action_len,), True = {meaning}")
        setattr(self, rows, values)
        setattr(self, mask, flags)

    def obs_timestamp_ns(self) -> int | None:
        """The newest frame's capture time over all cameras: the time the chunk's action 0 answers."""
        if not self.timestamps:
            return None
        return int(max(int(np.asarray(v).reshape(-1)[-1]) for v in self.timestamps.values() if np.asarray(v).size))

    def validate_against(self, meta: dict) -> None:
        """Cameras, frame shape, timestamp shape and the state the model needs against a policy's metadata."""
        n_obs, hw = int(meta["n_obs_steps"]), tuple(meta["image_shape"])
        self.images = check_images(self.images, "images", list(meta["cameras"]), n_obs, hw)
        needed = meta.get("state_shapes") or {}
        missing = sorted(set(needed) - set(self.state or {}))
        if missing:
            raise ProtocolError(f"state: missing {missing}; this model conditions on the robot state "
                                f"{ {k: tuple(v) for k, v in needed.items()} } (key: (n_obs, D) floats)", field="state")
        for key, shape in needed.items():
            check_array(self.state[key], f"state.{key}", "biuf", tuple(shape), finite=True, what="float robot state")
        if self.timestamps is not None:
            unknown = sorted(set(self.timestamps) - set(meta["cameras"]))
            if unknown:
                raise ProtocolError(f"timestamps: unknown camera(s) {unknown}; expected some of {list(meta['cameras'])}", field="timestamps")
            for cam, ts in self.timestamps.items():
                check_array(ts, f"timestamps.{cam}", "iu", (n_obs,), what="int capture times")
        if any(getattr(self, name) is not None for name in self._OPTIONAL):
            self._validate_action_rows((int(meta["action_len"]), int(meta["raw_action_dim"])))


@dataclass
class PredictFutureRequest(InferRequest):
    """p(o' | o, a): observation + a normalised model action chunk -> predicted frames."""

    TYPE: ClassVar[str] = "predict_future"
    TAKES_POLICY_OPTIONS: ClassVar[bool] = False
    actions_raw: Any = None  # float (action_len, raw_action_dim), normalised model actions

    def validate_against(self, meta: dict) -> None:
        super().validate_against(meta)
        shape = (int(meta["action_len"]), int(meta["raw_action_dim"]))
        self.actions_raw = check_array(
            self.actions_raw, "actions_raw", "f", shape, finite=True, what="float normalised model actions"
        )


@dataclass
class ImagineRequest(InferRequest):
    """p(o' | o): observation -> predicted frames (actions marginalised out)."""

    TYPE: ClassVar[str] = "imagine"
    TAKES_POLICY_OPTIONS: ClassVar[bool] = False


@dataclass
class InverseRequest(InferRequest):
    """p(a | o, o'): observation + goal frames -> the action chunk between them."""

    TYPE: ClassVar[str] = "inverse"
    TAKES_POLICY_OPTIONS: ClassVar[bool] = False
    goal_images: dict = field(default_factory=dict)  # camera -> uint8 (n_obs, H, W, 3)

    def validate_against(self, meta: dict) -> None:
        super().validate_against(meta)
        n_obs, hw = int(meta["n_obs_steps"]), tuple(meta["image_shape"])
        self.goal_images = check_images(self.goal_images, "goal_images", list(meta["cameras"]), n_obs, hw)


@dataclass
class StatsRequest(Request):
    TYPE: ClassVar[str] = "stats"


@dataclass
class ServerTiming:
    """Server-side timing of one request (server monotonic clock)."""

    received_ns: int = 0  # the request reached the handler
    started_ns: int = 0  # its batch started on the model
    finished_ns: int = 0  # its batch finished
    sent_ns: int = 0  # the reply was ready to send
    inference_ms: float = 0.0  # model time of its batch
    queue_ms: float = 0.0  # waiting for the model / for batch partners
    batch_size: int = 1  # requests in its batch

    @property
    def server_ms(self) -> float:
        return (self.sent_ns - self.received_ns) / 1e6

    def to_wire(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_wire(cls, data: Any) -> "ServerTiming":
        if not isinstance(data, dict):
            raise ProtocolError("timing: expected a map", ErrorCode.BAD_MESSAGE, "timing")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class ActionChunkReply(Message):
    """Reply to `infer` and `inverse`."""

    TYPE: ClassVar[str] = "actions"
    request_id: str = ""
    actions: Any = None  # float32 (action_len, 7): DROID [vx, vy, vz, wx, wy, wz, gripper], un-normalised
    raw: Any = None  # float32 (action_len, 10): normalised model actions
    obs_timestamp_ns: int | None = None  # newest capture time of the observation answered (client clock)
    seed: int = 0  # the seed used (the server's draw when the request had none)
    timing: dict = field(default_factory=dict)  # ServerTiming
    server_instance: str = ""  # changes when the server restarts (the client then re-checks hello)

    def validate(self) -> None:
        check_array(self.actions, "actions", "f", (None, None), what="float actions")
        check_array(self.raw, "raw", "f", (None, None), what="float model actions")

    @property
    def server_timing(self) -> ServerTiming:
        return ServerTiming.from_wire(self.timing)


@dataclass
class FramesReply(Message):
    """Reply to `predict_future` and `imagine`: decoded predicted frames per camera."""

    TYPE: ClassVar[str] = "frames"
    request_id: str = ""
    frames: dict = field(default_factory=dict)  # camera -> uint8 (T, crop_h, crop_w, 3)
    obs_timestamp_ns: int | None = None
    seed: int = 0
    timing: dict = field(default_factory=dict)
    server_instance: str = ""

    def validate(self) -> None:
        if not isinstance(self.frames, dict):
            raise ProtocolError("frames: expected a map camera -> uint8 frames", ErrorCode.BAD_MESSAGE, "frames")
        for k, v in self.frames.items():
            check_array(v, f"frames.{k}", "u", (None, None, None, 3), what="uint8 frames")

    @property
    def server_timing(self) -> ServerTiming:
        return ServerTiming.from_wire(self.timing)


@dataclass
class StatsReply(Message):
    TYPE: ClassVar[str] = "stats"
    stats: dict = field(default_factory=dict)

    def validate(self) -> None:
        if not isinstance(self.stats, dict):
            raise ProtocolError("stats: expected a map", ErrorCode.BAD_MESSAGE, "stats")


@dataclass
class ErrorReply(Message):
    """What the server answers instead of a reply: what went wrong, and which field."""

    TYPE: ClassVar[str] = "error"
    code: str = ErrorCode.INTERNAL
    message: str = ""
    field: str | None = None
    request_id: str | None = None

    def validate(self) -> None:
        check_str(self.code, "code", max_len=64)
        check_str(self.message, "message", max_len=1 << 16)
        check_str(self.field, "field", optional=True)
        check_str(self.request_id, "request_id", optional=True)


# The zerorpc methods and the request each takes.
REQUESTS: dict[str, type[Request]] = {
    "hello": HelloRequest,
    "infer": InferRequest,
    "predict_future": PredictFutureRequest,
    "imagine": ImagineRequest,
    "inverse": InverseRequest,
    "stats": StatsRequest,
}


def decode_reply(blob: Any, expected: type[Message]) -> Message:
    """A reply blob -> `expected` or an `ErrorReply` (which the caller turns into an exception)."""
    data = unpackb(blob)
    if isinstance(data, dict) and data.get("type") == ErrorReply.TYPE:
        return ErrorReply.from_wire(data)
    return expected.from_wire(data)


__all__ = [
    "ActionChunkReply",
    "DEFAULT_ADDRESS",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "ErrorCode",
    "ErrorReply",
    "FramesReply",
    "HelloReply",
    "HelloRequest",
    "ImagineRequest",
    "InferRequest",
    "InverseRequest",
    "PROTOCOL_VERSION",
    "PredictFutureRequest",
    "ProtocolError",
    "REQUESTS",
    "ServerTiming",
    "StatsReply",
    "StatsRequest",
    "check_images",
    "decode_reply",
    "packb",
    "peek_envelope",
    "unpackb",
]
