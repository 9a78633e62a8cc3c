"""A real policy_server process on loopback: served == in-process, errors, auth, batching, CLI."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import zmq

from policy_server.local import random_observation
from uwm_robot import protocol as P
from uwm_robot.client import PolicyClient, PolicyServerError


def expected_chunk(local_policy, images, seed):
    out = local_policy.infer({c: v[None] for c, v in images.items()}, seed=seed)
    return out["actions"][0], out["raw"][0]


@pytest.fixture
def assert_still_serves(client, local_policy, meta, assert_same_result):
    """`check()`: after an error, the server still answers with the in-process chunk."""
    def check(seed: int = 11) -> None:
        images, stamps = random_observation(meta, seed)
        got = client.infer(images, timestamps=stamps, seed=seed)
        actions, raw = expected_chunk(local_policy, images, seed)
        assert_same_result(got["actions"], actions)
        assert_same_result(got["raw"], raw)
    return check


def test_hello_carries_protocol_version_and_the_policy_metadata(client, meta, local_policy):
    assert meta == local_policy.metadata()
    assert client.server_info["auth"] == "token" and client.server_info["max_batch"] == 4
    assert client.clock_offset_ns is not None


def test_served_chunk_equals_in_process_chunk(client, meta, local_policy, assert_same_result):
    images, stamps = random_observation(meta, 1)
    got = client.infer(images, timestamps=stamps, seed=123, state={"q": np.zeros(7)})
    actions, raw = expected_chunk(local_policy, images, 123)
    assert got["actions"].dtype == np.float32 and got["actions"].shape == (16, 7)
    assert_same_result(got["actions"], actions, "served DROID actions differ from the in-process ones")
    assert_same_result(got["raw"], raw, "served raw actions differ from the in-process ones")
    assert got["seed"] == 123 and got["obs_timestamp_ns"] == max(s[-1] for s in stamps.values())
    t = got["server_timing"]
    assert t["received_ns"] <= t["started_ns"] <= t["finished_ns"] <= t["sent_ns"] and t["inference_ms"] > 0
    assert got["timings"]["round_trip_ms"] >= got["timings"]["server_ms"] > 0


def test_server_drawn_seed_replays(client, meta):
    images, _ = random_observation(meta, 2)
    first = client.infer(images)
    again = client.infer(images, seed=first["seed"])
    assert np.array_equal(first["raw"], again["raw"])


def test_world_model_methods_match_in_process(client, meta, local_policy, assert_same_result):
    images, _ = random_observation(meta, 3)
    goal, _ = random_observation(meta, 4)
    batched = {c: v[None] for c, v in images.items()}
    raw = client.infer(images, seed=5)["raw"]
    fut = client.predict_future(images, raw, seed=6)
    ref = local_policy.predict_future(batched, raw[None], seed=6)["frames"]
    for c in meta["cameras"]:
        assert_same_result(fut["frames"][c], ref[c][0], f"predicted {c}")
    img = client.imagine(images, seed=7)
    ref = local_policy.imagine(batched, seed=7)["frames"]
    for c in meta["cameras"]:
        assert_same_result(img["frames"][c], ref[c][0], f"imagined {c}")
    assert img["frames"][meta["cameras"][0]].shape == (2, *meta["predicted_frame_shape"], 3)
    inv = client.inverse(images, goal, seed=8)
    ref = local_policy.inverse(batched, {c: v[None] for c, v in goal.items()}, seed=8)
    assert_same_result(inv["actions"], ref["actions"][0])


# ---- errors: each one clear, and the server keeps serving ------------------------------------------
def raw_call(client, method, payload):
    return client.send_raw(method, payload)


def test_version_mismatch(client, token, assert_still_serves):
    for method, req in [("hello", P.HelloRequest(protocol_version=99, token=token)), ("infer", P.InferRequest(protocol_version=0, token=token))]:
        reply = raw_call(client, method, req.pack())
        assert reply["type"] == "error" and reply["code"] == "version_mismatch" and reply["field"] == "protocol_version"
        assert f"this server speaks {P.PROTOCOL_VERSION}" in reply["message"]
    assert_still_serves()


def test_missing_and_wrong_token(server, meta, assert_still_serves):
    images, _ = random_observation(meta, 0)
    for bad_token, pattern in [(None, "requires a token"), ("wrong-token", "wrong token")]:
        with PolicyClient(server.address, token=bad_token, timeout_s=30, validate=False) as bad:
            with pytest.raises(PolicyServerError, match=pattern) as e:
                bad.hello()
            assert e.value.code == "unauthorized" and e.value.field == "token"
            with pytest.raises(PolicyServerError, match=pattern):
                bad.infer(images, seed=0)
            with pytest.raises(PolicyServerError, match=pattern):
                bad.stats()
    assert_still_serves()


@pytest.fixture(scope="module")
def unchecked(server, meta, token):
    """A client that skips local validation, so the server's checks are what answers."""
    with PolicyClient(server.address, token=token, timeout_s=60, validate=False) as c:
        c.metadata = meta
        yield c


def bad_observations(meta):
    cams = meta["cameras"]
    (h, w), n = meta["image_shape"], meta["n_obs_steps"]
    good, _ = random_observation(meta, 0)
    yield "wrong shape", {**good, cams[0]: np.zeros((n, h + 1, w, 3), np.uint8)}, f"images.{cams[0]}", rf"shape \({n}, {h}, {w}, 3\), got shape \({n}, {h + 1}, {w}, 3\)"
    yield "wrong frame count", {**good, cams[1]: np.zeros((n + 1, h, w, 3), np.uint8)}, f"images.{cams[1]}", "got shape"
    yield "wrong dtype", {**good, cams[0]: good[cams[0]].astype(np.float32)}, f"images.{cams[0]}", "expected uint8 frames, got dtype float32"
    yield "missing camera", {c: good[c] for c in cams[1:]}, "images", rf"missing camera\(s\) \['{cams[0]}'\]"
    yield "unknown camera", {**good, "left_eye": good[cams[0]]}, "images", r"unknown camera\(s\) \['left_eye'\]"


@pytest.mark.parametrize("case", range(5))
def test_bad_observations_get_errors_naming_the_field(case, unchecked, meta, assert_still_serves):
    name, images, field, pattern = list(bad_observations(meta))[case]
    with pytest.raises(PolicyServerError, match=pattern) as e:
        unchecked.infer(images, seed=0)
    assert e.value.code == "invalid_field" and e.value.field == field, name
    assert_still_serves()


def test_client_side_validation_catches_the_same_before_sending(client, meta):
    n = len(client.timings)
    images, _ = random_observation(meta, 0)
    images[meta["cameras"][0]] = images[meta["cameras"][0]][:, :-1]
    with pytest.raises(P.ProtocolError, match="got shape"):
        client.infer(images, seed=0)
    assert len(client.timings) == n  # nothing went over the wire


def test_nan_and_inf_are_refused(unchecked, meta, assert_still_serves):
    images, _ = random_observation(meta, 0)
    with pytest.raises(PolicyServerError, match="expected finite values, got 2 NaN/inf") as e:
        unchecked.infer(images, state={"q": np.array([0.0, np.nan, np.inf])}, seed=0)
    assert e.value.field == "state.q"
    chunk = np.zeros((meta["action_len"], meta["raw_action_dim"]), np.float32)
    chunk[3, 2] = np.nan
    with pytest.raises(PolicyServerError, match="finite") as e:
        unchecked.predict_future(images, chunk, seed=0)
    assert e.value.field == "actions_raw"
    assert_still_serves()


def test_oversize_message_is_refused(unchecked, meta, assert_still_serves):
    images, _ = random_observation(meta, 0)
    big = np.zeros(1_300_000, np.uint8)  # over the server's --max-message-mb 1
    with pytest.raises(PolicyServerError, match=r"accepts at most 1048576 bytes") as e:
        unchecked.infer(images, state={"padding": big}, seed=0)
    assert e.value.code == "too_large"
    assert_still_serves()


@pytest.mark.parametrize(
    "payload, pattern",
    [
        (b"\x00garbage\xc1", "not a valid msgpack message"),
        (42, "expected a msgpack blob"),
        ({"type": "infer"}, "expected a msgpack blob"),
        ("hello message", "expected a message of type 'infer', got type 'hello'"),
    ],
)
def test_garbage_gets_a_bad_message_error(payload, pattern, client, token, assert_still_serves):
    if payload == "hello message":  # well-formed and authorised, but not an infer request
        payload = P.HelloRequest(token=token).pack()
    reply = raw_call(client, "infer", payload)
    assert reply["type"] == "error" and reply["code"] == "bad_message" and pattern in reply["message"]
    assert_still_serves()


def test_forged_object_array_is_refused(client, token, assert_still_serves):
    import msgpack

    forged = {"__ndarray__": 1, "dtype": "|O", "shape": [1], "data": b"\0" * 8}
    blob = msgpack.packb({"type": "infer", "protocol_version": P.PROTOCOL_VERSION, "token": token, "state": {"x": forged}}, use_bin_type=True)
    reply = raw_call(client, "infer", blob)
    assert reply["code"] == "bad_message" and "'|O' is not allowed" in reply["message"]
    assert_still_serves()


def test_raw_zmq_garbage_does_not_stop_the_server(server, assert_still_serves):
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(server.address)
    sock.send(b"not zerorpc at all")
    sock.send_multipart([b"", b"\xff\xfe", b"three frames"])
    time.sleep(0.2)
    sock.close()
    assert_still_serves()


def test_unknown_method_is_a_clear_error(client):
    with pytest.raises(PolicyServerError) as e:
        client.send_raw("shutdown", b"")
    assert e.value.code == "unknown_method"


# ---- concurrency -------------------------------------------------------------------------------
def test_concurrent_requests_are_batched_and_identical_to_unbatched(meta, local_policy, overlapping_requests,
                                                                    assert_same_result):
    n = 4
    obs = [random_observation(meta, 20 + i)[0] for i in range(n)]
    results = overlapping_requests(n, lambda client, i: client.infer(obs[i], seed=100 + i))
    for i, r in enumerate(results):
        actions, raw = expected_chunk(local_policy, obs[i], 100 + i)
        for got, want in ((r["raw"], raw), (r["actions"], actions)):
            assert_same_result(got, want, f"request {i} (batch {r['server_timing']['batch_size']})")


def test_model_work_does_not_block_other_calls(server, client, meta, token):
    """While one client's imagine() runs on the worker thread, another's hello() is answered."""
    images, _ = random_observation(meta, 0)
    done = {}

    def slow():
        client.imagine(images, seed=0)
        done["imagine"] = time.perf_counter()

    t = threading.Thread(target=slow)
    t.start()
    with PolicyClient(server.address, token=token, timeout_s=30) as other:
        time.sleep(0.05)
        for _ in range(3):
            other.hello()
            other.stats()
        done["hello"] = time.perf_counter()
        in_flight_seen = other.stats()["in_flight"]
    t.join()
    assert done["hello"] < done["imagine"], "hello/stats waited for the model"
    assert in_flight_seen >= 1


def test_stats_count_requests_errors_and_batches(client):
    s = client.stats()
    assert s["requests"]["infer"] > 5 and s["errors"]["invalid_field"] >= 5 and s["errors"]["unauthorized"] >= 2
    assert s["errors"]["bad_message"] >= 4 and s["errors"]["version_mismatch"] >= 2 and s["errors"]["too_large"] >= 1
    assert any(int(k) > 1 for k in s["batch_sizes"])
    assert {"p50", "p95", "p99"} <= set(s["latency_ms"]["inference_ms"])


# ---- CLI -----------------------------------------------------------------------------------------
def run_cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "policy_server", *args], capture_output=True, text=True, timeout=timeout)


def test_bench_command_reports_latency_table(server, token_file):
    out = run_cli("bench", "--connect", server.address, "--token-file", str(token_file), "--clients", "1,2", "--requests", "2", "--warmup", "1")
    assert out.returncode == 0, out.stderr
    assert "transport p50 / p95 / p99 (ms)" in out.stdout and "throughput (req/s)" in out.stdout
    assert "2 clients (closed loop): p50 round trip" in out.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["serve"], "serve needs --checkpoint PATH"),
        (["serve", "--checkpoint", "/nonexistent/ckpt"], "/nonexistent/ckpt: no such file or directory"),
        (["serve", "--checkpoint", ".", "--bind", "tcp://0.0.0.0:4242"], "refusing to bind tcp://0.0.0.0:4242 without a token"),
        (["serve", "--checkpoint", ".", "--bind", "tcp://192.168.1.5:4242"], "without a token"),
        (["serve", "--checkpoint", ".", "--bind", "localhost:4242"], "expected a zmq endpoint"),
        (["serve", "--checkpoint", ".", "--samples", "0"], "--samples must be >= 1"),
        (["serve", "--checkpoint", ".", "--noise-scale", "-1"], "--noise-scale must be in [0, 1]"),
    ],
)
def test_serve_user_errors_exit_2_with_one_line(args, message):
    out = run_cli(*args)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr


def test_empty_token_file_is_refused(tmp_path):
    empty = tmp_path / "token"
    empty.write_text("\n")
    out = run_cli("serve", "--checkpoint", str(tmp_path), "--token-file", str(empty))
    assert out.returncode == 2 and "the file is empty" in out.stderr


def test_sigterm_stops_the_server_cleanly(server):
    """Last in this module: ends the shared server."""
    assert server.stop() == 0
    assert "policy_server: stopped" in server.log_path.read_text()
