"""YAML files into typed dataclasses, with errors that name the file and the offending key.

Every config in the project (models, robot client, sim, tasks, Franka, cameras) goes through here,
so a typo in any YAML gets the same clear message instead of a TypeError deep inside.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml


def read_yaml_mapping(path: str | Path, what: str = "config") -> dict:
    """The top-level mapping of a YAML file ({} for an empty file)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"{path}: cannot read the {what}: {e}") from e
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    return raw


def checked_fields(cls: type, data: Any, where: str) -> dict:
    """`data` as keyword arguments for dataclass `cls`: unknown keys rejected, lists made tuples."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(known)}")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}


def dataclass_from_mapping(cls: type, data: Any, where: str):
    try:
        return cls(**checked_fields(cls, data, where))
    except TypeError as e:
        raise ValueError(f"{where}: {e}") from e
