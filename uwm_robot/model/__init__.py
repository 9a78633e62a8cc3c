"""The UWM network (official parameter names) and its building blocks."""

from .dit import DualNoisePredictionNet
from .uwm import ObservationEncoder, UnifiedWorldModel, make_scheduler

__all__ = ["DualNoisePredictionNet", "ObservationEncoder", "UnifiedWorldModel", "make_scheduler"]
