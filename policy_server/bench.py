"""`policy_server bench`: latency and throughput of a policy server, as a robot sees it.

Each simulated robot is its own `PolicyClient` (own network thread) driven from its own thread,
sending a realistic observation (the server's cameras x n_obs frames of its image shape, random
uint8 content, capture timestamps) in a closed loop, or at `--rate` requests/s. For 1 and N
concurrent clients it prints p50/p95/p99 of the round trip, the server time (received -> reply
ready) and their difference (transport overhead: packing, zmq, thread hand-offs), the batch
sizes the server formed, and the throughput.

`--spawn-preset tiny` (the default when no --connect/--spawn-checkpoint is given) writes a
temporary checkpoint of a preset, optionally with another camera size (`--image-shape 180x320`,
DROID's: then the payload is the DROID one, 3 cameras x 2 frames x 180x320x3 = 1.04 MB, while
the network stays the preset's, since frames are resized to it), starts a server on loopback,
benches it and stops it.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from uwm_robot.client import PolicyClient

from .local import LocalServer, make_preset_checkpoint, random_observation, random_state

def parse_hw(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)x(\d+)", text)
    if not m:
        raise argparse.ArgumentTypeError(f"expected HxW such as 180x320, got {text!r}")
    return int(m.group(1)), int(m.group(2))


# ---- the measurement ------------------------------------------------------------------------------
def run_clients(address: str, token: str | None, n_clients: int, n_requests: int, warmup: int, rate_hz: float, timeout_s: float) -> dict:
    """n_clients threads, each with its own PolicyClient, n_requests infer calls each."""
    clients = [PolicyClient(address, token=token, timeout_s=timeout_s, client_name=f"bench-{i}") for i in range(n_clients)]
    try:
        meta = clients[0].hello()
        for c in clients[1:]:
            c.hello()
        start: list[float] = []
        # The clock starts when every client has finished its warm-up.
        barrier = threading.Barrier(n_clients, action=lambda: start.append(time.perf_counter()))
        errors: list[BaseException] = []
        records: list[list] = [[] for _ in range(n_clients)]

        def robot(i: int) -> None:
            rng = np.random.default_rng(i)
            obs = [(*random_observation(meta, rng), random_state(meta, rng)) for _ in range(4)]  # vary content, reuse buffers
            try:
                for k in range(warmup):
                    clients[i].infer(obs[k % 4][0], timestamps=obs[k % 4][1], state=obs[k % 4][2], seed=k)
                barrier.wait()
                period = 1.0 / rate_hz if rate_hz > 0 else 0.0
                next_t = time.perf_counter()
                for k in range(n_requests):
                    if period:
                        # Each robot starts at a random phase, like independent control loops.
                        next_t += period if k else period * rng.random()
                        time.sleep(max(0.0, next_t - time.perf_counter()))
                    images, stamps, state = obs[k % 4]
                    r = clients[i].infer(images, timestamps=stamps, state=state, seed=k)
                    records[i].append(r["timings"])
            except BaseException as e:  # reported after join
                errors.append(e)
                barrier.abort()

        threads = [threading.Thread(target=robot, args=(i,)) for i in range(n_clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start[0] if start else float("nan")
        if errors:
            raise errors[0]
    finally:
        for c in clients:
            c.close()
    flat = [r for rs in records for r in rs]
    stats = {}
    for key in ("round_trip_ms", "server_ms", "transport_ms", "inference_ms", "queue_ms"):
        a = np.asarray([r[key] for r in flat])
        stats[key] = {q: float(np.percentile(a, int(q[1:]))) for q in ("p50", "p95", "p99")}
        stats[key]["mean"] = float(a.mean())
    batch = np.asarray([r["batch_size"] for r in flat])
    return {
        "clients": n_clients,
        "requests": len(flat),
        "rate_hz": rate_hz,
        "throughput_rps": len(flat) / wall if wall > 0 else float("nan"),
        "batch_size_mean": float(batch.mean()),
        "request_bytes": int(flat[0]["request_bytes"]),
        "reply_bytes": int(flat[0]["reply_bytes"]),
        **stats,
    }


def format_table(results: list[dict]) -> str:
    lines = [
        "| clients | rate | requests | round trip p50 / p95 / p99 (ms) | server p50 / p95 / p99 (ms) | "
        "transport p50 / p95 / p99 (ms) | model ms p50 | mean batch | throughput (req/s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        def q(k: str) -> str:
            return f"{r[k]['p50']:.1f} / {r[k]['p95']:.1f} / {r[k]['p99']:.1f}"

        rate = "closed loop" if not r["rate_hz"] else f"{r['rate_hz']:g} Hz"
        lines.append(
            f"| {r['clients']} | {rate} | {r['requests']} | {q('round_trip_ms')} | {q('server_ms')} | "
            f"{r['transport_ms']['p50']:.2f} / {r['transport_ms']['p95']:.2f} / {r['transport_ms']['p99']:.2f} | "
            f"{r['inference_ms']['p50']:.1f} | {r['batch_size_mean']:.2f} | {r['throughput_rps']:.2f} |"
        )
    return "\n".join(lines)


def _bench(args: argparse.Namespace) -> int:
    from .cli import UserError, read_token

    token = read_token(args.token_file) if args.token_file else None
    counts = [int(x) for x in str(args.clients).split(",") if x]
    if not counts or min(counts) < 1:
        raise UserError(f"--clients: expected a comma-separated list of counts >= 1, got {args.clients!r}")
    server = None
    tmp = None
    try:
        if args.connect:
            address = args.connect
        else:
            ckpt = args.spawn_checkpoint
            if ckpt is None:
                tmp = tempfile.TemporaryDirectory(prefix="policy_server_bench_")
                ckpt = make_preset_checkpoint(args.spawn_preset, Path(tmp.name) / f"bench-{args.spawn_preset}", args.image_shape)
            extra = ["--max-batch", str(args.max_batch), "--device", args.device]
            if token:
                extra += ["--token-file", str(args.token_file)]
            server = LocalServer(Path(ckpt), extra=extra)
            print(server.ready_line, flush=True)
            address = server.address
        results = []
        for n in counts:
            for rate in args.rate:
                r = run_clients(address, token, n, args.requests, args.warmup, rate, args.timeout)
                results.append(r)
                print(
                    f"clients={n} rate={'closed-loop' if not rate else f'{rate:g}Hz'}: round trip p50 {r['round_trip_ms']['p50']:.1f} ms, "
                    f"server p50 {r['server_ms']['p50']:.1f} ms, transport p50 {r['transport_ms']['p50']:.2f} ms, "
                    f"mean batch {r['batch_size_mean']:.2f}, {r['throughput_rps']:.2f} req/s",
                    flush=True,
                )
        print(f"\npayload: {results[0]['request_bytes']} bytes per request, {results[0]['reply_bytes']} bytes per reply")
        print(format_table(results))
        singles = {r["rate_hz"]: r for r in results if r["clients"] == 1}
        for r in results:
            base = singles.get(r["rate_hz"])
            if base and r["clients"] > 1:
                ratio = r["round_trip_ms"]["p50"] / base["round_trip_ms"]["p50"]
                rate = "closed loop" if not r["rate_hz"] else f"{r['rate_hz']:g} Hz"
                print(f"{r['clients']} clients ({rate}): p50 round trip {ratio:.2f}x the single-client one")
        if args.json:
            Path(args.json).write_text(json.dumps({"address": address, "results": results}, indent=1))
        return 0
    finally:
        if server is not None:
            server.stop()
        if tmp is not None:
            tmp.cleanup()


def register_bench(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bench", help="latency/throughput of a policy server with 1..N robots")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--connect", default=None, help="address of a running server, e.g. tcp://127.0.0.1:4242")
    src.add_argument("--spawn-checkpoint", type=Path, default=None, help="start a loopback server on this checkpoint")
    src.add_argument("--spawn-preset", default="tiny", help="start a loopback server on a fresh checkpoint of this preset (default tiny)")
    p.add_argument("--image-shape", type=parse_hw, default=(180, 320), help="camera HxW for --spawn-preset (default 180x320, DROID's)")
    p.add_argument("--token-file", type=Path, default=None)
    p.add_argument("--clients", default="1,4", help="comma-separated client counts (default 1,4)")
    p.add_argument("--requests", type=int, default=50, help="timed requests per client (default 50)")
    p.add_argument("--warmup", type=int, default=3, help="untimed requests per client first (default 3)")
    p.add_argument("--rate", type=float, nargs="+", default=[0.0], help="requests/s per client; 0 = closed loop (default 0)")
    p.add_argument("--max-batch", type=int, default=4, help="--max-batch of a spawned server")
    p.add_argument("--device", default="cpu", help="--device of a spawned server")
    p.add_argument("--timeout", type=float, default=60.0, help="per-request timeout (s)")
    p.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    p.set_defaults(func=_bench)
