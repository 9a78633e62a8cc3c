"""The `policy_server` command.

    policy_server serve --checkpoint PATH [--bind tcp://127.0.0.1:4242] [--device cpu|cuda]
                        [--token-file F] [--insecure] [--max-batch N] [--batch-window-ms MS]
    policy_server bench (--connect ADDR | --spawn-checkpoint PATH | --spawn-preset NAME)
                        [--token-file F] [--clients 1,4] [--requests N]

`serve` loads the checkpoint (ours or an official models.pt), binds, warms up, then prints one
line, `READY <endpoint> checkpoint=... cameras=... image=HxW ...`, and serves until SIGINT or
SIGTERM. A bind port of 0 picks a free port (the READY line says which).
User errors (bad checkpoint, bad flags, port in use) print one line and exit with status 2.

Auth: with `--token-file`, every call must carry that token (compared with
`hmac.compare_digest`). It authenticates, it does not encrypt: traffic is plain TCP, for a lab
network or an SSH/WireGuard tunnel. Binding anything but loopback without a token is refused
unless `--insecure`.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import stat
import sys
import warnings
from pathlib import Path

from uwm_robot.protocol import DEFAULT_ADDRESS, DEFAULT_MAX_MESSAGE_BYTES, PROTOCOL_VERSION, sampling_problem

EXIT_USER_ERROR = 2


class UserError(Exception):
    """Printed as one line; exit status 2."""


# ---- bind address and token --------------------------------------------------------------------
def split_endpoint(endpoint: str) -> tuple[str, str, str]:
    """'tcp://host:port' -> ('tcp', host, port); ipc/inproc -> (transport, path, '')."""
    if "://" not in endpoint:
        raise UserError(f"--bind {endpoint!r}: expected a zmq endpoint such as tcp://127.0.0.1:4242")
    transport, rest = endpoint.split("://", 1)
    if transport in ("ipc", "inproc"):
        return transport, rest, ""
    if transport != "tcp":
        raise UserError(f"--bind {endpoint!r}: transport must be tcp, ipc or inproc")
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not (port == "*" or port.isdigit()):
        raise UserError(f"--bind {endpoint!r}: expected tcp://HOST:PORT (PORT a number, 0 for any free port)")
    return transport, host.strip("[]"), port


def is_loopback(endpoint: str) -> bool:
    """True for 127.0.0.0/8, ::1, localhost and host-local transports (ipc, inproc)."""
    transport, host, _ = split_endpoint(endpoint)
    if transport != "tcp":
        return True
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # an interface name or a hostname: not provably loopback
        return False


def zmq_endpoint(endpoint: str) -> str:
    """Port 0 -> zmq's '*' (any free port)."""
    transport, host, port = split_endpoint(endpoint)
    if transport == "tcp" and port == "0":
        return endpoint[: endpoint.rfind(":")] + ":*"
    return endpoint


def read_token(path: Path) -> str:
    try:
        token = path.read_text().strip()
        mode = path.stat().st_mode
    except OSError as e:
        raise UserError(f"--token-file {path}: cannot read: {e.strerror or e}") from None
    if not token:
        raise UserError(f"--token-file {path}: the file is empty; put the shared token on its first line")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        print(f"warning: --token-file {path} is readable by group/others (chmod 600 it)", file=sys.stderr)
    return token


def check_bind_policy(bind: str, token: str | None, insecure: bool) -> None:
    if token or is_loopback(bind):
        return
    if not insecure:
        raise UserError(
            f"refusing to bind {bind} without a token: anything but loopback needs --token-file F "
            "(or --insecure to serve unauthenticated on a trusted network)"
        )
    print(f"warning: serving {bind} WITHOUT authentication (--insecure)", file=sys.stderr)


# ---- serve ------------------------------------------------------------------------------------
def ready_line(endpoint: str, meta: dict, service_info: dict, warmup_s: float) -> str:
    h, w = meta["image_shape"]
    return (
        f"READY {endpoint} checkpoint={meta['checkpoint_id']} hash={meta['checkpoint_hash'][:12]} "
        f"cameras={','.join(meta['cameras'])} image={h}x{w} n_obs={meta['n_obs_steps']} "
        f"chunk={meta['action_len']}x{meta['action_dim']} action_space={meta['action_space']} "
        f"horizon={meta['executed_horizon']} rate={meta['control_rate_hz']:g}Hz ddim={meta['ddim_steps']} "
        f"samples={meta['samples_per_chunk']} noise_scale={meta['action_noise_scale']:g} "
        f"device={meta['device']} protocol={PROTOCOL_VERSION} auth={service_info['auth']} "
        f"max_batch={service_info['max_batch']} warmup={warmup_s:.2f}s"
    )


def _serve(args: argparse.Namespace) -> int:
    if args.checkpoint is None:
        raise UserError(
            "serve needs --checkpoint PATH: a uwm_robot checkpoint directory (e.g. made by "
            "`uwm_robot init --preset tiny --out DIR`) or an official models.pt"
        )
    if not args.checkpoint.exists():  # before the slow imports
        raise UserError(f"{args.checkpoint}: no such file or directory")
    token = read_token(args.token_file) if args.token_file else None
    check_bind_policy(args.bind, token, args.insecure)
    endpoint = zmq_endpoint(args.bind)
    if args.max_batch < 1:
        raise UserError(f"--max-batch must be >= 1, got {args.max_batch}")
    problem = sampling_problem(args.samples, args.noise_scale)
    if problem:
        raise UserError(problem)

    import gevent
    import torch
    import zmq

    from uwm_robot.checkpoint import CheckpointError
    from uwm_robot.config import ConfigError
    from uwm_robot.inference import UWMPolicy

    from .server import PolicyService, bound_endpoint, make_zerorpc_server

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {args.device}: CUDA is not available on this machine")
    # The worker thread holds the GIL between torch kernels; a short switch interval lets the
    # gevent hub (receiving, heartbeats, replies) in sooner while a batch computes.
    sys.setswitchinterval(0.0005)
    # Decoded frames are read-only views of the received message; the model only reads them.
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
    try:
        policy = UWMPolicy.load(args.checkpoint, device=args.device, fast=not args.plain, config_path=args.config,
                                samples=args.samples, noise_scale=args.noise_scale)
    except (CheckpointError, ConfigError) as e:
        raise UserError(str(e)) from None
    max_bytes = int(args.max_message_mb * (1 << 20))
    service = PolicyService(
        policy, token=token, max_batch=args.max_batch, batch_window_s=args.batch_window_ms / 1e3, max_message_bytes=max_bytes
    )
    server = make_zerorpc_server(service, heartbeat_s=args.heartbeat, hard_limit_bytes=2 * max_bytes + (1 << 20))
    try:
        server.bind(endpoint)
    except zmq.ZMQError as e:
        raise UserError(f"cannot bind {args.bind}: {e}") from None
    bound = bound_endpoint(server)
    warmup_s = policy.warmup(batch_sizes=sorted({1, args.max_batch}) if args.warmup_batches else (1,))
    print(ready_line(bound, policy.metadata(), service.server_info(), warmup_s), flush=True)

    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):
        gevent.signal_handler(sig, server.stop)
    try:
        server.run()
    finally:
        service.close()
        server.close()
        print("policy_server: stopped", file=sys.stderr, flush=True)
    return 0


def register_serve(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("serve", help="serve a UWM checkpoint over zerorpc")
    p.add_argument("--checkpoint", type=Path, default=None, help="uwm_robot checkpoint dir or official models.pt")
    p.add_argument("--config", type=Path, default=None, help="hydra config.yaml of an official checkpoint (default: next to it)")
    p.add_argument("--bind", default=DEFAULT_ADDRESS, help=f"zmq endpoint (default {DEFAULT_ADDRESS}; port 0 = any free port)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--token-file", type=Path, default=None, help="file holding the shared token every call must carry")
    p.add_argument("--insecure", action="store_true", help="allow a non-loopback bind without a token")
    p.add_argument("--max-batch", type=int, default=4, help="most infer requests run as one batch (default 4)")
    p.add_argument("--batch-window-ms", type=float, default=2.0, help="how long a request waits for batch partners (default 2)")
    p.add_argument("--max-message-mb", type=float, default=DEFAULT_MAX_MESSAGE_BYTES / (1 << 20), help="request size limit (MiB)")
    p.add_argument("--heartbeat", type=float, default=5.0, help="zerorpc heartbeat period (s)")
    p.add_argument("--samples", type=int, default=1,
                   help="chunks sampled per request; the medoid (the one nearest the others) is returned, or with a "
                        "request's guide the one nearest it (default 1)")
    p.add_argument("--noise-scale", type=float, default=1.0,
                   help="multiply each chunk's starting DDIM noise by this factor in [0, 1]: a sampling temperature; "
                        "below 1 successive chunks agree more (default 1, the official sampler)")
    p.add_argument("--plain", action="store_true", help="use the plain diffusers sampling path instead of the fast one")
    p.add_argument("--warmup-batches", action="store_true", help="also warm up a full batch (--max-batch)")
    p.set_defaults(func=_serve)


def build_parser() -> argparse.ArgumentParser:
    from .bench import register_bench

    parser = argparse.ArgumentParser(prog="policy_server", description="Serve UWM action chunks over zerorpc.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True)
    register_serve(sub)
    register_bench(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except UserError as e:
        print(f"policy_server {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
