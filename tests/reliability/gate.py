"""A gate to hold one request at the fake Iron at a known point."""

from __future__ import annotations

import threading


class Gate(threading.Event):
    """A fake's ``delay`` event that also says when a request reached it.

    ``fake.fail_next(..., delay=gate)`` holds the next matching request at the fake until
    ``gate.set()``; ``gate.reached`` is set as soon as one is held there.
    """

    def __init__(self) -> None:
        super().__init__()
        self.reached = threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        self.reached.set()
        return super().wait(timeout)
