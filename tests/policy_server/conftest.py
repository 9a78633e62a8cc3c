"""A real `policy_server serve` process on loopback (tiny preset), shared by this directory."""

from __future__ import annotations

import threading

import pytest

from policy_server.local import LocalServer, make_preset_checkpoint

TOKEN = "test-token-0123456789abcdef"


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    # Perturbed so the observation matters (a fresh DiT's zeroed adaLN layers ignore it).
    return make_preset_checkpoint("tiny", tmp_path_factory.mktemp("ckpt") / "tiny-served", perturb=0.5)


@pytest.fixture(scope="session")
def token() -> str:
    return TOKEN


@pytest.fixture(scope="session")
def token_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("auth") / "token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="session")
def local_policy(checkpoint):
    from uwm_robot.inference import UWMPolicy

    return UWMPolicy.load(checkpoint)


@pytest.fixture(scope="module")
def server(checkpoint, token_file, tmp_path_factory):
    """Token auth, batches of up to 4 collected for 150 ms, 1 MiB message limit."""
    log = tmp_path_factory.mktemp("log") / "server.log"
    srv = LocalServer(
        checkpoint,
        extra=["--token-file", str(token_file), "--max-batch", "4", "--batch-window-ms", "150", "--max-message-mb", "1"],
        log_path=log,
    )
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server, token):
    from uwm_robot.client import PolicyClient

    with PolicyClient(server.address, token=token, timeout_s=60) as c:
        yield c


@pytest.fixture(scope="module")
def meta(client):
    return client.hello()


@pytest.fixture
def overlapping_requests(server, token):
    """run(n, request) -> results: `request(client, i)` from n clients at the same instant, twice (the
    first round teaches the server that requests overlap); checks the second round was batched."""
    from uwm_robot.client import PolicyClient

    def run(n: int, request) -> list:
        clients = [PolicyClient(server.address, token=token, timeout_s=60) for _ in range(n)]
        try:
            for c in clients:
                c.hello()
            results: list = [None] * n
            barrier = threading.Barrier(n)

            def robot(i):
                barrier.wait()
                results[i] = request(clients[i], i)

            for _ in range(2):
                threads = [threading.Thread(target=robot, args=(i,)) for i in range(n)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
            sizes = [r["server_timing"]["batch_size"] for r in results]
            assert max(sizes) >= 2, f"no batching happened: batch sizes {sizes}"
            return results
        finally:
            for c in clients:
                c.close()

    return run
