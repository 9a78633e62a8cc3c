"""Keeps the streaming impedance controller alive.

Polymetis drops a user controller after a fault or a >1 s gap in updates and falls back to
holding the pose; `update_desired_joint_positions` then raises. Before every update the watchdog
checks `is_running_policy()`, restarts the controller if it died (or if an update raised an
RpcError), and logs the event.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


def is_rpc_error(e: BaseException) -> bool:
    # grpc.RpcError on hardware; the sim raises a subclass-compatible error. Avoid importing grpc.
    return any(cls.__name__ == "RpcError" for cls in type(e).__mro__)


@dataclass
class WatchdogEvent:
    t: float
    reason: str


@dataclass
class ControllerWatchdog:
    robot: object
    kq: list | None = None
    kqd: list | None = None
    events: list[WatchdogEvent] = field(default_factory=list)

    def start(self) -> None:
        self.robot.start_joint_impedance(Kq=self.kq, Kqd=self.kqd)

    def ensure_running(self, reason: str = "controller not running") -> None:
        if not self.robot.is_running_policy():
            self._restart(reason)

    def _restart(self, reason: str) -> None:
        self.events.append(WatchdogEvent(time.monotonic(), reason))
        log.warning("impedance controller down (%s): restarting", reason)
        self.start()

    def send(self, q_target) -> None:
        """update_desired_joint_positions with one restart-and-retry on a dead controller."""
        import torch

        self.ensure_running()
        target = torch.as_tensor(q_target, dtype=torch.float32)
        try:
            self.robot.update_desired_joint_positions(target)
        except Exception as e:
            if not is_rpc_error(e):
                raise
            # grpc.RpcError carries its message in details(); other errors in str().
            details = e.details() if callable(getattr(e, "details", None)) else str(e)
            self._restart(f"update raised {type(e).__name__}: {details}")
            self.robot.update_desired_joint_positions(target)
