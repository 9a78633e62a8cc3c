"""`uwm_robot average`: a weighted average of checkpoints' weights (a "model soup" / WiSE-FT).

Finetuning a policy on a new round can cost what it knew before; interpolating the finetuned
weights with the ones it started from (Wortsman et al., "Robust fine-tuning of zero-shot models",
2022) often keeps both. Only checkpoints of one model config and one normaliser are averaged: the
same weights under another action normaliser mean other actions.

    uwm_robot average A B [C ...] [--weights 0.5 0.5 ...] --out DIR [--fp16]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import torch

from .checkpoint import (WEIGHTS_FILE, CheckpointError, build_model, check_state_dict, read_checkpoint_dir,
                         write_checkpoint)
from .config import ModelConfig
from .normalizer import NormalizerSet


def _read(path: Path) -> tuple[ModelConfig, NormalizerSet, dict[str, torch.Tensor], dict]:
    return read_checkpoint_dir(path.parent if path.name == WEIGHTS_FILE else path)


def ingredient(path: Path, meta: dict, weight: float) -> dict:
    """What the average's meta.json keeps of one input: enough to tell what it was trained from."""
    return {"path": str(path), "hash": meta.get("checkpoint_hash"), "weight": weight,
            **{k: meta.get(k) for k in ("source", "step", "episodes")}}


def average_checkpoints(paths: Sequence[str | Path], out_dir: str | Path, weights: Sequence[float] | None = None,
                        fp16: bool = False) -> Path:
    """Write the weighted average of the checkpoints at `paths` to `out_dir` (weights default to equal
    and are scaled to sum to 1). Float tensors are averaged in float32; any other tensor must agree."""
    paths = [Path(p) for p in paths]
    if len(paths) < 2:
        raise CheckpointError(f"averaging needs at least 2 checkpoints, got {len(paths)}")
    weights = [1.0] * len(paths) if weights is None else [float(w) for w in weights]
    if len(weights) != len(paths):
        raise CheckpointError(f"{len(weights)} weights for {len(paths)} checkpoints: give one weight per checkpoint")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise CheckpointError(f"weights must be >= 0 with a positive sum, got {weights}")
    scale = sum(weights)
    weights = [w / scale for w in weights]

    config, normalizer, first, first_meta = _read(paths[0])
    expected = build_model(config).state_dict()  # every input's keys and shapes are checked against the model
    check_state_dict(expected, first, str(paths[0]))
    total = {k: v.float() * weights[0] if v.is_floating_point() else v for k, v in first.items()}
    sources = [ingredient(paths[0], first_meta, weights[0])]
    for path, w in zip(paths[1:], weights[1:]):
        cfg, norm, state, meta = _read(path)
        if cfg != config:
            raise CheckpointError(f"{path}: its model config differs from {paths[0]}'s; only checkpoints of one "
                                  "architecture can be averaged")
        if norm.content_hash() != normalizer.content_hash():
            raise CheckpointError(f"{path}: its normaliser differs from {paths[0]}'s, so its weights map to other "
                                  "actions; average only checkpoints finetuned with --normalizer init from one parent")
        check_state_dict(expected, state, str(path))
        for k, v in state.items():
            if v.is_floating_point():
                total[k] += v.float() * w
            elif not torch.equal(v, total[k]):
                raise CheckpointError(f"{path}: non-float tensor {k} differs from {paths[0]}'s and cannot be averaged")
        sources.append(ingredient(path, meta, w))
    return write_checkpoint(out_dir, total, config, normalizer, fp16=fp16,
                            meta={"source": "uwm_robot average", "averaged": sources})


def _average(args: argparse.Namespace) -> int:
    from .cli import _summary

    out = average_checkpoints(args.checkpoints, args.out, weights=args.weights, fp16=args.fp16)
    print(f"averaged {len(args.checkpoints)} checkpoints -> {out} ({_summary(out)})")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from .cli import add_checkpoint_output_args

    p = subparsers.add_parser("average", help="weighted average of checkpoints' weights (model soup / WiSE-FT)")
    p.add_argument("checkpoints", nargs="+", type=Path, help="checkpoint directories of one config and normaliser")
    p.add_argument("--weights", nargs="+", type=float, default=None, help="one per checkpoint (default: equal)")
    add_checkpoint_output_args(p)
    p.set_defaults(func=_average)
