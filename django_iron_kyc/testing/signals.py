"""Record the signals django-iron-kyc sends, to assert on them in tests (or show them in demos)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from django.dispatch import Signal

from .. import signals as app_signals

__all__ = ["SignalRecorder"]


class SignalRecorder:
    """Every django-iron-kyc signal sent while recording, as ``(signal_name, kwargs)`` pairs.

    ``kwargs`` holds what a receiver got, ``sender`` included. Record inside ``with
    SignalRecorder() as recorder:`` (or between :meth:`connect` and :meth:`disconnect`).
    Signals sent from other threads (a live server's) are recorded too. Helpers:
    :meth:`names`, :meth:`kwargs_of`, :meth:`clear`; the recorder is also a sequence of the
    pairs.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._connected: list[tuple[Signal, str]] = []

    def connect(self) -> None:
        """Start recording every signal of :mod:`django_iron_kyc.signals`."""
        for name, signal in vars(app_signals).items():
            if isinstance(signal, Signal) and not name.startswith("_"):
                uid = f"django_iron_kyc.testing.SignalRecorder:{id(self)}:{name}"
                signal.connect(self._receiver(name), weak=False, dispatch_uid=uid)
                self._connected.append((signal, uid))

    def disconnect(self) -> None:
        """Stop recording; what was recorded stays."""
        for signal, uid in self._connected:
            signal.disconnect(dispatch_uid=uid)
        self._connected.clear()

    def __enter__(self) -> SignalRecorder:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.disconnect()

    def _receiver(self, name: str) -> Callable[..., None]:
        def receive(signal: Any = None, **kwargs: Any) -> None:
            with self._lock:
                self.calls.append((name, kwargs))

        return receive

    def names(self) -> list[str]:
        """The names of the signals sent, in order."""
        with self._lock:
            return [name for name, _ in self.calls]

    def kwargs_of(self, name: str) -> list[dict[str, Any]]:
        """The kwargs of each sending of the signal ``name``, in order."""
        with self._lock:
            return [kwargs for sent, kwargs in self.calls if sent == name]

    def clear(self) -> None:
        with self._lock:
            self.calls.clear()

    def __len__(self) -> int:
        return len(self.calls)

    def __iter__(self) -> Iterator[tuple[str, dict[str, Any]]]:
        with self._lock:
            return iter(list(self.calls))

    def __getitem__(self, index: int) -> tuple[str, dict[str, Any]]:
        return self.calls[index]

    def __repr__(self) -> str:
        return f"<SignalRecorder {self.names()}>"
