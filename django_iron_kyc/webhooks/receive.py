"""Receiving a verified delivery: store it (committed at once), then act on it or schedule it.

``IRON_KYC_WEBHOOK_PROCESSING`` says when the acting happens: ``"inline"`` (default), here
before the view answers; ``"deferred"``, in the drain task right after the answer, so the
request does no more than check the body's shape and store it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils import timezone

from ..conf import iron_settings
from ..exceptions import InvalidPayloadError
from ..models import WebhookDelivery
from ..payloads import parse_event
from ..services.deliveries import RETRYABLE_OUTCOMES, process_delivery, storable_text
from .drain import request_drain
from .storage import StoredDelivery, store_delivery

__all__ = ["Receipt", "receive_delivery"]

logger = logging.getLogger(__name__)

Outcome = WebhookDelivery.Outcome


@dataclass(slots=True)
class Receipt:
    """This delivery's outcome (what the view answers with) and where it is stored."""

    outcome: str
    stored: StoredDelivery

    @property
    def row(self) -> WebhookDelivery:
        """The stored row (built on first use; after processing inline, read again only
        for an ``invalid`` or ``duplicate`` outcome)."""
        return self.stored.row


def receive_delivery(
    *,
    body: bytes,
    webhook_id: str | None,
    signed_at: datetime | None,
    deferred: bool | None = None,
) -> Receipt:
    """Store a verified delivery (committed at once), then process it or schedule it.

    ``deferred`` (default: ``IRON_KYC_WEBHOOK_PROCESSING == "deferred"``) only stores it
    and has a Celery task act on it after this returns (outcome ``received``); otherwise it
    is processed here. The same ``webhook-id`` arriving again (even at the same moment on
    another connection) finds the stored row: it is processed only if it has not been
    acted on yet, so it acts once.
    """
    text = _body_text(body)
    if iron_settings.WEBHOOK_DEFERRED if deferred is None else deferred:
        return _store_for_later(text, webhook_id, signed_at)
    stored = store_delivery({"webhook_id": webhook_id, "signed_at": signed_at, "body": text})
    if not stored.created:
        outcome = stored.row.outcome
        if outcome == Outcome.INVALID:
            return Receipt(Outcome.INVALID, stored)
        if outcome not in RETRYABLE_OUTCOMES:
            logger.info("Iron webhook-id %r arrived again: duplicate.", webhook_id)
            return Receipt(Outcome.DUPLICATE, stored)
    return _process_now(stored)


def _body_text(body: bytes) -> str:
    """The body as stored: exact when it is UTF-8 (anything Iron sends is)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        # Backslash escapes keep the bytes readable and can never form valid JSON.
        text = body.decode("utf-8", errors="backslashreplace")
    return storable_text(text)


def _process_now(stored: StoredDelivery) -> Receipt:
    try:
        outcome = process_delivery(stored.pk)
    except WebhookDelivery.DoesNotExist:
        # Deleted between storing and acting on it: its customer was forgotten meanwhile
        # (services.forget_customer). Like any webhook about a forgotten customer, there is
        # nothing to act on, and nothing for Iron to send again.
        logger.info("Iron webhook delivery %s was deleted before it was acted on.", stored.pk)
        return Receipt(Outcome.UNKNOWN_OBJECT, stored)
    if outcome not in (Outcome.INVALID, Outcome.DUPLICATE):
        # The outcome is all the view answers with: no need to read the row again.
        return Receipt(outcome, stored)
    row = stored.row
    row.refresh_from_db()  # the error to answer with, or another connection's outcome
    if outcome == Outcome.DUPLICATE and row.outcome == Outcome.INVALID:
        # Another connection got there first and found the body invalid: same answer.
        outcome = Outcome.INVALID
    return Receipt(outcome, stored)


def _store_for_later(text: str, webhook_id: str | None, signed_at: datetime | None) -> Receipt:
    """Deferred processing: check the body's shape, store the row, schedule the drain.

    The shape is checked here so that a body Iron should not resend still gets its 400 at
    once (stored with outcome ``invalid``, as inline). Anything else is stored as it
    arrived, outcome ``received``: what the body says (type, object, status, event key) is
    filled in when the drain acts on it. A ``webhook-id`` that failed before is made
    ``received`` again, for the drain.
    """
    new: dict[str, Any] = {"webhook_id": webhook_id, "signed_at": signed_at, "body": text}
    try:
        parse_event(text)
    except InvalidPayloadError as exc:
        new.update(
            outcome=Outcome.INVALID,
            error=storable_text(str(exc)),
            attempts=1,
            processed_at=timezone.now(),
        )
        stored = store_delivery(new)
    else:
        stored = store_delivery(new)
        if stored.created:  # nearly every delivery
            request_drain(stored.alias)
            return Receipt(Outcome.RECEIVED, stored)
    row = stored.row
    if not stored.created:
        if row.outcome not in RETRYABLE_OUTCOMES:
            logger.info("Iron webhook-id %r arrived again: %s.", webhook_id, row.outcome)
            outcome = Outcome.INVALID if row.outcome == Outcome.INVALID else Outcome.DUPLICATE
            return Receipt(outcome, stored)
        # Iron's retry of a failed one: the drain acts on it again (it takes only
        # 'received' ones), as inline processing would, even when the sweep's attempts
        # are used up.
        again = WebhookDelivery.objects.filter(pk=row.pk, outcome=Outcome.FAILED)
        if row.outcome == Outcome.FAILED and again.update(outcome=Outcome.RECEIVED):
            row.outcome = Outcome.RECEIVED
    if row.outcome == Outcome.INVALID:
        logger.info("Iron webhook delivery %s has an invalid body: %s", row.pk, row.error)
        return Receipt(Outcome.INVALID, stored)
    request_drain(stored.alias)
    return Receipt(Outcome.RECEIVED, stored)
