"""Clocks the control loop waits on instead of calling time.sleep.

On hardware time is the wall clock. In the lockstep sim, waiting is what advances physics,
so a slow policy cannot make the robot run ahead of the loop and tests are deterministic.
"""
from __future__ import annotations

import time
from abc import ABC, abstractmethod


class Clock(ABC):
    """Seconds on a monotonic time base, and a way to wait for a point on it."""

    @abstractmethod
    def now(self) -> float:
        """Current time in seconds."""

    @abstractmethod
    def sleep_until(self, t: float) -> None:
        """Return once `now() >= t` (immediately if t is already past)."""

    def sleep(self, dt: float) -> None:
        if dt < 0:
            raise ValueError(f"sleep duration must be >= 0 s, got {dt}")
        self.sleep_until(self.now() + dt)

    def now_ns(self) -> int:
        """Integer nanoseconds, the project's timestamp unit."""
        return int(round(self.now() * 1e9))


class WallClock(Clock):
    """time.monotonic: for real hardware (and the realtime sim, whose physics follows wall time)."""

    def now(self) -> float:
        return time.monotonic()

    def now_ns(self) -> int:
        return time.monotonic_ns()

    # Sleep to this margin before the deadline, then yield-spin: a plain sleep can wake several
    # ms late on a loaded machine, which is control-period jitter.
    SPIN_MARGIN_S = 0.002

    def sleep_until(self, t: float) -> None:
        remaining = t - time.monotonic()
        if remaining > self.SPIN_MARGIN_S:
            time.sleep(remaining - self.SPIN_MARGIN_S)
        while time.monotonic() < t:
            time.sleep(0)


class SimClock(Clock):
    """Time of a SimWorld. In lockstep mode sleep_until steps the physics; in realtime mode it waits."""

    def __init__(self, world) -> None:
        self._world = world

    def now(self) -> float:
        return self._world.time

    def sleep_until(self, t: float) -> None:
        self._world.wait_until(t)
