"""The camera interface every backend (RealSense, sim) implements, and the frame it returns."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole intrinsics of the colour stream (RealSense `rs.intrinsics` field names)."""

    width: int
    height: int
    fx: float
    fy: float
    ppx: float
    ppy: float
    model: str = "none"  # distortion model; the sim has none
    coeffs: tuple = (0.0, 0.0, 0.0, 0.0, 0.0)

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.ppx], [0.0, self.fy, self.ppy], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class Frame:
    """One capture. color: uint8 HxWx3 RGB; depth: uint16 HxW in millimetres (0 = no data) or None.
    capture_ts: when the image was exposed, receive_ts: when the host got it (both ns, monotonic clock)."""

    color: np.ndarray
    depth: np.ndarray | None
    capture_ts: int
    receive_ts: int
    serial: str


class Camera(ABC):
    """start() before read(); stop() releases the device (or GL context). Usable as a context manager."""

    serial: str

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def read(self) -> Frame:
        """The latest frame."""

    @property
    @abstractmethod
    def intrinsics(self) -> CameraIntrinsics: ...

    @abstractmethod
    def stop(self) -> None: ...

    def __enter__(self) -> "Camera":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
