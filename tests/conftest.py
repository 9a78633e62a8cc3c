"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# Reference data written by the official UWM code; CI clones the repo with shared/ beside it.
OFFICIAL_DIR = (REPO_ROOT / ".." / "shared" / "uwm_official").resolve()


@pytest.fixture(scope="session")
def official_dir() -> Path:
    """`shared/uwm_official` next to the repository (skips the test when it is not there)."""
    if not (OFFICIAL_DIR / "tiny_small" / "models.pt").is_file():
        pytest.skip(f"official reference data not found at {OFFICIAL_DIR} (expected ../shared/uwm_official beside the repo)")
    return OFFICIAL_DIR


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A randomly initialised tiny-preset checkpoint in our format (made once per session)."""
    from uwm_robot.checkpoint import init_checkpoint

    out = tmp_path_factory.mktemp("ckpt") / "tiny"
    init_checkpoint("tiny", out, seed=0)
    return out


@pytest.fixture(scope="session")
def assert_same_result():
    """`check(got, want, msg="")`: a result computed elsewhere (in a batch, in a server process) against
    the same request run here alone. Equal up to float rounding, not bit for bit: a BLAS may block a
    GEMM differently for more rows (seen on an AVX-512 host, differences near 1e-6) and its kernels
    may round differently with another buffer alignment in another process (seen after a server
    restart); decoded uint8 frames may then differ by one count. A request given another's noise or
    prefix is off by O(1)."""
    def check(got, want, msg: str = "") -> None:
        got, want = np.asarray(got), np.asarray(want)
        assert got.dtype == want.dtype and got.shape == want.shape, f"{msg} {got.dtype}{got.shape} vs {want.dtype}{want.shape}"
        if np.issubdtype(want.dtype, np.integer):
            np.testing.assert_allclose(got.astype(np.int64), want.astype(np.int64), rtol=0, atol=1, err_msg=msg)
        else:
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=msg)
    return check
