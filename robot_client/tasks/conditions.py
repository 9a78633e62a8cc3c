"""ID and OOD scene conditions (the UWM paper's categories) as appearance-only scene changes.

Each condition changes lights, surfaces or adds static distractors, never the task's own bodies,
so the same seed gives the same task geometry under every condition.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Lighting:
    key_diffuse: tuple = (0.75, 0.75, 0.72)
    key_dir: tuple = (-0.3, 0.2, -1.0)
    fill_diffuse: tuple = (0.3, 0.3, 0.32)
    ambient: tuple = (0.25, 0.25, 0.25)
    moving: bool = False  # L2: the key light sweeps and flashes over time
    flash_hz: float = 1.3
    sweep_hz: float = 0.25


@dataclass(frozen=True)
class Surface:
    builtin: str = "flat"  # MuJoCo builtin texture: flat | checker | gradient
    rgb1: tuple = (0.55, 0.42, 0.3)
    rgb2: tuple = (0.5, 0.38, 0.27)
    repeat: float = 4.0


@dataclass(frozen=True)
class Condition:
    name: str
    category: str  # ID | lighting | background | clutter
    description: str
    lighting: Lighting = field(default_factory=Lighting)
    table: Surface = field(default_factory=Surface)
    background: Surface = field(default_factory=lambda: Surface("gradient", (0.75, 0.77, 0.8), (0.6, 0.62, 0.66), 1.0))
    n_distractors: int = 0


CONDITIONS: dict[str, Condition] = {
    c.name: c
    for c in (
        Condition("ID", "ID", "training-distribution scene"),
        Condition("L1", "lighting", "static lighting change: dim warm light from the side",
                  lighting=Lighting(key_diffuse=(0.95, 0.55, 0.25), key_dir=(0.2, -1.0, -0.35),
                                    fill_diffuse=(0.05, 0.05, 0.1), ambient=(0.12, 0.08, 0.05))),
        Condition("L2", "lighting", "moving, flashing light", lighting=Lighting(moving=True)),
        Condition("B1", "background", "table appearance: patterned tablecloth",
                  table=Surface("checker", (0.85, 0.15, 0.15), (0.95, 0.95, 0.9), 12.0)),
        Condition("B2", "background", "room background: walls and floor repainted",
                  background=Surface("checker", (0.1, 0.45, 0.2), (0.9, 0.85, 0.2), 6.0)),
        Condition("C1", "clutter", "three distractor objects on the table", n_distractors=3),
        Condition("C2", "clutter", "six distractor objects on the table", n_distractors=6),
    )
}


def get_condition(name: str) -> Condition:
    if name not in CONDITIONS:
        raise ValueError(f"unknown condition {name!r}; expected one of {sorted(CONDITIONS)}")
    return CONDITIONS[name]


def light_schedule(lighting: Lighting, t: float) -> tuple[np.ndarray, np.ndarray]:
    """(direction, diffuse) of the key light at sim time t: constant unless the light moves (L2)."""
    direction = np.asarray(lighting.key_dir, float)
    diffuse = np.asarray(lighting.key_diffuse, float)
    if lighting.moving:
        angle = 2 * np.pi * lighting.sweep_hz * t
        direction = np.array([0.8 * np.cos(angle), 0.8 * np.sin(angle), -0.6])
        # Square-ish flashing between bright and dim.
        level = 1.1 if np.sin(2 * np.pi * lighting.flash_hz * t) > 0 else 0.25
        diffuse = diffuse * level
    return direction / np.linalg.norm(direction), diffuse


def distractors_xml(n: int, zones: list, seed: int) -> str:
    """Static, collidable distractors placed in a task's clutter zones (own RNG stream)."""
    if n == 0:
        return ""
    if not zones:
        raise ValueError("condition asks for distractors but the task defines no clutter_zones")
    rng = np.random.default_rng([seed, 7919])
    palette = [(0.9, 0.6, 0.1), (0.2, 0.4, 0.9), (0.6, 0.2, 0.7), (0.1, 0.7, 0.7), (0.95, 0.9, 0.2), (0.3, 0.8, 0.3)]
    bodies = []
    for i in range(n):
        x0, x1, y0, y1 = zones[i % len(zones)]
        x, y = rng.uniform(x0, x1), rng.uniform(y0, y1)
        rgba = " ".join(f"{c:.2f}" for c in palette[i % len(palette)]) + " 1"
        kind = i % 3
        if kind == 0:
            h = rng.uniform(0.02, 0.05)
            geom = f'<geom class="obj" type="box" size="0.03 0.025 {h:.3f}" pos="0 0 {h:.3f}" rgba="{rgba}"/>'
        elif kind == 1:
            h = rng.uniform(0.03, 0.07)
            geom = f'<geom class="obj" type="cylinder" size="0.03 {h:.3f}" pos="0 0 {h:.3f}" rgba="{rgba}"/>'
        else:
            geom = f'<geom class="obj" type="sphere" size="0.03" pos="0 0 0.03" rgba="{rgba}"/>'
        yaw = rng.uniform(0, np.pi)
        bodies.append(f'<body name="distractor{i}" pos="{x:.4f} {y:.4f} 0" euler="0 0 {yaw:.3f}">{geom}</body>')
    return "\n".join(bodies)
