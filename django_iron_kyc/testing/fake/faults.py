"""Faults on request: the next matching requests fail, are dropped, or answer late."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Literal

from .answers import Answer, error_answer

__all__ = ["DropMode", "Fault", "FaultInjector", "fault_answer", "hold"]

DropMode = Literal["before", "after"]

_MESSAGES = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclass
class Fault:
    """A fault for the next ``remaining`` matching requests (see :meth:`FakeIron.fail_next`).

    ``remaining`` counts down per hit. With no ``status``, ``drop`` or ``delay`` it answers 503.
    """

    remaining: int
    status: int | None = None
    method: str | None = None
    path: str | None = None
    retry_after: float | str | None = None
    drop: DropMode | None = None
    delay: float | threading.Event | None = None

    def __post_init__(self) -> None:
        if self.drop not in (None, "before", "after"):
            raise ValueError("drop must be None, 'before' or 'after'")
        if self.status is None and self.drop is None and self.delay is None:
            self.status = 503

    def matches(self, method: str, path: str) -> bool:
        if self.remaining <= 0:
            return False
        if self.method is not None and self.method.upper() != method:
            return False
        return self.path is None or re.search(self.path, path) is not None


class FaultInjector:
    """The armed faults, used in the order they were armed. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: list[Fault] = []

    def arm(self, fault: Fault) -> Fault:
        with self._lock:
            self._armed.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._armed.clear()

    def armed(self) -> list[Fault]:
        """The faults still armed, in the order they will be used."""
        with self._lock:
            return list(self._armed)

    def take(self, method: str, path: str) -> Fault | None:
        """The first armed fault that matches this request, counted down; or ``None``."""
        with self._lock:
            for fault in self._armed:
                if fault.matches(method, path):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._armed.remove(fault)
                    return fault
        return None


def hold(fault: Fault, stopping: threading.Event) -> None:
    """Wait out the fault's ``delay``: seconds, or until its event is set; or until stopping."""
    if isinstance(fault.delay, threading.Event):
        while not fault.delay.wait(0.05) and not stopping.is_set():
            pass
    elif fault.delay:
        stopping.wait(fault.delay)


def fault_answer(fault: Fault, path: str, error_format: str) -> Answer:
    """What a fault with a ``status`` answers instead of doing the work.

    429 says ``Creation Rate Limit Exceeded`` on the identification-creation path, as Iron
    does; ``retry_after`` adds a ``Retry-After`` header.
    """
    status = fault.status or 503
    if status == 429:
        message = "Creation Rate Limit Exceeded" if path.endswith("/v2") else "Too Many Requests"
    else:
        message = _MESSAGES.get(status, "Injected fault")
    answer = error_answer(status, message, error_format)
    if fault.retry_after is not None:
        value = fault.retry_after
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        answer.headers["Retry-After"] = str(value)
    return answer
