"""The UWM network: official names and shapes, parameter count, modes, determinism, fast path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from uwm_robot.config import preset
from uwm_robot.model import UnifiedWorldModel
from uwm_robot.sampling import MODES, UWMSampler

OFFICIAL_DROID_KEYS = Path(__file__).resolve().parents[1] / "data" / "official_droid_state_dict.tsv"


def official_droid_shapes() -> dict[str, tuple[int, ...]]:
    rows = OFFICIAL_DROID_KEYS.read_text().splitlines()[1:]
    return {name: tuple(int(s) for s in shape.strip("[]").split(",") if s) for name, shape, _ in (r.split("\t") for r in rows)}


@pytest.fixture(scope="module")
def droid_on_meta():
    with torch.device("meta"):
        return UnifiedWorldModel(preset("droid"))


def test_droid_state_dict_strict_loads_official_names_and_shapes(droid_on_meta):
    shapes = official_droid_shapes()
    assert len(shapes) == 454
    official = {name: torch.empty(shape, device="meta") for name, shape in shapes.items()}
    result = droid_on_meta.load_state_dict(official, strict=True, assign=True)
    assert not result.missing_keys and not result.unexpected_keys


def test_droid_noise_prediction_net_has_official_parameter_count(droid_on_meta):
    n = sum(p.numel() for p in droid_on_meta.noise_pred_net.parameters())
    assert n == 384_915_082
    assert droid_on_meta.cfg.num_tokens == 171
    assert droid_on_meta.cfg.global_cond_dim + droid_on_meta.cfg.timestep_embed_dim == 5120


def perturbed_tiny_model(seed: int = 0) -> UnifiedWorldModel:
    """Tiny preset with every parameter nudged: zero-initialised adaLN layers would hide bugs."""
    torch.manual_seed(seed)
    model = UnifiedWorldModel(preset("tiny"))
    with torch.no_grad():
        for p in model.noise_pred_net.parameters():
            p.add_(torch.randn_like(p) * 0.5 / max(1, p.shape[-1]) ** 0.5)
    return model.eval()


@pytest.fixture(scope="module")
def tiny():
    return perturbed_tiny_model()


def random_images(cfg, batch=1, seed=0):
    rng = np.random.default_rng(seed)
    return {c: rng.integers(0, 256, (batch, cfg.n_obs_steps, *cfg.image_shape, 3), dtype=np.uint8) for c in cfg.cameras}


def run_mode(sampler: UWMSampler, mode: str, images, seed: int):
    cfg = sampler.cfg
    if mode == "policy":
        return sampler.policy(images, seed=seed)
    if mode == "forward_dynamics":
        action = torch.linspace(-1, 1, cfg.action_len * cfg.action_dim).reshape(1, cfg.action_len, cfg.action_dim)
        return sampler.forward_dynamics(images, action.expand(len(next(iter(images.values()))), -1, -1), seed=seed)
    if mode == "inverse_dynamics":
        return sampler.inverse_dynamics(images, random_images(cfg, len(next(iter(images.values()))), seed=1), seed=seed)
    if mode == "video_prediction":
        return sampler.video_prediction(images, seed=seed)
    return sampler.joint(images, seed=seed)


@pytest.mark.parametrize("mode", MODES)
def test_mode_shapes_and_seed_determinism(tiny, mode):
    cfg = tiny.cfg
    sampler = UWMSampler(tiny)
    images = random_images(cfg, batch=2)
    a = run_mode(sampler, mode, images, seed=3)
    b = run_mode(sampler, mode, images, seed=3)
    c = run_mode(sampler, mode, images, seed=4)
    outs_a, outs_b, outs_c = (x if isinstance(x, tuple) else (x,) for x in (a, b, c))
    for x, y, z in zip(outs_a, outs_b, outs_c):
        assert torch.equal(x, y), "same seed must give identical output"
        assert not torch.allclose(x, z), "another seed must give another sample"
        assert torch.isfinite(x).all()
    action_shape = (2, cfg.action_len, cfg.action_dim)
    latent_shape = (2, *cfg.latent_shape)
    expected = {
        "policy": [action_shape],
        "forward_dynamics": [latent_shape],
        "inverse_dynamics": [action_shape],
        "video_prediction": [latent_shape],
        "joint": [latent_shape, action_shape],
    }[mode]
    assert [tuple(x.shape) for x in outs_a] == expected


@pytest.mark.parametrize("mode", MODES)
def test_fast_path_agrees_with_plain_path(tiny, mode):
    images = random_images(tiny.cfg, batch=2)
    plain = run_mode(UWMSampler(tiny), mode, images, seed=7)
    fast = run_mode(UWMSampler(tiny, fast=True), mode, images, seed=7)
    for p, f in zip(*(x if isinstance(x, tuple) else (x,) for x in (plain, fast))):
        assert (p - f).abs().max().item() <= 1e-4


def test_policy_actions_respect_clip_range(tiny):
    actions = UWMSampler(tiny).policy(random_images(tiny.cfg), seed=0)
    # DDIM with clip_sample keeps x0 in [-1, 1]; the final step returns x0 itself.
    assert actions.abs().max().item() <= 1.0 + 1e-6


def test_decode_returns_uint8_frames_per_camera(tiny):
    sampler = UWMSampler(tiny)
    latents = sampler.video_prediction(random_images(tiny.cfg), seed=0)
    frames = sampler.decode(latents)
    assert sorted(frames) == sorted(tiny.cfg.cameras)
    for f in frames.values():
        assert f.dtype == np.uint8 and f.shape == (1, tiny.cfg.n_obs_steps, *tiny.cfg.crop_shape, 3)


def test_bad_images_get_a_clear_error(tiny):
    sampler = UWMSampler(tiny)
    images = random_images(tiny.cfg)
    with pytest.raises(KeyError, match="missing camera"):
        sampler.policy({k: v for k, v in list(images.items())[1:]})
    wrong = dict(images)
    wrong[tiny.cfg.cameras[0]] = images[tiny.cfg.cameras[0]].astype(np.float32)
    with pytest.raises(ValueError, match=r"expected uint8 \(B, 2, H, W, 3\)"):
        sampler.policy(wrong)


def test_training_loss_decreases_on_a_fixed_batch():
    torch.manual_seed(0)
    model = UnifiedWorldModel(preset("tiny")).train()
    cfg = model.cfg
    obs = {k: torch.from_numpy(v) for k, v in random_images(cfg, batch=2, seed=0).items()}
    nxt = {k: torch.from_numpy(v) for k, v in random_images(cfg, batch=2, seed=1).items()}
    action = torch.rand(2, cfg.action_len, cfg.action_dim) * 2 - 1
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for step in range(12):
        loss, info = model.loss(obs, nxt, action, generator=torch.Generator().manual_seed(step % 2))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(info["loss"])
    assert np.mean(losses[-2:]) < np.mean(losses[:2])
