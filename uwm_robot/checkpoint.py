"""Our checkpoint format, and loading it or an official `models.pt` into a `UnifiedWorldModel`.

A checkpoint is a directory (its name is the checkpoint id):

    model.safetensors   every tensor of the model's state dict, the frozen VAE included
                        (float32, or float16 with `fp16=True`)
    config.yaml         `ModelConfig.save`
    normalizer.json     `NormalizerSet.save` (action + low-dim normalisers)
    meta.json           format version, created, source, step, sha256 of model.safetensors
                        (the checkpoint hash), checkpoint id, normalizer hash

No pickle anywhere. `load_checkpoint` also accepts an official `models.pt` (read through the
allow-listed unpickler of `uwm_robot.official_checkpoint`) with its hydra `config.yaml`.
Every problem is a `CheckpointError` that says what is wrong.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from .config import ConfigError, ModelConfig, preset
from .normalizer import FILENAME as NORMALIZER_FILE
from .normalizer import NormalizerError, NormalizerSet

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.yaml"
META_FILE = "meta.json"
_SHOW = 10  # how many key names an error lists before "... and N more"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, damaged, or does not fit the model it should build."""


@dataclass
class LoadedCheckpoint:
    model: nn.Module  # a UnifiedWorldModel in eval mode
    config: ModelConfig
    normalizer: NormalizerSet
    meta: dict[str, Any] = field(default_factory=dict)


# ---- helpers ----------------------------------------------------------------------------------
def file_sha256(path: str | Path, chunk: int = 1 << 24) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:_SHOW])
    return shown + (f", ... and {len(names) - _SHOW} more" if len(names) > _SHOW else "")


def check_state_dict(expected: Mapping[str, torch.Tensor], got: Mapping[str, torch.Tensor], source: str) -> None:
    """CheckpointError naming missing/unexpected keys and shape mismatches; None if `got` fits."""
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    shapes = [
        f"{k}: checkpoint {list(got[k].shape)} vs model {list(expected[k].shape)}"
        for k in expected
        if k in got and tuple(got[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_listing(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_listing(unexpected)}")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatch(es): {_listing(shapes)}")
    if problems:
        raise CheckpointError(f"{source} does not fit the model: " + "; ".join(problems))


def build_model(config: ModelConfig) -> nn.Module:
    from .model import UnifiedWorldModel  # the network is heavy; import it only when building

    return UnifiedWorldModel(config)


def load_state_dict_strict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    check_state_dict(model.state_dict(), state_dict, source)
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as e:  # e.g. a dtype torch cannot copy; keys and shapes were checked above
        raise CheckpointError(f"{source}: load_state_dict failed: {e}") from None


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _tensors_for_safetensors(state_dict: Mapping[str, torch.Tensor], fp16: bool) -> dict[str, torch.Tensor]:
    """Contiguous CPU tensors with no shared storage (safetensors refuses aliasing)."""
    out, seen = {}, set()
    for k, v in state_dict.items():
        t = v.detach().to("cpu")
        if fp16 and t.is_floating_point():
            t = t.to(torch.float16)
        t = t.contiguous()
        storage = t.untyped_storage()
        if storage.data_ptr() in seen or storage.nbytes() != t.numel() * t.element_size():
            t = t.clone()  # a view into a bigger storage, or an alias of an earlier tensor
        seen.add(t.untyped_storage().data_ptr())
        out[k] = t
    return out


# ---- writing ----------------------------------------------------------------------------------
def write_checkpoint(
    out_dir: str | Path,
    state_dict: Mapping[str, torch.Tensor],
    config: ModelConfig,
    normalizer: NormalizerSet,
    meta: Mapping[str, Any] | None = None,
    fp16: bool = False,
) -> Path:
    """Write our format from a state dict (see the module docstring). Returns the directory."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / META_FILE).unlink(missing_ok=True)  # an interrupted overwrite must not look complete
    weights = out / WEIGHTS_FILE
    tmp = weights.with_name(weights.name + ".tmp")
    save_file(
        _tensors_for_safetensors(state_dict, fp16),
        str(tmp),
        # One metadata key only: safetensors writes the metadata map in hash order, and the file
        # hash (the checkpoint hash) must be the same for the same weights.
        metadata={"format": "pt"},
    )
    os.chmod(tmp, 0o644)  # safetensors creates it private; the other files are world-readable too
    os.replace(tmp, weights)
    config.save(out / CONFIG_FILE)
    normalizer.save(out / NORMALIZER_FILE)
    info = {
        "format_version": FORMAT_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "source": "uwm_robot",
        "step": None,
        **dict(meta or {}),
        # Derived from the files just written: never taken from the caller.
        "checkpoint_id": out.resolve().name,
        "checkpoint_hash": file_sha256(weights),
        "normalizer_hash": normalizer.content_hash(),
        "weights_dtype": "float16" if fp16 else "float32",
        "num_tensors": len(state_dict),
    }
    _write_atomic(out / META_FILE, json.dumps(info, indent=1) + "\n")  # last: its presence marks a complete write
    return out


def save_checkpoint(
    out_dir: str | Path,
    model: nn.Module,
    config: ModelConfig,
    normalizer: NormalizerSet,
    meta: Mapping[str, Any] | None = None,
    fp16: bool = False,
) -> Path:
    """Save `model` (its whole state dict, VAE included) with its config and normalisers."""
    return write_checkpoint(out_dir, model.state_dict(), config, normalizer, meta=meta, fp16=fp16)


# ---- reading ----------------------------------------------------------------------------------
def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e}); it may be truncated or corrupt") from None


def _finish(model: nn.Module, device: str | torch.device, dtype: torch.dtype | None) -> nn.Module:
    model.to(device=device, dtype=dtype) if dtype is not None else model.to(device)
    return model.eval()


def read_checkpoint_dir(ckpt_dir: Path, verify: bool = False) -> tuple[ModelConfig, NormalizerSet, dict[str, torch.Tensor], dict]:
    """Our checkpoint directory's config, normaliser, state dict and meta, checked but not built into a model."""
    missing = [n for n in (WEIGHTS_FILE, CONFIG_FILE, NORMALIZER_FILE, META_FILE) if not (ckpt_dir / n).is_file()]
    if missing:
        raise CheckpointError(f"{ckpt_dir}: not a complete uwm_robot checkpoint, missing {missing}")
    try:
        meta = json.loads((ckpt_dir / META_FILE).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{ckpt_dir / META_FILE}: unreadable ({e})") from None
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        found = meta.get("format_version") if isinstance(meta, dict) else meta
        raise CheckpointError(f"{ckpt_dir / META_FILE}: format_version {found!r}, this code reads {FORMAT_VERSION}")
    if verify:
        actual = file_sha256(ckpt_dir / WEIGHTS_FILE)
        if actual != meta.get("checkpoint_hash"):
            raise CheckpointError(
                f"{ckpt_dir / WEIGHTS_FILE}: sha256 {actual} does not match meta.json's {meta.get('checkpoint_hash')}"
            )
    config = ModelConfig.load(ckpt_dir / CONFIG_FILE)
    try:
        normalizer = NormalizerSet.load(ckpt_dir / NORMALIZER_FILE)
    except NormalizerError as e:
        raise CheckpointError(str(e)) from None
    return config, normalizer, _read_safetensors(ckpt_dir / WEIGHTS_FILE), meta


def _load_ours(ckpt_dir: Path, device: str | torch.device, dtype: torch.dtype | None, verify: bool) -> LoadedCheckpoint:
    config, normalizer, state_dict, meta = read_checkpoint_dir(ckpt_dir, verify)
    model = build_model(config)
    load_state_dict_strict(model, state_dict, str(ckpt_dir / WEIGHTS_FILE))
    meta = {**meta, "checkpoint_id": ckpt_dir.resolve().name}
    return LoadedCheckpoint(_finish(model, device, dtype), config, normalizer, meta)


def find_official_config(models_pt: Path) -> Path:
    """The hydra config of an official run: `config.yaml` beside models.pt, or hydra's `.hydra/config.yaml`."""
    for candidate in (models_pt.parent / "config.yaml", models_pt.parent / ".hydra" / "config.yaml"):
        if candidate.is_file():
            return candidate
    raise CheckpointError(
        f"{models_pt}: no config.yaml or .hydra/config.yaml next to it; pass the official run's hydra "
        "config explicitly (config_path=... / --config)"
    )


def read_official_with_config(
    models_pt: str | Path, config_path: str | Path | None = None
) -> tuple[ModelConfig, NormalizerSet, dict[str, torch.Tensor], dict[str, Any]]:
    """Config (VAE widths read off the weights), normalisers, state dict and meta of an official models.pt."""
    from .model.vae import vae_config_from_state_dict
    from .official_checkpoint import read_official

    models_pt = Path(models_pt)
    config_path = Path(config_path) if config_path is not None else find_official_config(models_pt)
    config = ModelConfig.load(config_path)
    official = read_official(models_pt)
    # The official config never names the VAE (the code downloads SDXL's), so its widths come
    # from the weights: the full SDXL VAE for real checkpoints, narrower for test ones.
    config = config.replace(vae=vae_config_from_state_dict(official.state_dict, base=config.vae))
    normalizer = official.normalizers(config.action_dim)
    meta = {
        "source": f"official:{models_pt.name}",
        "official_config": str(config_path),
        "official_sha256": file_sha256(models_pt),
        "step": official.step,
    }
    return config, normalizer, official.state_dict, meta


def _load_official(
    models_pt: Path, config_path: str | Path | None, device: str | torch.device, dtype: torch.dtype | None
) -> LoadedCheckpoint:
    config, normalizer, state_dict, meta = read_official_with_config(models_pt, config_path)
    model = build_model(config)
    load_state_dict_strict(model, state_dict, str(models_pt))
    meta = {
        "format_version": None,
        "checkpoint_id": models_pt.parent.name or models_pt.stem,
        "checkpoint_hash": meta["official_sha256"],
        "normalizer_hash": normalizer.content_hash(),
        **meta,
    }
    return LoadedCheckpoint(_finish(model, device, dtype), config, normalizer, meta)


def load_checkpoint(
    path: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    config_path: str | Path | None = None,
    verify: bool = False,
) -> LoadedCheckpoint:
    """Load our checkpoint directory (or its model.safetensors), or an official `models.pt`.

    `dtype` casts the model after loading (None keeps float32); `config_path` is the hydra
    config of an official checkpoint (default: found next to it); `verify` re-hashes our weights
    file against meta.json.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or directory")
    if path.is_dir():
        if (path / "models.pt").is_file() and not (path / WEIGHTS_FILE).exists():
            return _load_official(path / "models.pt", config_path, device, dtype)
        return _load_ours(path, device, dtype, verify)
    if path.name == WEIGHTS_FILE:
        return _load_ours(path.parent, device, dtype, verify)
    if path.suffix in (".pt", ".pth", ".ckpt"):
        return _load_official(path, config_path, device, dtype)
    raise CheckpointError(
        f"{path}: expected a uwm_robot checkpoint directory, its {WEIGHTS_FILE}, or an official models.pt"
    )


# ---- producing checkpoints --------------------------------------------------------------------
def convert_official(
    models_pt: str | Path, config_yaml: str | Path | None, out_dir: str | Path, fp16: bool = False
) -> Path:
    """Official `models.pt` + hydra config -> our format; checked by a strict load into our model."""
    models_pt = Path(models_pt)
    config, normalizer, state_dict, meta = read_official_with_config(models_pt, config_yaml)
    load_state_dict_strict(build_model(config), state_dict, str(models_pt))
    return write_checkpoint(out_dir, state_dict, config, normalizer, meta=meta, fp16=fp16)


def init_checkpoint(preset_name: str, out_dir: str | Path, seed: int = 0, fp16: bool = False) -> Path:
    """A randomly initialised checkpoint of a preset (for tests, demos and training from scratch).

    Normaliser: DROID-style actions get scale 1 / offset 0 (the model's [-1, 1] range is taken
    as the action range); raw (LIBERO) actions get the identity; low-dim inputs are left unscaled.
    """
    config = preset(preset_name)
    with torch.random.fork_rng(devices=[]):  # seed the init without disturbing the caller's RNG
        torch.manual_seed(seed)
        model = build_model(config)
    normalizer = NormalizerSet.default(config.action_dim, identity=config.action_space == "raw", low_dim=config.low_dim)
    return save_checkpoint(out_dir, model, config, normalizer, meta={"source": f"init:{preset_name}", "seed": seed}, fp16=fp16)


__all__ = [
    "CheckpointError",
    "ConfigError",
    "LoadedCheckpoint",
    "check_state_dict",
    "convert_official",
    "file_sha256",
    "init_checkpoint",
    "load_checkpoint",
    "read_checkpoint_dir",
    "save_checkpoint",
    "write_checkpoint",
]
