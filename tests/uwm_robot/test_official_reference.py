"""Our network and sampler against what the official UWM code computed (shared/uwm_official)."""

import numpy as np
import pytest
import torch

from uwm_robot.checkpoint import load_checkpoint
from uwm_robot.sampling import UWMSampler


@pytest.fixture(scope="module")
def official(official_dir):
    d = official_dir / "tiny_small"
    loaded = load_checkpoint(d / "models.pt")
    ref = np.load(d / "reference.npz")
    return loaded.model.eval(), {k: torch.from_numpy(ref[k]) for k in ref.files}


def obs(ref, cfg, prefix="obs."):
    return {c: ref[prefix + c] for c in cfg.cameras}


def test_encoders_match_official(official):
    model, ref = official
    enc = model.obs_encoder
    with torch.no_grad():
        pixels = enc.transform(obs(ref, model.cfg))
        torch.testing.assert_close(pixels, ref["obs_transformed"], atol=1e-6, rtol=0)
        torch.testing.assert_close(enc.features(pixels), ref["global_cond"], atol=1e-5, rtol=0)
        torch.testing.assert_close(enc.latents(pixels, sample=False), ref["obs_latent_mean"], atol=1e-5, rtol=0)
        sampled = enc.latents(pixels, generator=torch.Generator().manual_seed(10))
        torch.testing.assert_close(sampled, ref["obs_latent"], atol=1e-5, rtol=0)
        torch.testing.assert_close(enc.decode(ref["obs_latent_mean"]), ref["obs_latent_mean_decoded"], atol=1e-4, rtol=0)


def test_noise_prediction_net_matches_official(official):
    model, ref = official
    with torch.no_grad():
        for k in range(len(ref["npn.action_t"])):
            a, o = model.noise_pred_net(ref["global_cond"], ref["npn.noisy_action"], ref["npn.action_t"][k],
                                        ref["npn.noisy_next_obs"], ref["npn.next_obs_t"][k])
            torch.testing.assert_close(a, ref["npn.action_noise_pred"][k], atol=1e-5, rtol=0)
            torch.testing.assert_close(o, ref["npn.next_obs_noise_pred"][k], atol=1e-5, rtol=0)
        a, o = model.noise_pred_net(ref["b2.global_cond"], ref["b2.noisy_action"], ref["b2.action_t"],
                                    ref["b2.noisy_next_obs"], ref["b2.next_obs_t"])
        torch.testing.assert_close(a, ref["b2.action_noise_pred"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("fast", [False, True], ids=["plain", "fast"])
def test_every_mode_reproduces_official_samples(official, fast):
    model, ref = official
    s = UWMSampler(model, fast=fast)
    cfg = model.cfg
    o, nxt = obs(ref, cfg), obs(ref, cfg, "next_obs.")
    outs = {
        "sample_marginal_action.out": s.policy(o, seed=11),
        "sample_forward_dynamics.out": s.forward_dynamics(o, ref["action"], seed=12),
        "sample_inverse_dynamics.out": s.inverse_dynamics(o, nxt, seed=13),
        "sample_marginal_next_obs.out": s.video_prediction(o, seed=14),
    }
    outs["sample_joint.next_obs"], outs["sample_joint.action"] = s.joint(o, seed=15)
    for key, value in outs.items():
        assert (value - ref[key]).abs().max().item() <= 1e-4, key
