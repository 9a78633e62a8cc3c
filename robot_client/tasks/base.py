"""What a task is: instruction, timing, ID/OOD conditions, scene bodies, randomised reset, success check."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from robot_client.tasks.conditions import CONDITIONS, Condition, get_condition
from uwm_robot.typed_yaml import checked_fields, read_yaml_mapping

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "tasks"


@dataclass(frozen=True)
class TaskConfig:
    name: str
    instruction: str
    control_hz: float = 15.0
    max_duration_s: float = 60.0
    conditions: tuple = ("ID", "L1", "L2", "B1", "B2", "C1", "C2")
    clutter_zones: tuple = ()  # (xmin, xmax, ymin, ymax) rectangles where distractors may go
    randomization: dict = field(default_factory=dict)  # task-specific ranges, metres/radians


def load_task_config(path: str | Path) -> TaskConfig:
    """YAML -> TaskConfig, rejecting unknown keys and unknown conditions with the file name in the message."""
    raw = checked_fields(TaskConfig, read_yaml_mapping(path, "task config"), str(path))
    for key in ("name", "instruction"):
        if key not in raw:
            raise ValueError(f"{path}: missing required key {key!r}")
    bad = [c for c in raw.get("conditions", []) if c not in CONDITIONS]
    if bad:
        raise ValueError(f"{path}: unknown condition(s) {bad}; known: {sorted(CONDITIONS)}")
    raw["conditions"] = tuple(raw.get("conditions", TaskConfig.conditions))
    raw["clutter_zones"] = tuple(tuple(float(v) for v in zone) for zone in raw.get("clutter_zones", ()))
    for zone in raw["clutter_zones"]:
        if len(zone) != 4:
            raise ValueError(f"{path}: each clutter zone must be [xmin, xmax, ymin, ymax], got {list(zone)}")
    return TaskConfig(**raw)


class SuccessCheck(ABC):
    """Called once per control step; remembers progress (tasks are multi-stage)."""

    stages: tuple[str, ...] = ()  # names of the sub-goals a multi-stage check tracks, in order

    def __init__(self, world) -> None:
        self.world = world
        self.success = False
        self.stage = 0  # sub-goals reached so far (partial progress of a failed trial)

    def update(self) -> bool:
        if not self.success:
            self.success = bool(self._update())
        return self.success

    @abstractmethod
    def _update(self) -> bool: ...


class Task(ABC):
    """A tabletop task: MJCF bodies with fixed geometry, a seeded randomised initial state, a success check."""

    def __init__(self, config: TaskConfig) -> None:
        self.config = config

    name = property(lambda self: self.config.name)
    instruction = property(lambda self: self.config.instruction)
    control_hz = property(lambda self: self.config.control_hz)
    max_duration_s = property(lambda self: self.config.max_duration_s)

    @property
    def conditions(self) -> dict[str, Condition]:
        return {name: get_condition(name) for name in self.config.conditions}

    def condition(self, name: str) -> Condition:
        if name not in self.config.conditions:
            raise ValueError(f"task {self.name!r} has no condition {name!r}; it has {list(self.config.conditions)}")
        return get_condition(name)

    def uniform(self, rng: np.random.Generator, key: str) -> np.ndarray:
        """Draw from the [low, high] range named `key` in the task's randomization config."""
        if key not in self.config.randomization:
            raise KeyError(f"task {self.name!r}: randomization has no {key!r}")
        low, high = (np.asarray(v, float) for v in self.config.randomization[key])
        return rng.uniform(low, high)

    @abstractmethod
    def assets_xml(self) -> str: ...

    @abstractmethod
    def bodies_xml(self) -> str:
        """Task bodies at nominal poses; `reset` moves them (so geometry is identical for every seed/condition)."""

    @abstractmethod
    def reset(self, world, rng: np.random.Generator) -> dict:
        """Randomise the initial state in place; returns what was drawn (for logs)."""

    @abstractmethod
    def success_check(self, world) -> SuccessCheck: ...

    @abstractmethod
    def expert(self, env):
        """A scripted expert that solves the task through env.robot / env.gripper."""

    def off_course(self, env) -> str | None:
        """Why an expert watching a policy would take the arm now (None: let it carry on). Tasks add
        their own rules; an expert takeover also steps in when a stage stalls."""
        return None


def set_free_body_pose(world, body: str, pos, yaw: float = 0.0) -> None:
    """Place a free-jointed body (before a run starts)."""
    joint = world.model.body(body).jntadr[0]
    adr = world.model.jnt_qposadr[joint]
    world.data.qpos[adr:adr + 3] = pos
    world.data.qpos[adr + 3:adr + 7] = (np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2))


def set_body_pos(world, body: str, pos) -> None:
    """Move a fixed (jointless) body by editing the model: geometry stays identical, only placement changes."""
    world.model.body_pos[world.model.body(body).id] = pos


def touching(world, body_a: str, body_names: tuple) -> bool:
    """Is any geom of body_a in contact with a geom of one of body_names (e.g. the fingers)?"""
    m, d = world.model, world.data
    a = m.body(body_a).id
    others = {m.body(n).id for n in body_names}
    for i in range(d.ncon):
        b1, b2 = m.geom_bodyid[d.contact[i].geom1], m.geom_bodyid[d.contact[i].geom2]
        if (b1 == a and b2 in others) or (b2 == a and b1 in others):
            return True
    return False


FINGERS = ("panda_leftfinger", "panda_rightfinger")
