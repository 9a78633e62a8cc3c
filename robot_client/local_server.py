"""Start a policy server on loopback for the embedded default (no --server given).

The server is a separate process, as in the lab: the control loop talks to it over zerorpc
exactly as it would to the GPU box. It is stopped when the context exits, whatever happens.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalPolicyServer:
    def __init__(self, checkpoint: str | Path, device: str = "cpu", startup_timeout_s: float = 180.0,
                 extra_args: list[str] | None = None, niceness: int = 10, cpu_threads: int | None = 1):
        self.checkpoint = Path(checkpoint)
        self.device = device
        self.timeout = startup_timeout_s
        self.address = f"tcp://127.0.0.1:{free_port()}"
        self.extra_args = extra_args or []
        # Sharing a small machine with the control loop: the server yields the CPU to the loop
        # (lower priority, one compute thread) so inference never delays a control tick.
        self.niceness = niceness
        self.cpu_threads = cpu_threads
        self.proc: subprocess.Popen | None = None
        self.ready_line = ""
        self.log: list[str] = []

    def __enter__(self) -> "LocalPolicyServer":
        cmd = [sys.executable, "-m", "policy_server.cli", "serve", "--checkpoint", str(self.checkpoint),
               "--bind", self.address, "--device", self.device, *self.extra_args]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if self.cpu_threads and self.device == "cpu":
            env["OMP_NUM_THREADS"] = str(self.cpu_threads)
        nice = self.niceness
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                     preexec_fn=(lambda: os.nice(nice)) if nice else None)
        ready = threading.Event()

        def pump() -> None:  # keep reading so the server never blocks on a full pipe
            for line in self.proc.stdout:
                self.log.append(line.rstrip())
                if line.startswith("READY") and not ready.is_set():
                    self.ready_line = line.strip()
                    ready.set()

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + self.timeout
        while not ready.wait(0.2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = "\n".join(self.log[-15:])
                self.__exit__(None, None, None)
                raise RuntimeError(f"local policy server did not become ready ({' '.join(cmd)}):\n{tail}")
        return self

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
