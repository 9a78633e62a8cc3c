"""The `uwm_robot` command line (run as `python -m uwm_robot.cli`, as a user would)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from uwm_robot.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "uwm_robot.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )


def test_init_tiny_writes_a_loadable_checkpoint(tmp_path):
    out = tmp_path / "tiny"
    res = run_cli("init", "--preset", "tiny", "--out", str(out), "--seed", "1", "--fp16")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"initialised tiny checkpoint (seed 1) -> {out}")
    assert "float16" in lines[0]
    loaded = load_checkpoint(out)
    assert loaded.config.embed_dim == 256 and loaded.meta["seed"] == 1 and loaded.meta["weights_dtype"] == "float16"


def test_convert_official(official_dir, tmp_path):
    src = official_dir / "tiny_small"
    out = tmp_path / "converted"
    res = run_cli("convert", str(src / "models.pt"), "--config", str(src / "config.yaml"), "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().startswith(f"converted {src / 'models.pt'} -> {out}") and "step 0" in res.stdout
    ours, official = load_checkpoint(out), load_checkpoint(src / "models.pt")
    a, b = ours.model.state_dict(), official.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert ours.normalizer.content_hash() == official.normalizer.content_hash()


def test_bad_input_exits_2_with_one_line_and_no_traceback(tmp_path):
    broken = tmp_path / "models.pt"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    res = run_cli("convert", str(broken), "--config", str(tmp_path / "config.yaml"), "--out", str(tmp_path / "out"))
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert res.stderr.strip().startswith("uwm_robot convert: error:") and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()

    (tmp_path / "config.yaml").write_text("model: {}\ndataset: {}\n")
    torch.save({"model": {"w": torch.zeros(1)}}, broken)
    res = run_cli("convert", str(broken), "--out", str(tmp_path / "out"))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "config.yaml" in res.stderr  # the config error names the file


def test_usage_errors():
    res = run_cli("init", "--preset", "huge", "--out", "x")
    assert res.returncode == 2 and "invalid choice: 'huge'" in res.stderr
    res = run_cli()
    assert res.returncode == 2 and "COMMAND" in res.stderr
