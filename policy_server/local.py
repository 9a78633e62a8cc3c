"""Bench and test helpers: realistic observations, throwaway checkpoints, the loopback launcher."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from uwm_robot.local_server import LocalServer  # noqa: F401  (re-exported for bench and tests)


def random_observation(meta: dict, rng: np.random.Generator | int = 0) -> tuple[dict, dict]:
    """(images, timestamps) as a robot sends them: uint8 (n_obs, H, W, 3) per camera of `meta`
    (a server's hello metadata) and capture times (ns) 1/15 s apart, newest now."""
    rng = np.random.default_rng(rng) if isinstance(rng, int) else rng
    n, (h, w) = meta["n_obs_steps"], meta["image_shape"]
    images = {c: rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8) for c in meta["cameras"]}
    now = time.monotonic_ns()
    stamps = {c: [now - (n - 1 - i) * 66_666_667 for i in range(n)] for c in meta["cameras"]}
    return images, stamps


def random_state(meta: dict, rng: np.random.Generator | int = 0) -> dict | None:
    """The low-dim robot state a model of `meta` conditions on (`state_shapes`), or None if none."""
    rng = np.random.default_rng(rng) if isinstance(rng, int) else rng
    return {k: rng.normal(size=tuple(shape)) for k, shape in (meta.get("state_shapes") or {}).items()} or None


def make_preset_checkpoint(
    preset_name: str,
    out_dir: str | Path,
    image_shape: tuple[int, int] | None = None,
    seed: int = 0,
    perturb: float = 0.0,
    **config_changes,
) -> Path:
    """A randomly initialised checkpoint of a preset, optionally with another raw camera size.

    `perturb` > 0 nudges every DiT parameter (std `perturb / sqrt(fan_in)`): a fresh DiT has
    zeroed adaLN layers, so its output ignores the observation; tests want one that does not.
    """
    import torch

    from uwm_robot.checkpoint import build_model, save_checkpoint
    from uwm_robot.config import preset
    from uwm_robot.normalizer import NormalizerSet

    config = preset(preset_name)
    if image_shape is not None:
        config_changes["image_shape"] = tuple(image_shape)
    if config_changes:
        config = config.replace(**config_changes)
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = build_model(config)
    if perturb:
        with torch.no_grad():
            for p in model.noise_pred_net.parameters():
                p.add_(torch.randn(p.shape, generator=gen) * perturb / max(1, p.shape[-1]) ** 0.5)
    normalizer = NormalizerSet.default(config.action_dim, identity=config.action_space == "raw", low_dim=config.low_dim)
    return save_checkpoint(out_dir, model, config, normalizer, meta={"source": f"local:{preset_name}", "seed": seed})
