"""`uwm_robot finetune`: train (or finetune) a UWM on recorded episodes.

    uwm_robot finetune --data demos/rice_cooker --init checkpoints/base --out runs/ft
    torchrun --nproc_per_node 8 -m uwm_robot.cli finetune --data ... --out ...   # DDP, same flags

The official recipe (uwm.md section 6): AdamW (lr 1e-4, weight decay 1e-6), warmup + cosine via
diffusers' `get_scheduler`, gradient clipping 1.0, bf16 autocast on GPU. Latents of the video
target are cached once (`<out>/latent_cache.pt`); the ResNet sees freshly augmented frames every
step (random crop and colour jitter, as the model config's `random_crop` and `color_jitter` say).
`<out>/checkpoint/` is a servable checkpoint (`policy_server serve --checkpoint`), refreshed every
`--save-every` steps together with `<out>/train_state.pt`, from which a re-run resumes.
`<out>/metrics.jsonl` logs the losses and `<out>/loss.png` plots them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .checkpoint import build_model, load_checkpoint, save_checkpoint
from .config import ModelConfig, preset
from .normalizer import NormalizerSet
from .training_data import WindowDataset, actions_beyond_range, cached_latents, load_training_data

STATE_FILE = "train_state.pt"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoint"


@dataclass
class FinetuneConfig:
    data: list[str]
    out: str
    video_data: tuple[str, ...] = ()
    chunk_data: tuple[str, ...] = ()  # policy rollouts labelled by their served chunks (self-imitation)
    init: str | None = None  # checkpoint to start from; None: random init of `preset`
    preset: str = "tiny"
    steps: int = 10_000
    batch_size: int = 36  # per process, as the official recipe
    lr: float = 1e-4
    weight_decay: float = 1e-6
    warmup_steps: int = 1000
    scheduler: str = "cosine"
    clip_grad_norm: float = 1.0
    ema_decay: float = 0.0  # 0: off (the official recipe has no EMA); the checkpoint holds the EMA weights
    save_every: int = 1000
    log_every: int = 20
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"  # auto: bf16 on CUDA, off on CPU (`bf16` also pays on CPUs with AVX512-BF16/AMX)
    fp16_checkpoint: bool = False  # halve the served checkpoint (the training state stays fp32)
    threads: int | None = None
    # data: min-max statistics of --data (the official recipe, right for a new task); init: keep the
    # --init checkpoint's, so a later round on the same task keeps the action space the policy learnt.
    normalizer: str = "data"
    # A takeover episode's policy steps have no labels: by default their windows train the video half
    # (world-model data); True leaves them out, so every batch is as action-labelled as plain demos'.
    skip_unlabelled_windows: bool = False

    def __post_init__(self):
        if self.normalizer not in ("data", "init"):
            raise ValueError(f"normalizer must be 'data' or 'init', got {self.normalizer!r}")
        if self.normalizer == "init" and not self.init:
            raise ValueError("normalizer 'init' keeps the --init checkpoint's statistics: give --init")


class TrainStep(nn.Module):
    """Frames + cached latents -> loss. A module so DDP can wrap the whole forward."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, obs, next_latents, action, action_mask, generator=None):
        enc = self.model.obs_encoder
        cond = enc.condition(enc.features(enc.transform(obs, generator)), obs)
        return self.model.diffusion_loss(cond, next_latents, action, action_mask, generator)


# ---- distributed ---------------------------------------------------------------------------------
@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> Dist:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; without them this is a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0")))


def barrier(d: Dist) -> None:
    if d.world > 1:
        import torch.distributed as dist

        dist.barrier()


def pick_device(name: str) -> torch.device:
    """auto | cpu | cuda; under torchrun each process takes the GPU of its LOCAL_RANK."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda: no CUDA device is visible")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device(name)


# ---- model / state ---------------------------------------------------------------------------------
def initial_model(cfg: FinetuneConfig) -> tuple[nn.Module, ModelConfig, dict, NormalizerSet | None]:
    """The model to train, its config, where it came from (for meta.json) and its normaliser (None: fresh)."""
    if cfg.init:
        loaded = load_checkpoint(cfg.init)
        # The init's own meta goes along, so a checkpoint names its whole lineage (data, steps) to the first init.
        source = {"init": str(cfg.init), "init_hash": loaded.meta.get("checkpoint_hash"), "init_meta": loaded.meta}
        return loaded.model.float(), loaded.config, source, loaded.normalizer
    model_cfg = preset(cfg.preset)
    torch.manual_seed(cfg.seed)
    return build_model(model_cfg), model_cfg, {"init": f"preset:{cfg.preset}"}, None


def plot_losses(metrics_path: Path, png_path: Path) -> None:
    """Loss curves (raw and smoothed) of metrics.jsonl as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    if not rows:
        return
    step = np.array([r["step"] for r in rows])
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, color in (("loss", "k"), ("action_loss", "tab:blue"), ("dynamics_loss", "tab:orange")):
        y = np.array([r[key] for r in rows])
        ax.plot(step, y, color=color, alpha=0.25, lw=0.8)
        k = max(1, len(y) // 30)
        smooth = np.convolve(y, np.ones(k) / k, mode="valid")
        ax.plot(step[k - 1:], smooth, color=color, lw=1.8, label=key)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("epsilon MSE")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(f"{metrics_path.parent.name}: training loss")
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)


def finetune(cfg: FinetuneConfig, progress: bool = True) -> Path:
    """Train; returns the servable checkpoint directory."""
    from diffusers.optimization import get_scheduler
    from tqdm import tqdm

    out = Path(cfg.out)
    device = pick_device(cfg.device)
    if not cfg.data and not cfg.chunk_data:
        raise ValueError("no training data: give --data (labelled episodes) or --chunk-data (policy rollouts)")
    dist_info = init_distributed(device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    use_bf16 = device.type == "cuda" if cfg.amp == "auto" else cfg.amp == "bf16"
    if dist_info.main:
        out.mkdir(parents=True, exist_ok=True)

    model, model_cfg, source, init_normalizer = initial_model(cfg)
    model.to(device)
    say = (lambda *a: print("[finetune]", *a, flush=True)) if dist_info.main else (lambda *a: None)
    bar = (lambda it, **kw: tqdm(it, **kw)) if (progress and dist_info.main) else (lambda it, **kw: it)

    episodes, normalizer = load_training_data(cfg.data, model_cfg, cfg.video_data,
                                              progress=lambda x: bar(x, desc="reading episodes", unit="ep"),
                                              chunk_roots=cfg.chunk_data)
    if cfg.normalizer == "init":
        normalizer = init_normalizer
        beyond = actions_beyond_range(normalizer, episodes)
        if beyond:
            shares = ", ".join(f"{d}: {v * 100:.2g}%" for d, v in beyond.items())
            say(f"WARNING: the kept normaliser ({cfg.init}) does not cover these action dimensions of the data "
                f"(share of values past its range) {shares}; the sampler clips at its edges, so the policy "
                f"cannot reach them (--normalizer data refits)")

    lossy = [ep for ep in episodes if ep.lossy_frames and (ep.actions is not None or ep.chunk_actions)]
    if lossy:
        # Lossy training frames are not what the policy sees live (docs/results.md session 41 measures the gap).
        say(f"WARNING: {len(lossy)} of {len(episodes)} episodes (action-labelled ones) have only their H.264 videos "
            f"(e.g. {lossy[0].path}): lossy frames (yuv420p), a few grey levels off what the policy sees live. "
            f"Record rollouts meant for training with `robot_client run|eval --raw-frames`")

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16) if use_bf16 else contextlib.nullcontext()

    # One process encodes the latents, the others read its cache. In full precision: the cache is made
    # once, and bf16 convolutions on a CPU without bf16 units ran 10x slower (docs/results.md, session 43).
    if dist_info.main:
        with torch.autocast(device.type, enabled=False):
            latents = cached_latents(model, model_cfg, episodes, out / "latent_cache.pt", device,
                                     progress=lambda x: bar(x, desc="caching VAE latents", unit="ep"))
    barrier(dist_info)
    if not dist_info.main:
        latents = cached_latents(model, model_cfg, episodes, out / "latent_cache.pt", device)
    data = WindowDataset(episodes, latents, model_cfg, normalizer, skip_unlabelled=cfg.skip_unlabelled_windows)
    say(f"{len(episodes)} episodes, {len(data)} windows ({data.num_labelled_windows} with actions); "
        f"device {device}, {dist_info.world} process(es), batch {cfg.batch_size}/process, bf16={use_bf16}")

    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.999), eps=1e-8)
    scheduler = get_scheduler(cfg.scheduler, optimizer, num_warmup_steps=cfg.warmup_steps, num_training_steps=cfg.steps)
    ema = None
    if cfg.ema_decay > 0:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)

    step = 0
    state_path = out / STATE_FILE
    if state_path.exists():
        state = torch.load(state_path, map_location=device, weights_only=False)
        # Compared as configs, so a state written before a field was added (with its default) resumes.
        if ModelConfig.from_dict(state["model_config"], str(state_path)) != model_cfg:
            raise RuntimeError(f"{state_path} was written for another model config; use a new --out")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if ema is not None and state.get("ema") is not None:
            ema.load_state_dict(state["ema"])
        step = int(state["step"])
        say(f"resuming from step {step} ({state_path})")

    runner: nn.Module = TrainStep(model)
    if dist_info.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        runner = DistributedDataParallel(runner, device_ids=[device.index] if device.type == "cuda" else None)

    def save(final: bool) -> Path:
        served = ema.module if ema is not None else model
        meta = {**source, "step": step, "source": "uwm_robot finetune", "data": [str(d) for d in cfg.data],
                "chunk_data": [str(d) for d in cfg.chunk_data],
                "video_data": [str(d) for d in cfg.video_data], "episodes": len(episodes), "final": final}
        ckpt = save_checkpoint(out / CHECKPOINT_DIR, served, model_cfg, normalizer, meta=meta, fp16=cfg.fp16_checkpoint)
        tmp = state_path.with_name(STATE_FILE + ".tmp")
        torch.save({"step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "ema": None if ema is None else ema.state_dict(),
                    "model_config": model_cfg.to_dict(), "finetune_config": vars(cfg)}, tmp)
        tmp.replace(state_path)
        if (out / METRICS_FILE).exists():
            plot_losses(out / METRICS_FILE, out / "loss.png")
        return ckpt

    model.train()
    rng = np.random.default_rng(cfg.seed * 1000 + dist_info.rank + 7919 * step)  # a resumed run draws new batches
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + dist_info.rank + 7919 * step)
    metrics = open(out / METRICS_FILE, "a") if dist_info.main else None
    pbar = tqdm(total=cfg.steps, initial=step, desc="finetune", unit="step", disable=not (progress and dist_info.main))
    running: dict[str, list[float]] = {}
    t_start = time.perf_counter()
    try:
        while step < cfg.steps:
            b = data.batch(rng.integers(0, len(data), cfg.batch_size), gen)
            obs = {k: v.to(device, non_blocking=True) for k, v in b["obs"].items()}
            with autocast():
                loss, info = runner(obs, b["next_latents"].to(device), b["action"].to(device),
                                    b["action_mask"].to(device), gen)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = float(torch.nn.utils.clip_grad_norm_(trainable, cfg.clip_grad_norm if cfg.clip_grad_norm > 0 else math.inf))
            optimizer.step()
            scheduler.step()
            if ema is not None:
                ema.update_parameters(model)
            step += 1
            for k, v in {**info, "grad_norm": grad_norm}.items():
                running.setdefault(k, []).append(v)
            if step % cfg.log_every == 0 or step == cfg.steps:
                row = {"step": step, "lr": scheduler.get_last_lr()[0], "elapsed_s": time.perf_counter() - t_start,
                       **{k: float(np.mean(v)) for k, v in running.items()}}
                running = {}
                if metrics:
                    metrics.write(json.dumps(row) + "\n")
                    metrics.flush()
                pbar.set_postfix(loss=f"{row['loss']:.4f}", action=f"{row['action_loss']:.4f}")
            pbar.update(1)
            if step % cfg.save_every == 0 and step < cfg.steps and dist_info.main:
                save(final=False)
    finally:
        pbar.close()
        if metrics:
            metrics.close()
    ckpt = out / CHECKPOINT_DIR
    if dist_info.main:
        ckpt = save(final=True)
        say(f"done: {step} steps in {time.perf_counter() - t_start:.0f} s -> {ckpt} (loss curves: {out / 'loss.png'})")
    barrier(dist_info)
    return ckpt


# ---- CLI ---------------------------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    d = FinetuneConfig(data=[], out="")
    p.add_argument("--data", nargs="*", default=[], help="episode directories or roots holding them (action-labelled)")
    p.add_argument("--video-data", nargs="*", default=[], help="episode roots used as action-free video (cotraining)")
    p.add_argument("--chunk-data", nargs="*", default=[],
                   help="policy rollouts (eval directories) labelled by the chunks the policy was served, not by the "
                        "executed steps: self-imitation on their successful trials")
    p.add_argument("--init", default=None, help="checkpoint to finetune (ours or an official models.pt)")
    p.add_argument("--preset", default=d.preset, help="without --init: architecture to train from scratch")
    p.add_argument("--out", required=True, help="run directory (a re-run with the same --out resumes)")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="per process")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--warmup-steps", type=int, default=d.warmup_steps)
    p.add_argument("--scheduler", default=d.scheduler, help="a diffusers get_scheduler name (cosine, constant, ...)")
    p.add_argument("--clip-grad-norm", type=float, default=d.clip_grad_norm, help="0: off")
    p.add_argument("--ema-decay", type=float, default=d.ema_decay, help="0: off; else the checkpoint holds EMA weights")
    p.add_argument("--save-every", type=int, default=d.save_every)
    p.add_argument("--log-every", type=int, default=d.log_every)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default=d.device, help="auto | cpu | cuda")
    p.add_argument("--amp", choices=["auto", "bf16", "off"], default=d.amp,
                   help="auto: bf16 autocast on CUDA, fp32 on CPU; bf16 on CPU is ~1.6x faster where AVX512-BF16 exists")
    p.add_argument("--fp16-checkpoint", action="store_true", help="store the served weights as float16")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    p.add_argument("--normalizer", choices=["data", "init"], default=d.normalizer,
                   help="data: min-max statistics of --data (the official recipe); init: keep the --init "
                        "checkpoint's (a later round on the same task: the action space stays the one it learnt)")
    p.add_argument("--skip-unlabelled-windows", action="store_true",
                   help="leave out windows of --data episodes whose actions are not all labelled (a takeover "
                        "episode's policy steps) instead of training the video half on them")


def run(args: argparse.Namespace) -> int:
    cfg = FinetuneConfig(
        data=list(args.data), video_data=tuple(args.video_data), chunk_data=tuple(args.chunk_data), out=args.out, init=args.init, preset=args.preset,
        steps=args.steps, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
        warmup_steps=args.warmup_steps, scheduler=args.scheduler, clip_grad_norm=args.clip_grad_norm,
        ema_decay=args.ema_decay, save_every=args.save_every, log_every=args.log_every, seed=args.seed,
        device=args.device, amp=args.amp, fp16_checkpoint=args.fp16_checkpoint, threads=args.threads,
        normalizer=args.normalizer, skip_unlabelled_windows=args.skip_unlabelled_windows)
    finetune(cfg)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("finetune", help="train/finetune a UWM on recorded episodes (DDP via torchrun)")
    add_arguments(p)
    p.set_defaults(func=run)
