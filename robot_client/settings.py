"""configs/robot_client.yaml -> typed settings (unknown keys are errors naming file and key)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from robot_client.safety import SafetyConfig
from uwm_robot.typed_yaml import dataclass_from_mapping, read_yaml_mapping

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PATH = REPO_ROOT / "configs" / "robot_client.yaml"


@dataclass(frozen=True)
class ControlSettings:
    control_hz: float = 15.0
    execute_k: int = 8
    blend_steps: int = 0
    request_margin_ticks: int = 1
    initial_latency_s: float = 0.3
    gripper_speed: float = 0.1
    gripper_force: float = 20.0


@dataclass(frozen=True)
class SimSettings:
    mode: str = "lockstep"
    sim_latency_s: float = 0.2


@dataclass(frozen=True)
class ClientSettings:
    robot: str = "sim"
    server: str | None = None
    default_checkpoint: str = "checkpoints/rice_cooker_tiny"
    device: str = "cpu"
    out_root: str = "rollouts"
    control: ControlSettings = field(default_factory=ControlSettings)
    sim: SimSettings = field(default_factory=SimSettings)
    safety: SafetyConfig = field(default_factory=SafetyConfig)

    def checkpoint_path(self) -> Path:
        p = Path(self.default_checkpoint)
        return p if p.is_absolute() else REPO_ROOT / p


def load_settings(path: str | Path = DEFAULT_PATH) -> ClientSettings:
    raw = read_yaml_mapping(path, "robot_client settings")
    nested = {"control": ControlSettings, "sim": SimSettings, "safety": SafetyConfig}
    sections = {k: dataclass_from_mapping(cls, raw.pop(k, None) or {}, f"{path}: {k}") for k, cls in nested.items()}
    top = dataclass_from_mapping(ClientSettings, raw, str(path))
    return dataclasses.replace(top, **sections)
