"""configs/sim.yaml -> SimConfig (unknown keys are errors that name the file and key)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from uwm_robot.typed_yaml import dataclass_from_mapping, read_yaml_mapping

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
    return dataclass_from_mapping(SimConfig, read_yaml_mapping(path, "sim config"), str(path))
