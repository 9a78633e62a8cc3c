"""The `uwm_robot` command: checkpoint tools (more subcommands register themselves here).

    uwm_robot convert <models.pt> [--config <config.yaml>] --out <dir> [--fp16]
    uwm_robot init --preset tiny|droid|libero --out <dir> [--seed N] [--fp16]
    uwm_robot average <ckpt> <ckpt> [...] [--weights W ...] --out <dir> [--fp16]

A subcommand is a function `register(subparsers)` that adds its parser and sets
`func=<handler(args) -> int>`; add it to `REGISTRARS`. Bad checkpoints or configs print one
line on stderr and exit with status 2 (no traceback).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from . import export as _export
from .config import PRESETS, ConfigError

EXIT_USER_ERROR = 2


def _summary(out: Path) -> str:
    import json

    meta = json.loads((out / "meta.json").read_text())
    size_mb = (out / "model.safetensors").stat().st_size / 1e6
    step = "" if meta.get("step") is None else f", step {meta['step']}"
    return f"{meta['num_tensors']} tensors, {size_mb:.1f} MB {meta['weights_dtype']}{step}, sha256 {meta['checkpoint_hash'][:12]}"


def add_checkpoint_output_args(p: argparse.ArgumentParser) -> None:
    """--out and --fp16, for the subcommands that write a checkpoint."""
    p.add_argument("--out", type=Path, required=True, help="output checkpoint directory")
    p.add_argument("--fp16", action="store_true", help="store weights as float16")


# ---- convert ----------------------------------------------------------------------------------
def _convert(args: argparse.Namespace) -> int:
    from .checkpoint import convert_official

    out = convert_official(args.models_pt, args.config, args.out, fp16=args.fp16)
    print(f"converted {args.models_pt} -> {out} ({_summary(out)})")
    return 0


def register_convert(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("convert", help="official models.pt -> uwm_robot checkpoint directory")
    p.add_argument("models_pt", type=Path, help="official checkpoint (torch zip written by train.py)")
    p.add_argument("--config", type=Path, default=None, help="the run's hydra config.yaml (default: next to models.pt)")
    add_checkpoint_output_args(p)
    p.set_defaults(func=_convert)


# ---- init -------------------------------------------------------------------------------------
def _init(args: argparse.Namespace) -> int:
    from .checkpoint import init_checkpoint

    out = init_checkpoint(args.preset, args.out, seed=args.seed, fp16=args.fp16)
    print(f"initialised {args.preset} checkpoint (seed {args.seed}) -> {out} ({_summary(out)})")
    return 0


def register_init(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("init", help="randomly initialised checkpoint of a preset")
    p.add_argument("--preset", choices=sorted(PRESETS), required=True)
    p.add_argument("--seed", type=int, default=0)
    add_checkpoint_output_args(p)
    p.set_defaults(func=_init)


def register_bench(subparsers: argparse._SubParsersAction) -> None:
    from .bench import register

    register(subparsers)


def register_finetune(subparsers: argparse._SubParsersAction) -> None:
    from .finetune import register

    register(subparsers)


def register_average(subparsers: argparse._SubParsersAction) -> None:
    from .weight_average import register

    register(subparsers)


REGISTRARS: list[Callable[[argparse._SubParsersAction], None]] = [
    register_convert, register_init, register_bench, _export.register, register_finetune, register_average]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="uwm_robot", description="UWM checkpoint and model tools")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in REGISTRARS:
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .checkpoint import CheckpointError
    from .normalizer import NormalizerError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (CheckpointError, ConfigError, NormalizerError) as e:
        print(f"uwm_robot {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
