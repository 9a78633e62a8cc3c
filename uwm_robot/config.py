"""Typed model configuration: presets, YAML round trip, and the official hydra config.

One `ModelConfig` fully determines the network's architecture and its sampling settings; a
checkpoint directory stores it as `config.yaml` next to the weights.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .typed_yaml import checked_fields

DROID_CAMERAS = ("exterior_image_1_left", "exterior_image_2_left", "wrist_image_left")
LIBERO_CAMERAS = ("agentview_image", "robot0_eye_in_hand_image")

# SDXL VAE architecture (stabilityai/sdxl-vae); the official code loads it from the hub, we build it.
SDXL_VAE_CHANNELS = (128, 256, 512, 512)


class ConfigError(ValueError):
    """A configuration file or dict does not describe a valid model."""


@dataclass(frozen=True)
class VAEConfig:
    """A diffusers AutoencoderKL with SDXL's layout; `shift`/`scale` as the official VAEDownsample."""

    block_out_channels: tuple[int, ...] = SDXL_VAE_CHANNELS
    layers_per_block: int = 2
    latent_channels: int = 4
    norm_num_groups: int = 32
    scaling_factor: float = 0.13025
    # The official code hard-codes these ("computed from multitask 12").
    shift: float = 0.0
    scale: float = 3.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "block_out_channels", tuple(self.block_out_channels))

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)


@dataclass(frozen=True)
class ColorJitterConfig:
    """Training-only colour augmentation of the conditioning frames (the official AutoColorJitter)."""

    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: tuple[float, float] = (-0.2, 0.2)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hue", tuple(self.hue))
        problems = [f"{k} must be >= 0, got {getattr(self, k)}" for k in ("brightness", "contrast", "saturation")
                    if getattr(self, k) < 0]
        if len(self.hue) != 2 or not -0.5 <= self.hue[0] <= self.hue[1] <= 0.5:
            problems.append(f"hue must be [lo, hi] within [-0.5, 0.5], got {list(self.hue)}")
        if problems:
            raise ConfigError("invalid color_jitter: " + "; ".join(problems))


# model/uwm.yaml of the official code (DROID and LIBERO runs alike).
OFFICIAL_COLOR_JITTER = ColorJitterConfig()


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to build a UnifiedWorldModel and sample from it."""

    camera_names: tuple[str, ...] = DROID_CAMERAS
    image_shape: tuple[int, int] = (180, 320)  # raw camera frames (H, W) the server accepts
    resize_shape: tuple[int, int] = (240, 320)
    crop_shape: tuple[int, int] = (224, 224)
    random_crop: bool = True  # training crops at random (else at the centre, as in eval)
    color_jitter: ColorJitterConfig | None = None  # training only; the paper's presets use OFFICIAL_COLOR_JITTER
    # Proprioception appended to the condition, flattened over frames (the official `use_low_dim`):
    # (state key, dim) pairs, e.g. (("ee_pos", 3), ("gripper_width", 1)). Empty: vision only, as DROID.
    low_dim: tuple[tuple[str, int], ...] = ()
    n_obs_steps: int = 2
    action_len: int = 16
    action_dim: int = 10
    img_embed_dim: int = 768  # ResNet-18 head width (obs_encoder.embed_dim in the official config)
    embed_dim: int = 768
    timestep_embed_dim: int = 512
    latent_patch_shape: tuple[int, int, int] = (2, 4, 4)
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    num_registers: int = 8
    num_train_steps: int = 100
    num_inference_steps: int = 10
    beta_schedule: str = "squaredcos_cap_v2"
    clip_sample: bool = True
    # Timestep at which the modality a mode marginalises out is held. The official inference
    # uses the first inference timestep (90); training masks video-only samples at 99.
    # Default 90: it reproduces the official sampler (and its published numbers) exactly.
    marginal_timestep: int = 90
    # "droid": 10-d model actions decode to DROID cartesian velocity + gripper; "raw": no codec.
    action_space: str = "droid"
    vae: VAEConfig = field(default_factory=VAEConfig)

    def __post_init__(self) -> None:
        # Normalise lists (from YAML) to tuples so configs hash and compare.
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, list):
                object.__setattr__(self, f.name, tuple(v))
        if isinstance(self.vae, dict):
            object.__setattr__(self, "vae", _build(VAEConfig, self.vae, "vae"))
        if isinstance(self.color_jitter, dict):
            object.__setattr__(self, "color_jitter", _build(ColorJitterConfig, self.color_jitter, "color_jitter"))
        low_dim = self.low_dim.items() if isinstance(self.low_dim, dict) else self.low_dim
        try:
            object.__setattr__(self, "low_dim", tuple((str(k), int(d)) for k, d in low_dim))
        except (TypeError, ValueError):
            raise ConfigError(f"low_dim must map state keys to dims, e.g. {{ee_pos: 3}}, got {self.low_dim!r}") from None
        self.validate()

    # ---- derived shapes -------------------------------------------------------------------
    @property
    def cameras(self) -> tuple[str, ...]:
        """Camera keys in the model's order (the official encoder sorts them)."""
        return tuple(sorted(self.camera_names))

    @property
    def num_views(self) -> int:
        return len(self.camera_names)

    @property
    def latent_hw(self) -> tuple[int, int]:
        d = self.vae.downsample
        return (self.crop_shape[0] // d, self.crop_shape[1] // d)

    @property
    def latent_shape(self) -> tuple[int, int, int, int, int]:
        """(V, C, T, h, w) of the future-observation latents."""
        h, w = self.latent_hw
        return (self.num_views, self.vae.latent_channels, self.n_obs_steps, h, w)

    @property
    def low_dim_keys(self) -> tuple[str, ...]:
        return tuple(k for k, _ in self.low_dim)

    def check_state(self, obs: Any, batch: int | None = None) -> None:
        """Every low-dim key is in `obs` with shape (B, n_obs_steps, dim) (B = `batch` when given)."""
        for key, dim in self.low_dim:
            if key not in obs:
                raise KeyError(f"missing state {key!r}; the model expects low-dim {dict(self.low_dim)}")
            shape = tuple(np.shape(obs[key]))
            if len(shape) != 3 or shape[1:] != (self.n_obs_steps, dim) or batch not in (None, shape[0]):
                raise ValueError(f"state {key!r}: expected ({'B' if batch is None else batch}, {self.n_obs_steps}, "
                                 f"{dim}) floats, got shape {shape}")

    @property
    def global_cond_dim(self) -> int:
        return self.n_obs_steps * (self.num_views * self.img_embed_dim + sum(d for _, d in self.low_dim))

    @property
    def num_obs_tokens(self) -> int:
        pt, ph, pw = self.latent_patch_shape
        h, w = self.latent_hw
        return self.num_views * (self.n_obs_steps // pt) * (h // ph) * (w // pw)

    @property
    def num_tokens(self) -> int:
        return self.action_len + self.num_obs_tokens + self.num_registers

    def validate(self) -> None:
        problems = []
        if self.num_views < 1:
            problems.append("camera_names must name at least one camera")
        if len(set(self.camera_names)) != len(self.camera_names):
            problems.append(f"camera_names has duplicates: {self.camera_names}")
        for name in ("image_shape", "resize_shape", "crop_shape"):
            if len(getattr(self, name)) != 2:
                problems.append(f"{name} must be (H, W), got {getattr(self, name)}")
        if any(c > r for c, r in zip(self.crop_shape, self.resize_shape)):
            problems.append(f"crop_shape {self.crop_shape} exceeds resize_shape {self.resize_shape}")
        pt, ph, pw = self.latent_patch_shape
        h, w = (c // self.vae.downsample for c in self.crop_shape)
        if any(c % self.vae.downsample for c in self.crop_shape):
            problems.append(f"crop_shape {self.crop_shape} must be divisible by the VAE factor {self.vae.downsample}")
        elif h % ph or w % pw or self.n_obs_steps % pt:
            problems.append(
                f"latent shape (T={self.n_obs_steps}, {h}, {w}) is not divisible by latent_patch_shape {self.latent_patch_shape}"
            )
        keys = self.low_dim_keys
        if len(set(keys)) != len(keys) or set(keys) & set(self.camera_names) or any(d < 1 for _, d in self.low_dim):
            problems.append(f"low_dim must give unique state keys (not camera names) with dims >= 1, got {dict(self.low_dim)}")
        if self.embed_dim % self.num_heads:
            problems.append(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if not 0 <= self.marginal_timestep < self.num_train_steps:
            problems.append(f"marginal_timestep must be in [0, {self.num_train_steps}), got {self.marginal_timestep}")
        if self.action_space not in ("droid", "raw"):
            problems.append(f"action_space must be 'droid' or 'raw', got {self.action_space!r}")
        if self.action_space == "droid" and self.action_dim != 10:
            problems.append(f"action_space 'droid' needs action_dim 10, got {self.action_dim}")
        if problems:
            raise ConfigError("invalid model config: " + "; ".join(problems))

    # ---- (de)serialisation ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {**_plain(dataclasses.asdict(self)), "low_dim": dict(self.low_dim)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> "ModelConfig":
        return _build(cls, data, source)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def load(cls, path: str | Path) -> "ModelConfig":
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"{path}: cannot read model config: {e}") from e
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of model settings, got {type(data).__name__}")
        if "model" in data and "dataset" in data:  # an official hydra run config
            return cls.from_official_hydra(data, source=str(path))
        return cls.from_dict(data, source=str(path))

    def replace(self, **changes: Any) -> "ModelConfig":
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_official_hydra(cls, cfg: dict[str, Any], source: str = "config.yaml") -> "ModelConfig":
        """Map the official run's hydra config (model + dataset sections) onto ours.

        The run's `config.yaml` keeps interpolations such as `${obs_num_frames}`; omegaconf
        resolves them (only in the sections read, so hydra-only resolvers are never touched).
        """
        from omegaconf import OmegaConf
        from omegaconf.errors import OmegaConfBaseException

        try:
            root = OmegaConf.create(cfg)
            model = OmegaConf.to_container(root.model, resolve=True)
            cfg = {"model": model, "dataset": OmegaConf.to_container(root.dataset, resolve=True)}
        except (KeyError, OmegaConfBaseException) as e:
            raise ConfigError(f"{source}: cannot resolve the official hydra config: {e}") from e
        try:
            enc = model["obs_encoder"]
            obs_meta = cfg["dataset"]["shape_meta"]["obs"]
            rgb = sorted(k for k, v in obs_meta.items() if v.get("type") == "rgb")
            shapes = {tuple(obs_meta[k]["shape"][:2]) for k in rgb}
            if len(shapes) != 1:
                raise ConfigError(f"{source}: cameras have different shapes {shapes}; one shape is supported")
            if enc.get("vision_backbone", "vit") != "resnet":
                raise ConfigError(f"{source}: only vision_backbone 'resnet' is supported, got {enc.get('vision_backbone')!r}")
            if enc.get("use_low_dim") or enc.get("use_language"):
                raise ConfigError(f"{source}: use_low_dim/use_language checkpoints are not supported")
            action_dim = int(cfg["dataset"]["shape_meta"]["action"]["shape"][0])
            raw_hw = shapes.pop()
            jitter = enc.get("color_jitter")
            return cls(
                camera_names=tuple(rgb),
                image_shape=raw_hw,
                resize_shape=tuple(enc.get("resize_shape") or raw_hw),
                crop_shape=tuple(enc.get("crop_shape") or enc.get("resize_shape") or raw_hw),
                random_crop=bool(enc.get("random_crop", True)),
                color_jitter=_build(ColorJitterConfig, jitter, f"{source}: color_jitter") if jitter else None,
                n_obs_steps=int(enc["num_frames"]),
                action_len=int(model["action_len"]),
                action_dim=action_dim,
                img_embed_dim=int(enc["embed_dim"]),
                embed_dim=int(model["embed_dim"]),
                timestep_embed_dim=int(model["timestep_embed_dim"]),
                latent_patch_shape=tuple(model["latent_patch_shape"]),
                depth=int(model["depth"]),
                num_heads=int(model["num_heads"]),
                mlp_ratio=float(model["mlp_ratio"]),
                qkv_bias=bool(model["qkv_bias"]),
                num_registers=int(model["num_registers"]),
                num_train_steps=int(model["num_train_steps"]),
                num_inference_steps=int(model["num_inference_steps"]),
                beta_schedule=str(model["beta_schedule"]),
                clip_sample=bool(model["clip_sample"]),
                action_space="droid" if action_dim == 10 else "raw",
            )
        except KeyError as e:
            raise ConfigError(f"{source}: official hydra config lacks the key {e}") from e


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def _build(cls: type, data: dict[str, Any], source: str) -> Any:
    try:
        kwargs = checked_fields(cls, data, f"{source} ({cls.__name__})")
    except ValueError as e:
        raise ConfigError(str(e)) from e
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{source}: {e}") from e


# ---- presets ----------------------------------------------------------------------------------
# Small enough to train and serve on a 2-core CPU: DROID's cameras at half resolution,
# a 4-block 256-wide DiT and a quarter-width VAE (same key names as SDXL's).
TINY = ModelConfig(
    image_shape=(90, 160),
    resize_shape=(120, 160),
    crop_shape=(96, 128),
    img_embed_dim=64,
    embed_dim=256,
    timestep_embed_dim=128,
    depth=4,
    num_heads=4,
    num_registers=4,
    vae=VAEConfig(block_out_channels=(32, 64, 128, 128)),
)

def _tiny_on_two_cameras(image_hw: tuple[int, int], crop: tuple[int, int],
                         resize: tuple[int, int] | None = None) -> ModelConfig:
    """`tiny` on the exterior_image_2_left + wrist_image_left cameras at image_hw, resized to `resize`
    (default: image_hw) and randomly cropped to `crop` in training."""
    return dataclasses.replace(TINY, camera_names=("exterior_image_2_left", "wrist_image_left"), image_shape=image_hw,
                               resize_shape=resize or image_hw, crop_shape=crop, latent_patch_shape=(2, 2, 2))


PRESETS: dict[str, ModelConfig] = {
    # The paper's DROID model: 3 views x 2 frames, 180x320 -> 240x320 -> 224, 171 tokens.
    "droid": ModelConfig(color_jitter=OFFICIAL_COLOR_JITTER),
    # LIBERO: 2 views 128x128 -> 240x240 -> 224, 7-d un-normalised actions, 24 registers.
    "libero": ModelConfig(
        camera_names=LIBERO_CAMERAS,
        image_shape=(128, 128),
        resize_shape=(240, 240),
        crop_shape=(224, 224),
        color_jitter=OFFICIAL_COLOR_JITTER,
        action_dim=7,
        num_registers=24,
        action_space="raw",
    ),
    "tiny": TINY,
    # The tiny network on two small cameras, sized for training on a 2-core CPU (docs/results.md).
    "tiny_lowres": _tiny_on_two_cameras((56, 72), crop=(48, 64)),
    # The same network at 128x128, where the sim's cup spans ~6 px in the exterior view, not ~3.
    "tiny_128": _tiny_on_two_cameras((128, 128), crop=(112, 112)),
    # tiny_lowres without the random-crop shift, for fixed cameras: at 56x72 a +-4 px crop shift moves
    # the exterior view as far as the whole range of the cup's randomisation, hiding where the cup is.
    # Same pixel count as tiny_lowres (resized to 48x64, which the 2x2 latent patches divide).
    "tiny_lowres_nocrop": _tiny_on_two_cameras((56, 72), crop=(48, 64), resize=(48, 64)),
}
# tiny_lowres_nocrop that also sees the arm's state: the hand's position, the gripper width and the joints.
# Pixels alone alias "just let go of the lid" with "already left it" (docs/results.md, run 4).
PRESETS["tiny_lowres_proprio"] = dataclasses.replace(
    PRESETS["tiny_lowres_nocrop"], low_dim=(("ee_pos", 3), ("gripper_width", 1), ("q", 7)))


def preset(name: str) -> ModelConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}") from None
