"""Single-key operator input on the terminal (e-stop, success/failure labels, teleop keys).

Reads keys in a background thread with the terminal in cbreak mode, so a key acts at once
without Enter, and restores the terminal on exit. Without a terminal (CI, pipes) it does nothing.
"""

from __future__ import annotations

import os
import select
import sys
import threading
from typing import Callable


class KeyListener:
    def __init__(self, handlers: dict[str, Callable[[], None]], stream=None):
        self.handlers = {k.lower(): v for k, v in handlers.items()}
        self.stream = stream or sys.stdin
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._saved = None

    @property
    def active(self) -> bool:
        try:
            return self.stream.isatty()
        except (AttributeError, ValueError):
            return False

    def __enter__(self) -> "KeyListener":
        if not self.active:
            return self
        import termios
        import tty

        fd = self.stream.fileno()
        self._saved = termios.tcgetattr(fd)
        tty.setcbreak(fd)
        self._thread = threading.Thread(target=self._run, name="keys", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        fd = self.stream.fileno()
        while not self._stop.is_set():
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                key = os.read(fd, 1).decode(errors="ignore").lower()
                handler = self.handlers.get(key)
                if handler:
                    handler()

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=1)
        if self._saved is not None:
            import termios

            termios.tcsetattr(self.stream.fileno(), termios.TCSADRAIN, self._saved)
