"""The webhook view fed by the test kit's FakeIron: what Iron would send, in the order (and
with the repeats) Iron might send it."""

from __future__ import annotations

from typing import Any

import pytest

from django_iron_kyc.models import Identification, WebhookDelivery
from django_iron_kyc.testing import FakeIron, SignalRecorder
from django_iron_kyc.testing.factories import CustomerFactory, IdentificationFactory
from tests.support import LONG_AGO

Outcome = WebhookDelivery.Outcome


def mirrored(fake_iron: FakeIron) -> Identification:
    """A customer and a pending identification, known both to the fake and locally."""
    remote_customer = fake_iron.add_customer()
    remote = fake_iron.add_identification(remote_customer["id"])
    fake_iron.outbox.clear()
    customer = CustomerFactory(iron_id=remote_customer["id"], iron_created_at=LONG_AGO)
    return IdentificationFactory(customer=customer, iron_id=remote["id"], iron_created_at=LONG_AGO)


@pytest.mark.parametrize("shape", ["tagged", "flat"])
def test_fake_irons_webhooks_repeated_and_reversed_end_in_the_newest_state(
    db: None,
    fake_iron: FakeIron,
    deliver_fake_webhooks: Any,
    iron_signals: SignalRecorder,
    django_capture_on_commit_callbacks: Any,
    shape: str,
) -> None:
    fake_iron.message_shape = shape
    identification = mirrored(fake_iron)
    fake_iron.duplicate_next_webhooks(10)  # every event twice under the same webhook-id
    fake_iron.set_identification_status(identification.iron_id, "Processed")
    fake_iron.set_identification_status(identification.iron_id, "Approved")
    fake_iron.reorder_outbox()  # newest first

    with django_capture_on_commit_callbacks(execute=True):
        responses = deliver_fake_webhooks()

    answered = [
        (delivery.event["type"], response.json()["outcome"])
        for (delivery, _), response in zip(fake_iron.sent, responses, strict=True)
    ]
    assert answered == [
        ("customer_status", "processed"),  # Active
        ("customer_status", "duplicate"),
        ("identification_status", "processed"),  # Approved
        ("identification_status", "duplicate"),
        ("identification_status", "stale"),  # Processed: older, arrived last
        ("identification_status", "duplicate"),
    ]
    assert {r.status_code for r in responses} == {200}
    identification.refresh_from_db()
    identification.customer.refresh_from_db()
    assert identification.status == "Approved"
    assert identification.customer.status == "Active"
    assert iron_signals.names() == [
        "customer_status_changed",
        "identification_status_changed",
        "identification_approved",
    ]


@pytest.mark.django_db(transaction=True)
def test_unknown_identification_webhook_makes_the_app_fetch_it_from_iron(
    fake_iron: FakeIron, deliver_fake_webhooks: Any, iron_signals: SignalRecorder
) -> None:
    remote_customer = fake_iron.add_customer()
    customer = CustomerFactory(iron_id=remote_customer["id"], iron_created_at=LONG_AGO)
    # Created at Iron by someone else (another server, the dashboard): unknown here.
    remote = fake_iron.add_identification(remote_customer["id"], notify=False)
    fake_iron.set_identification_status(remote["id"], "Approved")

    responses = deliver_fake_webhooks()

    by_type = {r.json()["outcome"] for r in responses}
    assert "unknown_object" in by_type
    # The refresh ran (Celery eager, after the commit) and adopted Iron's identification.
    adopted = Identification.objects.get(iron_id=remote["id"])
    assert adopted.customer == customer
    assert adopted.status == "Approved"
    assert fake_iron.requests_to("GET", rf"/api/customers/{customer.iron_id}/identifications")
    assert "identification_approved" in iron_signals.names()
