"""Rotation conventions: rot6d = first two rows, Euler = intrinsic XYZ (R = Rx Ry Rz)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from uwm_robot import rotations as R


def rx(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def ry(b):
    c, s = np.cos(b), np.sin(b)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def rz(c_):
    c, s = np.cos(c_), np.sin(c_)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def extrinsic_xyz_decode(m: np.ndarray) -> np.ndarray:
    """What the official eval does (scipy `as_euler("xyz")`, extrinsic: R = Rz(c) Ry(b) Rx(a)).

    Implemented here only to show that it is not the inverse of the training encoding.
    """
    b = -np.arcsin(np.clip(m[..., 2, 0], -1, 1))
    a = np.arctan2(m[..., 2, 1], m[..., 2, 2])
    c = np.arctan2(m[..., 1, 0], m[..., 0, 0])
    return np.stack([a, b, c], -1)


def random_euler(n, limit, seed=0):
    return np.random.default_rng(seed).uniform(-limit, limit, size=(n, 3))


def test_euler_to_matrix_is_intrinsic_xyz_product():
    for a, b, c in random_euler(50, np.pi):
        np.testing.assert_allclose(R.euler_to_matrix(np.array([a, b, c])), rx(a) @ ry(b) @ rz(c), atol=1e-12)


def test_known_values():
    np.testing.assert_allclose(R.euler_to_matrix([0, 0, np.pi / 2]), [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-12)
    np.testing.assert_allclose(R.euler_to_rot6d([0, 0, 0]), [1, 0, 0, 0, 1, 0])
    # rot6d is the first two ROWS: for Rx(0.3) that is (1,0,0) and (0,cos,-sin).
    np.testing.assert_allclose(R.euler_to_rot6d([0.3, 0, 0]), [1, 0, 0, 0, np.cos(0.3), -np.sin(0.3)], atol=1e-12)
    s = np.sin(np.pi / 4)
    np.testing.assert_allclose(R.quat_to_matrix([0, 0, s, s]), rz(np.pi / 2), atol=1e-12)


@pytest.mark.parametrize("limit", [0.05, 0.5, 1.0, np.pi / 2 - 0.02])
def test_euler_round_trips_are_exact(limit):
    e = random_euler(2000, limit, seed=1)
    m = R.euler_to_matrix(e)
    assert np.abs(R.matrix_to_euler(m) - e).max() < 1e-6
    d6 = R.euler_to_rot6d(e)
    assert np.abs(R.rot6d_to_euler(d6) - e).max() < 1e-6
    assert np.abs(R.rot6d_to_matrix(d6) - m).max() < 1e-9
    assert np.abs(R.matrix_to_rot6d(m) - d6).max() == 0


def test_first_and_last_angles_cover_full_circle():
    e = random_euler(1000, np.pi - 1e-3, seed=2)
    e[:, 1] = np.clip(e[:, 1], -1.5, 1.5)  # the middle angle is unique only within (-pi/2, pi/2)
    assert np.abs(R.matrix_to_euler(R.euler_to_matrix(e)) - e).max() < 1e-9


def test_official_extrinsic_decode_is_wrong_for_non_small_angles():
    # The test helper is a correct decoder for the *extrinsic* composition it assumes ...
    e = random_euler(500, 0.5, seed=3)
    mats_ext = np.stack([rz(c) @ ry(b) @ rx(a) for a, b, c in e])
    assert np.abs(extrinsic_xyz_decode(mats_ext) - e).max() < 1e-9
    # ... but training encoded intrinsic XYZ, so decoding that way is off by a lot at |angle| ~ 0.5,
    # while ours is exact.
    d6 = R.euler_to_rot6d(e)
    wrong = extrinsic_xyz_decode(R.rot6d_to_matrix(d6))
    assert np.abs(wrong - e).max() > 0.1
    assert np.abs(R.rot6d_to_euler(d6) - e).max() < 1e-9
    # Even small rates (|angle| <= 0.05) pick up an error far above float precision.
    small = random_euler(500, 0.05, seed=4)
    assert np.abs(extrinsic_xyz_decode(R.euler_to_matrix(small)) - small).max() > 1e-4


def test_conventions_match_scipy_when_available():
    Rotation = pytest.importorskip("scipy.spatial.transform").Rotation
    e = random_euler(100, 1.0, seed=5)
    m = R.euler_to_matrix(e)
    np.testing.assert_allclose(extrinsic_xyz_decode(m), Rotation.from_matrix(m).as_euler("xyz"), atol=1e-9)
    np.testing.assert_allclose(R.matrix_to_euler(m), Rotation.from_matrix(m).as_euler("XYZ"), atol=1e-9)
    np.testing.assert_allclose(R.pose_euler_to_matrix(e), Rotation.from_euler("xyz", e).as_matrix(), atol=1e-12)
    q = R.matrix_to_quat(m)
    np.testing.assert_allclose(np.abs(np.sum(q * Rotation.from_matrix(m).as_quat(), -1)), 1, atol=1e-12)  # same xyzw order


def test_droid_pose_euler_is_extrinsic_xyz():
    e = random_euler(300, 1.4, seed=9)
    for (a, b, c), m in zip(e[:20], R.pose_euler_to_matrix(e[:20])):
        np.testing.assert_allclose(m, rz(c) @ ry(b) @ rx(a), atol=1e-12)
    assert np.abs(R.matrix_to_pose_euler(R.pose_euler_to_matrix(e)) - e).max() < 1e-9
    np.testing.assert_allclose(R.matrix_to_pose_euler(R.pose_euler_to_matrix(e)), extrinsic_xyz_decode(R.pose_euler_to_matrix(e)), atol=1e-9)
    # The two conventions are different rotations for the same numbers.
    assert np.abs(R.pose_euler_to_matrix(e) - R.euler_to_matrix(e)).max() > 0.1


def test_rot6d_to_matrix_orthonormalises_any_input():
    d6 = np.random.default_rng(6).normal(size=(500, 6))
    m = R.rot6d_to_matrix(d6)
    np.testing.assert_allclose(m @ np.swapaxes(m, -1, -2), np.broadcast_to(np.eye(3), m.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(m), 1.0, atol=1e-12)
    # Gram-Schmidt keeps the first row's direction and the plane of the first two.
    np.testing.assert_allclose(m[:, 0], d6[:, :3] / np.linalg.norm(d6[:, :3], axis=-1, keepdims=True), atol=1e-12)
    # Scaling either half does not change the rotation.
    np.testing.assert_allclose(R.rot6d_to_matrix(d6 * np.array([3.0] * 3 + [0.2] * 3)), m, atol=1e-12)


def test_quaternion_round_trip_and_sign():
    q = np.random.default_rng(7).normal(size=(1000, 4))
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    back = R.matrix_to_quat(R.quat_to_matrix(q))
    assert np.all(back[:, 3] >= 0)
    np.testing.assert_allclose(back, q * np.sign(q[:, 3:4]), atol=1e-9)
    e = random_euler(200, 1.2, seed=8)
    np.testing.assert_allclose(R.quat_to_euler(R.euler_to_quat(e)), e, atol=1e-9)
    # 180-degree rotations (w = 0) go through the non-w branches.
    np.testing.assert_allclose(np.abs(R.matrix_to_quat(np.diag([1.0, -1.0, -1.0]))), [1, 0, 0, 0], atol=1e-12)
    with pytest.raises(ValueError, match="zero norm"):
        R.quat_to_matrix([0, 0, 0, 0])


def test_leading_batch_dims_and_dtypes():
    e = random_euler(24, 1.0).reshape(2, 3, 4, 3).astype(np.float32)
    d6 = R.euler_to_rot6d(e)
    assert d6.shape == (2, 3, 4, 6) and d6.dtype == np.float32
    assert R.rot6d_to_matrix(d6).shape == (2, 3, 4, 3, 3)
    assert R.matrix_to_quat(R.euler_to_matrix(e)).shape == (2, 3, 4, 4)
    assert R.euler_to_matrix([0, 0, 0]).dtype == np.float64  # lists / ints compute in float64


def test_torch_tensors_round_trip_as_tensors():
    e = torch.tensor(random_euler(10, 1.0), dtype=torch.float32)
    d6 = R.euler_to_rot6d(e)
    assert isinstance(d6, torch.Tensor) and d6.dtype == torch.float32 and d6.shape == (10, 6)
    assert torch.allclose(R.rot6d_to_euler(d6), e, atol=1e-5)


@pytest.mark.parametrize(
    "fn, bad, expected",
    [
        (R.rot6d_to_matrix, np.zeros((4, 5)), r"\(\.\.\., 6\)"),
        (R.euler_to_rot6d, np.zeros((4, 4)), r"\(\.\.\., 3\)"),
        (R.matrix_to_euler, np.zeros((4, 3)), r"\(\.\.\., 3, 3\)"),
        (R.quat_to_matrix, np.zeros(3), r"\(\.\.\., 4\)"),
    ],
)
def test_wrong_shapes_say_what_was_expected(fn, bad, expected):
    with pytest.raises(ValueError, match=expected):
        fn(bad)
