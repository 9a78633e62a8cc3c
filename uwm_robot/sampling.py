"""UWM's five sampling modes with a 10-step DDIM, on a plain and a fast path.

Fixing one modality's timestep turns the one network into different models:

| mode               | denoised        | held fixed                                   |
|--------------------|-----------------|----------------------------------------------|
| policy             | actions         | future latents: pure noise at the marginal t |
| forward_dynamics   | future latents  | actions: clean (t = 0)                        |
| inverse_dynamics   | actions         | future latents: VAE-encoded goal (t = 0)      |
| video_prediction   | future latents  | actions: pure noise at the marginal t         |
| joint              | both            | —                                             |

Noise is drawn from a CPU `torch.Generator` in the official order, so a seed gives the official
numbers on any device. The plain path calls the network and diffusers' `DDIMScheduler.step`
exactly like the official code; the fast path (`fast_sampling.FastDenoiser`) computes the same
thing with the observation part of the adaLN projections hoisted out of the loop.

Inpainting (`policy(..., prefix, prefix_mask)`): real-time chunking asks for a chunk whose first
actions are already decided (the old chunk's still-pending ones). For an epsilon-prediction DDIM
the known rows are replaced, after initialisation and after every step, by the prefix noised to
the level the sampler is at: sqrt(abar_t) * prefix + sqrt(1 - abar_t) * eps_k, with fresh noise
per step; after the last step they are the prefix itself. The network sees a consistent partial
sample, so the free rows are denoised conditioned on the fixed ones (replacement-style
inpainting, a hard mask). Only actions are inpainted. The extra noise is drawn after the
official draws from the same generator, so a request without a prefix gives the same numbers.

Noise scale (`policy(..., noise_scale=s)`): the action chunk's starting noise x_T is drawn as usual
and multiplied by s before the (deterministic, eta = 0) DDIM trajectory, a sampling temperature.
s = 1 is the official sampler; s < 1 starts nearer the distribution's centre, so successive
chunks of a receding-horizon policy agree more often (at s = 0 only the held future-latent noise
still varies). The draws are unchanged, so a seed gives the same noise at every scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .model import UnifiedWorldModel
from .model.uwm import Images

MODES = ("policy", "forward_dynamics", "inverse_dynamics", "video_prediction", "joint")


@dataclass(frozen=True)
class DenoiseSpec:
    """Which modalities one sampling run denoises, and the timestep of a held modality."""

    denoise_action: bool
    denoise_obs: bool
    action_t: int | None = None  # used when actions are held
    obs_t: int | None = None  # used when latents are held

    def timestep_pairs(self, timesteps: list[int]) -> list[tuple[int, int]]:
        return [
            (t if self.denoise_action else self.action_t, t if self.denoise_obs else self.obs_t) for t in timesteps
        ]


@dataclass(frozen=True)
class Inpaint:
    """Known action rows, and what they are set to at each point of the DDIM schedule."""

    mask: torch.Tensor  # (B, L, 1) bool: True = the row is fixed to the prefix
    targets: torch.Tensor  # (K + 1, B, L, D): row values after init (0) and after step k (k + 1)

    def apply(self, x: torch.Tensor, k: int) -> torch.Tensor:
        return torch.where(self.mask, self.targets[k].to(x.dtype), x)


def inpaint_levels(sched, num_inference_steps: int) -> torch.Tensor:
    """(K + 1, 2): (sqrt(abar), sqrt(1 - abar)) of the sample at init and after each of the K DDIM steps."""
    sched.set_timesteps(num_inference_steps)
    ac = sched.alphas_cumprod
    step = sched.config.num_train_timesteps // sched.num_inference_steps
    levels = [ac[sched.timesteps[0]]]
    for t in sched.timesteps.tolist():
        levels.append(ac[t - step] if t - step >= 0 else sched.final_alpha_cumprod)
    a = torch.stack([torch.as_tensor(x, dtype=torch.float32) for x in levels])
    return torch.stack([a.sqrt(), (1 - a).sqrt()], dim=1)


def make_generator(seed: int | None) -> torch.Generator:
    gen = torch.Generator()
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(int(seed))
    return gen


class Denoiser:
    """The plain path: one network call and one `DDIMScheduler.step` per inference step."""

    def __init__(self, model: UnifiedWorldModel):
        self.model = model

    def run(self, cond: torch.Tensor, action: torch.Tensor, latents: torch.Tensor, spec: DenoiseSpec,
            inpaint: Inpaint | None = None):
        sched = self.model.noise_scheduler
        sched.set_timesteps(self.model.cfg.num_inference_steps)
        if inpaint is not None:
            action = inpaint.apply(action, 0)
        for k, ((at, ot), t) in enumerate(zip(spec.timestep_pairs(sched.timesteps.tolist()), sched.timesteps)):
            action_eps, obs_eps = self.model.noise_pred_net(cond, action, at, latents, ot)
            if spec.denoise_obs:
                latents = sched.step(obs_eps, t, latents).prev_sample
            if spec.denoise_action:
                action = sched.step(action_eps, t, action).prev_sample
                if inpaint is not None:
                    action = inpaint.apply(action, k + 1)
        return action, latents


class UWMSampler:
    """Runs the five modes of a `UnifiedWorldModel` (eval mode, no grad)."""

    def __init__(self, model: UnifiedWorldModel, fast: bool = False, **fast_options):
        self.model = model.eval()
        self.cfg = model.cfg
        if fast:
            from .fast_sampling import FastDenoiser

            self.denoiser = FastDenoiser(model, **fast_options)
        else:
            self.denoiser = Denoiser(model)

    # ---- inputs -----------------------------------------------------------------------------
    def as_images(self, images: dict[str, np.ndarray | torch.Tensor], with_state: bool = True) -> Images:
        """uint8 (B, T, H, W, 3) per camera -> tensors on the model's device, shapes checked; with
        the model's low-dim state keys (normalised float (B, T, D)) too unless `with_state` is False."""
        out = {}
        if with_state:
            self.cfg.check_state(images)
            for name in self.cfg.low_dim_keys:
                out[name] = torch.as_tensor(images[name], dtype=torch.float32).to(self.model.device)
        for name in self.cfg.cameras:
            if name not in images:
                raise KeyError(f"missing camera {name!r}; the model expects {list(self.cfg.cameras)}")
            x = torch.as_tensor(images[name])
            if x.dtype != torch.uint8 or x.ndim != 5 or x.shape[1] != self.cfg.n_obs_steps or x.shape[-1] != 3:
                raise ValueError(
                    f"camera {name!r}: expected uint8 (B, {self.cfg.n_obs_steps}, H, W, 3), "
                    f"got {str(x.dtype).replace('torch.', '')} {tuple(x.shape)}"
                )
            out[name] = x.to(self.model.device)
        return out

    def _noise(self, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
        return torch.randn(shape, generator=gen).to(self.model.device)

    def _shapes(self, batch: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        return (batch, self.cfg.action_len, self.cfg.action_dim), (batch, *self.cfg.latent_shape)

    @staticmethod
    def _batch(images: Images) -> int:
        return next(iter(images.values())).shape[0]

    # ---- the five modes (RNG draws in the official order) ------------------------------------
    def _inpaint(self, prefix, prefix_mask, batch: int, gen: torch.Generator, samples: int = 1) -> Inpaint:
        """Checks a prefix (L, D) or (B, L, D) and its mask (L,) or (B, L) of B = `batch` observations;
        a per-row one holds for each of the row's `samples` candidates. Draws its noise from `gen`."""
        (_, L, D), K = self._shapes(batch)[0], self.cfg.num_inference_steps
        if prefix is None or prefix_mask is None:
            raise ValueError("prefix and prefix_mask go together: pass both or neither")
        # Copies: wire arrays are read-only views, which torch does not take.
        p = torch.from_numpy(np.array(prefix.cpu() if isinstance(prefix, torch.Tensor) else prefix, dtype=np.float32))
        m = torch.from_numpy(np.array(prefix_mask.cpu() if isinstance(prefix_mask, torch.Tensor) else prefix_mask))
        if p.shape not in ((L, D), (batch, L, D)):
            raise ValueError(f"prefix: expected normalised actions of shape ({L}, {D}) or ({batch}, {L}, {D}), got {tuple(p.shape)}")
        if m.dtype != torch.bool or m.shape not in ((L,), (batch, L)):
            raise ValueError(f"prefix_mask: expected a bool mask of shape ({L},) or ({batch}, {L}), "
                             f"got {str(m.dtype).replace('torch.', '')} {tuple(m.shape)}")
        batch *= samples
        p, m = p.repeat_interleave(samples, 0) if p.ndim == 3 else p, m.repeat_interleave(samples, 0) if m.ndim == 2 else m
        p, m = p.expand(batch, L, D), m.expand(batch, L)
        noise = torch.randn((K, batch, L, D), generator=gen)  # after the official draws
        sa, s1a = inpaint_levels(self.model.noise_scheduler, K).T[:, :, None, None, None]
        # targets[0]: x_T; targets[k]: after DDIM step k (k = 1..K-1); targets[K]: the prefix itself (clean).
        targets = torch.cat((sa[:K] * p + s1a[:K] * noise, p[None]))
        dev = self.model.device
        return Inpaint(m[..., None].to(dev), targets.to(dev))

    def _policy_inputs(self, images, seed: int | None, prefix=None, prefix_mask=None, samples: int = 1,
                       noise_scale: float = 1.0) -> tuple:
        """Condition, action noise (times `noise_scale`), (held) latent noise and the inpainting (or None) of
        one policy request; `samples` candidates per observation row share its encoding (row-major: row
        b's are b*samples...)."""
        images = self.as_images(images)
        gen = make_generator(seed)
        cond = self.model.obs_encoder.encode_curr_obs(images).repeat_interleave(samples, dim=0)
        batch = self._batch(images)
        a_shape, o_shape = self._shapes(batch * samples)
        action, latents = self._noise(a_shape, gen) * noise_scale, self._noise(o_shape, gen)
        inpaint = None
        if prefix is not None or prefix_mask is not None:
            inpaint = self._inpaint(prefix, prefix_mask, batch, gen, samples)
        return cond, action, latents, inpaint

    @torch.no_grad()
    def policy(self, images, seed: int | None = None, prefix=None, prefix_mask=None, samples: int = 1,
               noise_scale: float = 1.0) -> torch.Tensor:
        """p(a | o): normalised action chunk (B * samples, action_len, action_dim).

        `prefix` (L, D) or (B, L, D) normalised actions with `prefix_mask` (L,) or (B, L) bool: the
        masked rows are fixed (inpainted, see the module doc); the result has them exactly.
        `samples` > 1 draws that many chunks per observation (and its prefix), encoded once: the
        same chunks as for the observation and prefix repeated `samples` times.
        `noise_scale` multiplies the starting action noise (see the module doc; 1: the official sampler).
        """
        spec = DenoiseSpec(True, False, obs_t=self.cfg.marginal_timestep)
        cond, action, latents, inpaint = self._policy_inputs(images, seed, prefix, prefix_mask, samples, noise_scale)
        return self.denoiser.run(cond, action, latents, spec, inpaint=inpaint)[0]

    @torch.no_grad()
    def policy_batch(self, requests: Sequence[tuple]) -> list[torch.Tensor]:
        """Several independent `policy` requests `[(images, seed[, prefix, prefix_mask[, samples[, noise_scale]]]), ...]`
        in one pass.

        Result i equals `policy(*requests[i])` up to float rounding (on some CPUs a BLAS blocks a GEMM
        differently for more rows): each request is encoded on its own,
        draws its noise from its own generator (in the official order), and on the fast path its
        adaLN condition projection is computed on its own rows; only the DiT trunk (row-wise
        GEMMs over B*N tokens, per-sample attention, per-token norms) runs stacked. The plain
        path has no such split, so it runs the requests one after another.
        """
        if not requests:
            return []
        if isinstance(self.denoiser, Denoiser):
            return [self.policy(*r) for r in requests]
        conds, actions, latents, inpaints = zip(*(self._policy_inputs(*r) for r in requests))
        groups = [c.shape[0] for c in conds]
        spec = DenoiseSpec(True, False, obs_t=self.cfg.marginal_timestep)
        inpaint = None
        if any(i is not None for i in inpaints):
            # Requests without a prefix get an all-False mask: torch.where leaves their rows as they are.
            K = self.cfg.num_inference_steps
            fill = [i or Inpaint(torch.zeros(a.shape[:2] + (1,), dtype=torch.bool, device=a.device),
                                 torch.zeros((K + 1, *a.shape), device=a.device)) for i, a in zip(inpaints, actions)]
            inpaint = Inpaint(torch.cat([f.mask for f in fill]), torch.cat([f.targets for f in fill], dim=1))
        out = self.denoiser.run(torch.cat(conds), torch.cat(actions), torch.cat(latents), spec, groups=groups, inpaint=inpaint)[0]
        return list(out.split(groups))

    @torch.no_grad()
    def forward_dynamics(self, images, action: torch.Tensor, seed: int | None = None) -> torch.Tensor:
        """p(o' | o, a): future latents (B, V, C, T, h, w) given a normalised action chunk."""
        images = self.as_images(images)
        gen = make_generator(seed)
        cond = self.model.obs_encoder.encode_curr_obs(images)
        a_shape, o_shape = self._shapes(self._batch(images))
        action = torch.as_tensor(action, dtype=torch.float32).to(self.model.device)
        if tuple(action.shape) != a_shape:
            raise ValueError(f"action: expected shape {a_shape}, got {tuple(action.shape)}")
        latents = self._noise(o_shape, gen)
        return self.denoiser.run(cond, action, latents, DenoiseSpec(False, True, action_t=0))[1]

    @torch.no_grad()
    def inverse_dynamics(self, images, next_images, seed: int | None = None) -> torch.Tensor:
        """p(a | o, o'): the normalised action chunk that leads from o to the goal frames o'."""
        images, next_images = self.as_images(images), self.as_images(next_images, with_state=False)
        gen = make_generator(seed)
        cond, latents = self.model.obs_encoder.encode_curr_and_next_obs(images, next_images, generator=gen)
        a_shape, _ = self._shapes(self._batch(images))
        action = self._noise(a_shape, gen)
        return self.denoiser.run(cond, action, latents, DenoiseSpec(True, False, obs_t=0))[0]

    @torch.no_grad()
    def video_prediction(self, images, seed: int | None = None) -> torch.Tensor:
        """p(o' | o): future latents with the actions marginalised out."""
        images = self.as_images(images)
        gen = make_generator(seed)
        cond = self.model.obs_encoder.encode_curr_obs(images)
        a_shape, o_shape = self._shapes(self._batch(images))
        action, latents = self._noise(a_shape, gen), self._noise(o_shape, gen)
        spec = DenoiseSpec(False, True, action_t=self.cfg.marginal_timestep)
        return self.denoiser.run(cond, action, latents, spec)[1]

    @torch.no_grad()
    def joint(self, images, seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """p(a, o' | o): (future latents, normalised actions), both denoised with the same t."""
        images = self.as_images(images)
        gen = make_generator(seed)
        cond = self.model.obs_encoder.encode_curr_obs(images)
        a_shape, o_shape = self._shapes(self._batch(images))
        action, latents = self._noise(a_shape, gen), self._noise(o_shape, gen)
        action, latents = self.denoiser.run(cond, action, latents, DenoiseSpec(True, True))
        return latents, action

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> dict[str, np.ndarray]:
        """Predicted latents -> uint8 frames per camera, (B, T, crop_h, crop_w, 3)."""
        imgs = self.model.obs_encoder.decode(latents.to(self.model.device)).clamp(0, 1)
        u8 = (imgs * 255.0).round().to(torch.uint8).permute(0, 1, 3, 4, 5, 2).cpu().numpy()
        return {name: u8[:, v] for v, name in enumerate(self.cfg.cameras)}
