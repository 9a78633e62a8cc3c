"""Stack bowls: put the small bowl into the large one.

MuJoCo collides convex shapes, so each bowl is a floor disc plus N wall boxes (few contacts, fast).
"""
from __future__ import annotations

import numpy as np

from robot_client.tasks.base import FINGERS, SuccessCheck, Task, set_free_body_pose, touching
from robot_client.tasks.expert import Gripper, Move, ScriptedExpert, tcp_from_link8, topdown

FLOOR = 0.01  # floor thickness
WALL = 0.008  # wall thickness
LARGE = dict(radius=0.1, height=0.05, segments=10, mass=0.15)
SMALL = dict(radius=0.06, height=0.045, segments=8, mass=0.08)
STACK_RADIUS = 0.03  # small bowl centre within this of the large bowl's axis
STACK_HEIGHT = 0.025  # and resting this low
HOLD_S = 0.5


def bowl_xml(name: str, material: str, radius: float, height: float, segments: int, mass: float) -> str:
    half_chord = (radius - WALL) * np.tan(np.pi / segments) + WALL / 2
    walls = []
    for k in range(segments):
        angle = 2 * np.pi * k / segments
        r = radius - WALL / 2
        walls.append(
            f'<geom class="obj" type="box" size="{WALL / 2} {half_chord:.4f} {height / 2}" '
            f'pos="{r * np.cos(angle):.4f} {r * np.sin(angle):.4f} {FLOOR + height / 2}" euler="0 0 {angle:.4f}" '
            f'material="{material}"/>')
    floor = f'<geom class="obj" type="cylinder" size="{radius} {FLOOR / 2}" pos="0 0 {FLOOR / 2}" material="{material}"/>'
    # Mass on the floor geom only, so the centre of mass stays low and central.
    return (f'<body name="{name}"><freejoint/><inertial pos="0 0 {FLOOR}" mass="{mass}" '
            f'diaginertia="{mass * radius**2 / 2:.6f} {mass * radius**2 / 2:.6f} {mass * radius**2:.6f}"/>'
            f'{floor}{"".join(walls)}</body>')


class StackBowlsCheck(SuccessCheck):
    def __init__(self, world) -> None:
        super().__init__(world)
        self._since: float | None = None

    def _update(self) -> bool:
        d, m = self.world.data, self.world.model
        large, small = d.xpos[m.body("large_bowl").id], d.xpos[m.body("small_bowl").id]
        stacked = np.linalg.norm(small[:2] - large[:2]) < STACK_RADIUS and small[2] - large[2] < STACK_HEIGHT
        stacked = stacked and not touching(self.world, "small_bowl", FINGERS)  # released, not held there
        if not stacked:
            self._since = None
            return False
        self._since = d.time if self._since is None else self._since
        return d.time - self._since >= HOLD_S


class StackBowlsTask(Task):
    def assets_xml(self) -> str:
        return """
    <material name="large_bowl" rgba="0.9 0.85 0.7 1" specular="0.3"/>
    <material name="small_bowl" rgba="0.25 0.6 0.35 1" specular="0.3"/>"""

    def bodies_xml(self) -> str:
        return bowl_xml("large_bowl", "large_bowl", **LARGE) + "\n" + bowl_xml("small_bowl", "small_bowl", **SMALL)

    def reset(self, world, rng) -> dict:
        large_xy = self.uniform(rng, "large_bowl_xy")
        large_yaw = float(self.uniform(rng, "large_bowl_yaw"))
        small_xy = self.uniform(rng, "small_bowl_xy")
        set_free_body_pose(world, "large_bowl", [large_xy[0], large_xy[1], 0.0], large_yaw)
        set_free_body_pose(world, "small_bowl", [small_xy[0], small_xy[1], 0.0])
        return {"large_bowl_xy": large_xy.tolist(), "large_bowl_yaw": large_yaw, "small_bowl_xy": small_xy.tolist()}

    def success_check(self, world) -> SuccessCheck:
        return StackBowlsCheck(world)

    def expert(self, env) -> ScriptedExpert:
        return ScriptedExpert(env, stack_bowls_plan(env))


def stack_bowls_plan(env):
    world = env.world
    body = lambda name: world.data.xpos[world.model.body(name).id].copy()  # noqa: E731
    grip = topdown(0.0)  # fingers close radially on the wall nearest the robot
    small = body("small_bowl")
    rim = small + np.array([-(SMALL["radius"] - WALL / 2), 0.0, FLOOR + SMALL["height"] - 0.014])
    yield Gripper("goto", 0.05)
    yield Move(rim + np.array([0, 0, 0.1]), grip, speed=0.6, tol=0.01)
    yield Move(rim, grip, speed=0.25, tol=0.003)
    yield Gripper("grasp", WALL, epsilon=0.005)
    yield Move(rim + np.array([0, 0, 0.12]), grip, speed=0.4, tol=0.01)
    # Where the bowl hangs relative to the fingers now (it may have shifted in the grasp).
    pos, rot = env.robot.robot_model.pose_matrix(env.robot.get_joint_positions().numpy())
    tcp = tcp_from_link8(pos, rot)
    hang = tcp - body("small_bowl")
    large = body("large_bowl")
    over = np.array([large[0], large[1], large[2] + FLOOR + 0.006]) + hang
    yield Move(over + np.array([0, 0, 0.1]), grip, speed=0.5, tol=0.006)
    yield Move(over, grip, speed=0.25, tol=0.004)
    yield Gripper("goto", 0.05)
    yield Move(over + np.array([0, 0, 0.12]), grip, speed=0.4, tol=0.01)
