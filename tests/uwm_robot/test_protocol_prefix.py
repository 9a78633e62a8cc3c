"""The optional action rows of an infer request (inpainting prefix, coherence guide): shapes, dtypes,
pairing, wire compatibility."""

from __future__ import annotations

import numpy as np
import pytest

from uwm_robot import protocol as P

META = {"cameras": ["cam_a", "cam_b"], "image_shape": [6, 8], "n_obs_steps": 2, "action_len": 4, "raw_action_dim": 10}


def images():
    rng = np.random.default_rng(0)
    return {c: rng.integers(0, 256, (2, 6, 8, 3), dtype=np.uint8) for c in META["cameras"]}


def decode(req: P.InferRequest) -> P.InferRequest:
    m = type(req).from_wire(P.unpackb(req.pack()))
    m.validate_against(META)
    return m


def test_prefix_round_trips_and_is_left_off_the_wire_when_unused():
    prefix, mask = np.ones((4, 10), np.float32), np.array([True, True, False, False])
    m = decode(P.InferRequest(images=images(), prefix=prefix, prefix_mask=mask))
    assert np.array_equal(m.prefix, prefix) and np.array_equal(m.prefix_mask, mask)
    # Lists work too (a client without numpy arrays at hand).
    m = decode(P.InferRequest(images=images(), prefix=prefix.tolist(), prefix_mask=mask.tolist()))
    assert m.prefix.dtype == np.float32 and m.prefix_mask.dtype == bool
    # Without a prefix the message is what an older server expects (no new keys).
    wire = P.InferRequest(images=images()).to_wire()
    assert "prefix" not in wire and "prefix_mask" not in wire


@pytest.mark.parametrize(
    "prefix, mask, field, pattern",
    [
        (np.zeros((4, 7), np.float32), np.ones(4, bool), "prefix", r"prefix: expected float normalised model actions .* of shape \(4, 10\), got shape \(4, 7\)"),
        (np.zeros((3, 10), np.float32), np.ones(3, bool), "prefix", r"of shape \(4, 10\), got shape \(3, 10\)"),
        (np.zeros(10, np.float32), np.ones(4, bool), "prefix", r"of shape \(N, N\), got shape \(10,\)"),
        (np.zeros((4, 10), np.int32), np.ones(4, bool), "prefix", r"got dtype int32"),
        (np.full((4, 10), np.nan, np.float32), np.ones(4, bool), "prefix", r"expected finite values"),
        (np.zeros((4, 10), np.float32), np.ones(3, bool), "prefix_mask", r"bool mask \(action_len,\), True = fixed of shape \(4,\), got shape \(3,\)"),
        (np.zeros((4, 10), np.float32), np.ones(4, np.int64), "prefix_mask", r"got dtype int64"),
        (np.zeros((4, 10), np.float32), None, "prefix_mask", r"prefix and prefix_mask go together"),
        (None, np.ones(4, bool), "prefix", r"prefix and prefix_mask go together"),
    ],
)
def test_wrong_prefixes_are_refused_with_what_was_expected(prefix, mask, field, pattern):
    with pytest.raises(P.ProtocolError, match=pattern) as e:
        decode(P.InferRequest(images=images(), prefix=prefix, prefix_mask=mask))
    assert e.value.field == field and e.value.code == P.ErrorCode.INVALID_FIELD


def test_only_infer_takes_a_prefix():
    req = P.ImagineRequest(images=images(), prefix=np.zeros((4, 10), np.float32), prefix_mask=np.ones(4, bool))
    with pytest.raises(P.ProtocolError, match=r"only 'infer' requests take a prefix, not 'imagine'"):
        decode(req)


def test_a_guide_round_trips_beside_a_prefix_and_is_checked_like_one():
    guide, mask = np.full((4, 10), 0.5, np.float32), np.array([False, True, True, True])
    m = decode(P.InferRequest(images=images(), guide=guide.tolist(), guide_mask=mask.tolist(),
                              prefix=np.ones((4, 10), np.float32), prefix_mask=np.ones(4, bool)))
    assert np.array_equal(m.guide, guide) and m.guide.dtype == np.float32 and np.array_equal(m.guide_mask, mask)
    assert "guide" not in P.InferRequest(images=images()).to_wire()
    with pytest.raises(P.ProtocolError, match=r"guide: expected float normalised model actions .* of shape \(4, 10\), got shape \(4, 7\)") as e:
        decode(P.InferRequest(images=images(), guide=np.zeros((4, 7), np.float32), guide_mask=np.ones(4, bool)))
    assert e.value.field == "guide"
    with pytest.raises(P.ProtocolError, match=r"guide_mask: guide and guide_mask go together") as e:
        decode(P.InferRequest(images=images(), guide=guide))
    with pytest.raises(P.ProtocolError, match=r"True = compared of shape \(4,\), got shape \(2,\)"):
        decode(P.InferRequest(images=images(), guide=guide, guide_mask=np.ones(2, bool)))
    with pytest.raises(P.ProtocolError, match=r"only 'infer' requests take a guide, not 'imagine'"):
        decode(P.ImagineRequest(images=images(), guide=guide, guide_mask=mask))


def test_a_request_noise_scale_round_trips_and_is_checked():
    m = decode(P.InferRequest(images=images(), noise_scale=1))
    assert m.noise_scale == 1.0 and isinstance(m.noise_scale, float)
    assert "noise_scale" not in P.InferRequest(images=images()).to_wire()  # older servers never see it
    for bad in (1.5, -0.1, True, "1"):
        with pytest.raises(P.ProtocolError, match=r"noise_scale: expected a number in \[0, 1\]") as e:
            decode(P.InferRequest(images=images(), noise_scale=bad))
        assert e.value.field == "noise_scale"
    with pytest.raises(P.ProtocolError, match=r"noise_scale: only 'infer' requests take one, not 'imagine'"):
        decode(P.ImagineRequest(images=images(), noise_scale=0.5))
