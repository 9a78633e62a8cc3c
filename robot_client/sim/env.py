"""One object that builds everything a run needs: world, Polymetis stand-ins, cameras, clock, task check."""
from __future__ import annotations

import numpy as np

from robot_client.cameras.sim import SimCamera
from robot_client.sim.clock import SimClock
from robot_client.sim.config import SimConfig
from robot_client.sim.polymetis_api import SimGripperInterface, SimRobotInterface
from robot_client.sim.render import RendererPool
from robot_client.sim.scene import DEFAULT_CAMERAS, build_scene_xml
from robot_client.sim.world import SimWorld
from robot_client.tasks import load_task
from robot_client.tasks.base import Task
from robot_client.tasks.conditions import distractors_xml


class SimEnv:
    """`SimEnv("rice_cooker", condition="L2", seed=3)`: a task scene in one ID/OOD condition, reset from a seed.

    Attributes the control loop uses: robot (RobotInterface API), gripper (GripperInterface API),
    cameras (name -> Camera), clock (Clock), task, check_success().
    """

    def __init__(self, task: str | Task, condition: str = "ID", seed: int = 0, config: SimConfig | None = None,
                 **overrides) -> None:
        config = config or SimConfig()
        if overrides:
            config = SimConfig(**{**config.__dict__, **overrides})
        self.config = config
        self.task = load_task(task) if isinstance(task, str) else task
        self.condition = self.task.condition(condition)
        self.seed = int(seed)
        cameras = [c for c in DEFAULT_CAMERAS if c.name in config.camera_names]
        missing = set(config.camera_names) - {c.name for c in cameras}
        if missing:
            raise ValueError(f"unknown camera name(s) {sorted(missing)}; known: {[c.name for c in DEFAULT_CAMERAS]}")
        xml = build_scene_xml(
            self.task.assets_xml(), self.task.bodies_xml(), self.condition,
            distractors_xml(self.condition.n_distractors, list(self.task.config.clutter_zones), self.seed),
            cameras=DEFAULT_CAMERAS, timestep=config.timestep)
        self.world = SimWorld(xml, mode=config.mode, control_dt=config.control_dt, rt_factor=config.rt_factor)
        self.initial_state = self.task.reset(self.world, np.random.default_rng(self.seed))
        self.world.set_arm_qpos(self.world.arm_qpos(), finger_width=0.08)  # settle derived quantities
        self._install_light_hook()
        self.clock = SimClock(self.world)
        self.robot = SimRobotInterface(self.world)
        self.gripper = SimGripperInterface(self.world)
        self.renderers = RendererPool(self.world)
        self.cameras = {
            name: SimCamera(self.world, self.renderers, name, config.camera_width, config.camera_height,
                            config.depth, self.clock)
            for name in config.camera_names
        }
        self.success = self.task.success_check(self.world)
        self.world.start()

    def _install_light_hook(self) -> None:
        from robot_client.tasks.conditions import light_schedule

        lighting = self.condition.lighting
        if not lighting.moving:
            return
        key = self.world.model.light("key").id

        def moving_light(model, data) -> None:
            direction, diffuse = light_schedule(lighting, float(data.time))
            model.light_dir[key] = direction
            model.light_diffuse[key] = diffuse

        self.world.render_hooks.append(moving_light)

    def check_success(self) -> bool:
        """Advance the task's success state machine with the current state (call once per control step)."""
        with self.world.lock:
            return self.success.update()

    def read_cameras(self) -> dict:
        return {name: cam.read() for name, cam in self.cameras.items()}

    def close(self) -> None:
        for cam in self.cameras.values():
            cam.stop()
        self.renderers.close_all()
        self.world.close()

    def __enter__(self) -> "SimEnv":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
