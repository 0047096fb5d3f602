"""``FakeIron``: one object that starts the fake and hands each call to the part that does it."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Generic, TypeVar, overload

from .api import IronApi
from .clock import IronClock
from .faults import DropMode, Fault, FaultInjector
from .options import DEFAULT_API_KEY, DEFAULT_WEBHOOK_SECRET, FakeOptions
from .outbox import Delivery, HTTPDeliveryResult, Outbox, Sender
from .server import FakeServer, RecordedRequest
from .state import (
    IDENTIFICATION_REQUIRED,
    NO_HOSTED_PAGE,
    Creation,
    IdDict,
    IronState,
)

__all__ = ["FakeIron"]

_T = TypeVar("_T")


class _Option(Generic[_T]):
    """A ``FakeIron`` attribute that reads and writes its :class:`FakeOptions`."""

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self._name = name

    @overload
    def __get__(self, fake: None, owner: type[Any] | None = None) -> _Option[_T]: ...
    @overload
    def __get__(self, fake: FakeIron, owner: type[Any] | None = None) -> _T: ...
    def __get__(self, fake: FakeIron | None, owner: type[Any] | None = None) -> _T | _Option[_T]:
        if fake is None:  # looked up on the class (help(), documentation tools)
            return self
        value: _T = getattr(fake.options, self._name)
        return value

    def __set__(self, fake: FakeIron, value: _T) -> None:
        setattr(fake.options, self._name, value)


class FakeIron:
    """A fake Iron HTTP server for tests and local development.

    Keyword arguments after ``api_key`` are the :class:`FakeOptions` (kept in
    :attr:`options`; readable and settable as attributes of the same names, too), and
    ``host``, ``port`` (0: a free one),
    ``partner_id`` and ``on_request`` (called with each :class:`RecordedRequest` once it
    is answered or dropped). See :mod:`django_iron_kyc.testing.fake` for what it imitates.
    """

    api_key = _Option[str]()
    webhook_secret = _Option[str]()
    webhook_url = _Option[str | None]()
    message_shape = _Option[str]()
    conflict_on_pending = _Option[bool]()
    error_format = _Option[str]()
    list_order = _Option[str]()
    sandbox_webhooks = _Option[bool]()
    auto_deliver = _Option[bool]()

    def __init__(
        self,
        api_key: str = DEFAULT_API_KEY,
        *,
        webhook_secret: str = DEFAULT_WEBHOOK_SECRET,
        webhook_url: str | None = None,
        message_shape: str = "tagged",
        conflict_on_pending: bool = False,
        error_format: str = "iron",
        list_order: str = "newest",
        sandbox_webhooks: bool = True,
        auto_deliver: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
        partner_id: str | None = None,
        on_request: Callable[[RecordedRequest], None] | None = None,
    ) -> None:
        self.options = FakeOptions(
            api_key=api_key,
            webhook_secret=webhook_secret,
            webhook_url=webhook_url,
            message_shape=message_shape,
            conflict_on_pending=conflict_on_pending,
            error_format=error_format,
            list_order=list_order,
            sandbox_webhooks=sandbox_webhooks,
            auto_deliver=auto_deliver,
        )
        clock = IronClock()
        self._outbox = Outbox(self.options, clock)
        self._state = IronState(
            clock=clock, partner_id=partner_id, on_change=self._outbox.queue_change
        )
        self._faults = FaultInjector()
        self._server = FakeServer(
            IronApi(self._state, self.options).respond,
            faults=self._faults,
            options=self.options,
            host=host,
            port=port,
            on_request=on_request,
        )

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> FakeIron:
        """Start serving on ``host:port`` in a background thread (and the webhook sender)."""
        if not self._server.running:
            self._server.start()
            self._state.page_base_url = self._server.base_url
            self._outbox.start(f"FakeIron-webhooks:{self.port}")
        return self

    def stop(self) -> None:
        """Stop serving, close open connections and wake any delayed answer."""
        self._server.stop()
        self._outbox.stop()
        self._state.page_base_url = NO_HOSTED_PAGE

    def __enter__(self) -> FakeIron:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<FakeIron {self.base_url if self.running else 'stopped'}>"

    @property
    def running(self) -> bool:
        return self._server.running

    @property
    def host(self) -> str:
        return self._server.host

    @property
    def port(self) -> int:
        """The port served on (once started, the one picked for port 0)."""
        return self._server.port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``: the value for ``IRON_KYC_BASE_URL``."""
        return self._server.base_url

    @property
    def partner_id(self) -> str:
        return self._state.partner_id

    def django_settings(self) -> dict[str, Any]:
        """The ``IRON_KYC_*`` settings that point the app at this fake."""
        return {
            "IRON_KYC_BASE_URL": self.base_url,
            "IRON_KYC_API_KEY": self.api_key,
            "IRON_KYC_WEBHOOK_SECRET": self.webhook_secret,
        }

    # --- Iron's state (see .state) ------------------------------------------------------

    @property
    def now(self) -> datetime:
        """The fake's clock: the real UTC time plus what :meth:`advance` added."""
        return self._state.clock.now

    def advance(self, seconds: float) -> datetime:
        """Move the fake's clock forward (idempotency expiry, timestamps, webhook times:
        a receiver whose clock did not move rejects deliveries after a large jump)."""
        return self._state.clock.advance(seconds)

    @property
    def customers(self) -> IdDict:
        """Iron's customers as JSON, by id (a str or a UUID): a snapshot of live objects."""
        return self._state.customers()

    @property
    def identifications(self) -> IdDict:
        """Iron's identifications as JSON, by id, in creation order: a snapshot of live objects."""
        return self._state.identifications()

    @property
    def superseded(self) -> frozenset[str]:
        """The ids of identifications a newer one replaced while they were in flight."""
        return self._state.superseded()

    @property
    def creations(self) -> list[Creation]:
        """Every identification created so far, with what was in flight for its customer then
        (:class:`~django_iron_kyc.testing.fake.state.Creation`)."""
        return self._state.creations()

    def add_customer(
        self, email: str | None = None, status: str = IDENTIFICATION_REQUIRED, **fields: Any
    ) -> dict[str, Any]:
        """Create a customer as Iron would; ``fields`` override or add fields (``id``...)."""
        return self._state.add_customer(email, status, **fields)

    def add_identification(
        self,
        customer_id: uuid.UUID | str,
        status: str = "Pending",
        *,
        with_edd: bool = False,
        notify: bool = False,
        **fields: Any,
    ) -> dict[str, Any]:
        """Create an identification directly (no HTTP), by the API's rules; webhooks only
        if ``notify`` (see :meth:`.state.IronState.add_identification`)."""
        return self._state.add_identification(
            customer_id, status, with_edd=with_edd, notify=notify, **fields
        )

    def set_identification_status(
        self,
        iron_id: uuid.UUID | str,
        status: str,
        *,
        review_comment: str | None = None,
        notify: bool = True,
        at: datetime | None = None,
    ) -> dict[str, Any]:
        """Move an identification to ``status`` (any string), ``updated_at`` now or ``at``;
        queues its webhooks if ``notify`` (:meth:`.state.IronState.set_identification_status`)."""
        return self._state.set_identification_status(
            iron_id, status, review_comment=review_comment, notify=notify, at=at
        )

    def set_customer_status(
        self, iron_id: uuid.UUID | str, status: str, *, notify: bool = True
    ) -> dict[str, Any]:
        """Set a customer's status directly (e.g. ``Suspended``); queues ``customer_status``."""
        return self._state.set_customer_status(iron_id, status, notify=notify)

    def is_superseded(self, iron_id: uuid.UUID | str) -> bool:
        """True when a newer identification replaced this one while it was in flight."""
        return self._state.is_superseded(iron_id)

    def identifications_of(self, customer_id: uuid.UUID | str) -> list[dict[str, Any]]:
        """A customer's identifications, oldest first (copies)."""
        return self._state.identifications_of(customer_id)

    def newest_identification(self, customer_id: uuid.UUID | str) -> dict[str, Any] | None:
        """The identification that drives the customer's status (a copy), if any."""
        return self._state.newest_identification(customer_id)

    # --- requests and faults (see .server and .faults) ----------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, in order."""
        return self._server.requests

    def requests_to(self, method: str | None, path_regex: str) -> list[RecordedRequest]:
        """Recorded requests with this method (``None``: any) whose path matches
        ``path_regex`` (``re.search``; anchor it with ``^...$`` for an exact path)."""
        return self._server.requests_to(method, path_regex)

    def fail_next(
        self,
        n: int = 1,
        *,
        status: int | None = None,
        method: str | None = None,
        path: str | None = None,
        retry_after: float | str | None = None,
        drop: DropMode | None = None,
        delay: float | threading.Event | None = None,
    ) -> Fault:
        """Make the next ``n`` matching requests fail (``path`` is a regex, ``re.search``).

        - ``status`` (default 503): answer this instead of doing the work (500/502/503/504
          with ``{"message", "trace_id"}``, 429 with ``Creation Rate Limit Exceeded``, any
          other as an error string); ``retry_after`` adds a ``Retry-After`` header;
        - ``drop="before"``: close the connection without doing the work;
          ``drop="after"``: do the work (and store the idempotent answer), then close the
          connection without answering;
        - ``delay``: wait this many seconds (or until this ``threading.Event`` is set) before
          going on. With ``delay`` alone the answer is the real one, only late.

        Faults hit before authentication, like a proxy in front of Iron. Several armed
        faults are used in the order they were armed.
        """
        return self._faults.arm(Fault(n, status, method, path, retry_after, drop, delay))

    def clear_faults(self) -> None:
        """Disarm every fault."""
        self._faults.clear()

    @property
    def faults(self) -> list[Fault]:
        """The faults still armed, in the order they will be used."""
        return self._faults.armed()

    # --- webhooks (see .outbox) ---------------------------------------------------------

    @property
    def outbox(self) -> list[Delivery]:
        """The deliveries waiting to be sent, in order (a test may reorder or remove them)."""
        return self._outbox.queued

    @property
    def sent(self) -> list[tuple[Delivery, Any]]:
        """Every delivery sent, with what its ``send`` returned."""
        return self._outbox.sent

    def queue_webhook(self, event: dict[str, Any]) -> Delivery:
        """Sign any event (e.g. from :func:`build_event`) and put it in the outbox."""
        return self._outbox.queue_event(event)

    def duplicate_next_webhooks(self, n: int = 1) -> None:
        """The next ``n`` events are queued twice, under the same ``webhook-id``."""
        self._outbox.duplicate_next(n)

    def reorder_outbox(self, order: Sequence[int] | None = None) -> None:
        """Reverse the outbox, or put it in ``order`` (a permutation of its indexes)."""
        self._outbox.reorder(order)

    def resend(
        self, delivery: Delivery, new_id: bool = True, *, new_timestamp: bool = False
    ) -> Delivery:
        """Queue ``delivery``'s event again: signed now under a new ``webhook-id`` (a retry
        that Iron counts as a new attempt), or the very same delivery if ``new_id=False``.
        ``new_timestamp``: the body's ``timestamp`` says now too (Iron's timestamps are send
        times, and whether a retry keeps the first one is not published)."""
        return self._outbox.resend(delivery, new_id, new_timestamp=new_timestamp)

    def deliver_webhooks(
        self, send: Sender | None = None, deliveries: Iterable[Delivery] | None = None
    ) -> list[Any]:
        """Send the queued deliveries (or only ``deliveries``) with ``send(headers, body)``,
        or POST them to ``webhook_url``; see :meth:`.outbox.Outbox.deliver`."""
        return self._outbox.deliver(send, deliveries)

    def post_webhook(self, headers: Mapping[str, str], body: bytes) -> HTTPDeliveryResult:
        """POST one delivery to ``webhook_url`` (no proxies, 10 s timeout)."""
        return self._outbox.post(headers, body)

    def wait_for_webhooks(self, timeout: float = 5.0) -> bool:
        """With ``auto_deliver``: wait until the outbox is sent; False on timeout."""
        return self._outbox.wait_until_sent(timeout)
