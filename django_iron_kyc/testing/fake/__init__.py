"""A fake Iron: a real HTTP server on 127.0.0.1 that behaves as our contract with Iron says.

Start it from a test (or use the ``fake_iron`` pytest fixture), point ``IRON_KYC_BASE_URL``
at ``fake.base_url`` and the app talks to it over real HTTP::

    with FakeIron() as fake:
        customer = fake.add_customer(email="ada@example.com")
        ...
        fake.set_identification_status(identification_id, "Approved")
        fake.deliver_webhooks(send=...)

What it imitates (see ``IRON_API.md``, Part A):

- the endpoints ``POST /api/customers``, ``GET /api/customers/{id}``,
  ``POST /api/customers/{id}/identifications/v2``, ``GET /api/customers/{id}/identifications``
  (cursor pages, ``page_size`` 1..100, default 10), ``GET /api/identifications/{id}`` and
  ``POST /api/sandbox/identification/{id}``;
- ``X-API-Key`` on every request (401 ``text/plain`` ``authorization error`` otherwise);
- ``IDEMPOTENCY-KEY`` (a UUID) required on every POST. Keys are scoped per path. The same key
  with the same JSON body replays the stored first answer (marked with the header
  ``x-fake-iron-replayed: true``, which Iron does not send); with another body it is 409.
  Only successful (2xx) answers are stored: a rejected request leaves the key unused. Keys
  expire after 24 hours on the fake's clock. Two requests with the same key at the same
  moment are serialised: exactly one does the work;
- the newest identification drives the customer's status: Approved -> ``Active``; Pending,
  Processed, PendingReview, Declined, Expired, Archived -> ``IdentificationRequired`` (an
  unknown status leaves the customer alone). Iron's real flow goes through
  ``SigningsRequired`` before ``Active``; the fake skips signings;
- creating an identification while another is in flight supersedes the old one: it keeps its
  own status (and can still change, with webhooks) but no longer moves the customer. With
  ``conflict_on_pending=True`` the fake answers 409 ``Has Pending Identification`` instead;
- sandbox decide works on Pending, Processed and PendingReview identifications (Approved or
  Declined) and answers 400 on a terminal one; it sends webhooks like any other change
  (``sandbox_webhooks=False`` turns that off);
- error bodies as Iron sends them: 401 plain text, other 4xx a JSON string, 5xx
  ``{"message", "trace_id"}``; ``error_format="envelope"`` answers every error as
  ``{"error": {"code", "message", "request_id"}}`` instead;
- webhooks signed with :mod:`django_iron_kyc.signing`, held in :attr:`FakeIron.outbox` until
  :meth:`FakeIron.deliver_webhooks` (or sent at once with ``auto_deliver``);
- faults on request (:meth:`FakeIron.fail_next`) and every request recorded
  (:attr:`FakeIron.requests`).

Everything is thread-safe: the server answers from several threads at once.
"""

from __future__ import annotations

import contextlib
import copy
import hmac
import html
import json
import re
import secrets
import socket
import sys
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from requests.structures import CaseInsensitiveDict

from .events import (
    CUSTOMER_STATUS,
    IDENTIFICATION_STATUS,
    MESSAGE_SHAPES,
    build_event,
    encode_event,
    sign_webhook,
)

JSON_CONTENT_TYPE = "application/json; charset=utf-8"
TEXT_CONTENT_TYPE = "text/plain; charset=utf-8"
HTML_CONTENT_TYPE = "text/html; charset=utf-8"
REPLAYED_HEADER = "x-fake-iron-replayed"

IDEMPOTENCY_KEY_TTL = timedelta(hours=24)
DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 100

TERMINAL_STATUSES = frozenset({"Approved", "Declined", "Expired", "Archived"})
DECIDABLE_STATUSES = frozenset({"Pending", "Processed", "PendingReview"})
IDENTIFICATION_REQUIRED = "IdentificationRequired"
# The customer's status once its newest identification has this status (see module doc).
CUSTOMER_STATUS_FOR: dict[str, str] = {
    "Approved": "Active",
    "Pending": IDENTIFICATION_REQUIRED,
    "Processed": IDENTIFICATION_REQUIRED,
    "PendingReview": IDENTIFICATION_REQUIRED,
    "Declined": IDENTIFICATION_REQUIRED,
    "Rejected": IDENTIFICATION_REQUIRED,
    "Expired": IDENTIFICATION_REQUIRED,
    "Archived": IDENTIFICATION_REQUIRED,
}
ERROR_FORMATS = ("iron", "envelope")
LIST_ORDERS = ("newest", "oldest")
_ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    429: "rate_limited",
}

DropMode = Literal["before", "after"]
Sender = Callable[[Mapping[str, str], bytes], Any]


def iron_time(value: datetime) -> str:
    """An object timestamp as Iron writes it: ``2026-01-15T10:00:00.123456Z``."""
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_iron_time(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)


class IdDict(dict[str, dict[str, Any]]):
    """Iron objects by id: a ``uuid.UUID`` key works as well as its string."""

    def __getitem__(self, key: object) -> dict[str, Any]:
        return super().__getitem__(str(key))

    def __contains__(self, key: object) -> bool:
        return super().__contains__(str(key))

    def get(self, key: object, default: Any = None) -> Any:
        return super().get(str(key), default)


@dataclass
class RecordedRequest:
    """One request the fake received, kept for assertions.

    ``headers`` is case-insensitive (``headers["idempotency-key"]`` works). ``json`` is the
    decoded body, or ``None`` if there was none or it was not JSON. ``status`` is the status
    answered (``None`` when the connection was dropped), ``replayed`` is true when the
    answer was an idempotent replay, and ``fault`` is the injected fault that hit it.
    """

    method: str
    path: str
    query: dict[str, list[str]]
    headers: CaseInsensitiveDict[str]
    body: bytes
    json: Any
    status: int | None = None
    replayed: bool = False
    fault: Fault | None = None

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("IDEMPOTENCY-KEY")


@dataclass
class Fault:
    """A fault armed by :meth:`FakeIron.fail_next`; ``remaining`` counts down per hit."""

    remaining: int
    status: int | None = 503
    method: str | None = None
    path: str | None = None
    retry_after: float | str | None = None
    drop: DropMode | None = None
    delay: float | threading.Event | None = None

    def matches(self, method: str, path: str) -> bool:
        if self.remaining <= 0:
            return False
        if self.method is not None and self.method.upper() != method:
            return False
        return self.path is None or re.search(self.path, path) is not None


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


@dataclass
class _Response:
    status: int
    body: bytes = b""
    content_type: str | None = JSON_CONTENT_TYPE
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _StoredKey:
    fingerprint: Any
    response: _Response
    created_at: datetime


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "FakeIron/1"
    # Headers and body go out in separate writes: without TCP_NODELAY, Nagle's algorithm
    # and the client's delayed ACK hold every keep-alive answer back by about 40 ms.
    disable_nagle_algorithm = True

    def _dispatch(self) -> None:
        self.server.fake._handle(self)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the fake must not print requests (they carry the API key)."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], fake: FakeIron) -> None:
        self.fake = fake
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (timeout, test ended) is normal here: stay quiet."""
        error = sys.exc_info()[1]
        if not isinstance(error, (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)

    def close_open_connections(self) -> None:
        with self.sockets_lock:
            sockets = list(self.open_sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    name: str
    idempotent: bool = False
    authenticated: bool = True


_UUID = r"(?P<id>[^/]+)"
_ROUTES = (
    _Route("POST", re.compile(r"/api/customers/?"), "create_customer", idempotent=True),
    _Route("GET", re.compile(rf"/api/customers/{_UUID}"), "get_customer"),
    _Route(
        "POST",
        re.compile(rf"/api/customers/{_UUID}/identifications/v2"),
        "create_identification",
        idempotent=True,
    ),
    _Route("GET", re.compile(rf"/api/customers/{_UUID}/identifications"), "list_identifications"),
    _Route("GET", re.compile(rf"/api/identifications/{_UUID}"), "get_identification"),
    _Route(
        "POST",
        re.compile(rf"/api/sandbox/identification/{_UUID}"),
        "sandbox_decide",
        idempotent=True,
    ),
    # The hosted page an end user would open (``url`` of an identification): no API key.
    _Route("GET", re.compile(rf"/verify/{_UUID}"), "hosted_page", authenticated=False),
    _Route("POST", re.compile(rf"/verify/{_UUID}"), "hosted_action", authenticated=False),
)


class _ClientError(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(message)


class FakeIron:
    """A fake Iron HTTP server for tests and local development (see the module doc).

    ``webhook_url``: where deliveries are POSTed over real HTTP (``deliver_webhooks()``
    without ``send``, and ``auto_deliver``). ``message_shape``: ``"tagged"`` or ``"flat"``
    webhook messages. ``conflict_on_pending``: answer 409 instead of superseding.
    ``error_format``: ``"iron"`` or ``"envelope"``. ``list_order``: ``"newest"`` or
    ``"oldest"`` first in identification lists. ``sandbox_webhooks``: whether sandbox
    decisions send webhooks. ``auto_deliver``: POST each delivery to ``webhook_url`` in a
    background thread as soon as it is queued. ``on_request``: called with each
    :class:`RecordedRequest` once it is answered (or dropped).
    """

    def __init__(
        self,
        api_key: str = "test-api-key-d0-not-log",
        webhook_secret: str = "test_secret",  # noqa: S107 - a test secret
        webhook_url: str | None = None,
        message_shape: str = "tagged",
        conflict_on_pending: bool = False,
        *,
        error_format: str = "iron",
        list_order: str = "newest",
        sandbox_webhooks: bool = True,
        auto_deliver: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
        partner_id: str | None = None,
        on_request: Callable[[RecordedRequest], None] | None = None,
    ) -> None:
        if message_shape not in MESSAGE_SHAPES:
            raise ValueError(f"message_shape must be one of {MESSAGE_SHAPES}")
        if error_format not in ERROR_FORMATS:
            raise ValueError(f"error_format must be one of {ERROR_FORMATS}")
        if list_order not in LIST_ORDERS:
            raise ValueError(f"list_order must be one of {LIST_ORDERS}")
        self.api_key = api_key
        self.webhook_secret = webhook_secret
        self.webhook_url = webhook_url
        self.message_shape = message_shape
        self.conflict_on_pending = conflict_on_pending
        self.error_format = error_format
        self.list_order = list_order
        self.sandbox_webhooks = sandbox_webhooks
        self.auto_deliver = auto_deliver
        self.host = host
        self.port = port
        self.partner_id = partner_id or str(uuid.uuid4())
        self.on_request = on_request

        # Iron's view of its objects, as JSON, by id (a str or a UUID).
        self.customers = IdDict()
        self.identifications = IdDict()
        self.superseded: set[str] = set()
        self.requests: list[RecordedRequest] = []
        self.outbox: list[Delivery] = []
        self.sent: list[tuple[Delivery, Any]] = []

        self._lock = threading.RLock()
        self._key_locks: dict[tuple[str, str], threading.Lock] = {}
        self._idempotency: dict[tuple[str, str], _StoredKey] = {}
        self._faults: list[Fault] = []
        self._duplicate_next = 0
        self._offset = timedelta(0)
        self._last_tick: datetime | None = None
        self._email_counter = 0

        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._deliver_wakeup = threading.Condition(self._lock)
        self._delivering = False
        self._deliver_thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> FakeIron:
        """Start serving on ``host:port`` (port 0 = a free one) in a background thread."""
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server((self.host, self.port), self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"FakeIron:{self.port}",
            daemon=True,
        )
        self._thread.start()
        self._deliver_thread = threading.Thread(
            target=self._auto_deliver_loop, name=f"FakeIron-webhooks:{self.port}", daemon=True
        )
        self._deliver_thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close open connections and wake any delayed answer."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        with self._lock:
            self._deliver_wakeup.notify_all()
        server.shutdown()
        server.close_open_connections()
        server.server_close()
        for thread in (self._thread, self._deliver_thread):
            if thread is not None:
                thread.join(timeout=5)
        self._thread = self._deliver_thread = None

    def __enter__(self) -> FakeIron:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``: the value for ``IRON_KYC_BASE_URL``."""
        if self._server is None:
            raise RuntimeError("FakeIron is not started")
        return f"http://{self.host}:{self.port}"

    def django_settings(self) -> dict[str, Any]:
        """The ``IRON_KYC_*`` settings that point the app at this fake."""
        return {
            "IRON_KYC_BASE_URL": self.base_url,
            "IRON_KYC_API_KEY": self.api_key,
            "IRON_KYC_WEBHOOK_SECRET": self.webhook_secret,
        }

    def __repr__(self) -> str:
        where = self.base_url if self.running else "stopped"
        return f"<FakeIron {where}>"

    # --- clock --------------------------------------------------------------------------

    @property
    def now(self) -> datetime:
        """The fake's clock: the real UTC time plus what :meth:`advance` added."""
        return datetime.now(timezone.utc) + self._offset

    def advance(self, seconds: float) -> datetime:
        """Move the fake's clock forward (idempotency expiry, timestamps, webhook times).

        Webhook timestamps move too, so a receiver with a 5-minute tolerance rejects
        deliveries made after a large jump unless its own clock moved as well.
        """
        with self._lock:
            self._offset += timedelta(seconds=seconds)
            return self.now

    def _tick(self) -> datetime:
        """Now, strictly after the previous tick: every change gets a newer timestamp."""
        with self._lock:
            moment = self.now
            if self._last_tick is not None and moment <= self._last_tick:
                moment = self._last_tick + timedelta(microseconds=1)
            self._last_tick = moment
            return moment

    # --- state helpers ------------------------------------------------------------------

    def add_customer(
        self, email: str | None = None, status: str = IDENTIFICATION_REQUIRED, **fields: Any
    ) -> dict[str, Any]:
        """Create a customer as Iron would and return its JSON (a copy).

        ``fields`` override or add Customer fields (``id``, ``name``, ``customer_type``,
        ``external_id``...).
        """
        with self._lock:
            if email is None:
                self._email_counter += 1
                email = f"customer{self._email_counter}@example.com"
            moment = iron_time(self._tick())
            customer_id = str(fields.pop("id", None) or uuid.uuid4())
            customer: dict[str, Any] = {
                "id": customer_id,
                "customer_type": "Person",
                "name": "",
                "email": email,
                "status": status,
                "partner_id": self.partner_id,
                "identification_ids": [],
                "signing_ids": [],
                "created_at": moment,
                "updated_at": moment,
            }
            customer.update({k: v for k, v in fields.items() if v is not None})
            self.customers[customer_id] = customer
            return copy.deepcopy(customer)

    def add_identification(
        self,
        customer_id: uuid.UUID | str,
        status: str = "Pending",
        *,
        with_edd: bool = False,
        notify: bool = False,
        **fields: Any,
    ) -> dict[str, Any]:
        """Create an identification directly (no HTTP) and return its JSON (a copy).

        Same rules as the API (it supersedes one in flight and the customer follows). Use
        ``fields`` for ``review_comment`` or a given ``created_at``/``updated_at``.
        Webhooks only if ``notify``.
        """
        with self._lock:
            identification = self._create_identification(
                str(customer_id), status=status, with_edd=with_edd, notify=notify, **fields
            )
        self._wake_deliverer()
        return identification

    def set_identification_status(
        self,
        iron_id: uuid.UUID | str,
        status: str,
        *,
        review_comment: str | None = None,
        notify: bool = True,
    ) -> dict[str, Any]:
        """Move an identification to ``status`` (any string; unknown ones are kept as they are).

        Bumps ``updated_at``, sets ``review_comment`` if given, moves the customer if this is
        its newest identification, and (if ``notify``) queues an ``identification_status``
        delivery, plus a ``customer_status`` one when the customer's status changed.
        Returns the identification's JSON (a copy).
        """
        with self._lock:
            identification = self.identifications[str(iron_id)]
            moment = self._tick()
            identification["status"] = status
            identification["updated_at"] = iron_time(moment)
            if review_comment is not None:
                identification["review_comment"] = review_comment
            if notify:
                self._queue_event(
                    IDENTIFICATION_STATUS,
                    identification["customer_id"],
                    identification["id"],
                    status,
                    moment,
                )
            self._refresh_customer(identification["customer_id"], moment, notify)
            result = copy.deepcopy(identification)
        self._wake_deliverer()
        return result

    def set_customer_status(
        self, iron_id: uuid.UUID | str, status: str, *, notify: bool = True
    ) -> dict[str, Any]:
        """Set a customer's status directly (e.g. ``Suspended``); queues ``customer_status``."""
        with self._lock:
            customer = self.customers[str(iron_id)]
            moment = self._tick()
            customer["status"] = status
            customer["updated_at"] = iron_time(moment)
            if notify:
                self._queue_event(CUSTOMER_STATUS, customer["id"], customer["id"], status, moment)
            result = copy.deepcopy(customer)
        self._wake_deliverer()
        return result

    def is_superseded(self, iron_id: uuid.UUID | str) -> bool:
        """True when a newer identification replaced this one while it was in flight."""
        with self._lock:
            return str(iron_id) in self.superseded

    def identifications_of(self, customer_id: uuid.UUID | str) -> list[dict[str, Any]]:
        """A customer's identifications, oldest first (copies)."""
        with self._lock:
            return [copy.deepcopy(i) for i in self._identifications_of(str(customer_id))]

    def newest_identification(self, customer_id: uuid.UUID | str) -> dict[str, Any] | None:
        """The identification that drives the customer's status (a copy), if any."""
        with self._lock:
            items = self._identifications_of(str(customer_id))
            return copy.deepcopy(items[-1]) if items else None

    def _identifications_of(self, customer_id: str) -> list[dict[str, Any]]:
        customer = self.customers[customer_id]
        items = [self.identifications[i] for i in customer["identification_ids"]]
        # Creation order breaks ties between equal timestamps given by a test.
        order = {i: n for n, i in enumerate(customer["identification_ids"])}
        return sorted(items, key=lambda i: (_parse_iron_time(i["created_at"]), order[i["id"]]))

    def _in_flight(self, customer_id: str) -> list[dict[str, Any]]:
        return [
            i
            for i in self._identifications_of(customer_id)
            if i["status"] not in TERMINAL_STATUSES and i["id"] not in self.superseded
        ]

    def _create_identification(
        self, customer_id: str, *, status: str, with_edd: bool, notify: bool, **fields: Any
    ) -> dict[str, Any]:
        customer = self.customers[customer_id]
        moment = self._tick()
        identification_id = str(fields.pop("id", None) or uuid.uuid4())
        token = secrets.token_urlsafe(16)
        host = self.base_url if self.running else "https://verify.fake-iron.invalid"
        identification: dict[str, Any] = {
            "id": identification_id,
            "customer_id": customer_id,
            "status": status,
            "url": f"{host}/verify/{identification_id}?token={token}",
            "with_edd": with_edd,
            "created_at": iron_time(moment),
            "updated_at": iron_time(moment),
        }
        for key, value in fields.items():
            identification[key] = iron_time(value) if isinstance(value, datetime) else value
        for old in self._in_flight(customer_id):
            self.superseded.add(old["id"])
        self.identifications[identification_id] = identification
        customer["identification_ids"].append(identification_id)
        self._refresh_customer(customer_id, moment, notify)
        return copy.deepcopy(identification)

    def _refresh_customer(self, customer_id: str, moment: datetime, notify: bool) -> None:
        """The newest identification drives the customer's status (see the module doc)."""
        customer = self.customers[customer_id]
        items = self._identifications_of(customer_id)
        if not items:
            return
        newest = items[-1]
        customer["identification_status"] = newest["status"]
        status = CUSTOMER_STATUS_FOR.get(newest["status"])
        if status is None or status == customer["status"]:
            return
        customer["status"] = status
        customer["updated_at"] = iron_time(moment)
        if notify:
            self._queue_event(CUSTOMER_STATUS, customer_id, customer_id, status, moment)

    # --- requests and faults ------------------------------------------------------------

    def requests_to(self, method: str | None, path_regex: str) -> list[RecordedRequest]:
        """Recorded requests with this method (``None``: any) whose path matches
        ``path_regex`` (``re.search``; anchor it with ``^...$`` for an exact path)."""
        with self._lock:
            return [
                r
                for r in self.requests
                if (method is None or r.method == method.upper()) and re.search(path_regex, r.path)
            ]

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
        if drop not in (None, "before", "after"):
            raise ValueError("drop must be None, 'before' or 'after'")
        if status is None and drop is None and delay is None:
            status = 503
        fault = Fault(
            remaining=n,
            status=status,
            method=method,
            path=path,
            retry_after=retry_after,
            drop=drop,
            delay=delay,
        )
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    # --- HTTP ---------------------------------------------------------------------------

    def _handle(self, handler: _Handler) -> None:
        record = self._serve(handler)
        if self.on_request is not None:
            self.on_request(record)

    def _serve(self, handler: _Handler) -> RecordedRequest:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length > 0 else b""
        split = urlsplit(handler.path)
        try:
            decoded: Any = json.loads(body) if body else None
        except ValueError:
            decoded = None
        record = RecordedRequest(
            method=handler.command,
            path=split.path,
            query=parse_qs(split.query, keep_blank_values=True),
            headers=CaseInsensitiveDict(dict(handler.headers.items())),
            body=body,
            json=decoded,
        )
        with self._lock:
            self.requests.append(record)

        fault = self._take_fault(record.method, record.path)
        record.fault = fault
        if fault is not None:
            if isinstance(fault.delay, threading.Event):
                while not fault.delay.wait(0.05) and not self._stopping.is_set():
                    pass
            elif fault.delay:
                self._stopping.wait(fault.delay)
            if fault.drop == "before":
                self._drop(handler)
                return record
            if fault.drop is None and fault.status is not None:
                response = self._fault_response(fault, record.path)
                self._send(handler, record, response)
                return record

        response = self._respond(record)
        if fault is not None and fault.drop == "after":
            self._drop(handler)
            return record
        self._send(handler, record, response)
        return record

    def _send(self, handler: _Handler, record: RecordedRequest, response: _Response) -> None:
        record.status = response.status
        handler.send_response(response.status)
        if response.content_type:
            handler.send_header("Content-Type", response.content_type)
        handler.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(response.body)

    def _drop(self, handler: _Handler) -> None:
        handler.close_connection = True
        with contextlib.suppress(OSError):
            handler.connection.shutdown(socket.SHUT_RDWR)

    def _fault_response(self, fault: Fault, path: str) -> _Response:
        status = fault.status or 503
        if status == 429:
            message = (
                "Creation Rate Limit Exceeded" if path.endswith("/v2") else "Too Many Requests"
            )
        else:
            message = {
                500: "Internal Server Error",
                502: "Bad Gateway",
                503: "Service Unavailable",
                504: "Gateway Timeout",
            }.get(status, "Injected fault")
        response = self._error(status, message)
        if fault.retry_after is not None:
            value = fault.retry_after
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            response.headers["Retry-After"] = str(value)
        return response

    def _json(self, status: int, data: Any) -> _Response:
        return _Response(status, json.dumps(data).encode("utf-8"), JSON_CONTENT_TYPE)

    def _error(self, status: int, message: str) -> _Response:
        if self.error_format == "envelope":
            code = _ERROR_CODES.get(status, "server_error" if status >= 500 else "error")
            if status == 409 and "pending identification" in message.lower():
                code = "has_pending_identification"
            elif status == 409:
                code = "idempotency_conflict"
            return self._json(
                status,
                {"error": {"code": code, "message": message, "request_id": str(uuid.uuid4())}},
            )
        if status >= 500:
            return self._json(status, {"message": message, "trace_id": uuid.uuid4().hex})
        if status == 401:
            return _Response(401, message.encode("utf-8"), TEXT_CONTENT_TYPE)
        return self._json(status, message)

    def _respond(self, record: RecordedRequest) -> _Response:
        route, params, allowed = self._route(record.method, record.path)
        if route is None:
            return _Response(405 if allowed else 404, b"", None)
        if route.authenticated:
            given = record.headers.get("X-API-Key") or ""
            if not hmac.compare_digest(given.encode("utf-8"), self.api_key.encode("utf-8")):
                return self._error(401, "authorization error")
        endpoint: Callable[..., _Response] = getattr(self, f"_api_{route.name}")
        try:
            if route.idempotent:
                return self._idempotent(record, lambda: endpoint(record, **params))
            return endpoint(record, **params)
        except _ClientError as exc:
            return self._error(exc.status, exc.message)
        except Exception as exc:  # a bug in the fake: answer like Iron's 500, keep serving
            return self._error(500, f"fake Iron failed: {type(exc).__name__}: {exc}")

    def _route(self, method: str, path: str) -> tuple[_Route | None, dict[str, str], bool]:
        allowed = False
        for route in _ROUTES:
            match = route.pattern.fullmatch(path)
            if match is None:
                continue
            if route.method == method:
                return route, match.groupdict(), True
            allowed = True
        return None, {}, allowed

    def _idempotent(self, record: RecordedRequest, work: Callable[[], _Response]) -> _Response:
        key = record.idempotency_key
        if not key:
            raise _ClientError(400, "Missing required header: IDEMPOTENCY-KEY")
        try:
            uuid.UUID(key)
        except ValueError:
            raise _ClientError(400, "IDEMPOTENCY-KEY must be a UUID") from None
        scope = (record.path, key)
        fingerprint = record.json if record.json is not None else record.body
        with self._lock:
            key_lock = self._key_locks.setdefault(scope, threading.Lock())
        with key_lock:
            with self._lock:
                stored = self._idempotency.get(scope)
                if stored is not None and self.now - stored.created_at >= IDEMPOTENCY_KEY_TTL:
                    del self._idempotency[scope]
                    stored = None
            if stored is not None:
                if stored.fingerprint != fingerprint:
                    raise _ClientError(
                        409,
                        f"Idempotency key {key} was already used with a different request body",
                    )
                record.replayed = True
                replay = copy.deepcopy(stored.response)
                replay.headers[REPLAYED_HEADER] = "true"
                return replay
            response = work()
            if 200 <= response.status < 300:
                with self._lock:
                    self._idempotency[scope] = _StoredKey(
                        fingerprint=copy.deepcopy(fingerprint),
                        response=copy.deepcopy(response),
                        created_at=self.now,
                    )
            return response

    # --- endpoints ----------------------------------------------------------------------

    def _known_customer(self, customer_id: str) -> dict[str, Any]:
        _check_uuid(customer_id)
        customer: dict[str, Any] | None = self.customers.get(customer_id)
        if customer is None:
            raise _ClientError(404, "Customer not found")
        return customer

    def _known_identification(self, identification_id: str) -> dict[str, Any]:
        _check_uuid(identification_id)
        identification: dict[str, Any] | None = self.identifications.get(identification_id)
        if identification is None:
            raise _ClientError(404, "Identification not found")
        return identification

    def _api_create_customer(self, record: RecordedRequest) -> _Response:
        body = _object_body(record)
        customer_type = body.get("customer_type")
        if customer_type not in ("Person", "Business"):
            raise _ClientError(400, "Invalid Request: customer_type must be Person or Business")
        email = body.get("email")
        if not isinstance(email, str) or "@" not in email:
            raise _ClientError(400, "Invalid Request: email is required")
        extra: dict[str, str] = {
            k: v for k in ("name", "external_id") if isinstance(v := body.get(k), str)
        }
        return self._json(201, self.add_customer(email, customer_type=customer_type, **extra))

    def _api_get_customer(self, record: RecordedRequest, id: str) -> _Response:
        with self._lock:
            return self._json(200, self._known_customer(id))

    def _api_create_identification(
        self,
        record: RecordedRequest,
        id: str,
    ) -> _Response:
        body = _object_body(record)
        if body.get("type") != "Link":
            raise _ClientError(400, 'Invalid Request: the fake Iron supports only {"type": "Link"}')
        with_edd = body.get("with_edd", False)
        if not isinstance(with_edd, bool):
            raise _ClientError(400, "Invalid Request: with_edd must be a boolean")
        with self._lock:
            self._known_customer(id)
            if self.conflict_on_pending and self._in_flight(id):
                raise _ClientError(409, "Has Pending Identification")
            identification = self._create_identification(
                id, status="Pending", with_edd=with_edd, notify=True
            )
        self._wake_deliverer()
        return self._json(201, identification)

    def _api_list_identifications(
        self,
        record: RecordedRequest,
        id: str,
    ) -> _Response:
        raw_size = (record.query.get("page_size") or [str(DEFAULT_PAGE_SIZE)])[-1]
        try:
            page_size = int(raw_size)
        except ValueError:
            raise _ClientError(400, "Invalid query: page_size must be an integer") from None
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise _ClientError(
                400, f"Invalid query: page_size must be between 1 and {MAX_PAGE_SIZE}"
            )
        cursor = (record.query.get("cursor") or [""])[-1]
        with self._lock:
            self._known_customer(id)
            items = self._identifications_of(id)
            if self.list_order == "newest":
                items.reverse()
            start = 0
            if cursor:
                ids = [i["id"] for i in items]
                if cursor not in ids:
                    raise _ClientError(400, "Invalid query: unknown cursor")
                start = ids.index(cursor) + 1
            page = items[start : start + page_size]
            more = start + page_size < len(items)
            return self._json(
                200,
                {
                    "items": page,
                    "cursor": page[-1]["id"] if page and more else None,
                    "prev_cursor": page[0]["id"] if page and start > 0 else None,
                },
            )

    def _api_get_identification(
        self,
        record: RecordedRequest,
        id: str,
    ) -> _Response:
        with self._lock:
            return self._json(200, self._known_identification(id))

    def _api_sandbox_decide(self, record: RecordedRequest, id: str) -> _Response:
        body = _object_body(record)
        approved = body.get("approved")
        if not isinstance(approved, bool):
            raise _ClientError(400, "Invalid Request: approved must be a boolean")
        with self._lock:
            identification = self._known_identification(id)
            if identification["status"] not in DECIDABLE_STATUSES:
                raise _ClientError(
                    400, f"Identification is not pending (status {identification['status']})"
                )
            result = self.set_identification_status(
                id, "Approved" if approved else "Declined", notify=self.sandbox_webhooks
            )
        return self._json(201, result)

    def _api_hosted_page(self, record: RecordedRequest, id: str) -> _Response:
        with self._lock:
            identification = self._known_identification(id)
            status = html.escape(identification["status"])
        buttons = "".join(
            f'<button name="status" value="{value}">{label}</button> '
            for value, label in (
                ("Processed", "Submit documents"),
                ("Approved", "Approve"),
                ("Declined", "Decline"),
            )
        )
        page = (
            "<!doctype html><title>Fake Iron identification</title>"
            f"<h1>Fake Iron identification</h1><p>Identification {html.escape(id)}: "
            f"<strong>{status}</strong></p>"
            f'<form method="post">{buttons}</form>'
        )
        return _Response(200, page.encode("utf-8"), HTML_CONTENT_TYPE)

    def _api_hosted_action(self, record: RecordedRequest, id: str) -> _Response:
        form = parse_qs(record.body.decode("utf-8", "replace"))
        status = (form.get("status") or [""])[-1]
        with self._lock:
            identification = self._known_identification(id)
            if status not in ("Processed", "Approved", "Declined"):
                raise _ClientError(400, "unknown action")
            if identification["status"] not in DECIDABLE_STATUSES:
                raise _ClientError(400, "Identification is not pending")
            self.set_identification_status(id, status)
        return _Response(303, b"", None, {"Location": record.path})

    # --- webhooks -----------------------------------------------------------------------

    def _queue_event(
        self, type_: str, customer_id: str, object_id: str, status: str, moment: datetime
    ) -> None:
        event = build_event(
            type_, customer_id, object_id, status, timestamp=moment, shape=self.message_shape
        )
        delivery = self._sign(event, moment)
        self.outbox.append(delivery)
        if self._duplicate_next > 0:
            self._duplicate_next -= 1
            self.outbox.append(copy.deepcopy(delivery))

    def _sign(self, event: dict[str, Any], moment: datetime) -> Delivery:
        body = encode_event(event)
        headers = sign_webhook(body, self.webhook_secret, timestamp=int(moment.timestamp()))
        return Delivery(webhook_id=headers["webhook-id"], event=event, body=body, headers=headers)

    def queue_webhook(self, event: dict[str, Any]) -> Delivery:
        """Sign any event (e.g. from :func:`build_event`) and put it in the outbox."""
        with self._lock:
            delivery = self._sign(event, self.now)
            self.outbox.append(delivery)
        self._wake_deliverer()
        return delivery

    def duplicate_next_webhooks(self, n: int = 1) -> None:
        """The next ``n`` events are queued twice, under the same ``webhook-id``."""
        with self._lock:
            self._duplicate_next += n

    def reorder_outbox(self, order: Sequence[int] | None = None) -> None:
        """Reverse the outbox, or put it in ``order`` (a permutation of its indexes)."""
        with self._lock:
            if order is None:
                self.outbox.reverse()
                return
            if sorted(order) != list(range(len(self.outbox))):
                raise ValueError("order must be a permutation of the outbox indexes")
            self.outbox[:] = [self.outbox[i] for i in order]

    def resend(self, delivery: Delivery, new_id: bool = True) -> Delivery:
        """Queue ``delivery``'s event again: signed now under a new ``webhook-id`` (a retry
        that Iron counts as a new attempt), or the very same delivery if ``new_id=False``."""
        with self._lock:
            again = self._sign(delivery.event, self.now) if new_id else copy.deepcopy(delivery)
            self.outbox.append(again)
        self._wake_deliverer()
        return again

    def deliver_webhooks(
        self, send: Sender | None = None, deliveries: Iterable[Delivery] | None = None
    ) -> list[Any]:
        """Send the queued deliveries in outbox order and return what each send returned.

        ``send(headers, body)`` is called per delivery; by default each is POSTed to
        ``webhook_url`` over HTTP (returning :class:`HTTPDeliveryResult`). ``deliveries``
        sends only those (they leave the outbox); the rest stay queued. Every send is
        recorded in :attr:`sent` as ``(delivery, result)``.
        """
        if send is None:
            if not self.webhook_url:
                raise RuntimeError("FakeIron has no webhook_url; pass send=...")
            send = self.post_webhook
        with self._lock:
            if deliveries is None:
                batch = list(self.outbox)
                self.outbox.clear()
            else:
                batch = list(deliveries)
                ids = {id(d) for d in batch}
                self.outbox[:] = [d for d in self.outbox if id(d) not in ids]
        results = []
        for delivery in batch:
            result = send(dict(delivery.headers), delivery.body)
            with self._lock:
                self.sent.append((delivery, result))
            results.append(result)
        return results

    def post_webhook(self, headers: Mapping[str, str], body: bytes) -> HTTPDeliveryResult:
        """POST one delivery to ``webhook_url`` (no proxies, 10 s timeout)."""
        if not self.webhook_url:
            raise RuntimeError("FakeIron has no webhook_url")
        request = urllib.request.Request(  # noqa: S310 - the URL is the configured receiver
            self.webhook_url, data=body, headers=dict(headers), method="POST"
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=10) as answer:
                return HTTPDeliveryResult(answer.status, answer.read(), dict(answer.headers))
        except urllib.error.HTTPError as exc:
            return HTTPDeliveryResult(exc.code, exc.read(), dict(exc.headers))
        except (urllib.error.URLError, OSError) as exc:
            return HTTPDeliveryResult(None, error=str(exc))

    def wait_for_webhooks(self, timeout: float = 5.0) -> bool:
        """With ``auto_deliver``: wait until the outbox is sent; False on timeout."""
        with self._deliver_wakeup:
            return self._deliver_wakeup.wait_for(
                lambda: not self.outbox and not self._delivering, timeout=timeout
            )

    def _wake_deliverer(self) -> None:
        if self.auto_deliver and self.webhook_url:
            with self._deliver_wakeup:
                self._deliver_wakeup.notify_all()

    def _auto_deliver_loop(self) -> None:
        while not self._stopping.is_set():
            with self._deliver_wakeup:
                self._deliver_wakeup.wait_for(
                    lambda: (
                        self._stopping.is_set()
                        or bool(self.auto_deliver and self.webhook_url and self.outbox)
                    ),
                    timeout=1.0,
                )
                if self._stopping.is_set() or not (self.auto_deliver and self.webhook_url):
                    continue
                batch = list(self.outbox)
                self.outbox.clear()
                self._delivering = True
            try:
                for delivery in batch:
                    result = self.post_webhook(delivery.headers, delivery.body)
                    with self._lock:
                        self.sent.append((delivery, result))
            finally:
                with self._deliver_wakeup:
                    self._delivering = False
                    self._deliver_wakeup.notify_all()


def _check_uuid(value: str) -> None:
    try:
        uuid.UUID(value)
    except ValueError:
        raise _ClientError(400, f"Invalid URL: {value!r} is not a UUID") from None


def _object_body(record: RecordedRequest) -> dict[str, Any]:
    if not isinstance(record.json, dict):
        raise _ClientError(400, "Invalid Request: the body must be a JSON object")
    return record.json
