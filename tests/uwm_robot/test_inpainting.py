"""RTC-style inpainting in the DDIM sampler: fixed rows equal the prefix, plain == fast, seeds replay."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from policy_server.local import make_preset_checkpoint
from uwm_robot.checkpoint import load_checkpoint
from uwm_robot.inference import UWMPolicy
from uwm_robot.sampling import UWMSampler


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    # Perturbed: a fresh DiT's zeroed adaLN layers make its output ignore every input, prefix included.
    ckpt = make_preset_checkpoint("tiny", tmp_path_factory.mktemp("ckpt") / "tiny-inpaint", perturb=0.5)
    return load_checkpoint(ckpt).model.eval()


@pytest.fixture(scope="module")
def samplers(model):
    return {"plain": UWMSampler(model), "fast": UWMSampler(model, fast=True)}


def observation(cfg, batch=1, seed=0):
    rng = np.random.default_rng(seed)
    h, w = cfg.image_shape
    return {c: rng.integers(0, 256, (batch, cfg.n_obs_steps, h, w, 3), dtype=np.uint8) for c in cfg.cameras}


def prefix_and_mask(cfg, n_fixed=5, seed=1):
    prefix = np.random.default_rng(seed).uniform(-0.8, 0.8, (cfg.action_len, cfg.action_dim)).astype(np.float32)
    mask = np.zeros(cfg.action_len, bool)
    mask[:n_fixed] = True
    return prefix, mask


@pytest.mark.parametrize("path", ["plain", "fast"])
def test_masked_rows_equal_the_prefix_and_the_rest_is_conditioned_on_it(samplers, model, path):
    s, cfg = samplers[path], model.cfg
    img = observation(cfg)
    prefix, mask = prefix_and_mask(cfg)
    free = s.policy(img, seed=3)
    out = s.policy(img, seed=3, prefix=prefix, prefix_mask=mask)
    assert out.shape == (1, cfg.action_len, cfg.action_dim)
    assert (out[0, mask] - torch.from_numpy(prefix[mask])).abs().max().item() <= 1e-5
    assert (out[0, ~mask] - free[0, ~mask]).abs().max().item() > 1e-3, "the free rows ignore the prefix"
    again = s.policy(img, seed=3, prefix=prefix, prefix_mask=mask)
    assert torch.equal(out, again), "an inpainted sample does not replay with its seed"
    assert not torch.equal(out, s.policy(img, seed=4, prefix=prefix, prefix_mask=mask))


def test_plain_and_fast_agree_with_a_prefix(samplers, model):
    img = observation(model.cfg, seed=2)
    prefix, mask = prefix_and_mask(model.cfg, n_fixed=3, seed=5)
    a = samplers["plain"].policy(img, seed=7, prefix=prefix, prefix_mask=mask)
    b = samplers["fast"].policy(img, seed=7, prefix=prefix, prefix_mask=mask)
    assert (a - b).abs().max().item() <= 1e-4


def test_an_all_false_mask_changes_nothing(samplers, model):
    img = observation(model.cfg)
    prefix, _ = prefix_and_mask(model.cfg)
    for s in samplers.values():
        none = np.zeros(model.cfg.action_len, bool)
        assert torch.equal(s.policy(img, seed=3, prefix=prefix, prefix_mask=none), s.policy(img, seed=3))


def test_batched_requests_keep_their_own_prefix(samplers, model, assert_same_result):
    s, cfg = samplers["fast"], model.cfg
    img0, img1 = observation(cfg, seed=0), observation(cfg, seed=1)
    prefix, mask = prefix_and_mask(cfg)
    out = s.policy_batch([(img0, 3, prefix, mask), (img1, 4), (img0, 3)])
    assert_same_result(out[0], s.policy(img0, seed=3, prefix=prefix, prefix_mask=mask))
    assert_same_result(out[1], s.policy(img1, seed=4))
    assert_same_result(out[2], s.policy(img0, seed=3))


def test_bad_prefixes_get_clear_errors(samplers, model):
    s, cfg = samplers["plain"], model.cfg
    img = observation(cfg)
    prefix, mask = prefix_and_mask(cfg)
    with pytest.raises(ValueError, match=rf"prefix: expected .* \({cfg.action_len}, {cfg.action_dim}\)"):
        s.policy(img, seed=0, prefix=prefix[:, :7], prefix_mask=mask)
    with pytest.raises(ValueError, match="prefix_mask: expected a bool mask"):
        s.policy(img, seed=0, prefix=prefix, prefix_mask=mask.astype(int))
    with pytest.raises(ValueError, match="pass both or neither"):
        s.policy(img, seed=0, prefix=prefix)


def test_policy_decodes_the_inpainted_chunk(tmp_path, assert_same_result):
    policy = UWMPolicy.load(make_preset_checkpoint("tiny", tmp_path / "p", perturb=0.5))
    cfg = policy.config
    prefix, mask = prefix_and_mask(cfg)
    img = observation(cfg)
    out = policy.infer(img, seed=9, prefix=prefix, prefix_mask=mask)
    np.testing.assert_allclose(out["raw"][0, mask], prefix[mask], atol=1e-5)
    batched = policy.infer_batch([{"images": img, "seed": 9, "prefix": prefix, "prefix_mask": mask}, (img, 9)])
    assert_same_result(batched[0]["raw"], out["raw"])
    assert_same_result(batched[0]["actions"], out["actions"])
    assert_same_result(batched[1]["raw"], policy.infer(img, seed=9)["raw"])
