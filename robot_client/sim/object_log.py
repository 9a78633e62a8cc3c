"""Ground truth of the scene's objects per control tick in sim episodes (`object_state.npz` beside steps.bin).

The episode records what the robot and its cameras saw; this adds what only the sim knows: every
hinge/slide angle (the rice cooker's lid) and every free body's position (the cup, distractors).
The success check keeps only the furthest stage reached, so without this a lid that was opened and
then fell shut again reads as "lid opened" (docs/results.md, run 18).
"""
from __future__ import annotations

from pathlib import Path

import mujoco
import numpy as np

from robot_client.sim import panda_mjcf as panda

OBJECT_STATE_FILE = "object_state.npz"
_ROBOT_JOINTS = set(panda.ARM_JOINTS) | set(panda.FINGER_JOINTS)


class ObjectStateLog:
    """A control-loop `on_step` observer that samples the objects at every recorded tick;
    `save(episode_dir)` writes `t` and one array per object: `<joint>` (angle or slide, (N,)) or
    `<body>` (a free body's world position, (N, 3))."""

    def __init__(self, world) -> None:
        model = world.model
        self._data = world.data
        self._fields: list[tuple[str, int, int]] = []  # (name, qpos address, size)
        for j in range(model.njnt):
            name = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, j)
            if name in _ROBOT_JOINTS:
                continue
            kind = mujoco.mjtJoint(int(model.jnt_type[j]))
            if kind == mujoco.mjtJoint.mjJNT_FREE:
                name, size = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, model.jnt_bodyid[j]), 3
            elif kind in (mujoco.mjtJoint.mjJNT_HINGE, mujoco.mjtJoint.mjJNT_SLIDE):
                size = 1
            else:
                continue
            self._fields.append((name or f"joint{j}", int(model.jnt_qposadr[j]), size))
        # qpos indices of every field, in order: one gather per tick
        self._index = np.array([adr + k for _, adr, size in self._fields for k in range(size)], dtype=np.intp)
        self._t: list[float] = []
        self._rows: list[np.ndarray] = []

    @property
    def names(self) -> list[str]:
        return [name for name, _, _ in self._fields]

    def on_step(self, record, frames=None) -> None:
        self._t.append(float(record.t))
        self._rows.append(self._data.qpos[self._index])  # fancy indexing: a copy, not a view

    def save(self, directory: str | Path) -> Path:
        rows = np.array(self._rows, dtype=np.float64).reshape(len(self._rows), len(self._index))  # (0, width) if no tick ran
        arrays, col = {"t": np.array(self._t, dtype=np.float64)}, 0
        for name, _, size in self._fields:
            arrays[name] = rows[:, col] if size == 1 else rows[:, col:col + size]
            col += size
        path = Path(directory) / OBJECT_STATE_FILE
        np.savez_compressed(path, **arrays)
        return path


def load_object_state(episode_dir: str | Path) -> dict[str, np.ndarray]:
    """`t` and one array per object, as `ObjectStateLog.save` wrote them (sim episodes only)."""
    path = Path(episode_dir) / OBJECT_STATE_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: no object state (recorded by sim trials only, from this version on)")
    with np.load(path) as f:
        return {k: f[k] for k in f.files}
