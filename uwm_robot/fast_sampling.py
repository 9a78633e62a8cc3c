"""The fast sampling path: same numbers as the plain path, far less work per DDIM step.

74% of the DROID DiT's weights are adaLN projections of `cat(global_cond, temb)`. SiLU acts
elementwise, so each projection splits into `W_obs @ silu(global_cond)` (constant over a chunk)
and `W_t @ silu(temb)` (known for all 10 steps up front). Both are computed once per chunk as two
stacked matmuls over every block; the loop then runs only the attention/MLP trunk and the
decoder of the modality being denoised. The DDIM update uses the scheduler's own coefficients;
inpainting (`sampling.Inpaint`) replaces the known action rows exactly where the plain path does.

On CUDA the per-chunk loop can run in bf16 autocast and through `torch.compile`
(mode "reduce-overhead", i.e. CUDA graphs), for a fixed batch size per compiled graph.
"""

from __future__ import annotations

import torch

from .model import UnifiedWorldModel
from .model.dit import sinusoidal_embedding


class FastDenoiser:
    def __init__(self, model: UnifiedWorldModel, dtype: torch.dtype | None = None, compile: bool = False):
        self.model = model
        self.cfg = model.cfg
        net = model.noise_pred_net
        layers = [b.adaLN_modulation[-1] for b in net.blocks] + [net.head.adaLN_modulation[-1]]
        g = self.cfg.global_cond_dim
        # One (sum_i out_i, cond) matrix per input part; rows are the blocks' modulations in order.
        self.w_obs = torch.cat([layer.weight[:, :g] for layer in layers]).detach()
        self.w_t = torch.cat([layer.weight[:, g:] for layer in layers]).detach()
        self.bias = torch.cat([layer.bias for layer in layers]).detach()
        self.splits = [layer.out_features for layer in layers]
        sched = model.noise_scheduler
        sched.set_timesteps(self.cfg.num_inference_steps)
        self.timesteps = sched.timesteps.tolist()
        self.coeffs = self._ddim_coefficients(sched)
        self.dtype = dtype
        self.loop = self._loop
        if compile and model.device.type == "cuda":
            self.loop = torch.compile(self._loop, mode="reduce-overhead", dynamic=False)

    def _ddim_coefficients(self, sched) -> torch.Tensor:
        """Per step: sqrt(a_t), sqrt(1 - a_t), sqrt(a_prev), sqrt(1 - a_prev) (eta = 0)."""
        ac = sched.alphas_cumprod
        step = sched.config.num_train_timesteps // sched.num_inference_steps
        rows = []
        for t in self.timesteps:
            a_t = ac[t]
            a_prev = ac[t - step] if t - step >= 0 else sched.final_alpha_cumprod
            rows.append(torch.stack([a_t.sqrt(), (1 - a_t).sqrt(), a_prev.sqrt(), (1 - a_prev).sqrt()]))
        return torch.stack(rows).float()

    def modulations(
        self, cond: torch.Tensor, pairs: list[tuple[int, int]], groups: list[int] | None = None
    ) -> list[list[torch.Tensor]]:
        """mods[k][i]: (B, out_i) modulation of layer i (blocks, then head) at step k.

        `groups` (sizes summing to B) projects each group of condition rows on its own, so a
        group's modulations do not depend on what it is stacked with (GEMV vs GEMM kernels
        round differently for a handful of rows).
        """
        net = self.model.noise_pred_net
        dev = cond.device
        parts = cond.split(groups) if groups else (cond,)
        obs_part = torch.cat([torch.nn.functional.silu(c) @ self.w_obs.T + self.bias for c in parts])  # (B, M)
        a_t = torch.tensor([p[0] for p in pairs], device=dev)
        o_t = torch.tensor([p[1] for p in pairs], device=dev)
        temb = net.timestep_embedding.proj(
            torch.cat((sinusoidal_embedding(a_t, self.cfg.timestep_embed_dim), sinusoidal_embedding(o_t, self.cfg.timestep_embed_dim)), -1)
        )
        t_part = torch.nn.functional.silu(temb) @ self.w_t.T  # (K, M)
        full = obs_part[None] + t_part[:, None]  # (K, B, M)
        return [list(step.split(self.splits, dim=-1)) for step in full]

    def _ddim(self, x: torch.Tensor, eps: torch.Tensor, k: int) -> torch.Tensor:
        sa, s1a, sp, s1p = self.coeffs[k].to(x.device)
        x0 = (x - s1a * eps) / sa
        if self.cfg.clip_sample:
            x0 = x0.clamp(-1.0, 1.0)
        return sp * x0 + s1p * eps

    def _loop(self, mods, action, latents, denoise_action: bool, denoise_obs: bool, inpaint=None):
        net = self.model.noise_pred_net
        a_len, o_len = net.action_len, net.obs_len
        b = action.shape[0]
        registers = net.registers.expand(b, -1, -1)
        pos = net.pos_embed
        # A held modality's tokens never change: embed it once.
        a_tok = None if denoise_action else net.action_encoder(action)
        o_tok = None if denoise_obs else net.obs_patchifier.patchify(latents)
        if inpaint is not None:
            action = inpaint.apply(action, 0)
        for k, step_mods in enumerate(mods):
            at = net.action_encoder(action) if denoise_action else a_tok
            ot = net.obs_patchifier.patchify(latents) if denoise_obs else o_tok
            x = torch.cat((at, ot, registers), dim=1) + pos
            for block, mod in zip(net.blocks, step_mods[:-1]):
                x = block.modulated(x, mod)
            x = net.head.modulated(x, step_mods[-1])
            # .contiguous(): a strided slice of a B > 1 batch takes another matmul kernel than the
            # (contiguous) slice of B = 1, so batched and single results would differ in the last bit.
            if denoise_obs:
                obs_eps = net.obs_patchifier.unpatchify(x[:, a_len : a_len + o_len].contiguous())
                latents = self._ddim(latents, obs_eps.float(), k)
            if denoise_action:
                action = self._ddim(action, net.action_decoder(x[:, :a_len].contiguous()).float(), k)
                if inpaint is not None:  # see sampling.Inpaint
                    action = inpaint.apply(action, k + 1)
        return action, latents

    def run(self, cond: torch.Tensor, action: torch.Tensor, latents: torch.Tensor, spec, groups: list[int] | None = None,
            inpaint=None):
        mods = self.modulations(cond, spec.timestep_pairs(self.timesteps), groups)
        dev = cond.device
        if self.dtype is not None and dev.type == "cuda":
            with torch.autocast("cuda", dtype=self.dtype):
                return self.loop(mods, action, latents, spec.denoise_action, spec.denoise_obs, inpaint)
        return self.loop(mods, action, latents, spec.denoise_action, spec.denoise_obs, inpaint)
