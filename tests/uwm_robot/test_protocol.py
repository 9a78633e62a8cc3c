"""The wire protocol: ndarray codec round trips, refusals, message validation, no torch needed."""

from __future__ import annotations

import subprocess
import sys

import msgpack
import numpy as np
import pytest

from uwm_robot import protocol as P

META = {
    "cameras": ["cam_a", "cam_b"],
    "image_shape": [6, 8],
    "n_obs_steps": 2,
    "action_len": 4,
    "raw_action_dim": 10,
}


def frames(n=2, h=6, w=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    "arr",
    [
        np.arange(24, dtype=np.uint8).reshape(2, 3, 4),
        np.linspace(-1, 1, 10, dtype=np.float32),
        np.array([[1.5, np.nan], [np.inf, -0.0]], dtype=np.float64),
        np.array([True, False]),
        np.arange(5, dtype=np.int64) - 2**40,
        np.array(3.25, dtype=np.float16),  # 0-d
        np.zeros((0, 3), dtype=np.int32),  # empty
        np.array([1 + 2j], dtype=np.complex64),
    ],
)
def test_ndarray_round_trips_exactly(arr):
    out = P.unpackb(P.packb({"x": arr}))["x"]
    assert out.dtype == arr.dtype and out.shape == arr.shape
    assert np.array_equal(out, arr, equal_nan=arr.dtype.kind in "fc")


def test_non_contiguous_and_big_endian_arrays_round_trip_by_value():
    base = np.arange(60, dtype=np.float32).reshape(6, 10)
    strided = base[::2, 1::3]
    assert not strided.flags.c_contiguous
    assert np.array_equal(P.unpackb(P.packb(strided)), strided)
    big = np.arange(4, dtype=">i4")
    out = P.unpackb(P.packb(big))
    assert out.dtype == np.dtype("<i4") and out.tolist() == [0, 1, 2, 3]


def test_nested_structures_and_numpy_scalars():
    msg = {"a": [1, "two", None, {"b": np.ones(2, np.float32)}], "s": np.float32(0.5), "i": np.int64(7)}
    out = P.unpackb(P.packb(msg))
    assert out["a"][:3] == [1, "two", None] and out["a"][3]["b"].tolist() == [1.0, 1.0]
    assert out["s"] == 0.5 and out["i"] == 7


def test_decoded_arrays_are_read_only_views():
    out = P.unpackb(P.packb(np.zeros(4, np.uint8)))
    assert not out.flags.writeable


@pytest.mark.parametrize("bad", [np.array([object(), 1], dtype=object), np.zeros(2, dtype="V4"), np.array(["ab"]), np.zeros(1, "M8[s]")])
def test_packing_refuses_object_void_string_datetime_arrays(bad):
    with pytest.raises(P.ProtocolError, match="cannot go on the wire"):
        P.packb({"x": bad})


def test_packing_refuses_arbitrary_objects():
    with pytest.raises(P.ProtocolError, match="cannot encode a"):
        P.packb({"x": object()})


def _forged(dtype: str, shape: list, data: bytes) -> bytes:
    return msgpack.packb({"__ndarray__": 1, "dtype": dtype, "shape": shape, "data": data}, use_bin_type=True)


@pytest.mark.parametrize("dtype", ["|O", "O", "|V8", "<U2", "|S3", "<M8[s]", "[('a', '<i4')]", 7])
def test_unpacking_refuses_forged_non_numeric_dtypes(dtype):
    with pytest.raises(P.ProtocolError, match="not allowed") as e:
        P.unpackb(_forged(dtype, [1], b"\0" * 8))
    assert e.value.code == P.ErrorCode.BAD_MESSAGE


def test_unpacking_refuses_inconsistent_arrays():
    with pytest.raises(P.ProtocolError, match="needs 16"):
        P.unpackb(_forged("<f4", [4], b"\0" * 15))
    with pytest.raises(P.ProtocolError, match="non-negative ints"):
        P.unpackb(_forged("<f4", [-1], b""))
    with pytest.raises(P.ProtocolError, match="malformed array"):
        P.unpackb(msgpack.packb({"__ndarray__": 1, "dtype": "<f4"}, use_bin_type=True))


@pytest.mark.parametrize("blob", [b"\xc1", b"\x00garbage", b"", b"\x92\x01"])
def test_garbage_bytes_are_a_bad_message(blob):
    with pytest.raises(P.ProtocolError) as e:
        P.unpackb(blob)
    assert e.value.code == P.ErrorCode.BAD_MESSAGE and "msgpack" in str(e.value)


def test_non_bytes_and_oversize_input():
    with pytest.raises(P.ProtocolError, match="expected a msgpack blob"):
        P.unpackb({"a": 1})
    blob = P.packb(np.zeros(1000, np.uint8))
    with pytest.raises(P.ProtocolError, match="at most 100 bytes") as e:
        P.unpackb(blob, max_bytes=100)
    assert e.value.code == P.ErrorCode.TOO_LARGE


# ---- messages -----------------------------------------------------------------------------------
def infer_request(**changes):
    fields = dict(
        request_id="r1",
        images={"cam_a": frames(seed=1), "cam_b": frames(seed=2)},
        timestamps={"cam_a": np.array([10, 20]), "cam_b": np.array([15, 25])},
        state={"q": np.zeros(7, np.float32)},
        seed=5,
        token="t",
    )
    fields.update(changes)
    return P.InferRequest(**fields)


def test_infer_request_round_trips_and_validates():
    req = infer_request()
    out = P.InferRequest.from_wire(P.unpackb(req.pack()))
    out.validate_against(META)
    assert out.request_id == "r1" and out.seed == 5 and out.token == "t"
    assert out.protocol_version == P.PROTOCOL_VERSION
    assert all(np.array_equal(out.images[k], req.images[k]) for k in META["cameras"])
    assert out.obs_timestamp_ns() == 25  # newest frame over all cameras


def decode_infer(req: P.InferRequest) -> P.InferRequest:
    m = P.InferRequest.from_wire(P.unpackb(req.pack()))
    m.validate_against(META)
    return m


@pytest.mark.parametrize(
    "changes, field, pattern",
    [
        ({"images": {"cam_a": frames()}}, "images", r"missing camera\(s\) \['cam_b'\]; the model expects exactly \['cam_a', 'cam_b'\]"),
        ({"images": {"cam_a": frames(), "cam_b": frames(), "cam_c": frames()}}, "images", r"unknown camera\(s\) \['cam_c'\]"),
        ({"images": {"cam_a": frames(h=5), "cam_b": frames()}}, "images.cam_a", r"expected uint8 frames of shape \(2, 6, 8, 3\), got shape \(2, 5, 8, 3\)"),
        ({"images": {"cam_a": frames(n=3), "cam_b": frames()}}, "images.cam_a", r"of shape \(2, 6, 8, 3\)"),
        ({"images": {"cam_a": frames().astype(np.float32), "cam_b": frames()}}, "images.cam_a", r"expected uint8 frames, got dtype float32"),
        ({"images": {"cam_a": frames().astype(np.uint16), "cam_b": frames()}}, "images.cam_a", r"got dtype uint16"),
        ({"images": [1, 2]}, "images", r"expected a map camera"),
        ({"state": {"q": np.array([0.0, np.nan])}}, "state.q", r"expected finite values, got 1 NaN/inf"),
        ({"state": {"q": np.array([np.inf])}}, "state.q", r"finite"),
        ({"timestamps": {"cam_a": np.array([1, 2, 3])}}, "timestamps.cam_a", r"expected int capture times of shape \(2,\), got shape \(3,\)"),
        ({"timestamps": {"cam_z": np.array([1, 2])}}, "timestamps", r"unknown camera"),
        ({"seed": "7"}, "seed", r"expected an int or null, got str"),
        ({"seed": -1}, "seed", r"expected an int in \[0, "),
        ({"request_id": 5}, "request_id", r"expected a string"),
    ],
)
def test_infer_request_errors_name_the_field_and_what_was_expected(changes, field, pattern):
    with pytest.raises(P.ProtocolError, match=pattern) as e:
        decode_infer(infer_request(**changes))
    assert e.value.field == field and e.value.code == P.ErrorCode.INVALID_FIELD
    reply = e.value.to_reply("r1")
    assert P.ErrorReply.from_wire(P.unpackb(reply.pack())) == reply


def test_unknown_fields_and_wrong_message_type_are_refused():
    wire = infer_request().to_wire()
    with pytest.raises(P.ProtocolError, match=r"unknown field\(s\) \['extra'\]"):
        P.InferRequest.from_wire({**wire, "extra": 1})
    with pytest.raises(P.ProtocolError, match="expected a message of type 'infer'"):
        P.InferRequest.from_wire({**wire, "type": "hello"})
    with pytest.raises(P.ProtocolError, match="expected a 'infer' message"):
        P.InferRequest.from_wire([1, 2])


def test_predict_future_checks_action_chunk_shape_and_finiteness():
    good = np.zeros((4, 10), np.float32)
    req = P.PredictFutureRequest(images={"cam_a": frames(), "cam_b": frames()}, actions_raw=good)
    m = P.PredictFutureRequest.from_wire(P.unpackb(req.pack()))
    m.validate_against(META)
    assert m.actions_raw.shape == (4, 10)
    for bad, pattern in [(np.zeros((4, 7), np.float32), r"\(4, 10\), got shape \(4, 7\)"), (np.full((4, 10), np.nan, np.float32), "finite")]:
        req = P.PredictFutureRequest(images={"cam_a": frames(), "cam_b": frames()}, actions_raw=bad)
        with pytest.raises(P.ProtocolError, match=pattern) as e:
            P.PredictFutureRequest.from_wire(P.unpackb(req.pack())).validate_against(META)
        assert e.value.field == "actions_raw"


def test_inverse_checks_goal_frames():
    req = P.InverseRequest(images={"cam_a": frames(), "cam_b": frames()}, goal_images={"cam_a": frames()})
    with pytest.raises(P.ProtocolError, match=r"goal_images: missing camera\(s\) \['cam_b'\]"):
        P.InverseRequest.from_wire(P.unpackb(req.pack())).validate_against(META)


def test_replies_round_trip_and_decode_reply_surfaces_errors():
    reply = P.ActionChunkReply(
        request_id="r", actions=np.zeros((16, 7), np.float32), raw=np.ones((16, 10), np.float32), obs_timestamp_ns=3, seed=9,
        timing=P.ServerTiming(received_ns=1, sent_ns=2_000_001, batch_size=2).to_wire(),
    )
    out = P.decode_reply(reply.pack(), P.ActionChunkReply)
    assert isinstance(out, P.ActionChunkReply) and out.seed == 9 and out.raw.shape == (16, 10)
    assert out.server_timing.server_ms == 2.0 and out.server_timing.batch_size == 2
    err = P.ErrorReply(code=P.ErrorCode.UNAUTHORIZED, message="no", field="token")
    assert P.decode_reply(err.pack(), P.ActionChunkReply) == err
    hello = P.HelloReply(metadata={"cameras": ["a"]}, server={"max_batch": 4}, server_time_ns=5)
    assert P.decode_reply(hello.pack(), P.HelloReply) == hello


def test_protocol_imports_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np\n"
        "from uwm_robot import protocol as P\n"
        "assert P.unpackb(P.packb(np.ones(3)))[1] == 1.0\n"
        "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
        "print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
