"""`uwm_robot bench`: latency of one 10-step DDIM policy chunk, plain vs fast path.

Times `UWMSampler.policy` end to end (image preprocessing, ResNet features, 10 DiT steps) at a
fixed batch size on random weights and random uint8 frames, and prints p50/p95/p99 per chunk and
peak memory for each path. Weight values do not change the work done, so no checkpoint is needed.
"""

from __future__ import annotations

import argparse
import resource
import time
from dataclasses import dataclass

import numpy as np
import torch

from .config import preset
from .model import UnifiedWorldModel
from .sampling import UWMSampler


@dataclass
class PathResult:
    name: str
    times_ms: list[float]
    peak_mb: float

    def pct(self, q: float) -> float:
        return float(np.percentile(self.times_ms, q))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux: process peak RSS


def time_path(name: str, sampler: UWMSampler, images, iters: int, warmup: int, device: torch.device) -> PathResult:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for i in range(warmup):
        sampler.policy(images, seed=i)
    _sync(device)
    times = []
    for i in range(iters):
        t0 = time.perf_counter()
        sampler.policy(images, seed=i)
        _sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return PathResult(name, times, _peak_mb(device))


def run(args: argparse.Namespace) -> list[PathResult]:
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench: --device cuda asked for, but torch sees no CUDA device")
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = preset(args.preset)
    torch.manual_seed(0)
    model = UnifiedWorldModel(cfg).to(device).eval()
    rng = np.random.default_rng(0)
    images = {
        c: torch.from_numpy(rng.integers(0, 256, (args.batch, cfg.n_obs_steps, *cfg.image_shape, 3), dtype=np.uint8)).to(device)
        for c in cfg.cameras
    }
    iters = args.iters or (3 if device.type == "cpu" and args.preset != "tiny" else 30)
    warmup = args.warmup if args.warmup is not None else (1 if device.type == "cpu" else 5)
    paths = [("plain fp32", UWMSampler(model)), ("fast fp32", UWMSampler(model, fast=True))]
    if device.type == "cuda":
        paths.append(("fast bf16", UWMSampler(model, fast=True, dtype=torch.bfloat16)))
        if not args.no_compile:
            paths.append(("fast bf16 + compile", UWMSampler(model, fast=True, dtype=torch.bfloat16, compile=True)))
    results = []
    print(
        f"uwm_robot bench: preset={args.preset} device={device} batch={args.batch} iters={iters} warmup={warmup} "
        f"threads={torch.get_num_threads()} tokens={cfg.num_tokens} ddim_steps={cfg.num_inference_steps}"
    )
    print(f"{'path':<22}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}{'peak MB':>10}")
    for name, sampler in paths:
        r = time_path(name, sampler, images, iters, warmup, device)
        results.append(r)
        print(f"{name:<22}{r.pct(50):>10.1f}{r.pct(95):>10.1f}{r.pct(99):>10.1f}{r.peak_mb:>10.0f}", flush=True)
    plain, fast = results[0], results[1]
    print(f"ratio fast/plain (p50, fp32): {fast.pct(50) / plain.pct(50):.3f}")
    return results


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bench", help="time one 10-step DDIM policy chunk (plain vs fast path)")
    p.add_argument("--preset", default="droid", choices=["droid", "libero", "tiny"])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--iters", type=int, default=0, help="timed chunks per path (default: 3 on CPU for droid, else 30)")
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile path on CUDA")
    p.set_defaults(func=_command)


def _command(args: argparse.Namespace) -> int:
    run(args)
    return 0
