"""Image preprocessing identical to the official VideoTransform (minus torchvision).

uint8 (B, T, H, W, 3) -> float (B, 3, T, crop_h, crop_w) in [0, 1]: scale to [0, 1], bilinear
antialiased resize (what torchvision's tensor Resize does), then a center crop in eval or a random
crop (shared by the whole batch, like torchvision's RandomCrop on a batch) in training, then in
training only a colour jitter (kornia's torchvision-aligned ColorJitter, one draw for the whole
batch like torchvision's on a batch tensor).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from ..config import ColorJitterConfig


def resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return F.interpolate(images, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)


def center_crop_offsets(hw: tuple[int, int], crop: tuple[int, int]) -> tuple[int, int]:
    # torchvision rounds the centred offset half-to-even via int(round(...)).
    return int(round((hw[0] - crop[0]) / 2.0)), int(round((hw[1] - crop[1]) / 2.0))


def video_transform(
    frames: torch.Tensor,
    resize_shape: tuple[int, int],
    crop_shape: tuple[int, int],
    train: bool = False,
    generator: torch.Generator | None = None,
    random_crop: bool = True,
    color_jitter: ColorJitterConfig | None = None,
) -> torch.Tensor:
    b, t = frames.shape[:2]
    x = frames.reshape(b * t, *frames.shape[2:]).permute(0, 3, 1, 2).float().div(255.0)
    x = resize(x, resize_shape)
    h, w = x.shape[-2:]
    if train and random_crop:
        top = int(torch.randint(0, h - crop_shape[0] + 1, (1,), generator=generator))
        left = int(torch.randint(0, w - crop_shape[1] + 1, (1,), generator=generator))
    else:
        top, left = center_crop_offsets((h, w), crop_shape)
    x = x[..., top : top + crop_shape[0], left : left + crop_shape[1]]
    if train and color_jitter is not None:
        x = jitter_colors(x, color_jitter, generator)
    return x.reshape(b, t, 3, *crop_shape).transpose(1, 2)


@functools.lru_cache(maxsize=8)
def _color_jitter(cfg: ColorJitterConfig):
    """One kornia module per setting, built once rather than on every training step."""
    from kornia.augmentation import ColorJitter

    return ColorJitter(cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue, same_on_batch=True, p=1.0)


def jitter_colors(x: torch.Tensor, cfg: ColorJitterConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """(N, 3, H, W) in [0, 1] -> the same frames under one random brightness/contrast/saturation/hue draw."""
    jitter = _color_jitter(cfg)
    # kornia draws from the global RNG; seed a forked one from `generator` so training stays reproducible.
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return jitter(x)
