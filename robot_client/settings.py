"""configs/robot_client.yaml -> typed settings (unknown keys are errors naming file and key)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from robot_client.control_loop import LoopConfig
from robot_client.safety import SafetyConfig
from uwm_robot.typed_yaml import dataclass_from_mapping, read_yaml_mapping

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PATH = REPO_ROOT / "configs" / "robot_client.yaml"


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
    samples: int = 1  # embedded server: chunks sampled per request, the medoid executed (policy_server --samples)
    noise_scale: float = 1.0  # embedded server: factor on each chunk's starting noise (policy_server --noise-scale)
    out_root: str = "rollouts"
    control: LoopConfig = field(default_factory=LoopConfig)  # per trial, the task sets rate and length
    sim: SimSettings = field(default_factory=SimSettings)
    safety: SafetyConfig = field(default_factory=SafetyConfig)

    def checkpoint_path(self) -> Path:
        p = Path(self.default_checkpoint)
        return p if p.is_absolute() else REPO_ROOT / p


def load_settings(path: str | Path = DEFAULT_PATH) -> ClientSettings:
    raw = read_yaml_mapping(path, "robot_client settings")
    nested = {"control": LoopConfig, "sim": SimSettings, "safety": SafetyConfig}
    sections = {k: dataclass_from_mapping(cls, raw.pop(k, None) or {}, f"{path}: {k}") for k, cls in nested.items()}
    top = dataclass_from_mapping(ClientSettings, raw, str(path))
    return dataclasses.replace(top, **sections)
