"""`policy_server serve` on loopback in a subprocess: start, wait for READY, always stop.

Lives in uwm_robot (next to the client) because it only runs the server's command line: the
robot client's embedded default and the server's own bench and tests share it without either
importing the other.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

READY_RE = re.compile(r"^READY (\S+) ")


def _child_setup(niceness: int) -> None:
    """In the server process before exec: lower its priority, and have Linux end it when the
    parent dies however it dies (SIGKILL included), so no orphaned server keeps a GPU or port."""
    if niceness:
        os.nice(niceness)
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class LocalServer:
    """`policy_server serve` in a subprocess; READY line parsed; `stop()` always ends it.

    `bind` defaults to a free loopback port. stderr goes to a file (`log_path`) so a chatty
    server can never block on a full pipe. When the server shares a small machine with a control
    loop, `niceness` and `cpu_threads` make it yield the CPU so inference never delays a tick.
    """

    def __init__(
        self,
        checkpoint: str | Path,
        extra: list[str] | None = None,
        bind: str = "tcp://127.0.0.1:0",
        timeout_s: float = 300.0,
        log_path: str | Path | None = None,
        niceness: int = 0,
        cpu_threads: int | None = None,
    ):
        self.cmd = [sys.executable, "-m", "policy_server", "serve", "--checkpoint", str(checkpoint), "--bind", bind, *(extra or [])]
        self.log_path = Path(log_path) if log_path else None
        self._log = open(self.log_path, "w") if self.log_path else None
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if cpu_threads:
            env["OMP_NUM_THREADS"] = str(cpu_threads)
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=self._log, text=True, env=env,
                                     preexec_fn=lambda: _child_setup(niceness))
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
