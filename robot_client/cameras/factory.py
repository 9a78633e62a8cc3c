"""Cameras by DROID role (= the UWM model's camera keys), from configs/cameras.yaml.

`make_cameras("realsense", config)` builds one RealSenseCamera per role from its serial;
`make_cameras("sim", config, sim_env)` hands out the SimEnv's cameras for the same roles. Cameras are
built, not started: use `start_cameras()` (or each camera's start()/context manager).

`python -m robot_client.cameras.factory --list` prints the connected RealSense serials.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

from robot_client.cameras.base import Camera
from uwm_robot.typed_yaml import read_yaml_mapping

DROID_ROLES = ("exterior_image_1_left", "exterior_image_2_left", "wrist_image_left")
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CAMERAS_PATH = REPO_ROOT / "configs" / "cameras.yaml"
PLACEHOLDER_PREFIX = "REPLACE"


def load_camera_config(path: str | Path = DEFAULT_CAMERAS_PATH) -> dict:
    """configs/cameras.yaml -> {"defaults": {...}, "cameras": {role: {...}}}, structure checked."""
    return check_camera_config(read_yaml_mapping(path, "camera config"), str(path))


def check_camera_config(config: dict, where: str = "camera config") -> dict:
    if not isinstance(config, dict):
        raise ValueError(f"{where}: expected a mapping with 'defaults' and 'cameras'")
    unknown = sorted(set(config) - {"defaults", "cameras", "source"})  # source: set by load_camera_config
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: ['cameras', 'defaults']")
    defaults = config.get("defaults") or {}
    cameras = config.get("cameras") or {}
    if not isinstance(defaults, dict) or not isinstance(cameras, dict):
        raise ValueError(f"{where}: 'defaults' and 'cameras' must be mappings")
    if not cameras:
        raise ValueError(f"{where}: no cameras; expected roles among {list(DROID_ROLES)}")
    bad_roles = sorted(set(cameras) - set(DROID_ROLES))
    if bad_roles:
        raise ValueError(f"{where}: unknown camera role(s) {bad_roles}; roles are {list(DROID_ROLES)}")
    _check_options(defaults, f"{where}: defaults", allow_serial=False)
    for role, entry in cameras.items():
        if entry is None:
            entry = {}
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: cameras.{role} must be a mapping with a 'serial', got {entry!r}")
        _check_options(entry, f"{where}: cameras.{role}", allow_serial=True)
    return {"defaults": dict(defaults), "cameras": {r: dict(e or {}) for r, e in cameras.items()},
            "source": config.get("source", where)}


def _realsense_options() -> set[str]:
    from robot_client.cameras import realsense

    params = inspect.signature(realsense.RealSenseCamera.__init__).parameters
    return {p for p in params if p not in ("self", "serial", "name", "context")}


def _check_options(entry: dict, where: str, allow_serial: bool) -> None:
    allowed = _realsense_options() | ({"serial"} if allow_serial else set())
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")


def _connected_hint() -> str:
    try:
        from robot_client.cameras.realsense import _connected_summary, list_realsense_devices

        return _connected_summary(list_realsense_devices())
    except ImportError as e:
        return f"cannot list devices: {e}"


def make_cameras(kind: str, config: dict | None = None, sim_env=None) -> dict[str, Camera]:
    """{role: Camera} for the roles in config["cameras"] (default: configs/cameras.yaml).

    kind "realsense": a RealSenseCamera per role, `defaults` overridden by the role's entry;
    kind "sim": `sim_env.cameras[role]` (image size etc. are the sim's own).
    """
    config = load_camera_config() if config is None else check_camera_config(config, config.get("source", "camera config"))
    where = config.get("source", "camera config")
    roles = list(config["cameras"])
    if kind == "sim":
        if sim_env is None:
            raise ValueError("make_cameras('sim') needs sim_env (a robot_client.sim.env.SimEnv)")
        missing = [r for r in roles if r not in sim_env.cameras]
        if missing:
            raise ValueError(f"the sim has no camera(s) {missing}; it has {sorted(sim_env.cameras)}")
        return {r: sim_env.cameras[r] for r in roles}
    if kind != "realsense":
        raise ValueError(f"camera kind must be 'sim' or 'realsense', got {kind!r}")

    from robot_client.cameras.realsense import RealSenseCamera

    problems, seen = [], {}
    for role in roles:
        serial = config["cameras"][role].get("serial")
        if isinstance(serial, (int, float)) and not isinstance(serial, bool):
            problems.append(f"cameras.{role}.serial must be a quoted string (YAML read it as the number {serial}, "
                            "which loses leading zeros)")
            continue
        serial = "" if serial is None else str(serial).strip()
        if not serial:
            problems.append(f"cameras.{role} has no serial")
        elif serial.upper().startswith(PLACEHOLDER_PREFIX):
            problems.append(f"cameras.{role}.serial is still the placeholder {serial!r}")
        elif serial in seen:
            problems.append(f"cameras.{role} and cameras.{seen[serial]} have the same serial {serial}")
        seen.setdefault(serial, role)
    if problems:
        raise ValueError(f"{where}: " + "; ".join(problems) + f". Set the RealSense serial of each role ({_connected_hint()}).")
    cameras = {}
    for role in roles:
        options = {**config["defaults"], **config["cameras"][role]}
        serial = str(options.pop("serial")).strip()
        cameras[role] = RealSenseCamera(serial, name=role, **options)
    return cameras


def start_cameras(cameras: dict[str, Camera]) -> None:
    """start() every camera; if one fails, stop the ones already started and re-raise."""
    started = []
    try:
        for cam in cameras.values():
            cam.start()
            started.append(cam)
    except BaseException:
        for cam in reversed(started):
            try:
                cam.stop()
            except Exception:  # noqa: BLE001 - the original error matters more
                pass
        raise


def stop_cameras(cameras: dict[str, Camera]) -> None:
    errors = []
    for cam in cameras.values():
        try:
            cam.stop()
        except Exception as e:  # noqa: BLE001 - stop the others, then report
            errors.append(e)
    if errors:
        raise errors[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m robot_client.cameras.factory", description=__doc__)
    parser.add_argument("--list", action="store_true", help="list the connected RealSense devices")
    parser.add_argument("--check", metavar="YAML", nargs="?", const=str(DEFAULT_CAMERAS_PATH),
                        help="check a camera config (default configs/cameras.yaml)")
    args = parser.parse_args(argv)
    try:
        if args.list:
            from robot_client.cameras.realsense import list_realsense_devices

            devices = list_realsense_devices()
            print("\n".join(str(d) for d in devices) if devices else "no RealSense device connected")
        if args.check:
            make_cameras("realsense", load_camera_config(args.check))
            print(f"{args.check}: ok")
    except (ImportError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
