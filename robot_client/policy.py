"""The client-side policy interface the control loop talks to.

`hello() -> metadata` and `infer(observation, seed, prefix, guide, noise_scale) -> PolicyReply`. `RemotePolicy`
speaks to a policy server over zerorpc (through `uwm_robot.client`); anything with the same two
methods (an in-process model in tests) can stand in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from robot_client.observation import Observation


@dataclass
class PolicyReply:
    actions: np.ndarray  # (L, 7) DROID cartesian velocity + gripper position
    raw: np.ndarray | None = None  # (L, D) normalised model actions
    timings: dict = field(default_factory=dict)  # server/client timings (ms)


class Policy(Protocol):
    def hello(self) -> dict: ...

    # prefix/prefix_mask (inpainting), guide/guide_mask (backward coherence) and noise_scale (this
    # request's sampling temperature) are passed only when used; a policy without them still works.
    def infer(self, obs: Observation, seed: int | None = None, prefix: np.ndarray | None = None,
              prefix_mask: np.ndarray | None = None, guide: np.ndarray | None = None,
              guide_mask: np.ndarray | None = None, noise_scale: float | None = None) -> PolicyReply: ...


class RemotePolicy:
    """A policy server reached through `uwm_robot.client.PolicyClient`."""

    def __init__(self, client):
        self.client = client
        self._metadata: dict | None = None

    def hello(self) -> dict:
        if self._metadata is None:
            self._metadata = self.client.hello()
        return self._metadata

    def infer(self, obs: Observation, seed: int | None = None, prefix: np.ndarray | None = None,
              prefix_mask: np.ndarray | None = None, guide: np.ndarray | None = None,
              guide_mask: np.ndarray | None = None, noise_scale: float | None = None) -> PolicyReply:
        reply = self.client.infer(obs.images, timestamps=obs.capture_ts, state=obs.state or None, seed=seed,
                                  prefix=prefix, prefix_mask=prefix_mask, guide=guide, guide_mask=guide_mask,
                                  noise_scale=noise_scale)
        return PolicyReply(np.asarray(reply["actions"]), reply.get("raw"), dict(reply.get("timings", {})))
