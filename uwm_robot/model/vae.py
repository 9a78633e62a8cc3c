"""The frozen SDXL-architecture VAE that turns images into the latents UWM predicts.

Wraps a diffusers `AutoencoderKL` built from `VAEConfig` (never downloaded: the weights come from
the checkpoint) and applies the official latent normalisation: `(z * scaling_factor - shift) / scale`.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL
from torch import nn

from ..config import VAEConfig

# Frames per VAE call, as the official apply_vae; it also fixes the order of posterior noise draws.
MICROBATCH = 72


def build_autoencoder(cfg: VAEConfig) -> AutoencoderKL:
    n = len(cfg.block_out_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(cfg.block_out_channels),
        layers_per_block=cfg.layers_per_block,
        latent_channels=cfg.latent_channels,
        norm_num_groups=cfg.norm_num_groups,
        sample_size=1024,
        scaling_factor=cfg.scaling_factor,
        force_upcast=True,
    )


class LatentVAE(nn.Module):
    """Images (N, 3, H, W) in [0, 1] <-> normalised latents (N, C, H/8, W/8)."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.register_buffer("shift", torch.full((1, cfg.latent_channels, 1, 1), float(cfg.shift)))
        self.register_buffer("scale", torch.full((1, cfg.latent_channels, 1, 1), float(cfg.scale)))
        self.vae = build_autoencoder(cfg)
        self.vae.requires_grad_(False)
        self.scaling_factor = cfg.scaling_factor

    def encode(self, images: torch.Tensor, generator: torch.Generator | None = None, sample: bool = True) -> torch.Tensor:
        """Posterior sample (as the official code) or mean (`sample=False`) of the latents."""
        out = []
        for chunk in images.split(MICROBATCH):
            dist = self.vae.encode(chunk * 2.0 - 1.0).latent_dist
            if sample:
                # Draw on the generator's device (CPU by default) so seeds give the same noise everywhere.
                gen_device = generator.device if generator is not None else torch.device("cpu")
                noise = torch.randn(dist.mean.shape, generator=generator, device=gen_device, dtype=dist.mean.dtype)
                z = dist.mean + dist.std * noise.to(dist.mean.device)
            else:
                z = dist.mean
            out.append((z * self.scaling_factor - self.shift) / self.scale)
        return torch.cat(out)

    @torch.no_grad()
    def encode_distribution(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior (mean, std) in the normalised latent space: mean + std * N(0, 1) is what
        `encode(sample=True)` draws, so a cache of these two stands in for the encoder."""
        means, stds = [], []
        for chunk in images.split(MICROBATCH):
            dist = self.vae.encode(chunk * 2.0 - 1.0).latent_dist
            means.append((dist.mean * self.scaling_factor - self.shift) / self.scale)
            stds.append(dist.std * self.scaling_factor / self.scale)
        return torch.cat(means), torch.cat(stds)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents -> images, roughly in [0, 1] (not clamped, as the official inverse)."""
        out = []
        for chunk in latents.split(MICROBATCH):
            z = (chunk * self.scale + self.shift) / self.scaling_factor
            out.append((self.vae.decode(z).sample + 1.0) / 2.0)
        return torch.cat(out)


def vae_config_from_state_dict(state_dict: dict, prefix: str = "obs_encoder.vae.", base: VAEConfig | None = None) -> VAEConfig:
    """Read the VAE's widths and depth off its weights (official configs don't record them).

    Real checkpoints carry the full SDXL VAE; small test checkpoints a narrower one with the same
    key names. Shift/scale come from the checkpoint's buffers.
    """
    import dataclasses

    base = base or VAEConfig()
    enc = prefix + "vae.encoder.down_blocks."
    widths, i = [], 0
    while f"{enc}{i}.resnets.0.conv1.weight" in state_dict:
        widths.append(int(state_dict[f"{enc}{i}.resnets.0.conv1.weight"].shape[0]))
        i += 1
    if not widths:
        return base
    layers = 0
    while f"{enc}0.resnets.{layers}.conv1.weight" in state_dict:
        layers += 1
    latent = state_dict.get(prefix + "vae.quant_conv.weight")
    changes = dict(block_out_channels=tuple(widths), layers_per_block=layers)
    if latent is not None:
        changes["latent_channels"] = int(latent.shape[0]) // 2
    for name in ("shift", "scale"):
        buf = state_dict.get(prefix + name)
        if buf is not None and buf.numel() and bool((buf == buf.flatten()[0]).all()):
            changes[name] = float(buf.flatten()[0])
    return dataclasses.replace(base, **changes)
