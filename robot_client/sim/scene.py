"""Assemble a full scene MJCF: room, table, lights, cameras, the Panda, a task's bodies, distractors."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from robot_client.sim import panda_mjcf as panda
from robot_client.tasks.conditions import Condition, Surface


@dataclass(frozen=True)
class CameraSpec:
    """A camera looking from `pos` at `target` (in its parent body's frame); image-up follows `up`."""

    name: str
    pos: tuple
    target: tuple
    fovy: float
    body: str = "world"
    up: tuple = (0.0, 0.0, 1.0)


# DROID roles: two exterior cameras on either side of the workspace and one on the hand.
# Names are the UWM model's camera keys.
DEFAULT_CAMERAS = (
    CameraSpec("exterior_image_1_left", (0.75, 0.85, 0.6), (0.3, 0.0, 0.25), 60.0),
    CameraSpec("exterior_image_2_left", (0.75, -0.85, 0.6), (0.3, 0.0, 0.25), 60.0),
    # Hand frame: mounted beside the hand, looking past the fingertips; image-up points away from them.
    CameraSpec("wrist_image_left", (0.07, 0.0, 0.03), (0.0, 0.0, 0.2), 70.0, body="panda_hand", up=(1.0, 0.0, 0.0)),
)


def look_at_xyaxes(pos, target, up) -> str:
    forward = np.asarray(target, float) - np.asarray(pos, float)
    forward /= np.linalg.norm(forward)
    x_axis = np.cross(forward, np.asarray(up, float))
    x_axis /= np.linalg.norm(x_axis)
    y_axis = np.cross(x_axis, forward)
    return " ".join(f"{v:.6f}" for v in np.concatenate([x_axis, y_axis]))


def camera_xml(spec: CameraSpec) -> str:
    pos = " ".join(f"{v:.4f}" for v in spec.pos)
    return (f'<camera name="{spec.name}" pos="{pos}" xyaxes="{look_at_xyaxes(spec.pos, spec.target, spec.up)}" '
            f'fovy="{spec.fovy}"/>')


def _vec(values) -> str:
    return " ".join(f"{v:.3f}" for v in values)


def _texture(name: str, surface: Surface) -> str:
    return (f'<texture name="{name}" type="2d" builtin="{surface.builtin}" rgb1="{_vec(surface.rgb1)}" '
            f'rgb2="{_vec(surface.rgb2)}" width="64" height="64"/>'
            f'<material name="{name}" texture="{name}" texrepeat="{surface.repeat} {surface.repeat}" texuniform="true"/>')


def build_scene_xml(task_assets: str, task_bodies: str, condition: Condition, distractors: str = "",
                    cameras=DEFAULT_CAMERAS, timestep: float = 0.001) -> str:
    light = condition.lighting
    world_cams = "\n".join(camera_xml(c) for c in cameras if c.body == "world")
    hand_cams = "\n".join(camera_xml(c) for c in cameras if c.body == "panda_hand")
    other = [c.body for c in cameras if c.body not in ("world", "panda_hand")]
    if other:
        raise ValueError(f"cameras can be mounted on 'world' or 'panda_hand', got {other}")
    return f"""<mujoco model="uwm_sim">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{timestep}" integrator="implicitfast" cone="elliptic" impratio="10"/>
  <visual>
    <quality offsamples="0" shadowsize="0" numslices="12" numstacks="6"/>
    <global offwidth="640" offheight="480"/>
    <headlight ambient="{_vec(light.ambient)}" diffuse="0.15 0.15 0.15" specular="0 0 0"/>
    <map znear="0.01" zfar="30"/>
  </visual>
  <default>
    {panda.panda_defaults_xml()}
    <default class="obj">
      <geom contype="1" conaffinity="3" condim="3" friction="1 0.005 0.0001" group="0"/>
    </default>
    <default class="decor">
      <geom contype="0" conaffinity="0" group="2"/>
    </default>
  </default>
  <asset>
    {panda.panda_assets_xml()}
    {_texture("table", condition.table)}
    {_texture("room", condition.background)}
    {task_assets}
  </asset>
  <worldbody>
    <light name="key" directional="true" pos="0 0 2" dir="{_vec(light.key_dir)}" diffuse="{_vec(light.key_diffuse)}" specular="0.1 0.1 0.1" castshadow="false"/>
    <light name="fill" directional="true" pos="0 0 2" dir="0.4 -0.3 -1" diffuse="{_vec(light.fill_diffuse)}" specular="0 0 0" castshadow="false"/>
    <geom name="table" class="obj" type="box" size="0.65 0.75 0.025" pos="0.4 0 -0.025" material="table"/>
    <geom class="decor" type="box" size="0.05 0.05 0.36" pos="0.95 0.65 -0.41" rgba="0.3 0.3 0.3 1"/>
    <geom class="decor" type="box" size="0.05 0.05 0.36" pos="0.95 -0.65 -0.41" rgba="0.3 0.3 0.3 1"/>
    <!-- The floor catches what falls off the table (contype 2 meets the objects' conaffinity 3); else it falls forever. -->
    <geom name="floor" class="decor" contype="2" type="plane" size="4 4 0.1" pos="0 0 -0.77" material="room"/>
    <geom class="decor" type="box" size="0.02 2.5 1.5" pos="2.0 0 0.5" material="room"/>
    <geom class="decor" type="box" size="2.5 0.02 1.5" pos="0.3 1.9 0.5" material="room"/>
    <geom class="decor" type="box" size="2.5 0.02 1.5" pos="0.3 -1.9 0.5" material="room"/>
    <geom class="decor" type="box" size="0.02 2.5 1.5" pos="-1.5 0 0.5" material="room"/>
    {world_cams}
    {panda.panda_body_xml(wrist_camera_xml=hand_cams)}
    {task_bodies}
    {distractors}
  </worldbody>
  {panda.panda_tendon_equality_xml()}
  <actuator>
    {panda.panda_actuators_xml()}
  </actuator>
</mujoco>"""
