"""Iron's API as the fake serves it: the route table, the endpoints, and idempotency keys.

- ``X-API-Key`` on every API request (401 ``text/plain`` ``authorization error`` otherwise);
- ``IDEMPOTENCY-KEY`` (a UUID) on every POST, scoped per path: the same key with the same
  JSON body replays the stored first answer (marked ``x-fake-iron-replayed: true``, which
  Iron does not send); with another body it is 409. Only 2xx answers are stored, keys
  expire after 24 hours on the fake's clock, and two requests with one key at the same
  moment are serialised, so exactly one does the work;
- identification lists in cursor pages (``page_size`` 1..100, default 10);
- ``PUT /api/customers/{id}/archive`` archives the customer and its identifications;
- errors in Iron's formats (:func:`~.answers.error_answer`).
"""

from __future__ import annotations

import copy
import hmac
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .answers import Answer, RefusedError, error_answer, json_answer, path_id
from .clock import IronClock
from .hosted_page import HostedPage
from .options import FakeOptions
from .server import RecordedRequest
from .state import (
    IronState,
    NotDecidableError,
    PendingIdentificationError,
    UnknownObjectError,
)

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "IDEMPOTENCY_KEY_TTL",
    "MAX_PAGE_SIZE",
    "REPLAYED_HEADER",
    "Handler",
    "IdempotencyKeys",
    "IronApi",
    "Route",
]

REPLAYED_HEADER = "x-fake-iron-replayed"
IDEMPOTENCY_KEY_TTL = timedelta(hours=24)
DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 100

# A route's handler: the request and the ``{id}`` of its path ("" when it has none).
Handler = Callable[[RecordedRequest, str], Answer]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    idempotent: bool = False
    authenticated: bool = True


def _path(template: str) -> re.Pattern[str]:
    return re.compile(template.replace("{id}", r"(?P<id>[^/]+)"))


@dataclass
class _StoredAnswer:
    fingerprint: Any
    answer: Answer
    created_at: datetime


class IdempotencyKeys:
    """Iron's ``IDEMPOTENCY-KEY`` rule (see the module doc)."""

    def __init__(self, clock: IronClock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._key_locks: dict[tuple[str, str], threading.Lock] = {}
        self._stored: dict[tuple[str, str], _StoredAnswer] = {}

    def run(self, request: RecordedRequest, work: Callable[[], Answer]) -> Answer:
        """``work()``'s answer, or the stored one when this key was used before."""
        key = request.idempotency_key
        if not key:
            raise RefusedError(400, "Missing required header: IDEMPOTENCY-KEY")
        try:
            uuid.UUID(key)
        except ValueError:
            raise RefusedError(400, "IDEMPOTENCY-KEY must be a UUID") from None
        scope = (request.path, key)
        fingerprint = request.json if request.json is not None else request.body
        with self._lock:
            key_lock = self._key_locks.setdefault(scope, threading.Lock())
        with key_lock:
            stored = self._valid(scope)
            if stored is not None:
                if stored.fingerprint != fingerprint:
                    raise RefusedError(
                        409, f"Idempotency key {key} was already used with a different request body"
                    )
                request.replayed = True
                replay = copy.deepcopy(stored.answer)
                replay.headers[REPLAYED_HEADER] = "true"
                return replay
            answer = work()
            if 200 <= answer.status < 300:
                with self._lock:
                    self._stored[scope] = _StoredAnswer(
                        copy.deepcopy(fingerprint), copy.deepcopy(answer), self._clock.now
                    )
            return answer

    def _valid(self, scope: tuple[str, str]) -> _StoredAnswer | None:
        with self._lock:
            stored = self._stored.get(scope)
            if stored is not None and self._clock.now - stored.created_at >= IDEMPOTENCY_KEY_TTL:
                del self._stored[scope]
                return None
            return stored


class IronApi:
    """Answers one recorded request as Iron would, from an :class:`IronState`."""

    def __init__(self, state: IronState, options: FakeOptions) -> None:
        self._state = state
        self._options = options
        self._keys = IdempotencyKeys(state.clock)
        page = HostedPage(state)
        self.routes: tuple[Route, ...] = (
            Route("POST", _path("/api/customers/?"), self._create_customer, idempotent=True),
            Route("GET", _path("/api/customers/{id}"), self._get_customer),
            Route("PUT", _path("/api/customers/{id}/archive"), self._archive_customer),
            Route(
                "POST",
                _path("/api/customers/{id}/identifications/v2"),
                self._create_identification,
                idempotent=True,
            ),
            Route("GET", _path("/api/customers/{id}/identifications"), self._list_identifications),
            Route("GET", _path("/api/identifications/{id}"), self._get_identification),
            Route(
                "POST",
                _path("/api/sandbox/identification/{id}"),
                self._sandbox_decide,
                idempotent=True,
            ),
            # The hosted page an end user would open (an identification's url): no API key.
            Route("GET", _path("/verify/{id}"), page.show, authenticated=False),
            Route("POST", _path("/verify/{id}"), page.decide, authenticated=False),
        )

    def respond(self, request: RecordedRequest) -> Answer:
        route, object_id, path_known = self._route(request.method, request.path)
        if route is None:
            return Answer(405 if path_known else 404, b"", None)
        if route.authenticated and not self._authenticated(request):
            return self._error(401, "authorization error")
        try:
            if route.idempotent:
                return self._keys.run(request, lambda: route.handler(request, object_id))
            return route.handler(request, object_id)
        except RefusedError as exc:
            return self._error(exc.status, exc.message)
        except UnknownObjectError as exc:
            return self._error(404, f"{exc.kind.capitalize()} not found")
        except Exception as exc:  # a bug in the fake: answer like Iron's 500, keep serving
            return self._error(500, f"fake Iron failed: {type(exc).__name__}: {exc}")

    def _route(self, method: str, path: str) -> tuple[Route | None, str, bool]:
        """The route, the path's ``{id}``, and whether any route has this path."""
        path_known = False
        for route in self.routes:
            match = route.pattern.fullmatch(path)
            if match is None:
                continue
            if route.method == method:
                return route, match.groupdict().get("id", ""), True
            path_known = True
        return None, "", path_known

    def _authenticated(self, request: RecordedRequest) -> bool:
        given = (request.headers.get("X-API-Key") or "").encode("utf-8")
        return hmac.compare_digest(given, self._options.api_key.encode("utf-8"))

    def _error(self, status: int, message: str) -> Answer:
        return error_answer(status, message, self._options.error_format)

    # --- endpoints ----------------------------------------------------------------------

    def _create_customer(self, request: RecordedRequest, _: str) -> Answer:
        body = _object_body(request)
        customer_type = body.get("customer_type")
        if customer_type not in ("Person", "Business"):
            raise RefusedError(400, "Invalid Request: customer_type must be Person or Business")
        email = body.get("email")
        if not isinstance(email, str) or "@" not in email:
            raise RefusedError(400, "Invalid Request: email is required")
        extra = {k: v for k in ("name", "external_id") if isinstance(v := body.get(k), str)}
        customer = self._state.add_customer(email, customer_type=customer_type, **extra)
        return json_answer(201, customer)

    def _get_customer(self, request: RecordedRequest, customer_id: str) -> Answer:
        return json_answer(200, self._state.customer(path_id(customer_id)))

    def _archive_customer(self, request: RecordedRequest, customer_id: str) -> Answer:
        return json_answer(200, self._state.archive_customer(path_id(customer_id)))

    def _create_identification(self, request: RecordedRequest, customer_id: str) -> Answer:
        body = _object_body(request)
        if body.get("type") != "Link":
            raise RefusedError(400, 'Invalid Request: the fake Iron supports only {"type": "Link"}')
        with_edd = body.get("with_edd", False)
        if not isinstance(with_edd, bool):
            raise RefusedError(400, "Invalid Request: with_edd must be a boolean")
        try:
            identification = self._state.add_identification(
                path_id(customer_id),
                with_edd=with_edd,
                notify=True,
                supersede=not self._options.conflict_on_pending,
                idempotency_key=request.idempotency_key,
            )
        except PendingIdentificationError:
            raise RefusedError(409, "Has Pending Identification") from None
        return json_answer(201, identification)

    def _list_identifications(self, request: RecordedRequest, customer_id: str) -> Answer:
        raw_size = (request.query.get("page_size") or [str(DEFAULT_PAGE_SIZE)])[-1]
        try:
            page_size = int(raw_size)
        except ValueError:
            raise RefusedError(400, "Invalid query: page_size must be an integer") from None
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise RefusedError(
                400, f"Invalid query: page_size must be between 1 and {MAX_PAGE_SIZE}"
            )
        cursor = (request.query.get("cursor") or [""])[-1]
        items = self._state.identifications_of(path_id(customer_id))
        if self._options.list_order == "newest":
            items.reverse()
        start = 0
        if cursor:
            ids = [i["id"] for i in items]
            if cursor not in ids:
                raise RefusedError(400, "Invalid query: unknown cursor")
            start = ids.index(cursor) + 1
        page = items[start : start + page_size]
        more = start + page_size < len(items)
        return json_answer(
            200,
            {
                "items": page,
                "cursor": page[-1]["id"] if page and more else None,
                "prev_cursor": page[0]["id"] if page and start > 0 else None,
            },
        )

    def _get_identification(self, request: RecordedRequest, identification_id: str) -> Answer:
        return json_answer(200, self._state.identification(path_id(identification_id)))

    def _sandbox_decide(self, request: RecordedRequest, identification_id: str) -> Answer:
        approved = _object_body(request).get("approved")
        if not isinstance(approved, bool):
            raise RefusedError(400, "Invalid Request: approved must be a boolean")
        status = "Approved" if approved else "Declined"
        try:
            decided = self._state.decide(
                path_id(identification_id), status, notify=self._options.sandbox_webhooks
            )
        except NotDecidableError as exc:
            raise RefusedError(400, str(exc)) from None
        return json_answer(201, decided)


def _object_body(request: RecordedRequest) -> dict[str, Any]:
    if not isinstance(request.json, dict):
        raise RefusedError(400, "Invalid Request: the body must be a JSON object")
    return request.json
