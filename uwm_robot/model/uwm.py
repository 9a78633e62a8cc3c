"""UnifiedWorldModel: observation encoder + dual-timestep diffusion transformer.

Module names mirror the official class so that `load_state_dict(strict=True)` of an official
checkpoint's `model` entry works: `obs_encoder.img_encoder.model.*` (ResNet-18),
`obs_encoder.vae.{shift,scale,vae.*}` (frozen VAE) and `noise_pred_net.*` (the DiT).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler
from torch import nn

from ..config import ModelConfig
from .dit import DualNoisePredictionNet
from .resnet import ResNetImageEncoder
from .transforms import video_transform
from .vae import LatentVAE

Images = dict[str, torch.Tensor]  # camera name -> uint8 (B, T, H, W, 3); low-dim key -> normalised float (B, T, D)


class ObservationEncoder(nn.Module):
    """Camera frames -> ResNet features (the condition) or VAE latents (the prediction target)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.img_encoder = ResNetImageEncoder(cfg.img_embed_dim)
        self.vae = LatentVAE(cfg.vae)

    def transform(self, images: Images, generator: torch.Generator | None = None) -> torch.Tensor:
        """uint8 frames per camera -> (B, V, 3, T, crop_h, crop_w) in [0, 1], views in model order."""
        missing = [k for k in self.cfg.cameras if k not in images]
        if missing:
            raise KeyError(f"missing camera(s) {missing}; the model expects {list(self.cfg.cameras)}")
        train = self.training
        views = [
            video_transform(images[k], self.cfg.resize_shape, self.cfg.crop_shape, train=train, generator=generator,
                            random_crop=self.cfg.random_crop, color_jitter=self.cfg.color_jitter)
            for k in self.cfg.cameras
        ]
        return torch.stack(views, dim=1)

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.img_encoder(pixels)

    def condition(self, features: torch.Tensor, obs: Images) -> torch.Tensor:
        """The global condition: image features, then the low-dim state flattened over frames (official order)."""
        if not self.cfg.low_dim:
            return features
        self.cfg.check_state(obs, batch=features.shape[0])
        state = torch.cat([obs[key].to(features) for key in self.cfg.low_dim_keys], dim=-1)
        return torch.cat((features, state.flatten(1)), dim=-1)

    def latents(self, pixels: torch.Tensor, generator: torch.Generator | None = None, sample: bool = True) -> torch.Tensor:
        b, v, c, t, h, w = pixels.shape
        flat = pixels.permute(0, 1, 3, 2, 4, 5).reshape(b * v * t, c, h, w)  # frames ordered (b v t)
        z = self.vae.encode(flat, generator=generator, sample=sample)
        return z.reshape(b, v, t, *z.shape[1:]).transpose(2, 3)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, V, C, T, h, w) latents -> (B, V, 3, T, H, W) images (float, ~[0, 1])."""
        b, v, c, t, h, w = latents.shape
        imgs = self.vae.decode(latents.transpose(2, 3).reshape(b * v * t, c, h, w))
        return imgs.reshape(b, v, t, *imgs.shape[1:]).transpose(2, 3)

    def encode_curr_obs(self, images: Images) -> torch.Tensor:
        return self.condition(self.features(self.transform(images)), images)

    def encode_next_obs(self, images: Images, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.latents(self.transform(images), generator=generator)

    def encode_curr_and_next_obs(
        self, obs: Images, next_obs: Images, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # Transform both together so training's random crop is shared, as the official code does.
        b = next(iter(obs.values())).shape[0]
        both = self.transform({k: torch.cat((obs[k], next_obs[k])) for k in self.cfg.cameras}, generator)
        return self.condition(self.features(both[:b]), obs), self.latents(both[b:], generator=generator)


def make_scheduler(cfg: ModelConfig) -> DDIMScheduler:
    return DDIMScheduler(
        num_train_timesteps=cfg.num_train_steps,
        beta_schedule=cfg.beta_schedule,
        clip_sample=cfg.clip_sample,
        prediction_type="epsilon",
    )


class UnifiedWorldModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.obs_encoder = ObservationEncoder(cfg)
        self.noise_pred_net = DualNoisePredictionNet(cfg)
        self.noise_scheduler = make_scheduler(cfg)

    @property
    def device(self) -> torch.device:
        return self.noise_pred_net.pos_embed.device

    def loss(
        self,
        obs: Images,
        next_obs: Images,
        action: torch.Tensor,
        action_mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The official training loss: independent timesteps, epsilon MSE on both modalities."""
        cond, next_latents = self.obs_encoder.encode_curr_and_next_obs(obs, next_obs, generator)
        return self.diffusion_loss(cond, next_latents, action, action_mask, generator)

    def diffusion_loss(
        self,
        cond: torch.Tensor,
        next_latents: torch.Tensor,
        action: torch.Tensor,
        action_mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss from encoded observations (finetuning feeds cached VAE latents here).

        Samples whose `action_mask` is False (action-free video) get the action timestep fixed at
        the last training step, as the official code does, and are left out of the action loss
        (the official code keeps them in; at t = 99 they only teach the model to echo noise), so
        they only teach the video half of the model.
        """
        b, dev = action.shape[0], action.device
        n_train = self.cfg.num_train_steps
        gen_device = generator.device if generator is not None else torch.device("cpu")

        def noise_and_timestep(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            noise = torch.randn(x.shape, generator=generator, device=gen_device).to(x)
            t = torch.randint(0, n_train, (b,), generator=generator, device=gen_device).to(dev)
            return noise, t

        action_noise, action_t = noise_and_timestep(action)
        labelled = None
        if action_mask is not None:
            labelled = action_mask.to(dev).bool()
            action_t = torch.where(labelled, action_t, torch.full_like(action_t, n_train - 1))
        obs_noise, obs_t = noise_and_timestep(next_latents)
        noisy_action = self.noise_scheduler.add_noise(action, action_noise, action_t)
        noisy_obs = self.noise_scheduler.add_noise(next_latents, obs_noise, obs_t)
        action_pred, obs_pred = self.noise_pred_net(cond, noisy_action, action_t, noisy_obs, obs_t)
        if labelled is None:
            action_loss = F.mse_loss(action_pred, action_noise)
        else:
            per_sample = (action_pred - action_noise).pow(2).mean(dim=tuple(range(1, action.ndim)))
            action_loss = (per_sample * labelled).sum() / labelled.sum().clamp(min=1)
        dynamics_loss = F.mse_loss(obs_pred, obs_noise)
        loss = action_loss + dynamics_loss
        return loss, {"loss": loss.item(), "action_loss": action_loss.item(), "dynamics_loss": dynamics_loss.item()}
