"""Block into cabinet: pick a cube from the table and put it inside an open-front cabinet.

The cabinet's opening faces the robot. The block is picked top-down, then carried in with the
hand tilted forward so only the fingers and hand pass under the cabinet roof.
"""
from __future__ import annotations

import numpy as np

from robot_client.tasks.base import FINGERS, SuccessCheck, Task, set_body_pos, set_free_body_pose, touching
from robot_client.tasks.expert import Gripper, Move, ScriptedExpert, hand_rotation

BLOCK_HALF = 0.02
CABINET_HALF = np.array([0.11, 0.15, 0.16])  # outer half-extents (depth x, width y, height z)
PANEL = 0.01  # panel thickness
HOLD_S = 0.5
TILT = np.deg2rad(30)  # hand approach tilted forward from vertical while carrying in


class BlockCabinetCheck(SuccessCheck):
    """Block centre inside the cabinet interior, resting (slow) and let go of, for HOLD_S."""

    def __init__(self, world) -> None:
        super().__init__(world)
        self._since: float | None = None

    def _update(self) -> bool:
        if not self._placed():
            self._since = None
            return False
        self._since = self.world.data.time if self._since is None else self._since
        return self.world.data.time - self._since >= HOLD_S

    def _placed(self) -> bool:
        m, d = self.world.model, self.world.data
        site = m.site("cabinet_interior")
        local = d.site_xmat[site.id].reshape(3, 3).T @ (d.xpos[m.body("block").id] - d.site_xpos[site.id])
        inside = bool(np.all(np.abs(local) <= site.size))
        joint = m.body("block").jntadr[0]
        resting = np.linalg.norm(d.qvel[m.jnt_dofadr[joint]:m.jnt_dofadr[joint] + 3]) < 0.02
        return inside and resting and not touching(self.world, "block", FINGERS)


class BlockCabinetTask(Task):
    def assets_xml(self) -> str:
        return """
    <material name="cabinet" rgba="0.35 0.3 0.45 1" specular="0.2"/>
    <material name="block" rgba="0.95 0.55 0.1 1"/>"""

    def bodies_xml(self) -> str:
        hx, hy, hz = CABINET_HALF
        t = PANEL / 2
        panels = [
            ((hx, hy, t), (0, 0, t)),  # floor
            ((hx, hy, t), (0, 0, 2 * hz - t)),  # roof
            ((t, hy, hz), (hx - t, 0, hz)),  # back
            ((hx, t, hz), (0, hy - t, hz)),  # sides
            ((hx, t, hz), (0, -hy + t, hz)),
        ]
        geoms = "".join(
            f'<geom class="obj" type="box" size="{s[0]:.4f} {s[1]:.4f} {s[2]:.4f}" pos="{p[0]:.4f} {p[1]:.4f} {p[2]:.4f}" '
            'material="cabinet"/>' for s, p in panels)
        interior = f'<site name="cabinet_interior" type="box" size="{hx - PANEL:.4f} {hy - PANEL:.4f} {hz - PANEL:.4f}" ' \
                   f'pos="0 0 {hz:.4f}" group="4"/>'
        return f"""
    <body name="cabinet" pos="0.63 0.15 0">{geoms}{interior}</body>
    <body name="block" pos="0.43 -0.18 {BLOCK_HALF}">
      <freejoint/>
      <geom class="obj" type="box" size="{BLOCK_HALF} {BLOCK_HALF} {BLOCK_HALF}" mass="0.05" material="block"/>
    </body>"""

    def reset(self, world, rng) -> dict:
        block_xy = self.uniform(rng, "block_xy")
        block_yaw = float(self.uniform(rng, "block_yaw"))
        cabinet_xy = self.uniform(rng, "cabinet_xy")
        set_body_pos(world, "cabinet", [cabinet_xy[0], cabinet_xy[1], 0.0])
        set_free_body_pose(world, "block", [block_xy[0], block_xy[1], BLOCK_HALF], block_yaw)
        return {"block_xy": block_xy.tolist(), "block_yaw": block_yaw, "cabinet_xy": cabinet_xy.tolist()}

    def success_check(self, world) -> SuccessCheck:
        return BlockCabinetCheck(world)

    def expert(self, env) -> ScriptedExpert:
        return ScriptedExpert(env, block_cabinet_plan(env))


def block_cabinet_plan(env):
    world = env.world
    m, d = world.model, world.data
    block = d.xpos[m.body("block").id].copy()
    yaw = float(np.arctan2(d.xmat[m.body("block").id][3], d.xmat[m.body("block").id][0]))
    cabinet = m.body_pos[m.body("cabinet").id].copy()
    # Top-down pick with the fingers across the block's faces; carry tilted (approach toward +x and down).
    # A parallel grip is symmetric: of the two finger-axis signs take the one near home's (0, -1, 0),
    # so the wrist never has to turn half a revolution into joint 7's limit.
    finger_axis = np.array([-np.sin(yaw), np.cos(yaw), 0.0])
    finger_axis *= -np.sign(finger_axis[1]) or 1.0
    pick = hand_rotation((0.0, 0.0, -1.0), finger_axis)
    carry = hand_rotation((np.sin(TILT), 0.0, -np.cos(TILT)), (0.0, -1.0, 0.0))
    grasp_at = block + np.array([0.0, 0.0, 0.005])
    yield Gripper("goto", 0.07)
    yield Move(grasp_at + np.array([0, 0, 0.1]), pick, speed=0.6, tol=0.01)
    yield Move(grasp_at, pick, speed=0.25, tol=0.003)
    yield Gripper("grasp", 2 * BLOCK_HALF, epsilon=0.008)
    yield Move(grasp_at + np.array([0, 0, 0.1]), carry, speed=0.4, tol=0.01, rot_tol=0.05)
    front = cabinet[0] - CABINET_HALF[0]
    height = 0.065  # block centre while carried in: clears the floor panel, hand stays under the roof
    yield Move(np.array([front - 0.06, cabinet[1], height]), carry, speed=0.5, tol=0.008)
    place = np.array([cabinet[0] - 0.04, cabinet[1], height])
    yield Move(place, carry, speed=0.25, tol=0.005)
    yield Gripper("goto", 0.07)
    yield Move(np.array([front - 0.1, cabinet[1], height + 0.02]), carry, speed=0.35, tol=0.01)
    yield Move(np.array([front - 0.15, cabinet[1], 0.25]), pick, speed=0.5, tol=0.02, rot_tol=0.1)
