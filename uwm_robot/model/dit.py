"""UWM's diffusion transformer: the official DualNoisePredictionNet, module for module.

Tokens are [16 action tokens | V*t*h*w future-latent patches | registers] plus one learned
position embedding; the current observation enters only through the adaLN condition
`cat(global_cond, timestep_embedding)`. Parameter names match the official state dict.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig


def sinusoidal_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """The official SinusoidalPosEmb: [sin | cos] with log(10000)/(dim/2 - 1) spacing."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=t.device) * -(math.log(10000) / (half - 1)))
    arg = t.float()[:, None] * freqs[None, :]
    return torch.cat((arg.sin(), arg.cos()), dim=-1)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class MultiViewVideoPatchifier(nn.Module):
    """(B, V, C, T, H, W) latents <-> (B, V*t*h*w, D) tokens; one Conv3d shared by all views."""

    def __init__(self, num_views: int, latent_thw: tuple[int, int, int], patch: tuple[int, int, int], channels: int, dim: int):
        super().__init__()
        self.num_views, self.channels, self.patch = num_views, channels, tuple(patch)
        self.grid = tuple(s // p for s, p in zip(latent_thw, patch))
        self.patch_encoder = nn.Conv3d(channels, dim, kernel_size=patch, stride=patch)
        self.patch_decoder = nn.Linear(dim, channels * math.prod(patch))

    @property
    def num_patches(self) -> int:
        return self.num_views * math.prod(self.grid)

    def patchify(self, latents: torch.Tensor) -> torch.Tensor:
        b, v = latents.shape[:2]
        feats = self.patch_encoder(latents.flatten(0, 1))  # (b v) d t h w
        return feats.flatten(2).transpose(1, 2).reshape(b, v * feats[0, 0].numel(), -1)

    def unpatchify(self, tokens: torch.Tensor) -> torch.Tensor:
        b = tokens.shape[0]
        (t, h, w), (pt, ph, pw), c = self.grid, self.patch, self.channels
        x = self.patch_decoder(tokens).reshape(b, self.num_views, t, h, w, c, pt, ph, pw)
        x = x.permute(0, 1, 5, 2, 6, 3, 7, 4, 8)  # b v c t pt h ph w pw
        return x.reshape(b, self.num_views, c, t * pt, h * ph, w * pw)


class DualTimestepEncoder(nn.Module):
    def __init__(self, dim: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.dim = dim
        hidden = int(dim * mlp_ratio)
        self.proj = nn.Sequential(nn.Linear(dim * 2, hidden), nn.Mish(), nn.Linear(hidden, dim))

    def forward(self, action_t: torch.Tensor, next_obs_t: torch.Tensor) -> torch.Tensor:
        emb = torch.cat((sinusoidal_embedding(action_t, self.dim), sinusoidal_embedding(next_obs_t, self.dim)), dim=-1)
        return self.proj(emb)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qkv_bias: bool):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, d))


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class AdaLNAttentionBlock(nn.Module):
    def __init__(self, dim: int, cond_dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = MLP(dim, int(dim * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, 6 * dim))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.modulated(x, self.adaLN_modulation(cond))

    def modulated(self, x: torch.Tensor, mod: torch.Tensor) -> torch.Tensor:
        """The block given its precomputed (B, 6*D) modulation (the fast path supplies it)."""
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mod.chunk(6, dim=1)
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))
        return x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))


class AdaLNFinalLayer(nn.Module):
    def __init__(self, dim: int, cond_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(dim, dim)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, 2 * dim))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.modulated(x, self.adaLN_modulation(cond))

    def modulated(self, x: torch.Tensor, mod: torch.Tensor) -> torch.Tensor:
        shift, scale = mod.chunk(2, dim=1)
        return self.linear(modulate(self.norm(x), shift, scale))


class DualNoisePredictionNet(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        v, c, t, h, w = cfg.latent_shape
        d = cfg.embed_dim
        self.obs_patchifier = MultiViewVideoPatchifier(v, (t, h, w), cfg.latent_patch_shape, c, d)
        hidden = int(max(cfg.action_dim, d) * cfg.mlp_ratio)
        self.action_encoder = nn.Sequential(nn.Linear(cfg.action_dim, hidden), nn.Mish(), nn.Linear(hidden, d))
        self.action_decoder = nn.Sequential(nn.Linear(d, hidden), nn.Mish(), nn.Linear(hidden, cfg.action_dim))
        self.timestep_embedding = DualTimestepEncoder(cfg.timestep_embed_dim)
        self.registers = nn.Parameter(torch.empty(1, cfg.num_registers, d).normal_(std=0.02))
        self.pos_embed = nn.Parameter(torch.empty(1, cfg.num_tokens, d).normal_(std=0.02))
        cond_dim = cfg.global_cond_dim + cfg.timestep_embed_dim
        self.blocks = nn.ModuleList(
            AdaLNAttentionBlock(d, cond_dim, cfg.num_heads, cfg.mlp_ratio, cfg.qkv_bias) for _ in range(cfg.depth)
        )
        self.head = AdaLNFinalLayer(d, cond_dim)
        self.action_len = cfg.action_len
        self.obs_len = self.obs_patchifier.num_patches
        self._init_like_dit()

    def _init_like_dit(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        w = self.obs_patchifier.patch_encoder.weight
        nn.init.normal_(w.view(w.shape[0], -1), std=0.02)
        nn.init.zeros_(self.obs_patchifier.patch_encoder.bias)
        # Zero-init modulation and output layers: every block starts as the identity.
        for layer in [b.adaLN_modulation[-1] for b in self.blocks] + [self.head.adaLN_modulation[-1], self.head.linear]:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    @staticmethod
    def _batch_timesteps(t: torch.Tensor | int, batch: int, device: torch.device) -> torch.Tensor:
        t = torch.as_tensor(t, device=device)
        return t.expand(batch).long() if t.ndim == 0 else t.long()

    def embed_inputs(self, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """Token sequence (B, N, D) with the position embedding added."""
        registers = self.registers.expand(next_obs.shape[0], -1, -1)
        x = torch.cat((self.action_encoder(action), self.obs_patchifier.patchify(next_obs), registers), dim=1)
        return x + self.pos_embed

    def decode_outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, o = self.action_len, self.obs_len
        return self.action_decoder(x[:, :a]), self.obs_patchifier.unpatchify(x[:, a : a + o])

    def forward(
        self,
        global_cond: torch.Tensor,
        action: torch.Tensor,
        action_t: torch.Tensor | int,
        next_obs: torch.Tensor,
        next_obs_t: torch.Tensor | int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b, dev = action.shape[0], action.device
        temb = self.timestep_embedding(self._batch_timesteps(action_t, b, dev), self._batch_timesteps(next_obs_t, b, dev))
        cond = torch.cat((global_cond, temb), dim=-1)
        x = self.embed_inputs(action, next_obs)
        for block in self.blocks:
            x = block(x, cond)
        return self.decode_outputs(self.head(x, cond))
