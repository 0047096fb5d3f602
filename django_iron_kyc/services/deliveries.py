"""Acting on stored webhook deliveries: one transaction per delivery, its outcome recorded.

The webhook view (inline), the drain and the webhook sweep (deferred, retries), the admin and
``iron_kyc_reprocess_webhooks`` all act on a delivery through :func:`process_delivery`.
:func:`act_on_event` is the step that changes state; the reliability suite injects its faults
there.
"""

from __future__ import annotations

import contextlib
import logging
import traceback as traceback_module
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, overload

from django.db import transaction
from django.utils import timezone

from ..enqueue import REFRESH_CUSTOMER, enqueue_on_commit
from ..exceptions import InvalidPayloadError
from ..models import Customer, Identification, WebhookDelivery
from ..payloads import (
    EventType,
    RemoteCustomer,
    RemoteIdentification,
    WebhookEvent,
    normalize_identification_status,
    parse_event,
)
from .apply import CONFIRM_ATTEMPTS, fetch_customer, fetch_identification
from .iron import get_client
from .sources import Source
from .state import (
    ApplyResult,
    apply_to_locked_customer,
    apply_to_locked_identification,
    locked_customers,
    locked_identifications,
)

__all__ = [
    "RETRYABLE_OUTCOMES",
    "ConfirmWithIronError",
    "Confirmation",
    "act_on_event",
    "act_on_parked_deliveries",
    "already_acted_on",
    "process_delivery",
    "reprocess_delivery",
    "storable_text",
]

logger = logging.getLogger(__name__)

Outcome = WebhookDelivery.Outcome

# A delivery in one of these states has not been acted on (yet): a retry processes it.
RETRYABLE_OUTCOMES = frozenset({Outcome.RECEIVED, Outcome.FAILED})

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


def storable_text(value: str) -> str:
    """``value`` as a text column can hold it (PostgreSQL text cannot hold NUL)."""
    return value.replace("\x00", "\\x00")


@overload
def process_delivery(
    delivery: WebhookDelivery | int,
    *,
    force: bool = ...,
    skip_locked: Literal[False] = ...,
    distrust: bool = ...,
) -> str: ...
@overload
def process_delivery(
    delivery: WebhookDelivery | int, *, force: bool = ..., skip_locked: bool, distrust: bool = ...
) -> str | None: ...
def process_delivery(
    delivery: WebhookDelivery | int,
    *,
    force: bool = False,
    skip_locked: bool = False,
    distrust: bool = False,
) -> str | None:
    """Act on one stored delivery and record the outcome on its row; return the outcome.

    A delivery that was already acted on (any outcome but ``received`` or ``failed``) is
    left alone and ``duplicate`` is returned, unless ``force`` is set. Processing runs in
    one transaction, with the delivery row locked; an unexpected error rolls it back and is
    recorded on the row (outcome ``failed``, error and traceback) in a transaction of its
    own, and ``failed`` is returned. A body that is not Iron's shape gives ``invalid``.
    An event the ordering rule does not trust on its own is confirmed with Iron between two
    such transactions (one ``GET``); Iron unreachable then is a failure like any other: the
    delivery is kept for a retry, never applied blindly. With ``skip_locked``, a delivery
    that another connection is processing right now is skipped and ``None`` is returned (on
    PostgreSQL; SQLite has no row locks). ``distrust``: confirm with Iron any change the
    event would make (a delivery older than what Iron has told us since).
    """
    pk = delivery.pk if isinstance(delivery, WebhookDelivery) else delivery
    confirmed: Confirmation | None = None
    try:
        for _attempt in range(CONFIRM_ATTEMPTS + 1):
            try:
                return _process_once(pk, force, skip_locked, confirmed, distrust)
            except ConfirmWithIronError as ask:
                confirmed = _ask_iron(ask)
        raise RuntimeError("what the delivery is about kept changing while Iron was asked")
    except WebhookDelivery.DoesNotExist:
        raise  # deleted (its customer forgotten, or pruned): no row to record a failure on
    except Exception as exc:
        _record_failure(pk, exc)
        return Outcome.FAILED


def _process_once(
    pk: int, force: bool, skip_locked: bool, confirmed: Confirmation | None, distrust: bool
) -> str | None:
    with transaction.atomic():
        found = (
            WebhookDelivery.objects.select_for_update(skip_locked=skip_locked).filter(pk=pk).first()
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
            row.error = storable_text(str(exc))
        else:
            _describe(row, event)
            row.outcome = act_on_event(row, event, confirmed, distrust=distrust)
        row.processed_at = timezone.now()
        row.save(update_fields=_PROCESSED_FIELDS)
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


def act_on_event(
    row: WebhookDelivery,
    event: WebhookEvent,
    confirmed: Confirmation | None = None,
    *,
    distrust: bool = False,
) -> str:
    """Apply one parsed event of delivery ``row``; return the outcome.

    Runs inside :func:`process_delivery`'s transaction. The target row is locked before
    looking for an earlier delivery of the same event, so two deliveries of one event
    racing on two connections act once. An event the ordering rule does not trust raises
    :class:`ConfirmWithIronError` (rolling the transaction back); ``process_delivery`` asks
    Iron and calls again with Iron's answer as ``confirmed``: what is applied then, if the
    row has not changed since Iron was asked (``stale`` if Iron's status is not the
    event's: the event was an old one). ``distrust``: confirm any change the event makes.
    """
    object_id = event.object_iron_id
    if not event.handled or object_id is None:
        return Outcome.IGNORED
    target: Identification | Customer | None
    if event.type == EventType.IDENTIFICATION_STATUS:
        target = locked_identifications().filter(iron_id=object_id).first()
        if target is None:
            _refresh_customer_of_unknown(event)
    else:
        target = locked_customers().filter(iron_id=object_id).first()
    if target is None:
        return Outcome.UNKNOWN_OBJECT
    if already_acted_on(row, event):
        return Outcome.DUPLICATE
    if confirmed is not None and target.updated_at != confirmed.seen:
        raise ConfirmWithIronError(target)
    if distrust and confirmed is None and target.status != _stored_status(event):
        raise ConfirmWithIronError(target)
    result = _apply(target, event, confirmed)
    if result.needs_confirmation:
        raise ConfirmWithIronError(target)
    if not result.applied:
        return Outcome.STALE
    if confirmed is not None and confirmed.status != _stored_status(event):
        return Outcome.STALE
    return Outcome.PROCESSED


def _apply(
    target: Identification | Customer, event: WebhookEvent, confirmed: Confirmation | None
) -> ApplyResult:
    if isinstance(target, Identification):
        if confirmed is None:
            remote: RemoteIdentification = RemoteIdentification.from_webhook(event)
        else:
            assert isinstance(confirmed.remote, RemoteIdentification)
            remote = confirmed.remote
        return apply_to_locked_identification(
            target, remote, Source.WEBHOOK, fresh=confirmed is not None
        )
    if confirmed is None:
        return apply_to_locked_customer(target, RemoteCustomer.from_webhook(event), Source.WEBHOOK)
    assert isinstance(confirmed.remote, RemoteCustomer)
    return apply_to_locked_customer(target, confirmed.remote, Source.WEBHOOK)


def _stored_status(event: WebhookEvent) -> str:
    if event.type == EventType.IDENTIFICATION_STATUS:
        return normalize_identification_status(event.status)
    return event.status


class ConfirmWithIronError(Exception):
    """Raised by :func:`act_on_event` for an event to confirm with Iron first (internal)."""

    def __init__(self, target: Identification | Customer) -> None:
        self.kind = target._meta.model_name or ""
        self.iron_id = target.iron_id
        self.seen = target.updated_at
        super().__init__(f"confirm {self.kind} {self.iron_id} with Iron")


@dataclass(frozen=True)
class Confirmation:
    """Iron's answer to a confirmation, and the row's ``updated_at`` when Iron was asked."""

    remote: RemoteIdentification | RemoteCustomer
    seen: datetime

    @property
    def status(self) -> str:
        if isinstance(self.remote, RemoteIdentification):
            return normalize_identification_status(self.remote.status)
        return self.remote.status


def _ask_iron(ask: ConfirmWithIronError) -> Confirmation:
    """One ``GET`` of what the event is about, outside any transaction."""
    assert ask.iron_id is not None
    with get_client() as client:
        if ask.kind == "identification":
            remote: RemoteIdentification | RemoteCustomer = fetch_identification(
                client, ask.iron_id
            )
        else:
            remote = fetch_customer(client, ask.iron_id)
    return Confirmation(remote, ask.seen)


def already_acted_on(row: WebhookDelivery, event: WebhookEvent) -> bool:
    """Was the same event processed under another delivery (another ``webhook-id``)?"""
    return (
        WebhookDelivery.objects.filter(event_key=event.key, outcome=Outcome.PROCESSED)
        .exclude(pk=row.pk)
        .exists()
    )


def _refresh_customer_of_unknown(event: WebhookEvent) -> None:
    """An unknown identification of a known customer: fetch the customer (and adopt it)."""
    if event.customer_iron_id is None:
        return
    customer_pk = (
        Customer.objects.filter(iron_id=event.customer_iron_id).values_list("pk", flat=True).first()
    )
    if customer_pk is None:
        return
    logger.info(
        "Iron webhook for unknown identification %s of customer %s: refreshing that customer.",
        event.object_iron_id,
        event.customer_iron_id,
    )
    # After commit, and robust: a broker hiccup must not turn a stored, acknowledged
    # delivery into a 500.
    enqueue_on_commit(REFRESH_CUSTOMER, customer_pk)


def act_on_parked_deliveries(iron_id: uuid.UUID) -> None:
    """Act on the deliveries stored for Iron identification ``iron_id`` while it was unknown
    here (outcome ``unknown_object``), now that an intent has it.

    Iron may send a webhook before the answer to the identification's creation reaches us
    (that answer lost, the POST sent again later). Acting again is safe: stale and repeated
    states are dropped, so nothing is signalled twice.
    """
    parked = list(
        WebhookDelivery.objects.filter(object_iron_id=iron_id, outcome=Outcome.UNKNOWN_OBJECT)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    if parked:
        logger.info(
            "Acting on Iron webhook deliveries %s, stored before identification %s was known here.",
            parked,
            iron_id,
        )
    for delivery_pk in parked:
        # Older than the state the intent just got from Iron: a change is confirmed first.
        process_delivery(delivery_pk, force=True, distrust=True)  # logs each outcome


def _describe(row: WebhookDelivery, event: WebhookEvent) -> None:
    row.event_type = event.type
    row.event_timestamp = event.timestamp
    row.customer_iron_id = event.customer_iron_id
    row.object_iron_id = event.object_iron_id
    row.object_status = event.status
    row.event_key = event.key if event.handled else ""


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
        row.error = storable_text(f"{type(exc).__name__}: {exc}")
        row.traceback = storable_text(
            "".join(traceback_module.format_exception(type(exc), exc, exc.__traceback__))
        )
        row.processed_at = None
        row.save()
