"""UWMPolicy: metadata, un-normalise + decode, seeds, batching (equal to unbatched up to float rounding), world-model modes."""

from __future__ import annotations

import numpy as np
import pytest

from policy_server.local import make_preset_checkpoint
from uwm_robot import action_codec
from uwm_robot.inference import UWMPolicy
from uwm_robot.normalizer import LinearNormalizer, NormalizerSet
from uwm_robot.sampling import DenoiseSpec


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    # A DiT with non-zero adaLN layers (a fresh one ignores the observation) and a normaliser
    # that is not the identity, so un-normalising is visible.
    ckpt = make_preset_checkpoint("tiny", tmp_path_factory.mktemp("ckpt") / "tiny-perturbed", perturb=0.5)
    norm = NormalizerSet(LinearNormalizer(np.linspace(0.5, 1.5, 10), np.linspace(-0.2, 0.2, 10)))
    norm.save(ckpt)
    return UWMPolicy.load(ckpt, verify=False)


def observation(policy, batch=1, seed=0):
    rng = np.random.default_rng(seed)
    h, w = policy.config.image_shape
    return {c: rng.integers(0, 256, (batch, policy.config.n_obs_steps, h, w, 3), dtype=np.uint8) for c in policy.config.cameras}


def test_metadata_describes_inputs_outputs_and_identity(policy):
    m = policy.metadata()
    cfg = policy.config
    assert m["cameras"] == list(cfg.cameras) and m["image_shape"] == list(cfg.image_shape) == [90, 160]
    assert m["image_shapes"] == {c: [90, 160] for c in cfg.cameras}
    assert m["n_obs_steps"] == 2 and m["action_len"] == 16
    assert (m["action_dim"], m["raw_action_dim"]) == (7, 10)
    assert m["action_space"] == "droid_cartesian_velocity" and m["action_names"][-1] == "gripper"
    assert (m["executed_horizon"], m["control_rate_hz"], m["ddim_steps"]) == (8, 15.0, 10)
    assert m["checkpoint_id"] == "tiny-perturbed" and len(m["checkpoint_hash"]) == 64
    assert m["checkpoint_hash"] == policy.loaded.meta["checkpoint_hash"]
    assert m["normalizer_hash"] == policy.normalizer.content_hash()
    assert m["device"] == "cpu"


def test_infer_unnormalises_then_decodes_with_the_codec(policy):
    out = policy.infer(observation(policy), seed=3)
    assert out["actions"].shape == (1, 16, 7) and out["actions"].dtype == np.float32
    assert out["raw"].shape == (1, 16, 10) and out["raw"].dtype == np.float32
    assert out["seed"] == 3
    expected = action_codec.decode(policy.normalizer.action.unnormalize(out["raw"]))
    np.testing.assert_array_equal(out["actions"], expected.astype(np.float32))
    # The normaliser is not the identity here: actions are not the raw first dims.
    assert not np.allclose(out["actions"][..., :3], out["raw"][..., :3])


def test_seeds_fix_the_sample_and_the_observation_matters(policy):
    obs = observation(policy)
    a, b = policy.infer(obs, seed=1), policy.infer(obs, seed=1)
    assert np.array_equal(a["actions"], b["actions"]) and np.array_equal(a["raw"], b["raw"])
    assert not np.allclose(a["raw"], policy.infer(obs, seed=2)["raw"])
    assert not np.allclose(a["raw"], policy.infer(observation(policy, seed=9), seed=1)["raw"])


def test_no_seed_draws_one_and_reports_it(policy):
    obs = observation(policy)
    out = policy.infer(obs)
    assert isinstance(out["seed"], int)
    assert np.array_equal(policy.infer(obs, seed=out["seed"])["raw"], out["raw"])


def test_infer_batch_equals_unbatched(policy, assert_same_result):
    requests = [{"images": observation(policy, seed=i), "seed": 10 + i} for i in range(3)]
    requests.append((observation(policy, seed=7), None))  # tuple form, server-drawn seed
    batched = policy.infer_batch(requests)
    assert len(batched) == 4
    for req, got in zip(requests, batched):
        images = req["images"] if isinstance(req, dict) else req[0]
        alone = policy.infer(images, seed=got["seed"])
        assert_same_result(got["raw"], alone["raw"], "batched raw actions differ from the unbatched call")
        assert_same_result(got["actions"], alone["actions"])


def test_samples_return_the_medoid_of_that_many_candidates(policy):
    """`samples=N` draws N chunks for the observation in one pass (seeded) and returns the one with
    the least summed distance to the others."""
    medoid_policy = UWMPolicy(policy.loaded, samples=8)
    obs = observation(policy, seed=4)
    repeated = {c: np.repeat(x, 8, axis=0) for c, x in policy._obs(obs).items()}
    candidates = policy.sampler.policy(repeated, seed=5).numpy().reshape(8, -1)
    # `samples=8` encodes the observation once and draws the same 8 chunks
    np.testing.assert_allclose(policy.sampler.policy(policy._obs(obs), seed=5, samples=8).numpy().reshape(8, -1),
                               candidates, atol=1e-5)
    spread = np.linalg.norm(candidates[:, None] - candidates[None], axis=-1).sum(-1)
    assert np.ptp(spread) > 1e-3  # the candidates differ, so the choice matters
    out = medoid_policy.infer(obs, seed=5)
    assert out["raw"].shape == (1, 16, 10) and out["seed"] == 5 and medoid_policy.metadata()["samples_per_chunk"] == 8
    np.testing.assert_allclose(out["raw"].reshape(-1), candidates[spread.argmin()], atol=1e-5)
    # Served requests (infer_batch) pick the same chunk, each request from its own candidates.
    batched = medoid_policy.infer_batch([{"images": obs, "seed": 5}, {"images": observation(policy, seed=6), "seed": 5}])
    np.testing.assert_allclose(batched[0]["raw"], out["raw"], atol=1e-4)
    assert not np.allclose(batched[1]["raw"], out["raw"])
    # An inpainting prefix, per row (1, L, D) as well as shared (L, D), holds in the chosen chunk.
    prefix, mask = np.full((1, 16, 10), 0.25, np.float32), np.arange(16) < 4
    # ...and a per-row prefix is each of the row's candidates' prefix, as if the row were repeated
    np.testing.assert_allclose(policy.sampler.policy(policy._obs(obs), seed=5, prefix=prefix, prefix_mask=mask[None], samples=8),
                               policy.sampler.policy(repeated, seed=5, prefix=np.repeat(prefix, 8, 0),
                                                     prefix_mask=np.repeat(mask[None], 8, 0)), atol=1e-5)
    for p, m in ((prefix, mask[None]), (prefix[0], mask)):
        np.testing.assert_allclose(medoid_policy.infer(obs, seed=5, prefix=p, prefix_mask=m)["raw"][0, :4], prefix[0, :4], atol=1e-5)
    with pytest.raises(ValueError, match="--samples must be >= 1"):
        UWMPolicy(policy.loaded, samples=0)


def test_a_guide_picks_the_candidate_nearest_it_on_the_masked_rows(policy):
    """Backward coherence: given the previous chunk's plan for some rows, `samples=N` returns the
    candidate nearest that plan there instead of the medoid; without masked rows, the medoid."""
    sampling_policy = UWMPolicy(policy.loaded, samples=8)
    obs = observation(policy, seed=4)
    repeated = {c: np.repeat(x, 8, axis=0) for c, x in policy._obs(obs).items()}
    candidates = policy.sampler.policy(repeated, seed=5).numpy()  # (8, L, D)
    medoid = sampling_policy.infer(obs, seed=5)["raw"][0]
    mask = np.arange(16) >= 10  # the old plan's rows 10.. only
    for target in range(8):
        guide = candidates[target] + np.where(mask[:, None], 0.0, 5.0).astype(np.float32)  # far off outside the mask
        got = sampling_policy.infer(obs, seed=5, guide=guide, guide_mask=mask)["raw"][0]
        dist = ((candidates - guide) ** 2)[:, mask].sum((1, 2))
        np.testing.assert_allclose(got, candidates[dist.argmin()], atol=1e-5)
        assert dist.argmin() == target
        batched = sampling_policy.infer_batch([{"images": obs, "seed": 5, "guide": guide, "guide_mask": mask}])[0]
        np.testing.assert_allclose(batched["raw"][0], got, atol=1e-4)
    none = np.zeros(16, bool)
    np.testing.assert_allclose(sampling_policy.infer(obs, seed=5, guide=candidates[0], guide_mask=none)["raw"][0], medoid, atol=1e-5)
    # One sample per request has nothing to pick: the guide changes nothing.
    np.testing.assert_array_equal(policy.infer(obs, seed=5, guide=candidates[0], guide_mask=mask)["raw"],
                                  policy.infer(obs, seed=5)["raw"])


def test_world_model_modes(policy):
    obs = observation(policy)
    crop = tuple(policy.config.crop_shape)
    chunk = policy.infer(obs, seed=0)["raw"]
    fut = policy.predict_future(obs, chunk, seed=4)
    assert sorted(fut["frames"]) == sorted(policy.config.cameras) and fut["seed"] == 4
    for f in fut["frames"].values():
        assert f.dtype == np.uint8 and f.shape == (1, 2, *crop, 3)
    again = policy.predict_future(obs, chunk, seed=4)
    assert all(np.array_equal(fut["frames"][c], again["frames"][c]) for c in fut["frames"])
    other = policy.predict_future(obs, np.zeros_like(chunk), seed=4)
    assert any(not np.array_equal(fut["frames"][c], other["frames"][c]) for c in fut["frames"]), "actions must matter"
    imagined = policy.imagine(obs, seed=4)["frames"]
    assert all(f.shape == (1, 2, *crop, 3) for f in imagined.values())
    inv = policy.inverse(obs, observation(policy, seed=5), seed=4)
    assert inv["actions"].shape == (1, 16, 7) and inv["raw"].shape == (1, 16, 10)


def test_bad_observation_gets_a_clear_error(policy):
    obs = observation(policy)
    del obs[policy.config.cameras[0]]
    with pytest.raises(KeyError, match="missing camera"):
        policy.infer(obs, seed=0)


def test_raw_action_space_skips_the_codec(tmp_path):
    ckpt = make_preset_checkpoint("tiny", tmp_path / "raw", perturb=0.5, action_space="raw", action_dim=7)
    policy = UWMPolicy.load(ckpt)
    m = policy.metadata()
    assert (m["action_space"], m["action_dim"], m["raw_action_dim"]) == ("raw", 7, 7)
    out = policy.infer(observation(policy), seed=0)
    assert out["actions"].shape == (1, 16, 7)
    np.testing.assert_array_equal(out["actions"], out["raw"])  # identity normaliser, no codec


def test_warmup_runs(policy):
    assert policy.warmup(batch_sizes=(1, 2)) > 0


def test_loads_an_official_checkpoint(official_dir):
    policy = UWMPolicy.load(official_dir / "tiny_small" / "models.pt")
    m = policy.metadata()
    assert m["checkpoint_source"].startswith("official:") and len(m["checkpoint_hash"]) == 64
    out = policy.infer(observation(policy), seed=0)
    assert out["actions"].shape == (1, m["action_len"], m["action_dim"]) and np.isfinite(out["actions"]).all()


def test_noise_scale_shrinks_the_starting_action_noise(policy):
    """`noise_scale=s`: the seed's action draws times s start the DDIM trajectory (the same draws at
    every scale), so the chunks of different seeds spread less as s falls. At s = 0 they still differ
    by the held future-latent noise the network sees in policy mode."""
    obs, seeds = observation(policy, seed=4), range(6)

    def chunks(scale):
        p = UWMPolicy(policy.loaded, noise_scale=scale)
        assert p.metadata()["action_noise_scale"] == scale
        return np.stack([p.infer(obs, seed=s)["raw"][0] for s in seeds])

    full, half, none = chunks(1.0), chunks(0.5), chunks(0.0)
    np.testing.assert_array_equal(full, np.stack([policy.infer(obs, seed=s)["raw"][0] for s in seeds]))  # 1: the official sampler
    spread = [float(np.linalg.norm(c - c.mean(0), axis=(1, 2)).mean()) for c in (full, half, none)]
    assert spread[0] > spread[1] > spread[2] > 1e-3, spread
    # Exactly the denoiser run on the scaled draws of the seed (action noise first, as the official order).
    cond, action, latents, _ = policy.sampler._policy_inputs(policy._obs(obs), 3, noise_scale=1.0)
    direct = policy.sampler.denoiser.run(cond, action * 0.5, latents, DenoiseSpec(True, False, obs_t=policy.config.marginal_timestep))[0].detach()
    np.testing.assert_allclose(UWMPolicy(policy.loaded, noise_scale=0.5).infer(obs, seed=3)["raw"], direct.numpy(), atol=1e-5)
    batched = UWMPolicy(policy.loaded, noise_scale=0.5).infer_batch([{"images": obs, "seed": 3}])[0]
    np.testing.assert_allclose(batched["raw"], direct.numpy(), atol=1e-4)
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match=r"--noise-scale must be in \[0, 1\]"):
            UWMPolicy(policy.loaded, noise_scale=bad)


def test_a_request_may_ask_for_its_own_noise_scale(policy):
    """`infer(..., noise_scale=s)` samples as a session at s would, alone or beside other requests in a
    batch; None keeps the session's scale. The stalled control loop asks this way."""
    obs = observation(policy, seed=5)
    session = UWMPolicy(policy.loaded, noise_scale=0.5)
    at_one = UWMPolicy(policy.loaded, noise_scale=1.0).infer(obs, seed=7)["raw"]
    np.testing.assert_array_equal(session.infer(obs, seed=7, noise_scale=1.0)["raw"], at_one)
    np.testing.assert_array_equal(session.infer(obs, seed=7, noise_scale=None)["raw"], session.infer(obs, seed=7)["raw"])
    assert not np.allclose(session.infer(obs, seed=7)["raw"], at_one, atol=1e-3)
    mixed = session.infer_batch([{"images": obs, "seed": 7}, {"images": obs, "seed": 7, "noise_scale": 1.0}])
    np.testing.assert_allclose(mixed[0]["raw"], session.infer(obs, seed=7)["raw"], atol=1e-4)
    np.testing.assert_allclose(mixed[1]["raw"], at_one, atol=1e-4)
    with pytest.raises(ValueError, match=r"noise_scale must be in \[0, 1\].*got 2"):
        session.infer(obs, seed=7, noise_scale=2.0)
