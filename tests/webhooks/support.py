"""Helpers of the webhook tests: the processing modes, stored deliveries, drains sent."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import time_machine

from django_iron_kyc import signing
from django_iron_kyc.models import Identification, WebhookDelivery
from django_iron_kyc.testing import SignalRecorder, build_event, encode_event
from django_iron_kyc.webhooks.receive import receive_delivery
from tests.support import NOW, identification_event

Outcome = WebhookDelivery.Outcome
APPROVED = ["identification_status_changed", "identification_approved"]


@dataclass(frozen=True)
class Processing:
    """The webhook processing mode of a test (``IRON_KYC_WEBHOOK_PROCESSING``).

    Deferred, Celery is eager here, so the drain acts on a delivery as soon as its request
    commits (the ``send`` fixture runs the on-commit callbacks): the delivery ends in the
    outcome it would have inline, and only the view's answer differs. :meth:`outcome` reads
    that outcome in either mode.
    """

    mode: str

    @property
    def deferred(self) -> bool:
        return self.mode == "deferred"

    def outcome(self, response: Any) -> str:
        """The outcome of the delivery ``response`` answered, checking the answer each mode
        gives: inline, the outcome itself (``failed`` is a 500); deferred, ``received`` for a
        delivery stored to be acted on (the outcome is then the stored row's), or
        ``duplicate`` for a delivery acted on before. ``invalid`` is a 400 in both modes."""
        if response.status_code == 400:
            assert response.json()["detail"]
            return str(Outcome.INVALID)
        if response.status_code == 500 and not self.deferred:
            assert response.json() == {"detail": "processing failed; please retry"}
            return str(Outcome.FAILED)
        assert response.status_code == 200, response.content
        answer: str = response.json()["outcome"]
        if answer != Outcome.RECEIVED:
            # Deferred answers anything else only for a repeat of one acted on before.
            assert not self.deferred or answer == Outcome.DUPLICATE, answer
            return answer
        assert self.deferred, "inline processing answered 'received'"
        webhook_id = response.wsgi_request.headers.get(signing.ID_HEADER)
        rows = WebhookDelivery.objects.order_by("-pk")
        row = rows.filter(webhook_id=webhook_id).first() if webhook_id else rows.first()
        assert row is not None
        return row.outcome


def countdowns(sent: list[dict[str, Any]]) -> list[float | None]:
    """What each drain in ``sent`` (the ``sent_drains`` fixture) waits before running
    (None: at once), each sent without kombu's publish retries."""
    assert all(kwargs["retry"] is False for kwargs in sent)
    return [kwargs.get("countdown") for kwargs in sent]


def store(
    identification: Identification | None = None,
    *,
    at: datetime | None = None,
    webhook_id: str | None = None,
) -> WebhookDelivery:
    """Store an event as the deferred view does (a ``ping`` without an identification),
    ``received`` at ``at``; the drain it asks for on commit is not run."""
    if identification is None:
        body = encode_event(build_event("ping", uuid.uuid4(), uuid.uuid4(), None))
    else:
        body = encode_event(identification_event(identification, timestamp=at or NOW))
    with time_machine.travel(at or NOW, tick=False):
        receipt = receive_delivery(body=body, webhook_id=webhook_id, signed_at=None, deferred=True)
    assert receipt.outcome == Outcome.RECEIVED
    return receipt.row


def approved(iron_signals: SignalRecorder) -> list[Identification]:
    """The identifications ``identification_approved`` was sent for, in order."""
    return [
        kwargs["identification"] for kwargs in iron_signals.kwargs_of("identification_approved")
    ]
