"""PolicyClient against a real server: no torch needed, any thread, timings, timeouts, reconnects."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from policy_server.local import LocalServer, make_preset_checkpoint, random_observation
from uwm_robot.client import PolicyClient, PolicyConnectionError
from uwm_robot.protocol import ProtocolError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_preset_checkpoint("tiny", tmp_path_factory.mktemp("ckpt") / "tiny-client", perturb=0.5)


@pytest.fixture(scope="module")
def server(checkpoint, tmp_path_factory):
    # A fixed port, so that the last test can restart a server at the same address.
    srv = LocalServer(checkpoint, bind=f"tcp://127.0.0.1:{free_port()}", log_path=tmp_path_factory.mktemp("log") / "server.log")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def local_policy(checkpoint):
    from uwm_robot.inference import UWMPolicy

    return UWMPolicy.load(checkpoint)


def expected_actions(local_policy, images, seed):
    return local_policy.infer({c: v[None] for c, v in images.items()}, seed=seed)["actions"][0]


def test_client_works_in_a_process_without_torch(server, local_policy, assert_same_result):
    meta = local_policy.metadata()
    images, _ = random_observation(meta, 3)
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["torch"] = None  # any torch import now fails
        import numpy as np
        from uwm_robot.client import PolicyClient
        from policy_server.local import random_observation
        with PolicyClient({server.address!r}, timeout_s=60) as c:
            meta = c.hello()
            images, stamps = random_observation(meta, 3)
            r = c.infer(images, timestamps=stamps, seed=42)
        assert not [m for m in sys.modules if m.startswith("torch") and sys.modules[m] is not None]
        sys.stdout.buffer.write(r["actions"].tobytes())
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr.decode()
    got = np.frombuffer(out.stdout, np.float32).reshape(16, 7)
    assert_same_result(got, expected_actions(local_policy, images, 42))


def test_calls_from_several_background_threads(server, local_policy, assert_same_result):
    meta = local_policy.metadata()
    obs = [random_observation(meta, i)[0] for i in range(3)]
    results, errors = {}, []
    with PolicyClient(server.address, timeout_s=60) as client:

        def worker(i):
            try:
                results[i] = client.infer(obs[i], seed=i)["actions"]
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors
    for i in range(3):
        assert_same_result(results[i], expected_actions(local_policy, obs[i], i))  # the server may batch them


def test_hello_from_a_thread_that_is_not_the_one_that_made_the_client(server):
    client = PolicyClient(server.address, timeout_s=60)
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("meta", client.hello()))
    t.start()
    t.join()
    client.close()
    assert out["meta"]["action_len"] == 16


def test_timings_are_recorded(server, local_policy):
    meta = local_policy.metadata()
    images, stamps = random_observation(meta, 0)
    with PolicyClient(server.address, timeout_s=60) as client:
        client.hello()
        for k in range(3):
            r = client.infer(images, timestamps=stamps, seed=k)
        t = r["timings"]
        assert t["round_trip_ms"] > t["server_ms"] >= t["inference_ms"] > 0
        assert t["transport_ms"] == pytest.approx(t["round_trip_ms"] - t["server_ms"])
        assert t["request_bytes"] > sum(v.nbytes for v in images.values()) and t["batch_size"] == 1
        summary = client.timing_summary("infer")
        assert summary["round_trip_ms"]["n"] == 3 and {"p50", "p95", "p99"} <= set(summary["transport_ms"])
        assert abs(client.clock_offset_ns) < 10**12  # both on this host's monotonic clock: small


def test_local_validation_fails_fast(server, local_policy):
    meta = local_policy.metadata()
    images, _ = random_observation(meta, 0)
    images.pop(meta["cameras"][-1])
    with PolicyClient(server.address, timeout_s=60) as client:
        with pytest.raises(ProtocolError, match="missing camera"):
            client.infer(images)
        assert [t.method for t in client.timings] == ["hello"]


def test_no_server_times_out_with_backoff_and_a_clear_error():
    address = f"tcp://127.0.0.1:{free_port()}"
    with PolicyClient(address, timeout_s=0.3, retries=2, backoff_initial_s=0.05) as client:
        t0 = time.perf_counter()
        with pytest.raises(PolicyConnectionError, match=rf"hello: no answer from {address} after 3 attempt\(s\)"):
            client.hello()
        elapsed = time.perf_counter() - t0
        assert client.reconnects == 2
        assert 3 * 0.3 + 0.05 + 0.1 - 0.05 <= elapsed < 10


SLOW_ZERORPC_SERVER = """
import sys, gevent, zerorpc
class Slow:
    def slow(self, x):
        gevent.sleep(1.0)
        return x
server = zerorpc.Server(Slow(), heartbeat=0.1)
server.bind(sys.argv[1])
print("ready", flush=True)
server.run()
"""


def test_heartbeats_keep_a_long_call_alive_on_a_zerorpc_server():
    """The client's own zerorpc framing against zerorpc itself: a server with a 0.1 s heartbeat
    drops a 1 s call whose caller sends no heartbeats, and answers one that does."""
    address = f"tcp://127.0.0.1:{free_port()}"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_ZERORPC_SERVER, address], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        # Beats 3x as often as the server's period: its patience (2 periods) then has slack for jitter.
        with PolicyClient(address, timeout_s=3.0, retries=0, heartbeat_s=0.033) as client:
            reply, ms = client._roundtrip("slow", b"payload", None)
            assert reply == b"payload" and ms >= 1000
        with PolicyClient(address, timeout_s=2.0, retries=0, heartbeat_s=None) as silent:
            with pytest.raises(ConnectionError, match="no reply within 2 s"):
                silent._roundtrip("slow", b"payload", None)
    finally:
        proc.kill()
        proc.wait()


def test_reconnects_after_a_restart_and_refuses_a_different_model(server, checkpoint, local_policy, tmp_path,
                                                                  assert_same_result):
    """Last in this module: restarts the module's server."""
    bind = server.address
    meta = local_policy.metadata()
    images, _ = random_observation(meta, 5)
    want = expected_actions(local_policy, images, 9)
    with PolicyClient(bind, timeout_s=5.0, retries=3, backoff_initial_s=0.05) as client:
        assert_same_result(client.infer(images, seed=9)["actions"], want)
        first_instance = client.server_info["instance"]
        assert server.stop() == 0
        with pytest.raises(PolicyConnectionError, match="no answer"):
            client.infer(images, seed=9, timeout=0.4)  # nobody there: timeouts, backoff, then a clear error
        assert client.reconnects == 3
        with LocalServer(checkpoint, bind=bind, log_path=tmp_path / "b.log"):
            # Same model after the restart: the client notices the new instance, re-checks hello, goes on.
            assert_same_result(client.infer(images, seed=9)["actions"], want)
            assert client.server_info["instance"] != first_instance
        other = make_preset_checkpoint("tiny", tmp_path / "other-model", seed=1, perturb=0.5)
        with LocalServer(other, bind=bind, log_path=tmp_path / "c.log"):
            with pytest.raises(PolicyConnectionError, match=r"came back with different \['checkpoint_hash'\]"):
                client.infer(images, seed=9)
