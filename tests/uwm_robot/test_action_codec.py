"""DROID action codec: [xyz, rot6d(Euler-rate triple, intrinsic XYZ), gripper] <-> [vel6, gripper]."""

from __future__ import annotations

import numpy as np
import pytest

from uwm_robot import action_codec as C
from uwm_robot import rotations as R


def droid_actions(shape, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.uniform(-1, 1, size=shape + (7,))  # DROID velocity actions live in [-1, 1]
    a[..., 6] = rng.uniform(0, 1, size=shape)  # absolute gripper position
    return a


def test_encode_layout_matches_official_converter():
    a = droid_actions((5,))
    m = C.encode(a)
    assert m.shape == (5, 10)
    np.testing.assert_array_equal(m[:, :3], a[:, :3])  # xyz velocity as is
    np.testing.assert_allclose(m[:, 3:9], R.euler_to_rot6d(a[:, 3:6]), atol=0)  # rot6d of the Euler triple
    np.testing.assert_array_equal(m[:, 9], a[:, 6])  # absolute gripper
    # No rotation rate -> identity rot6d; a pure x rate -> first two rows of Rx.
    z = C.encode([0.1, 0.2, 0.3, 0, 0, 0, 0.5])
    np.testing.assert_allclose(z, [0.1, 0.2, 0.3, 1, 0, 0, 0, 1, 0, 0.5], atol=1e-15)
    x = C.encode([0, 0, 0, 0.4, 0, 0, 1.0])
    np.testing.assert_allclose(x[3:9], [1, 0, 0, 0, np.cos(0.4), -np.sin(0.4)], atol=1e-15)


def test_decode_inverts_encode_exactly():
    a = droid_actions((3, 16), seed=1)
    back = C.decode(C.encode(a))
    assert back.shape == (3, 16, 7)
    assert np.abs(back - a).max() < 1e-9


def test_decode_projects_non_orthonormal_rot6d():
    a = droid_actions((8,), seed=2)
    m = C.encode(a)
    m[:, 3:6] *= 1.7  # a network output need not be unit length
    m[:, 6:9] += 0.3 * m[:, 3:6] / 1.7  # nor orthogonal (still in the same plane)
    np.testing.assert_allclose(C.decode(m), a, atol=1e-9)


def test_dtype_is_kept():
    a = droid_actions((4,)).astype(np.float32)
    assert C.encode(a).dtype == np.float32
    assert C.decode(C.encode(a)).dtype == np.float32
    np.testing.assert_allclose(C.decode(C.encode(a)), a, atol=1e-6)


def test_encode_parts_from_action_dict_entries():
    a = droid_actions((6,), seed=3)
    np.testing.assert_array_equal(C.encode_parts(a[:, :6], a[:, 6:]), C.encode(a))
    with pytest.raises(ValueError, match=r"gripper_position must have shape \(\.\.\., 1\)"):
        C.encode_parts(a[:, :6], a[:, 6])


@pytest.mark.parametrize("fn, bad, dim", [(C.decode, np.zeros((2, 7)), 10), (C.encode, np.zeros((2, 10)), 7), (C.decode, 1.0, 10)])
def test_wrong_last_dim_is_a_clear_error(fn, bad, dim):
    with pytest.raises(ValueError, match=rf"must have shape \(\.\.\., {dim}\), got"):
        fn(bad)


def test_codec_for_action_spaces():
    droid = C.codec_for("droid", 10)
    assert (droid.model_dim, droid.robot_dim) == (10, 7)
    a = droid_actions((2,))
    np.testing.assert_allclose(droid.decode(droid.encode(a)), a, atol=1e-9)
    raw = C.codec_for("raw", 7)
    x = np.arange(14, dtype=np.float32).reshape(2, 7)
    np.testing.assert_array_equal(raw.decode(x), x)
    assert raw.decode(x).dtype == np.float32
    with pytest.raises(ValueError, match=r"\(\.\.\., 7\)"):
        raw.decode(np.zeros((2, 10)))
    with pytest.raises(ValueError, match="needs action_dim 10"):
        C.codec_for("droid", 7)
    with pytest.raises(ValueError, match="unknown action_space"):
        C.codec_for("joint", 7)
