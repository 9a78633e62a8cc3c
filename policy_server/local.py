"""A policy server on loopback in a subprocess, and throwaway checkpoints (bench and tests)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

READY_RE = re.compile(r"^READY (\S+) ")


def random_observation(meta: dict, rng: np.random.Generator | int = 0) -> tuple[dict, dict]:
    """(images, timestamps) as a robot sends them: uint8 (n_obs, H, W, 3) per camera of `meta`
    (a server's hello metadata) and capture times (ns) 1/15 s apart, newest now."""
    rng = np.random.default_rng(rng) if isinstance(rng, int) else rng
    n, (h, w) = meta["n_obs_steps"], meta["image_shape"]
    images = {c: rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8) for c in meta["cameras"]}
    now = time.monotonic_ns()
    stamps = {c: [now - (n - 1 - i) * 66_666_667 for i in range(n)] for c in meta["cameras"]}
    return images, stamps


def make_preset_checkpoint(
    preset_name: str,
    out_dir: str | Path,
    image_shape: tuple[int, int] | None = None,
    seed: int = 0,
    perturb: float = 0.0,
    **config_changes,
) -> Path:
    """A randomly initialised checkpoint of a preset, optionally with another raw camera size.

    `perturb` > 0 nudges every DiT parameter (std `perturb / sqrt(fan_in)`): a fresh DiT has
    zeroed adaLN layers, so its output ignores the observation; tests want one that does not.
    """
    import torch

    from uwm_robot.checkpoint import build_model, save_checkpoint
    from uwm_robot.config import preset
    from uwm_robot.normalizer import NormalizerSet

    config = preset(preset_name)
    if image_shape is not None:
        config_changes["image_shape"] = tuple(image_shape)
    if config_changes:
        config = config.replace(**config_changes)
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = build_model(config)
    if perturb:
        with torch.no_grad():
            for p in model.noise_pred_net.parameters():
                p.add_(torch.randn(p.shape, generator=gen) * perturb / max(1, p.shape[-1]) ** 0.5)
    normalizer = NormalizerSet.default(config.action_dim, identity=config.action_space == "raw")
    return save_checkpoint(out_dir, model, config, normalizer, meta={"source": f"local:{preset_name}", "seed": seed})


class LocalServer:
    """`policy_server serve` in a subprocess; READY line parsed; `stop()` always ends it.

    `bind` defaults to a free loopback port. stderr goes to a file (`log_path`) so a chatty
    server can never block on a full pipe.
    """

    def __init__(
        self,
        checkpoint: str | Path,
        extra: list[str] | None = None,
        bind: str = "tcp://127.0.0.1:0",
        timeout_s: float = 300.0,
        log_path: str | Path | None = None,
    ):
        self.cmd = [sys.executable, "-m", "policy_server", "serve", "--checkpoint", str(checkpoint), "--bind", bind, *(extra or [])]
        self.log_path = Path(log_path) if log_path else None
        self._log = open(self.log_path, "w") if self.log_path else None
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=self._log, text=True, env=env)
        self.ready_line = ""
        self.address = ""
        self.stdout_tail: list[str] = []
        timer = threading.Timer(timeout_s, self.proc.kill)  # readline() cannot time out by itself
        timer.start()
        try:
            for line in self.proc.stdout:
                m = READY_RE.match(line)
                if m:
                    self.ready_line, self.address = line.strip(), m.group(1)
                    break
                self.stdout_tail.append(line)
        finally:
            timer.cancel()
        if not self.address:
            self.stop()
            raise RuntimeError(
                f"policy_server did not become ready (exit status {self.proc.returncode}): {' '.join(self.cmd)}\n"
                + "".join(self.stdout_tail[-20:])
                + (self.log_path.read_text()[-4000:] if self.log_path else "")
            )
        # Keep draining stdout so the server never blocks writing to it.
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        for line in self.proc.stdout:
            self.stdout_tail = (self.stdout_tail + [line])[-100:]

    def stop(self, timeout_s: float = 15.0) -> int:
        """SIGTERM, then SIGKILL after `timeout_s`; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log:
            self._log.close()
            self._log = None
        return self.proc.returncode

    def __enter__(self) -> "LocalServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
