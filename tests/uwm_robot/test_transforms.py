"""Training-time image augmentation: random crop (optional) and the official colour jitter."""

from __future__ import annotations

import pytest
import torch

from uwm_robot.config import OFFICIAL_COLOR_JITTER, ColorJitterConfig, ConfigError, ModelConfig, preset
from uwm_robot.model.transforms import video_transform

FRAMES = torch.randint(0, 256, (2, 2, 24, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def transform(train: bool, seed: int = 0, **kw) -> torch.Tensor:
    return video_transform(FRAMES, (24, 32), (16, 24), train=train, generator=torch.Generator().manual_seed(seed), **kw)


def test_color_jitter_changes_training_frames_only_and_is_seeded():
    eval_out = transform(False, color_jitter=OFFICIAL_COLOR_JITTER)
    assert torch.equal(eval_out, transform(False))  # eval never jitters
    plain = transform(True, seed=1)
    jittered = transform(True, seed=1, color_jitter=OFFICIAL_COLOR_JITTER)
    assert jittered.shape == plain.shape and (jittered - plain).abs().mean() > 1e-3
    assert 0.0 <= float(jittered.min()) and float(jittered.max()) <= 1.0
    assert torch.equal(jittered, transform(True, seed=1, color_jitter=OFFICIAL_COLOR_JITTER))  # same generator, same draw
    assert not torch.equal(jittered, transform(True, seed=2, color_jitter=OFFICIAL_COLOR_JITTER))


def test_without_random_crop_training_takes_the_centre_crop():
    centre = transform(False)
    assert torch.equal(transform(True, seed=3, random_crop=False), centre)
    assert any(not torch.equal(transform(True, seed=s), centre) for s in range(4))


def test_jitter_settings_round_trip_and_bad_values_are_named(tmp_path):
    cfg = preset("tiny").replace(color_jitter=ColorJitterConfig(0.1, 0.3, 0.0, (-0.05, 0.05)), random_crop=False)
    cfg.save(tmp_path / "c.yaml")
    assert ModelConfig.load(tmp_path / "c.yaml") == cfg
    assert preset("droid").color_jitter == OFFICIAL_COLOR_JITTER and preset("tiny").color_jitter is None
    with pytest.raises(ConfigError, match="hue must be"):
        ModelConfig.from_dict({**cfg.to_dict(), "color_jitter": {"hue": [0.1, 0.9]}})
    with pytest.raises(ConfigError, match="unknown key"):
        ModelConfig.from_dict({**cfg.to_dict(), "color_jitter": {"gamma": 0.1}})
