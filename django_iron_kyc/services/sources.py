"""Where a change of state came from: the ``source`` of every signal."""

from __future__ import annotations

import enum

__all__ = ["Source"]


class Source(str, enum.Enum):
    """Where a change of state came from (the ``source`` kwarg of the signals)."""

    WEBHOOK = "webhook"
    POLL = "poll"
    CREATE = "create"
    SANDBOX = "sandbox"
    REFRESH = "refresh"

    def __str__(self) -> str:
        return self.value
