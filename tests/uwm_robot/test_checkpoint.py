"""Our checkpoint directory format, official conversion, and the errors for bad files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from uwm_robot.checkpoint import (
    CheckpointError,
    check_state_dict,
    convert_official,
    file_sha256,
    init_checkpoint,
    load_checkpoint,
    save_checkpoint,
    write_checkpoint,
)
from uwm_robot.config import OFFICIAL_COLOR_JITTER, PRESETS, ModelConfig, preset
from uwm_robot.model import UnifiedWorldModel
from uwm_robot.normalizer import LinearNormalizer, NormalizerSet

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return init_checkpoint("tiny", tmp_path_factory.mktemp("ckpt") / "tiny-seed3", seed=3)


@pytest.fixture()
def tiny_copy(tiny_dir, tmp_path):
    return Path(shutil.copytree(tiny_dir, tmp_path / "copy"))


def test_preset_yaml_files_equal_presets():
    for name, cfg in PRESETS.items():
        loaded = ModelConfig.load(REPO / "configs" / "models" / f"{name}.yaml")
        assert loaded.to_dict() == cfg.to_dict(), name
    assert sorted(p.stem for p in (REPO / "configs" / "models").glob("*.yaml")) == sorted(PRESETS)


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    cfg = preset("tiny")
    model = UnifiedWorldModel(cfg)
    with torch.no_grad():  # make zero-initialised layers non-trivial so equality means something
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    norm = NormalizerSet(LinearNormalizer.from_range(-np.arange(1, 11), np.arange(1, 11)), {"gripper_position": LinearNormalizer([0.5], [0.5])})
    out = save_checkpoint(tmp_path / "run-7", model, cfg, norm, meta={"step": 7, "source": "test"})
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "meta.json", "model.safetensors", "normalizer.json"]

    loaded = load_checkpoint(out, verify=True)
    ours, theirs = model.state_dict(), loaded.model.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert any(k.startswith("obs_encoder.vae.vae.") for k in theirs)  # the frozen VAE travels too
    assert loaded.config.to_dict() == cfg.to_dict()
    assert loaded.normalizer.to_dict() == norm.to_dict()
    meta = loaded.meta
    assert meta["checkpoint_id"] == "run-7" and meta["step"] == 7 and meta["source"] == "test"
    assert meta["checkpoint_hash"] == file_sha256(out / "model.safetensors")
    assert meta["normalizer_hash"] == norm.content_hash()
    assert meta["format_version"] == 1 and meta["weights_dtype"] == "float32"
    assert not loaded.model.training
    # Loading through the weights file path is the same checkpoint.
    assert load_checkpoint(out / "model.safetensors").meta["checkpoint_hash"] == meta["checkpoint_hash"]


def test_fp16_weights_and_load_dtype(tiny_dir, tmp_path):
    ref = load_checkpoint(tiny_dir)
    out = save_checkpoint(tmp_path / "half", ref.model, ref.config, ref.normalizer, fp16=True)
    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F16"}
    assert (out / "model.safetensors").stat().st_size < 0.55 * (tiny_dir / "model.safetensors").stat().st_size
    half = load_checkpoint(out)  # fp16 file, float32 model
    w = "noise_pred_net.blocks.0.attn.qkv.weight"
    assert half.model.state_dict()[w].dtype == torch.float32
    assert torch.equal(half.model.state_dict()[w], ref.model.state_dict()[w].half().float())
    as64 = load_checkpoint(tiny_dir, dtype=torch.float64)
    assert as64.model.state_dict()[w].dtype == torch.float64


def test_init_is_seeded(tiny_dir, tmp_path):
    meta = json.loads((tiny_dir / "meta.json").read_text())
    assert meta["source"] == "init:tiny" and meta["seed"] == 3
    again = init_checkpoint("tiny", tmp_path / "again", seed=3)
    assert json.loads((again / "meta.json").read_text())["checkpoint_hash"] == meta["checkpoint_hash"]
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    other = init_checkpoint("tiny", tmp_path / "other", seed=4)
    assert torch.equal(torch.rand(3), expected)  # the caller's RNG stream is untouched
    assert json.loads((other / "meta.json").read_text())["checkpoint_hash"] != meta["checkpoint_hash"]
    norm = NormalizerSet.load(tiny_dir)
    assert norm.action == LinearNormalizer(np.ones(10), np.zeros(10))  # DROID actions taken as [-1, 1]


def test_state_dict_errors_name_the_keys():
    model = {f"layer{i}.weight": torch.zeros(2, 3) for i in range(15)}
    ckpt = {k: v for k, v in model.items() if k not in {f"layer{i}.weight" for i in range(12)}}
    ckpt["extra.bias"] = torch.zeros(1)
    ckpt["layer14.weight"] = torch.zeros(3, 2)
    with pytest.raises(CheckpointError) as info:
        check_state_dict(model, ckpt, "ckpt.safetensors")
    msg = str(info.value)
    assert msg.startswith("ckpt.safetensors does not fit the model")
    assert "12 missing key(s): layer0.weight, layer1.weight" in msg and "... and 2 more" in msg
    assert "1 unexpected key(s): extra.bias" in msg
    assert "1 shape mismatch(es): layer14.weight: checkpoint [3, 2] vs model [2, 3]" in msg
    check_state_dict(model, dict(model), "fine")  # no error when everything fits


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda sd: sd.pop("noise_pred_net.registers"), r"1 missing key\(s\): noise_pred_net\.registers"),
        (lambda sd: sd.__setitem__("noise_pred_net.surplus", torch.zeros(1)), r"1 unexpected key\(s\): noise_pred_net\.surplus"),
        (
            lambda sd: sd.__setitem__("noise_pred_net.pos_embed", torch.zeros(1, 3, 256)),
            r"noise_pred_net\.pos_embed: checkpoint \[1, 3, 256\] vs model \[1, \d+, 256\]",
        ),
    ],
)
def test_wrong_weights_in_our_format(tiny_copy, edit, message):
    weights = tiny_copy / "model.safetensors"
    sd = load_file(str(weights))
    edit(sd)
    save_file(sd, str(weights))
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(tiny_copy)


def test_truncated_safetensors(tiny_copy):
    weights = tiny_copy / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match=r"model\.safetensors: not a readable safetensors file .*truncated"):
        load_checkpoint(tiny_copy)
    weights.write_bytes(data[:5])  # not even a header
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_checkpoint(tiny_copy)


def test_verify_detects_changed_weights(tiny_copy):
    weights = tiny_copy / "model.safetensors"
    sd = load_file(str(weights))
    sd["noise_pred_net.registers"] += 1
    save_file(sd, str(weights))
    load_checkpoint(tiny_copy)  # still a valid checkpoint ...
    with pytest.raises(CheckpointError, match="does not match meta.json"):
        load_checkpoint(tiny_copy, verify=True)  # ... but not the one meta.json describes


def test_incomplete_directories(tiny_copy, tmp_path):
    (tiny_copy / "config.yaml").unlink()
    with pytest.raises(CheckpointError, match=r"missing \['config.yaml'\]"):
        load_checkpoint(tiny_copy)
    with pytest.raises(CheckpointError, match="no such file or directory"):
        load_checkpoint(tmp_path / "nowhere")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(CheckpointError, match="expected a uwm_robot checkpoint directory"):
        load_checkpoint(tmp_path / "notes.txt")


def test_bad_meta_and_normalizer(tiny_copy):
    (tiny_copy / "normalizer.json").write_text('{"format": "uwm_robot.normalizer/1", "action": {"type": "nope"}}')
    with pytest.raises(CheckpointError, match="unknown type 'nope'"):
        load_checkpoint(tiny_copy)
    (tiny_copy / "meta.json").write_text('{"format_version": 99}')
    with pytest.raises(CheckpointError, match="format_version 99"):
        load_checkpoint(tiny_copy)


def test_convert_official_round_trip(official_dir, tmp_path):
    from uwm_robot.official_checkpoint import read_official

    src = official_dir / "tiny_small"
    out = convert_official(src / "models.pt", src / "config.yaml", tmp_path / "tiny_small")
    official = read_official(src / "models.pt")
    loaded = load_checkpoint(out, verify=True)
    sd = loaded.model.state_dict()
    assert all(torch.equal(sd[k], v) for k, v in official.state_dict.items()) and sd.keys() == official.state_dict.keys()
    assert loaded.normalizer.action == official.action_normalizer
    assert loaded.normalizer.lowdim == official.lowdim_normalizers
    assert loaded.meta["step"] == 0 and loaded.meta["source"] == "official:models.pt"
    assert loaded.meta["official_sha256"] == file_sha256(src / "models.pt")
    assert tuple(loaded.config.vae.block_out_channels) == (32, 64, 128, 128)
    # The official run's augmentation travels with the config, for finetuning from it.
    assert loaded.config.random_crop and loaded.config.color_jitter == OFFICIAL_COLOR_JITTER


def test_aliased_and_view_tensors_are_written(tmp_path):
    w = torch.randn(4, 4)
    sd = {"a": w, "b": w, "row": w[1], "empty": torch.zeros(0)}  # safetensors refuses shared storage as is
    out = write_checkpoint(tmp_path / "alias", sd, preset("tiny"), NormalizerSet.default(10))
    back = load_file(str(out / "model.safetensors"))
    assert torch.equal(back["a"], w) and torch.equal(back["b"], w) and torch.equal(back["row"], w[1])
    assert back["empty"].shape == (0,)
