"""Minimal reproductions of what the reliability state machine found, one test each.

Each is written the way the state machine reached it, with the fake Iron and the public
services only (and the machine's own fault where it injected one: a failure inside
``services.deliveries.act_on_event``), so it reads as a scenario and stays a regression
test once fixed.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import OperationalError

from django_iron_kyc import services
from django_iron_kyc.models import Customer, Identification, WebhookDelivery
from django_iron_kyc.payloads import WebhookEvent
from django_iron_kyc.services import deliveries
from django_iron_kyc.testing import FakeIron, SignalRecorder, WebhookSender

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("sandbox_iron")]


def started(customer: Customer) -> Identification:
    """Start an identification; the eager task creates it at Iron."""
    row = services.start_identification(customer)
    row.refresh_from_db()
    assert row.iron_id is not None
    return row


def step_up_of_an_older_identification(
    iron: FakeIron,
) -> tuple[Customer, Identification, Identification]:
    """X approved, then Y started; Iron moves X back to Pending (a step-up) before Y ends."""
    customer = services.create_customer(email="ada@example.com")
    older = started(customer)
    services.sandbox_approve(older)
    newer = started(customer)
    iron.outbox.clear()
    iron.set_identification_status(older.iron_id, "Pending")
    return customer, older, newer


def test_step_up_of_an_older_identification_does_not_break_the_poll_sweep(
    iron: FakeIron, send_iron_webhook: Any
) -> None:
    customer, older, newer = step_up_of_an_older_identification(iron)
    Identification.objects.filter(pk__in=[older.pk, newer.pk]).update(next_poll_at=None)
    Identification.objects.filter(pk=newer.pk).update(
        next_poll_at=newer.created_at  # due now
    )

    services.poll_due_identifications()  # raised IntegrityError (one in flight per customer)

    older.refresh_from_db()
    newer.refresh_from_db()
    assert older.status == "Pending"
    assert [i.pk for i in Identification.objects.in_flight().filter(customer=customer)] == [
        newer.pk
    ]


def test_step_up_of_an_older_identification_does_not_break_refresh(iron: FakeIron) -> None:
    customer, older, _newer = step_up_of_an_older_identification(iron)

    services.refresh_customer(customer)  # raised IntegrityError

    older.refresh_from_db()
    assert older.status == "Pending"


def test_step_up_webhook_of_an_older_identification_is_not_a_5xx_forever(
    iron: FakeIron, send_iron_webhook: Any
) -> None:
    step_up_of_an_older_identification(iron)
    (delivery,) = [d for d in iron.outbox if d.type == "identification_status"]

    answers = [send_iron_webhook(delivery).status_code for _ in range(3)]

    assert answers[-1] == 200, answers  # was [500, 500, 500]: Iron retries it forever


def test_refresh_adopts_the_newest_identification_while_iron_steps_up_an_older_one(
    iron: FakeIron,
) -> None:
    """X expired here; Iron moves X back to Processed and makes Y elsewhere; one refresh.

    Iron counts Y (the newest). The refresh applied X's step-up first (X in flight again,
    as nothing newer was tracked yet), then could not adopt Y ("another identification is
    in flight"): Y stayed unknown, X counted here, until a second refresh.
    """
    customer = services.create_customer(email="ada@example.com")
    older = started(customer)
    iron.set_identification_status(older.iron_id, "Expired", notify=False)
    services.refresh_customer(customer)
    older.refresh_from_db()
    assert older.status == "Expired"
    iron.set_identification_status(older.iron_id, "Processed", notify=False)
    newest = iron.add_identification(customer.iron_id)

    services.refresh_customer(customer)

    tracked = Identification.objects.filter(customer=customer)
    assert {str(i) for i in tracked.values_list("iron_id", flat=True)} == {
        str(older.iron_id),
        newest["id"],
    }
    (counted,) = Identification.objects.in_flight().filter(customer=customer)
    assert str(counted.iron_id) == newest["id"]
    older.refresh_from_db()
    assert older.status == "Processed"
    assert older.superseded_at is not None


@pytest.mark.usefixtures("deferred")
def test_deferred_delivery_that_failed_is_acted_on_when_iron_sends_it_again(
    iron: FakeIron,
    send_iron_webhook: WebhookSender,
    iron_signals: SignalRecorder,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Acting on a stored delivery failed; Iron sends it again and is answered ``received``.

    The drain acts only on ``received`` deliveries, and the row stayed ``failed``: the
    drain that ran after the answer left it to the webhook sweep's backoff, and once the
    sweep's attempts were used up (one here) nobody ever acted on it, although the answer
    told Iron it would be, "moments later".
    """
    settings.IRON_KYC_WEBHOOK_MAX_ATTEMPTS = 1
    row = started(services.create_customer(email="ada@example.com"))
    iron.outbox.clear()
    iron.set_identification_status(row.iron_id, "Approved")
    (delivery,) = [d for d in iron.outbox if d.type == "identification_status"]

    def fails(row: WebhookDelivery, event: WebhookEvent) -> str:
        raise OperationalError("could not serialize access (injected)")

    with monkeypatch.context() as patched:
        patched.setattr(deliveries, "act_on_event", fails)
        assert send_iron_webhook(delivery).json() == {"outcome": "received"}
    stored = WebhookDelivery.objects.get(webhook_id=delivery.webhook_id)
    assert (stored.outcome, stored.attempts) == ("failed", 1)

    again = send_iron_webhook(delivery)  # the same webhook-id; the drain runs after it

    assert again.json() == {"outcome": "received"}
    stored.refresh_from_db()
    assert (stored.outcome, stored.attempts) == ("processed", 2)
    row.refresh_from_db()
    assert row.status == "Approved"
    assert [
        kw["identification"].pk for kw in iron_signals.kwargs_of("identification_approved")
    ] == [row.pk]
