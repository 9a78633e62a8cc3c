"""configs/sim.yaml -> SimConfig (unknown keys are errors that name the file and key)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import yaml

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "configs" / "sim.yaml"


@dataclass(frozen=True)
class SimConfig:
    mode: str = "lockstep"  # lockstep | realtime
    rt_factor: float = 1.0  # realtime only: sim seconds per wall second
    timestep: float = 0.001  # physics step, s
    control_dt: float = 0.005  # how often servo targets/feed-forward are refreshed, s
    camera_width: int = 128
    camera_height: int = 128
    depth: bool = True
    camera_names: tuple = ("exterior_image_1_left", "exterior_image_2_left", "wrist_image_left")


def load_sim_config(path: str | Path = DEFAULT_PATH) -> SimConfig:
    path = Path(path)
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    known = {f.name for f in dataclasses.fields(SimConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown}; allowed: {sorted(known)}")
    if "camera_names" in raw:
        raw["camera_names"] = tuple(raw["camera_names"])
    return SimConfig(**raw)
