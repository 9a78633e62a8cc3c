"""Min-max normaliser (official semantics), identity normaliser, normalizer.json and its hash."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from uwm_robot.normalizer import (
    IdentityNormalizer,
    LinearNormalizer,
    NormalizerError,
    NormalizerSet,
    normalizer_from_dict,
)


def data(seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(-3, 5, size=(200, 16, 4)) * np.array([1.0, 0.1, 2.0, 1.0])


def test_from_data_is_official_min_max():
    x = data()
    n = LinearNormalizer.from_data(x)
    lo, hi = x.reshape(-1, 4).min(0), x.reshape(-1, 4).max(0)
    np.testing.assert_array_equal(n.scale, (hi - lo) / 2)
    np.testing.assert_array_equal(n.offset, (hi + lo) / 2)
    y = n.normalize(x)
    np.testing.assert_array_equal(y, (x - n.offset) / n.scale)  # exactly the official formula
    np.testing.assert_allclose(y.reshape(-1, 4).min(0), -1, atol=1e-12)
    np.testing.assert_allclose(y.reshape(-1, 4).max(0), 1, atol=1e-12)
    np.testing.assert_allclose(n.unnormalize(y), x, atol=1e-12)


def test_constant_dimension_normalises_to_zero_and_round_trips():
    x = data()
    x[..., 2] = 0.7
    n = LinearNormalizer.from_data(x)
    assert n.scale[2] == 1.0 and n.offset[2] == 0.7
    y = n.normalize(x)
    assert np.all(np.isfinite(y)) and np.all(y[..., 2] == 0)
    np.testing.assert_allclose(n.unnormalize(y), x, atol=1e-12)


def test_zero_scale_from_a_checkpoint_keeps_official_unnormalize():
    n = LinearNormalizer([0.5, 0.0], [0.1, 0.7])
    assert np.all(n.unnormalize(np.array([[0.3, 0.9]])) == [[0.3 * 0.5 + 0.1, 0.7]])
    y = n.normalize(np.array([[0.2, 0.7], [0.2, 5.0]]))
    np.testing.assert_array_equal(y[:, 1], [0, 0])  # no inf/nan


def test_dtype_and_torch_support():
    n = LinearNormalizer.from_data(data())
    x32 = data(1).astype(np.float32)
    assert n.normalize(x32).dtype == np.float32
    t = torch.tensor(x32)
    y = n.normalize(t)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float32
    np.testing.assert_allclose(y.numpy(), n.normalize(x32), atol=1e-6)
    assert torch.allclose(n.unnormalize(y), t, atol=1e-5)


def test_shape_and_value_errors():
    n = LinearNormalizer.from_range([-1, -2], [1, 2])
    np.testing.assert_array_equal(n.normalize(np.array([1.0, -2.0])), [1, -1])
    with pytest.raises(NormalizerError, match=r"\(\.\.\., 2\)"):
        n.normalize(np.zeros((3, 5)))
    with pytest.raises(NormalizerError, match="differ in length"):
        LinearNormalizer([1, 1], [0])
    with pytest.raises(NormalizerError, match="non-finite"):
        LinearNormalizer([1, np.nan], [0, 0])
    with pytest.raises(NormalizerError, match=">= 0"):
        LinearNormalizer([-1.0], [0])


def test_identity_normalizer():
    n = IdentityNormalizer(7)
    x = np.arange(14.0).reshape(2, 7)
    assert n.normalize(x) is x and n.unnormalize(x) is x
    with pytest.raises(NormalizerError, match=r"\(\.\.\., 7\)"):
        n.unnormalize(np.zeros(10))
    assert normalizer_from_dict(n.to_dict()) == n


def sample_set():
    return NormalizerSet(
        LinearNormalizer.from_data(data()),
        {"gripper_position": LinearNormalizer([0.5], [0.5]), "cartesian_position": LinearNormalizer.from_data(data(2)[..., :3])},
    )


def test_json_file_round_trip(tmp_path):
    s = sample_set()
    path = s.save(tmp_path)
    assert path.name == "normalizer.json"
    back = NormalizerSet.load(tmp_path)
    assert back.action == s.action and back.lowdim == s.lowdim
    assert back.content_hash() == s.content_hash()
    assert NormalizerSet.from_dict(json.loads(path.read_text())).to_dict() == s.to_dict()


def test_content_hash_is_canonical_and_content_sensitive():
    s = sample_set()
    h = s.content_hash()
    assert h == hashlib.sha256(s.canonical_json().encode()).hexdigest()
    reordered = NormalizerSet(s.action, dict(reversed(list(s.lowdim.items()))))
    assert reordered.content_hash() == h  # key order does not matter
    changed = NormalizerSet(LinearNormalizer(s.action.scale * (1 + 1e-12), s.action.offset), s.lowdim)
    assert changed.content_hash() != h
    # The canonical form is pinned: a client computing it independently gets the same bytes.
    tiny = NormalizerSet(LinearNormalizer([0.5], [0.25]))
    assert tiny.canonical_json() == (
        '{"action":{"offset":[0.25],"scale":[0.5],"type":"linear"},"format":"uwm_robot.normalizer/1","lowdim":{}}'
    )
    assert NormalizerSet.default(7, identity=True).to_dict()["action"] == {"type": "identity", "dim": 7}


@pytest.mark.parametrize(
    "doc, message",
    [
        ({"format": "other", "action": {"type": "identity", "dim": 1}}, "format is 'other'"),
        ({"format": "uwm_robot.normalizer/1"}, "missing 'action'"),
        ({"format": "uwm_robot.normalizer/1", "action": {"type": "zscore"}}, "unknown type 'zscore'"),
        ({"format": "uwm_robot.normalizer/1", "action": {"type": "linear", "scale": [1]}}, "missing key 'offset'"),
        ({"format": "uwm_robot.normalizer/1", "action": {"type": "linear", "scale": [1], "offset": [0], "min": 1}}, r"unknown key\(s\) \['min'\]"),
        ({"format": "uwm_robot.normalizer/1", "action": {"type": "identity", "dim": 1}, "extra": 1}, r"unknown key\(s\) \['extra'\]"),
    ],
)
def test_malformed_documents_are_named(doc, message):
    with pytest.raises(NormalizerError, match=message):
        NormalizerSet.from_dict(doc, source="normalizer.json")


def test_unreadable_file(tmp_path):
    (tmp_path / "normalizer.json").write_text("{not json")
    with pytest.raises(NormalizerError, match="not valid JSON"):
        NormalizerSet.load(tmp_path)
    with pytest.raises(NormalizerError, match="cannot read"):
        NormalizerSet.load(tmp_path / "missing.json")
