"""A real policy_server on loopback takes inpainting prefixes: alone, batched, and refused when wrong."""

from __future__ import annotations


import numpy as np
import pytest

from policy_server.local import random_observation
from uwm_robot.client import PolicyClient, PolicyServerError


def prefix_for(meta, n_fixed=4, seed=0):
    L, D = meta["action_len"], meta["raw_action_dim"]
    prefix = np.random.default_rng(seed).uniform(-0.5, 0.5, (L, D)).astype(np.float32)
    mask = np.arange(L) < n_fixed
    return prefix, mask


def local_chunk(local_policy, images, seed, prefix=None, mask=None):
    out = local_policy.infer({c: v[None] for c, v in images.items()}, seed=seed, prefix=prefix, prefix_mask=mask)
    return out["actions"][0], out["raw"][0]


def test_served_inpainted_chunk_equals_in_process_and_keeps_the_prefix(client, meta, local_policy, assert_same_result):
    images, stamps = random_observation(meta, 1)
    prefix, mask = prefix_for(meta)
    got = client.infer(images, timestamps=stamps, seed=21, prefix=prefix, prefix_mask=mask)
    actions, raw = local_chunk(local_policy, images, 21, prefix, mask)
    assert_same_result(got["raw"], raw)
    assert_same_result(got["actions"], actions)
    np.testing.assert_allclose(got["raw"][mask], prefix[mask], atol=1e-5)
    plain = client.infer(images, timestamps=stamps, seed=21)
    assert not np.array_equal(plain["raw"][~mask], got["raw"][~mask])


def test_wrong_prefix_shape_is_refused_by_the_server(server, token, meta, client, local_policy, assert_same_result):
    images, _ = random_observation(meta, 2)
    L, D = meta["action_len"], meta["raw_action_dim"]
    with PolicyClient(server.address, token=token, timeout_s=60, validate=False) as unchecked:
        unchecked.metadata = meta
        with pytest.raises(PolicyServerError, match=rf"prefix: expected .* of shape \({L}, {D}\), got shape \({L}, 7\)") as e:
            unchecked.infer(images, seed=0, prefix=np.zeros((L, 7), np.float32), prefix_mask=np.ones(L, bool))
        assert e.value.code == "invalid_field" and e.value.field == "prefix"
        with pytest.raises(PolicyServerError, match=rf"prefix_mask: .* of shape \({L},\), got shape \({L - 1},\)"):
            unchecked.infer(images, seed=0, prefix=np.zeros((L, D), np.float32), prefix_mask=np.ones(L - 1, bool))
    images, _ = random_observation(meta, 3)
    assert_same_result(client.infer(images, seed=4)["raw"], local_chunk(local_policy, images, 4)[1])


def test_batched_requests_with_and_without_prefixes_are_each_their_own(meta, local_policy, overlapping_requests,
                                                                         assert_same_result):
    n = 3
    obs = [random_observation(meta, 30 + i)[0] for i in range(n)]
    prefixes = [prefix_for(meta, 3, i) if i != 1 else (None, None) for i in range(n)]

    def request(client, i):
        p, m = prefixes[i]
        return client.infer(obs[i], seed=200 + i, prefix=p, prefix_mask=m)

    results = overlapping_requests(n, request)
    for i, r in enumerate(results):
        actions, raw = local_chunk(local_policy, obs[i], 200 + i, *prefixes[i])
        for got, want in ((r["raw"], raw), (r["actions"], actions)):
            assert_same_result(got, want, f"request {i} (batch {r['server_timing']['batch_size']})")
