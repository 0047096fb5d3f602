"""Iron's webhook endpoint: verify the raw body, store the delivery, hand it to services.

The order is fixed and cannot be skipped: size cap, signature over the raw body (before
anything parses it), store the delivery (committed at once), then process it inside
``transaction.atomic()`` through the same service functions the poller uses
(:func:`~django_iron_kyc.services.apply_identification_state` and
:func:`~django_iron_kyc.services.apply_customer_state`).

``IRON_KYC_WEBHOOK_PROCESSING`` says when that processing happens: ``"inline"`` (default),
in the request before answering; ``"deferred"``, in a Celery task
(:func:`process_received_deliveries`) right after the answer, so the request does no more
than check the body's shape and INSERT it. Either way the webhook sweep
(:func:`retry_deliveries`, in the beat schedule) processes what was stored but not acted on
and retries failures.

What the status codes tell Iron:

==========  ==================================================================================
2xx         Stored; do not resend. The JSON body says the outcome: ``processed``, ``ignored``
            (a type we do not act on), ``duplicate``, ``stale`` (older than what we hold),
            ``unknown_object``, or with deferred processing ``received`` (stored, to be acted
            on by a Celery task moments later).
400         Refused: malformed headers, or a correctly signed body that is not Iron's JSON
            shape (that one is stored with outcome ``invalid``). Resending it will not help.
401         Refused: the signature does not match, or ``webhook-timestamp`` is outside
            ``IRON_KYC_WEBHOOK_TOLERANCE``.
405         Not a POST.
413         The body is larger than ``IRON_KYC_WEBHOOK_MAX_BODY_SIZE``.
500         Processing failed on our side (inline processing only). The delivery is stored
            with its traceback (outcome ``failed``); Iron's retry of the same ``webhook-id``
            is processed again, and so is the webhook sweep's. Also any failure to store it
            (the database is down), in either mode: nothing was kept, so Iron must resend.
503         No usable webhook secret is configured (our configuration, see check
            ``iron_kyc.W001``). Nothing is stored; Iron's retries get through once it is fixed.
==========  ==================================================================================

Refused deliveries are logged (reason, remote address, ``webhook-id``) and not stored. No
secret, signature or body is ever logged.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import threading
import time
import traceback as traceback_module
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import TYPE_CHECKING, Any, Literal, overload

from django.core.exceptions import RequestDataTooBig
from django.db import IntegrityError, connections, router, transaction
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import BaseParser
from rest_framework.permissions import AllowAny
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from . import signing
from .conf import WEBHOOK_DEFERRED, WEBHOOK_PROCESSING_MODES, iron_settings
from .enqueue import (
    PROCESS_RECEIVED_WEBHOOKS,
    REFRESH_CUSTOMER,
    enqueue_on_commit,
    enqueue_without_waiting,
    runs_eagerly,
)
from .exceptions import InvalidPayloadError
from .models import Customer, WebhookDelivery
from .payloads import (
    EventType,
    RemoteCustomer,
    RemoteIdentification,
    WebhookEvent,
    parse_event,
)
from .services import (
    Source,
    apply_customer_state,
    apply_identification_state,
    locked_identifications,
)

if TYPE_CHECKING:
    from django.db.models import Field
    from rest_framework.views import AsView, GenericView

logger = logging.getLogger(__name__)

Outcome = WebhookDelivery.Outcome

# A delivery in one of these states has not been acted on (yet): a retry processes it.
RETRYABLE_OUTCOMES = frozenset({Outcome.RECEIVED, Outcome.FAILED})

# --- Processing -------------------------------------------------------------------------


def _db_text(value: str) -> str:
    # PostgreSQL text cannot hold NUL.
    return value.replace("\x00", "\\x00")


def _body_text(body: bytes) -> str:
    """The body as stored: exact when it is UTF-8 (anything Iron sends is)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        # Backslash escapes keep the bytes readable and can never form valid JSON.
        text = body.decode("utf-8", errors="backslashreplace")
    return _db_text(text)


def _describe(row: WebhookDelivery, event: WebhookEvent) -> None:
    row.event_type = event.type
    row.event_timestamp = event.timestamp
    row.customer_iron_id = event.customer_iron_id
    row.object_iron_id = event.object_iron_id
    row.object_status = event.status
    row.event_key = event.key if event.handled else ""


def _already_acted_on(row: WebhookDelivery, event: WebhookEvent) -> bool:
    return (
        WebhookDelivery.objects.filter(event_key=event.key, outcome=Outcome.PROCESSED)
        .exclude(pk=row.pk)
        .exists()
    )


def _refresh_customer_on_commit(customer_pk: int) -> None:
    # After commit and robust: a broker hiccup must not turn a stored, acknowledged delivery
    # into a 500.
    enqueue_on_commit(REFRESH_CUSTOMER, customer_pk)


def _act(row: WebhookDelivery, event: WebhookEvent) -> str:
    """Apply one parsed event; return the outcome. Runs inside the processing transaction.

    The target row is locked before looking for an earlier delivery of the same event,
    so two deliveries of one event racing on two connections act once.
    """
    object_id = event.object_iron_id
    if not event.handled or object_id is None:
        return Outcome.IGNORED
    if event.type == EventType.IDENTIFICATION_STATUS:
        # Locked once, with its customer, as apply_identification_state needs it (locked=True).
        identification = locked_identifications().filter(iron_id=object_id).first()
        if identification is None:
            customer = (
                Customer.objects.filter(iron_id=event.customer_iron_id).first()
                if event.customer_iron_id is not None
                else None
            )
            if customer is not None:
                logger.info(
                    "Iron webhook for unknown identification %s of customer %s: refreshing "
                    "that customer.",
                    event.object_iron_id,
                    event.customer_iron_id,
                )
                _refresh_customer_on_commit(customer.pk)
            return Outcome.UNKNOWN_OBJECT
        if _already_acted_on(row, event):
            return Outcome.DUPLICATE
        result = apply_identification_state(
            identification,
            RemoteIdentification(
                iron_id=object_id,
                status=event.status,
                updated_at=event.timestamp,
                customer_iron_id=event.customer_iron_id,
            ),
            source=Source.WEBHOOK,
            locked=True,
        )
    else:
        customer = Customer.objects.select_for_update().filter(iron_id=object_id).first()
        if customer is None:
            return Outcome.UNKNOWN_OBJECT
        if _already_acted_on(row, event):
            return Outcome.DUPLICATE
        result = apply_customer_state(
            customer,
            RemoteCustomer(
                iron_id=object_id,
                status=event.status,
                updated_at=event.timestamp,
            ),
            source=Source.WEBHOOK,
        )
    return Outcome.PROCESSED if result.applied else Outcome.STALE


# What processing writes on the delivery row (the body and headers never change).
_PROCESSED_FIELDS = (
    "attempts",
    "error",
    "traceback",
    "outcome",
    "processed_at",
    "event_type",
    "event_timestamp",
    "customer_iron_id",
    "object_iron_id",
    "object_status",
    "event_key",
)


@overload
def process_delivery(
    delivery: WebhookDelivery | int, *, force: bool = ..., skip_locked: Literal[False] = ...
) -> str: ...
@overload
def process_delivery(
    delivery: WebhookDelivery | int, *, force: bool = ..., skip_locked: bool
) -> str | None: ...
def process_delivery(
    delivery: WebhookDelivery | int, *, force: bool = False, skip_locked: bool = False
) -> str | None:
    """Act on one stored delivery and record the outcome on its row; return the outcome.

    The view, the deferred-processing task and ``iron_kyc_reprocess_webhooks`` all call
    this. A delivery that was already acted on (any outcome but ``received`` or
    ``failed``) is left alone and ``duplicate`` is returned, unless ``force`` is set.
    Processing runs in one transaction, with the delivery row locked; an unexpected error
    rolls it back and is recorded on the row (outcome ``failed``, error and traceback) in a
    transaction of its own, and ``failed`` is returned. A body that is not Iron's shape
    gives ``invalid``. With ``skip_locked``, a delivery that another connection is
    processing right now is skipped and ``None`` is returned (on PostgreSQL; SQLite has no
    row locks).
    """
    pk = delivery.pk if isinstance(delivery, WebhookDelivery) else delivery
    try:
        with transaction.atomic():
            found = (
                WebhookDelivery.objects.select_for_update(skip_locked=skip_locked)
                .filter(pk=pk)
                .first()
            )
            if found is None:
                if skip_locked:
                    return None
                raise WebhookDelivery.DoesNotExist(f"webhook delivery {pk} does not exist")
            row = found
            if not force and row.outcome not in RETRYABLE_OUTCOMES:
                return Outcome.DUPLICATE
            row.attempts += 1
            row.error = row.traceback = ""
            try:
                event = parse_event(row.body)
            except InvalidPayloadError as exc:
                row.outcome = Outcome.INVALID
                row.error = _db_text(str(exc))
            else:
                _describe(row, event)
                row.outcome = _act(row, event)
            row.processed_at = timezone.now()
            row.save(update_fields=_PROCESSED_FIELDS)
    except Exception as exc:
        _record_failure(pk, exc)
        return Outcome.FAILED
    logger.info(
        "Iron webhook delivery %s (%s, webhook-id %r): %s.",
        row.pk,
        row.event_type or "no type",
        row.webhook_id,
        row.outcome,
    )
    return row.outcome


def reprocess_delivery(delivery: WebhookDelivery | int) -> str:
    """Process a stored delivery again, whatever its outcome; return the new outcome.

    What the admin action and ``iron_kyc_reprocess_webhooks`` run. Acting again is safe:
    the services drop stale and repeated states, so nothing is applied or signalled twice.
    """
    return process_delivery(delivery, force=True)


def _record_failure(pk: int, exc: Exception) -> None:
    logger.error(
        "Processing Iron webhook delivery %s failed; it is kept with outcome 'failed' and "
        "processed again when Iron retries it or iron_kyc_reprocess_webhooks runs.",
        pk,
        exc_info=exc,
    )
    with transaction.atomic():
        row = WebhookDelivery.objects.select_for_update().get(pk=pk)
        with contextlib.suppress(InvalidPayloadError):
            _describe(row, parse_event(row.body))
        row.attempts += 1
        row.outcome = Outcome.FAILED
        row.error = _db_text(f"{type(exc).__name__}: {exc}")
        row.traceback = _db_text(
            "".join(traceback_module.format_exception(type(exc), exc, exc.__traceback__))
        )
        row.processed_at = None
        row.save()


_PK = WebhookDelivery._meta.pk
_INSERT_FIELDS = {f.attname: f for f in WebhookDelivery._meta.concrete_fields if f is not _PK}
# What the database fills in by itself for a field the INSERT leaves out: its db_default,
# or NULL. A new delivery holds these values in all but three or four fields, so its
# INSERT sends those alone (fewer values to adapt, send and parse on every delivery).
_FILLED_BY_DATABASE: dict[str, Any] = {
    name: f.db_default if f.has_db_default() else None
    for name, f in _INSERT_FIELDS.items()
    if f.has_db_default() or (f.null and not f.has_default())
}
# The others: the INSERT always sends them (received_at, body), their Python default if
# the caller gave none.
_SENT_ALWAYS = tuple(f for name, f in _INSERT_FIELDS.items() if name not in _FILLED_BY_DATABASE)
# The order of a row's values for Model.from_db().
_ROW_ORDER = tuple(f.attname for f in WebhookDelivery._meta.concrete_fields)
# By database vendor, ON CONFLICT or not, and columns.
_INSERT_SQL: dict[tuple[str, bool, tuple[str, ...]], str] = {}


def _insert_sql(
    quote: Callable[[str], str], fields: Sequence[Field[Any, Any]], on_conflict: bool
) -> str:
    """``INSERT ... [ON CONFLICT (webhook_id) DO NOTHING] RETURNING id`` for ``fields``."""
    meta = WebhookDelivery._meta

    def name(column: str | None) -> str:
        assert column is not None  # concrete fields always have a column
        return quote(column)

    columns = ", ".join(name(f.column) for f in fields)
    values = ", ".join(["%s"] * len(fields))
    table = quote(meta.db_table)
    webhook_id = name(meta.get_field("webhook_id").column)
    conflict = f"ON CONFLICT ({webhook_id}) DO NOTHING " if on_conflict else ""
    # Only the model's own table and column names, quoted; every value is a parameter.
    return (
        f"INSERT INTO {table} ({columns}) VALUES ({values}) "  # noqa: S608
        f"{conflict}RETURNING {name(meta.pk.column)}"
    )


def _insert(values: dict[str, Any]) -> tuple[WebhookDelivery, bool]:
    """Store a new delivery with these field values: ``(row, True)``, or ``(stored row,
    False)`` for a repeat (see :func:`_write`)."""
    written = _write(values)
    if isinstance(written, WebhookDelivery):
        return written, False
    return _built(values, *written), True


def _built(values: Mapping[str, Any], alias: str, pk: int) -> WebhookDelivery:
    """The row :func:`_write` stored, built as a queryset builds one (``from_db``)."""
    row = [
        pk if name == _PK.attname else values[name] if name in values else _FILLED_BY_DATABASE[name]
        for name in _ROW_ORDER
    ]
    return WebhookDelivery.from_db(alias, _ROW_ORDER, row)


def _write(values: dict[str, Any]) -> tuple[str, int] | WebhookDelivery:
    """Store a new delivery with these field values: its ``(database alias, pk)``, or the
    row stored before under its ``webhook-id`` (a repeat).

    ``values`` maps attribute names to values of their fields' Python types; a field not
    in it gets its default (``received_at`` and ``body`` are added to ``values``, for
    :func:`_built`). A repeat is a ``webhook-id`` already stored, even by another
    connection at the same moment. One statement, which sends only the values that differ
    from what the database fills in (``db_default``, or NULL). Outside a transaction (the
    view is non-atomic) it is a plain ``INSERT ... RETURNING id``, committed at once, and
    a repeat fails it on the unique ``webhook_id``; inside a caller's transaction, where a
    failed statement would break the transaction, it is ``INSERT ... ON CONFLICT
    (webhook_id) DO NOTHING``, which PostgreSQL makes costlier on every delivery, not
    only on the rare repeat. A repeat then reads the stored row.

    It runs on every delivery, so it builds no model instance (no ``pre_save`` or
    ``post_save`` signals for this model; :func:`_built` makes the row when one is
    wanted); databases other than PostgreSQL and SQLite take the ORM.
    """
    for f in _SENT_ALWAYS:
        if f.attname not in values:
            values[f.attname] = f.get_default()
    alias = router.db_for_write(WebhookDelivery)
    connection = connections[alias]
    if connection.vendor not in ("postgresql", "sqlite") or not (
        connection.features.can_return_columns_from_insert
    ):
        row, created = _insert_with_orm(WebhookDelivery(**values), alias)
        return (alias, row.pk) if created else row
    sent = {
        name: value
        for name, value in values.items()
        if name not in _FILLED_BY_DATABASE or value != _FILLED_BY_DATABASE[name]
    }
    on_conflict = connection.in_atomic_block
    key = (connection.vendor, on_conflict, tuple(sent))
    sql = _INSERT_SQL.get(key)
    if sql is None:
        fields = [_INSERT_FIELDS[name] for name in sent]
        sql = _INSERT_SQL[key] = _insert_sql(connection.ops.quote_name, fields, on_conflict)
    # The values are already of their fields' Python types, so only the database's own
    # adaptation is left.
    params = [
        _INSERT_FIELDS[name].get_db_prep_value(value, connection, prepared=True)
        for name, value in sent.items()
    ]
    if connection.vendor == "postgresql":
        # Datetimes as ISO 8601 text with their offset, which PostgreSQL reads into the
        # timestamptz column as the same instant: psycopg's own datetime literal sets up
        # a timezone-aware dumper on every new cursor, and cost more than the rest of
        # the parameters together (benchmarks/webhook_ingestion.py).
        params = [p.isoformat() if isinstance(p, datetime) else p for p in params]
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            returned = cursor.fetchone()
    except IntegrityError as exc:
        if on_conflict:
            raise
        return _stored(values, exc)
    if returned is None:
        return _stored(values, None)
    return alias, returned[0]


def _insert_with_orm(row: WebhookDelivery, alias: str) -> tuple[WebhookDelivery, bool]:
    try:
        # A savepoint inside a caller's transaction; one autocommitted INSERT outside.
        with transaction.atomic(using=alias):
            row.save(force_insert=True, using=alias)
    except IntegrityError as exc:
        return _stored({"webhook_id": row.webhook_id, "body": row.body}, exc), False
    return row, True


def _stored(values: Mapping[str, Any], error: IntegrityError | None) -> WebhookDelivery:
    """The row stored before this one (``values``) under its ``webhook-id``; ``error`` is
    the INSERT's.

    Without such a row, ``error`` was about something else and is raised again (or the
    row was deleted meanwhile, by pruning: an IntegrityError lets Iron try again).
    """
    webhook_id = values.get("webhook_id")
    existing = None
    if webhook_id is not None:
        existing = WebhookDelivery.objects.filter(webhook_id=webhook_id).first()
    if existing is None:
        if error is not None:
            raise error
        raise IntegrityError(f"webhook delivery {webhook_id!r} vanished while being stored")
    if existing.body != values.get("body"):
        logger.warning(
            "Iron webhook-id %r arrived again with a different body; the first one stands.",
            webhook_id,
        )
    return existing


def receive_delivery(
    *,
    body: bytes,
    webhook_id: str | None,
    signed_at: datetime | None,
    deferred: bool | None = None,
) -> tuple[WebhookDelivery, str]:
    """Store a verified delivery (committed at once), then process it or schedule it.

    ``deferred`` (default: ``IRON_KYC_WEBHOOK_PROCESSING == "deferred"``) only stores it
    and has a Celery task act on it after this returns (outcome ``received``); otherwise it
    is processed here. The same ``webhook-id`` arriving again (even at the same moment on
    another connection) finds the stored row: it is processed only if it has not been
    acted on yet, so it acts once. Returns the row and this delivery's outcome.
    """
    row, outcome = _receive(body, webhook_id, signed_at, deferred, build_row=True)
    assert row is not None  # build_row
    return row, outcome


def _receive(
    body: bytes,
    webhook_id: str | None,
    signed_at: datetime | None,
    deferred: bool | None,
    *,
    build_row: bool,
) -> tuple[WebhookDelivery | None, str]:
    """:func:`receive_delivery`; without ``build_row``, the row of a delivery stored for
    later is not built (``None``): the view answers with the outcome alone, and building
    the model instance cost about 5% of the request."""
    text = _body_text(body)
    if iron_settings.WEBHOOK_DEFERRED if deferred is None else deferred:
        return _store_for_later(text, webhook_id, signed_at, build_row=build_row)
    row, created = _insert({"webhook_id": webhook_id, "signed_at": signed_at, "body": text})
    if not created:
        if row.outcome == Outcome.INVALID:
            return row, Outcome.INVALID
        if row.outcome not in RETRYABLE_OUTCOMES:
            logger.info("Iron webhook-id %r arrived again: duplicate.", webhook_id)
            return row, Outcome.DUPLICATE
    return _processed(row)


def _store_for_later(
    text: str, webhook_id: str | None, signed_at: datetime | None, *, build_row: bool
) -> tuple[WebhookDelivery | None, str]:
    """Deferred processing: check the body's shape, store the row, schedule the drain.

    The shape is checked here so that a body Iron should not resend still gets its 400 at
    once (stored with outcome ``invalid``, as inline). Anything else is stored as it
    arrived, with outcome ``received``, and answered ``received``: what the body says
    (type, object, status, event key) is filled in when the drain acts on it, so storing
    it sends four values to the database, not ten. A ``webhook-id`` that failed before is
    made ``received`` again, for the drain.
    """
    new: dict[str, Any] = {"webhook_id": webhook_id, "signed_at": signed_at, "body": text}
    try:
        parse_event(text)
    except InvalidPayloadError as exc:
        new.update(
            outcome=Outcome.INVALID,
            error=_db_text(str(exc)),
            attempts=1,
            processed_at=timezone.now(),
        )
        row, created = _insert(new)
    else:
        written = _write(new)
        if not isinstance(written, WebhookDelivery):  # stored now: nearly every delivery
            alias, pk = written
            _request_drain(alias)
            return (_built(new, alias, pk) if build_row else None), Outcome.RECEIVED
        row, created = written, False
    if not created:
        if row.outcome not in RETRYABLE_OUTCOMES:
            logger.info("Iron webhook-id %r arrived again: %s.", webhook_id, row.outcome)
            return row, Outcome.INVALID if row.outcome == Outcome.INVALID else Outcome.DUPLICATE
        # Iron's retry of a failed one: the drain acts on it again (it takes only
        # 'received' ones), as inline processing would, even when the sweep's attempts
        # are used up.
        again = WebhookDelivery.objects.filter(pk=row.pk, outcome=Outcome.FAILED)
        if row.outcome == Outcome.FAILED and again.update(outcome=Outcome.RECEIVED):
            row.outcome = Outcome.RECEIVED
    if row.outcome == Outcome.INVALID:
        logger.info("Iron webhook delivery %s has an invalid body: %s", row.pk, row.error)
        return row, Outcome.INVALID
    _request_drain(row._state.db)
    return row, Outcome.RECEIVED


def _request_drain(alias: str | None) -> None:
    # After the row commits on the database it was written to (at once in autocommit), so
    # the task can see it.
    transaction.on_commit(drain_scheduler.request, using=alias, robust=True)


def _processed(row: WebhookDelivery) -> tuple[WebhookDelivery, str]:
    outcome = process_delivery(row)
    if outcome not in (Outcome.INVALID, Outcome.DUPLICATE):
        # The outcome is all the view answers with: no need to read the row again.
        return row, outcome
    row.refresh_from_db()  # the error to answer with, or another connection's outcome
    if outcome == Outcome.DUPLICATE and row.outcome == Outcome.INVALID:
        # Another connection got there first and found the body invalid: same answer.
        outcome = Outcome.INVALID
    return row, outcome


# --- Deferred processing and the webhook sweep -------------------------------------------

DRAIN_WINDOW = 1.0
"""Seconds. One process sends at most two drain messages per window (see
:class:`DrainScheduler`)."""

_BATCH = 100
# Failed deliveries are retried after RETRY_DELAY doubled per attempt made, up to this
# many doublings (beyond them the delay is over a year: retrying is left to a person).
_MAX_DOUBLINGS = 20


class DrainScheduler:
    """Asks Celery to run the drain (:func:`process_received_deliveries`) without flooding it.

    Publishing a Celery message costs more CPU than storing the delivery, so a busy
    receiver must not send one per delivery. In each window of :data:`DRAIN_WINDOW`
    seconds, the first delivery sends a drain at once (a lone delivery waits for nothing)
    and the first one after it sends one more, due when the window ends; the rest send
    nothing. Each delivery is committed before it asks, so the drain that runs after the
    window ends finds every delivery of the window. A drain that cannot be sent (broker
    down) is logged and the next delivery tries again; the webhook sweep
    (:func:`retry_deliveries`) processes whatever was stored meanwhile. With Celery's
    ``task_always_eager`` (no broker, and a countdown is not waited for) every delivery
    runs a drain at once (eagerness is looked up when a window opens).

    One instance per process (:data:`drain_scheduler`); thread-safe.
    """

    def __init__(
        self, window: float = DRAIN_WINDOW, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window = window
        self.clock = clock
        self._lock = threading.Lock()
        self._window_end = -math.inf
        self._trailing = False
        self._eager = False

    def request(self) -> None:
        """A delivery was committed: make sure a drain will run after now."""
        now = self.clock()
        with self._lock:
            if now >= self._window_end:
                self._window_end = now + self.window
                self._trailing = False
                # Looked up once a window: Celery's settings cost more than the rest here.
                self._eager = runs_eagerly()
                countdown = 0.0
            elif self._eager:
                # An eager drain runs when sent, whatever its countdown: one per delivery.
                countdown = 0.0
            elif not self._trailing:
                self._trailing = True
                countdown = self._window_end - now
            else:
                return
        self._send(countdown)

    def reset(self) -> None:
        """Forget the current window: the next delivery sends a drain at once."""
        with self._lock:
            self._window_end = -math.inf
            self._trailing = False

    def _send(self, countdown: float) -> None:
        options: dict[str, Any] = {"countdown": countdown} if countdown > 0 else {}
        try:
            # With the broker down, answer Iron now; the delivery is stored and the sweep
            # has it.
            enqueue_without_waiting(PROCESS_RECEIVED_WEBHOOKS, **options)
        except Exception:
            self.reset()
            logger.warning(
                "Could not enqueue the task that processes stored Iron webhook deliveries; "
                "they stay 'received' until the next delivery or the webhook sweep "
                "(django_iron_kyc.tasks.retry_webhook_deliveries) processes them.",
                exc_info=True,
            )


drain_scheduler = DrainScheduler()
"""This process's :class:`DrainScheduler` (deferred processing)."""


@dataclass
class SweepResult:
    """What :func:`process_received_deliveries` or :func:`retry_deliveries` did."""

    outcomes: Counter[str] = field(default_factory=Counter)
    more: bool = False
    """``limit`` was reached with deliveries still waiting."""

    def as_dict(self) -> dict[str, Any]:
        return {"outcomes": dict(self.outcomes), "more": self.more}


def _process_each(queryset: QuerySet[WebhookDelivery], limit: int) -> SweepResult:
    """Process the rows of ``queryset`` oldest first, in batches, at most ``limit``.

    Rows another connection is processing right now are skipped (``busy``): whoever holds
    the lock acts on them. Walks by primary key, so a skipped row is not picked up again.
    """
    result = SweepResult()
    last = 0
    done = 0
    while done < limit:
        pks = list(
            queryset.filter(pk__gt=last)
            .order_by("pk")
            .values_list("pk", flat=True)[: min(_BATCH, limit - done)]
        )
        if not pks:
            return result
        for pk in pks:
            outcome = process_delivery(pk, skip_locked=True)
            result.outcomes[str(outcome or "busy")] += 1
        last = pks[-1]
        done += len(pks)
    result.more = queryset.filter(pk__gt=last).exists()
    return result


def process_received_deliveries(*, limit: int = 1000) -> SweepResult:
    """Act on the deliveries that are stored and not processed yet (outcome ``received``).

    What the deferred-processing task runs; safe to run on several workers at once (each
    delivery is acted on once). At most ``limit`` deliveries; ``more`` says some are left.
    """
    return _process_each(WebhookDelivery.objects.filter(outcome=Outcome.RECEIVED), limit)


def deliveries_due_for_retry(now: datetime | None = None) -> QuerySet[WebhookDelivery]:
    """Deliveries the webhook sweep processes (again).

    Those still ``received`` ``IRON_KYC_WEBHOOK_RETRY_DELAY`` after they arrived (their
    processing was lost: a broker outage, a worker or web process killed), and ``failed``
    ones with fewer than ``IRON_KYC_WEBHOOK_MAX_ATTEMPTS`` attempts whose arrival is at
    least that delay, doubled for each attempt after the first, in the past.
    """
    now = now or timezone.now()
    delay = iron_settings.WEBHOOK_RETRY_DELAY
    due = Q(outcome=Outcome.RECEIVED, received_at__lte=now - delay)
    for attempts in range(1, min(iron_settings.WEBHOOK_MAX_ATTEMPTS, _MAX_DOUBLINGS + 1)):
        due |= Q(
            outcome=Outcome.FAILED,
            attempts=attempts,
            received_at__lte=now - delay * 2 ** (attempts - 1),
        )
    return WebhookDelivery.objects.filter(due)


def retry_deliveries(*, now: datetime | None = None, limit: int = 1000) -> SweepResult:
    """The webhook sweep: process :func:`deliveries_due_for_retry`, at most ``limit``.

    Run by ``django_iron_kyc.tasks.retry_webhook_deliveries`` from the beat schedule, in
    either processing mode: Iron documents no retry policy, so a delivery that failed on
    our side is retried here rather than left to Iron.
    """
    return _process_each(deliveries_due_for_retry(now), limit)


# --- The view ---------------------------------------------------------------------------


class JSONOnlyNegotiation(BaseContentNegotiation):
    """Always answer JSON, whatever ``Accept`` says (never a 406 to Iron)."""

    def select_parser(self, request: Request, parsers: Iterable[BaseParser]) -> BaseParser | None:
        return None

    def select_renderer(
        self,
        request: Request,
        renderers: Iterable[BaseRenderer],
        format_suffix: str | None = None,
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))
        return renderer, renderer.media_type


class _RefusedError(Exception):
    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(reason)


def _loggable(value: str | None) -> str:
    # Header values come from anyone: repr() escapes control characters, the cut keeps
    # log lines short.
    return "none" if value is None else repr(value[:80])


def _content_length(meta: Mapping[str, Any], limit: int) -> None:
    raw = meta.get("CONTENT_LENGTH")
    if raw is None or raw == "":
        return
    raw = str(raw).strip()
    if not (raw.isascii() and raw.isdigit()):
        raise _RefusedError(400, "Content-Length is not a number")
    if len(raw) > 18 or int(raw) > limit:
        raise _RefusedError(413, f"body is larger than {limit} bytes")


def _webhook_id(meta: Mapping[str, Any]) -> str | None:
    value = meta.get("HTTP_WEBHOOK_ID")
    if value is None:
        return None
    value = str(value).strip()
    if not _WEBHOOK_ID.fullmatch(value):
        raise _RefusedError(400, f"{signing.ID_HEADER} header is malformed")
    return value


# Printable ASCII without spaces, and no longer than the column.
_WEBHOOK_ID_LENGTH = WebhookDelivery._meta.get_field("webhook_id").max_length or 255
_WEBHOOK_ID = re.compile(f"[!-~]{{1,{_WEBHOOK_ID_LENGTH}}}")


def _secret_keys() -> list[bytes]:
    keys = []
    for position, secret in enumerate(iron_settings.WEBHOOK_SECRETS):
        try:
            keys.append(signing.secret_bytes(secret))
        except ValueError:
            # Check iron_kyc.E007 reports it too; the others still verify (rotation).
            logger.error("IRON_KYC_WEBHOOK_SECRET #%s is not valid 'whsec_' base64.", position)
    return keys


# The answer to a stored delivery, ``{"outcome": "..."}`` as DRF's JSONRenderer writes it,
# rendered once per outcome: it is the answer to nearly every delivery, and rendering it
# per request shows in the receiver's throughput (benchmarks/webhook_ingestion.py).
_OUTCOME_ANSWERS = {
    outcome: json.dumps({"outcome": outcome}, separators=(",", ":")).encode()
    for outcome in Outcome.values
}


class IronWebhookView(APIView):
    """Receives Iron's signed webhook deliveries (``POST`` only).

    Authentication, permission, throttle, parser, renderer, negotiation and versioning
    classes are set here, so a host project's ``REST_FRAMEWORK`` defaults (say
    ``IsAuthenticated`` and a strict anonymous throttle) cannot lock Iron out. DRF makes
    the view CSRF-exempt (the signature is the authentication); :meth:`as_view` also
    keeps ``ATOMIC_REQUESTS`` away from it, so a rollback can never undo a stored delivery
    or a recorded failure.
    """

    authentication_classes = []
    permission_classes = [AllowAny]
    throttle_classes = []
    parser_classes = []  # the body is read raw, never through request.data
    renderer_classes = [JSONRenderer]
    content_negotiation_class = JSONOnlyNegotiation
    versioning_class = None
    http_method_names = ["post"]
    processing: str | None = None
    """``"inline"`` or ``"deferred"`` for this URL; ``None`` (default) follows
    ``IRON_KYC_WEBHOOK_PROCESSING``. Set it with ``as_view(processing="deferred")``."""

    @classmethod
    def as_view(cls, **initkwargs: Any) -> AsView[GenericView]:
        processing = initkwargs.get("processing")
        if processing is not None and processing not in WEBHOOK_PROCESSING_MODES:
            raise ValueError(f"processing must be 'inline', 'deferred' or None, not {processing!r}")
        view = super().as_view(**initkwargs)
        for alias in connections:
            view = transaction.non_atomic_requests(using=alias)(view)
        return view

    def perform_authentication(self, request: Request) -> None:
        """Nothing here: the signature is the authentication (checked in :meth:`post`).

        DRF's default resolves ``request.user`` up front; with no authentication classes
        that is always the anonymous user, so it is left to be resolved if ever asked for.
        """

    def post(self, request: Request) -> HttpResponse:
        # Django's HttpRequest (DRF's documented ``request._request``): the headers and the
        # raw body, without a proxy in between.
        http_request: HttpRequest = request._request
        meta = http_request.META
        webhook_id_header = meta.get("HTTP_WEBHOOK_ID")
        try:
            body, timestamp, webhook_id = self._verify(http_request)
        except _RefusedError as refused:
            log = logger.error if refused.status >= 500 else logger.warning
            log(
                "Refused an Iron webhook delivery with %s (%s) from %s, webhook-id %s.",
                refused.status,
                refused.reason,
                meta.get("REMOTE_ADDR") or "unknown address",
                _loggable(webhook_id_header),
            )
            headers = (
                {"WWW-Authenticate": signing.SIGNATURE_HEADER} if refused.status == 401 else None
            )
            return Response({"detail": refused.reason}, status=refused.status, headers=headers)

        signed_at = datetime.fromtimestamp(timestamp, tz=dt_timezone.utc)
        deferred = None if self.processing is None else self.processing == WEBHOOK_DEFERRED
        row, outcome = _receive(body, webhook_id, signed_at, deferred, build_row=False)
        if outcome == Outcome.INVALID:
            # An invalid delivery's row is always built (only a received one's is not).
            error = row.error if row is not None else ""
            return Response({"detail": error or "invalid body"}, status=400)
        if outcome == Outcome.FAILED:
            return Response({"detail": "processing failed; please retry"}, status=500)
        return HttpResponse(_OUTCOME_ANSWERS[outcome], content_type="application/json")

    def _verify(self, request: HttpRequest) -> tuple[bytes, int, str | None]:
        """Size, configuration, signature, headers: everything that refuses a delivery."""
        meta = request.META
        limit = iron_settings.WEBHOOK_MAX_BODY_SIZE
        _content_length(meta, limit)
        try:
            # The raw bytes, before anything could parse them.
            body: bytes = request.body
        except RequestDataTooBig:
            raise _RefusedError(413, f"body is larger than {limit} bytes") from None
        except OSError:
            raise _RefusedError(400, "the body could not be read") from None
        if len(body) > limit:
            raise _RefusedError(413, f"body is larger than {limit} bytes")

        keys = _secret_keys()
        if not keys:
            # Our configuration, not Iron's fault: 5xx so Iron retries until it is fixed.
            raise _RefusedError(503, "webhook receiver is not configured")

        try:
            timestamp = signing.verify(
                body=body,
                timestamp_header=meta.get("HTTP_WEBHOOK_TIMESTAMP"),
                signature_header=meta.get("HTTP_WEBHOOK_SIGNATURE"),
                secrets=keys,
                tolerance=iron_settings.WEBHOOK_TOLERANCE,
            )
        except signing.MalformedSignatureError as exc:
            raise _RefusedError(400, exc.reason) from None
        except signing.SignatureError as exc:
            raise _RefusedError(401, exc.reason) from None
        return body, timestamp, _webhook_id(meta)
