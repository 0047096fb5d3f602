"""The fake's webhooks: signed deliveries held in order until a test (or a thread) sends them."""

from __future__ import annotations

import copy
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..events import (
    CUSTOMER_STATUS,
    IDENTIFICATION_STATUS,
    build_event,
    encode_event,
    iso_timestamp,
    sign_webhook,
)
from .clock import IronClock
from .options import FakeOptions
from .state import StatusChange

__all__ = ["Delivery", "HTTPDeliveryResult", "Outbox", "Sender"]

Sender = Callable[[Mapping[str, str], bytes], Any]

_EVENT_TYPES = {"identification": IDENTIFICATION_STATUS, "customer": CUSTOMER_STATUS}


@dataclass
class Delivery:
    """A webhook delivery: what the fake POSTs (or hands to a ``send`` callable)."""

    webhook_id: str
    event: dict[str, Any]
    body: bytes
    headers: dict[str, str]

    @property
    def type(self) -> str:
        return str(self.event.get("type", ""))

    @property
    def timestamp(self) -> int:
        return int(self.headers["webhook-timestamp"])


@dataclass
class HTTPDeliveryResult:
    """The answer to a delivery POSTed over HTTP (``status_code`` ``None`` if none came)."""

    status_code: int | None
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    error: str | None = None


class Outbox:
    """Deliveries waiting in :attr:`queued` (in order), and :attr:`sent` with their results.

    Each is signed with ``options.webhook_secret`` when it is queued, with the timestamp of
    the change it tells. With ``options.auto_deliver`` and a ``webhook_url``, a background
    thread (between :meth:`start` and :meth:`stop`) POSTs each one as soon as it is queued.
    """

    def __init__(self, options: FakeOptions, clock: IronClock) -> None:
        self.queued: list[Delivery] = []
        self.sent: list[tuple[Delivery, Any]] = []
        self._options = options
        self._clock = clock
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._duplicate_next = 0
        self._delivering = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # --- queueing -----------------------------------------------------------------------

    def queue_change(self, change: StatusChange) -> Delivery:
        """Queue the webhook Iron sends for ``change`` (twice if a duplicate is due)."""
        event = build_event(
            _EVENT_TYPES[change.kind],
            change.customer_id,
            change.object_id,
            change.status,
            timestamp=change.at,
            shape=self._options.message_shape,
        )
        with self._lock:
            delivery = self._queue(self._sign(event, change.at))
            if self._duplicate_next > 0:
                self._duplicate_next -= 1
                self._queue(copy.deepcopy(delivery))
        return delivery

    def queue_event(self, event: dict[str, Any]) -> Delivery:
        """Sign any event, now, and queue it."""
        return self._queue(self._sign(event, self._clock.now))

    def duplicate_next(self, n: int = 1) -> None:
        with self._lock:
            self._duplicate_next += n

    def reorder(self, order: Sequence[int] | None = None) -> None:
        with self._lock:
            if order is None:
                self.queued.reverse()
                return
            if sorted(order) != list(range(len(self.queued))):
                raise ValueError("order must be a permutation of the outbox indexes")
            self.queued[:] = [self.queued[i] for i in order]

    def resend(
        self, delivery: Delivery, new_id: bool = True, *, new_timestamp: bool = False
    ) -> Delivery:
        now = self._clock.now
        event = delivery.event
        if new_timestamp:
            event = {**copy.deepcopy(event), "timestamp": iso_timestamp(now)}
        again = self._sign(event, now) if new_id or new_timestamp else copy.deepcopy(delivery)
        return self._queue(again)

    def _sign(self, event: dict[str, Any], moment: datetime) -> Delivery:
        body = encode_event(event)
        headers = sign_webhook(
            body, self._options.webhook_secret, timestamp=int(moment.timestamp())
        )
        return Delivery(webhook_id=headers["webhook-id"], event=event, body=body, headers=headers)

    def _queue(self, delivery: Delivery) -> Delivery:
        with self._changed:
            self.queued.append(delivery)
            self._changed.notify_all()
        return delivery

    # --- sending ------------------------------------------------------------------------

    def deliver(
        self, send: Sender | None = None, deliveries: Iterable[Delivery] | None = None
    ) -> list[Any]:
        """Send the queued deliveries in order and return what each send returned.

        ``send(headers, body)`` is called per delivery; by default each is POSTed to
        ``webhook_url`` over HTTP (returning :class:`HTTPDeliveryResult`). ``deliveries``
        sends only those (they leave the outbox); the rest stay queued. Every send is
        recorded in :attr:`sent` as ``(delivery, result)``.
        """
        if send is None:
            if not self._options.webhook_url:
                raise RuntimeError("FakeIron has no webhook_url; pass send=...")
            send = self.post
        with self._lock:
            if deliveries is None:
                batch = list(self.queued)
                self.queued.clear()
            else:
                batch = list(deliveries)
                ids = {id(d) for d in batch}
                self.queued[:] = [d for d in self.queued if id(d) not in ids]
        results = []
        for delivery in batch:
            result = send(dict(delivery.headers), delivery.body)
            with self._lock:
                self.sent.append((delivery, result))
            results.append(result)
        return results

    def post(self, headers: Mapping[str, str], body: bytes) -> HTTPDeliveryResult:
        """POST one delivery to ``webhook_url`` (no proxies, 10 s timeout)."""
        url = self._options.webhook_url
        if not url:
            raise RuntimeError("FakeIron has no webhook_url")
        request = urllib.request.Request(  # noqa: S310 - the URL is the configured receiver
            url, data=body, headers=dict(headers), method="POST"
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=10) as answer:
                return HTTPDeliveryResult(answer.status, answer.read(), dict(answer.headers))
        except urllib.error.HTTPError as exc:
            return HTTPDeliveryResult(exc.code, exc.read(), dict(exc.headers))
        except (urllib.error.URLError, OSError) as exc:
            return HTTPDeliveryResult(None, error=str(exc))

    # --- the auto-deliver thread --------------------------------------------------------

    def wait_until_sent(self, timeout: float = 5.0) -> bool:
        """Wait until nothing is queued or being sent; False on timeout."""
        with self._changed:
            return self._changed.wait_for(
                lambda: not self.queued and not self._delivering, timeout=timeout
            )

    def start(self, thread_name: str = "FakeIron-webhooks") -> None:
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._deliver_as_queued, name=thread_name, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping.set()
        with self._changed:
            self._changed.notify_all()
        thread.join(timeout=5)

    def _auto_delivering(self) -> bool:
        return bool(self._options.auto_deliver and self._options.webhook_url)

    def _deliver_as_queued(self) -> None:
        # The wait times out each second: a test may switch auto_deliver on at any time.
        while not self._stopping.is_set():
            with self._changed:
                self._changed.wait_for(
                    lambda: (
                        self._stopping.is_set() or bool(self._auto_delivering() and self.queued)
                    ),
                    timeout=1.0,
                )
                if self._stopping.is_set() or not self._auto_delivering():
                    continue
                batch = list(self.queued)
                self.queued.clear()
                self._delivering = True
            try:
                for delivery in batch:
                    result = self.post(delivery.headers, delivery.body)
                    with self._lock:
                        self.sent.append((delivery, result))
            finally:
                with self._changed:
                    self._delivering = False
                    self._changed.notify_all()
