"""A real policy_server on loopback samples a request at the noise scale it asks for: alone, batched
beside requests at the server's scale, and refused out of [0, 1]."""

from __future__ import annotations

import pytest

from policy_server.local import random_observation
from uwm_robot.client import PolicyClient, PolicyServerError
from uwm_robot.inference import UWMPolicy


def local_raw(local_policy, images, seed, noise_scale):
    at_scale = UWMPolicy(local_policy.loaded, noise_scale=noise_scale)
    return at_scale.infer({c: v[None] for c, v in images.items()}, seed=seed)["raw"][0]


def test_a_request_is_sampled_at_its_own_noise_scale(client, meta, local_policy, assert_same_result):
    images, stamps = random_observation(meta, 5)
    assert meta["action_noise_scale"] == 1.0  # the server's own scale
    half = client.infer(images, timestamps=stamps, seed=9, noise_scale=0.5)
    assert_same_result(half["raw"], local_raw(local_policy, images, 9, 0.5))
    assert_same_result(client.infer(images, timestamps=stamps, seed=9)["raw"], local_raw(local_policy, images, 9, 1.0))


def test_batched_requests_keep_their_own_noise_scales(meta, local_policy, overlapping_requests, assert_same_result):
    obs = [random_observation(meta, 40 + i)[0] for i in range(3)]
    scales = [0.0, None, 0.5]
    results = overlapping_requests(3, lambda client, i: client.infer(obs[i], seed=300 + i, noise_scale=scales[i]))
    assert max(r["server_timing"]["batch_size"] for r in results) > 1
    for i, r in enumerate(results):
        want = local_raw(local_policy, obs[i], 300 + i, 1.0 if scales[i] is None else scales[i])
        assert_same_result(r["raw"], want, f"request {i} (batch {r['server_timing']['batch_size']})")


def test_a_noise_scale_out_of_range_is_refused_by_the_server(server, token, meta):
    images, _ = random_observation(meta, 6)
    with PolicyClient(server.address, token=token, timeout_s=60, validate=False) as unchecked:
        unchecked.metadata = meta
        with pytest.raises(PolicyServerError, match=r"noise_scale: expected a number in \[0, 1\].*got 1.5") as e:
            unchecked.infer(images, seed=0, noise_scale=1.5)
        assert e.value.code == "invalid_field" and e.value.field == "noise_scale"
