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
def assert_batch_equal():
    """`check(got, want, msg="")`: a batched result against the same request run alone. Equal up to
    float rounding, not bit for bit: a BLAS may block a GEMM differently for more rows (seen on an
    AVX-512 host, differences near 1e-6); a request given another's noise or prefix is off by O(1)."""
    def check(got, want, msg: str = "") -> None:
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5, err_msg=msg)
    return check
