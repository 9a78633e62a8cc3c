"""Tabletop tasks (scene bodies, seeded resets, success checks, scripted experts) and their registry."""
from __future__ import annotations

from robot_client.tasks.base import CONFIG_DIR, Task, TaskConfig, load_task_config


def _registry() -> dict:
    from robot_client.tasks.block_cabinet import BlockCabinetTask
    from robot_client.tasks.rice_cooker import RiceCookerTask
    from robot_client.tasks.stack_bowls import StackBowlsTask

    return {"rice_cooker": RiceCookerTask, "stack_bowls": StackBowlsTask, "block_cabinet": BlockCabinetTask}


TASK_NAMES = ("rice_cooker", "stack_bowls", "block_cabinet")


def load_task(name: str, config_dir=CONFIG_DIR) -> Task:
    """Task `name` configured from configs/tasks/<name>.yaml."""
    registry = _registry()
    if name not in registry:
        raise ValueError(f"unknown task {name!r}; expected one of {sorted(registry)}")
    config = load_task_config(config_dir / f"{name}.yaml")
    if config.name != name:
        raise ValueError(f"{config_dir / f'{name}.yaml'}: name is {config.name!r}, expected {name!r}")
    return registry[name](config)


__all__ = ["TASK_NAMES", "Task", "TaskConfig", "load_task", "load_task_config"]
