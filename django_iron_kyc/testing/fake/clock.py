"""The fake Iron's clock, and timestamps written as Iron writes them."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

__all__ = ["IronClock", "iron_time", "parse_iron_time"]

_IRON_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"


def iron_time(value: datetime) -> str:
    """An object timestamp as Iron writes it: ``2026-01-15T10:00:00.123456Z``."""
    return value.astimezone(timezone.utc).strftime(_IRON_TIME)


def parse_iron_time(value: str) -> datetime:
    """The aware UTC datetime of a timestamp written by :func:`iron_time`."""
    return datetime.strptime(value, _IRON_TIME).replace(tzinfo=timezone.utc)


class IronClock:
    """The fake's clock: the real UTC time plus what :meth:`advance` added."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._offset = timedelta(0)
        self._last_tick: datetime | None = None

    @property
    def now(self) -> datetime:
        return datetime.now(timezone.utc) + self._offset

    def advance(self, seconds: float) -> datetime:
        """Move the clock forward by ``seconds``; returns the new now."""
        with self._lock:
            self._offset += timedelta(seconds=seconds)
            return self.now

    def tick(self) -> datetime:
        """Now, strictly after the previous tick: every change gets a newer timestamp."""
        with self._lock:
            moment = self.now
            if self._last_tick is not None and moment <= self._last_tick:
                moment = self._last_tick + timedelta(microseconds=1)
            self._last_tick = moment
            return moment
