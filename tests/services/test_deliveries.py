"""Acting on stored deliveries (services.deliveries): once per delivery, once per event, again
on request, and the deliveries parked while their identification was unknown.

The view, the drain and the sweep reach these through webhooks/ (tests/webhooks/); these
tests call the services directly.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from django_iron_kyc.models import Identification, WebhookDelivery
from django_iron_kyc.payloads import parse_event
from django_iron_kyc.services.deliveries import (
    act_on_parked_deliveries,
    already_acted_on,
    process_delivery,
    reprocess_delivery,
)
from django_iron_kyc.testing import FakeIron, SignalRecorder, build_event, encode_event
from django_iron_kyc.testing.factories import IdentificationFactory
from tests.support import LONG_AGO, identification_event

pytestmark = pytest.mark.django_db

Outcome = WebhookDelivery.Outcome
APPROVED = ["identification_status_changed", "identification_approved"]


@pytest.fixture
def identification() -> Identification:
    identification: Identification = IdentificationFactory(iron_created_at=LONG_AGO)
    return identification


def stored(event: dict[str, Any], **fields: Any) -> WebhookDelivery:
    """A delivery of ``event`` as the view stores it, not acted on yet."""
    delivery: WebhookDelivery = WebhookDelivery.objects.create(
        body=encode_event(event).decode(), **fields
    )
    return delivery


def test_process_delivery_acts_once_and_records_what_the_event_says(
    identification: Identification,
    iron_signals: SignalRecorder,
    django_capture_on_commit_callbacks: Any,
) -> None:
    delivery = stored(identification_event(identification))

    with django_capture_on_commit_callbacks(execute=True):
        first = process_delivery(delivery.pk)
        again = process_delivery(delivery)

    assert (first, again) == (Outcome.PROCESSED, Outcome.DUPLICATE)
    delivery.refresh_from_db()
    assert (delivery.outcome, delivery.attempts) == (Outcome.PROCESSED, 1)
    assert delivery.object_iron_id == identification.iron_id
    assert delivery.processed_at is not None
    identification.refresh_from_db()
    assert identification.status == "Approved"
    assert iron_signals.names() == APPROVED


def test_process_delivery_of_a_missing_row_raises_unless_it_may_skip() -> None:
    with pytest.raises(WebhookDelivery.DoesNotExist):
        process_delivery(987654)
    assert process_delivery(987654, skip_locked=True) is None


def test_reprocess_delivery_acts_again_whatever_the_outcome_and_signals_nothing_twice(
    identification: Identification,
    iron_signals: SignalRecorder,
    django_capture_on_commit_callbacks: Any,
) -> None:
    delivery = stored(identification_event(identification))
    with django_capture_on_commit_callbacks(execute=True):
        assert process_delivery(delivery) == Outcome.PROCESSED
        again = reprocess_delivery(delivery)

    assert again == Outcome.PROCESSED  # applied again, changing nothing
    delivery.refresh_from_db()
    assert delivery.attempts == 2
    assert iron_signals.names() == APPROVED


def test_the_same_event_under_another_delivery_is_a_duplicate(
    identification: Identification,
    iron_signals: SignalRecorder,
    django_capture_on_commit_callbacks: Any,
) -> None:
    event = identification_event(identification)
    first, second = stored(event, webhook_id="wh-a"), stored(event, webhook_id="wh-b")

    with django_capture_on_commit_callbacks(execute=True):
        assert process_delivery(first) == Outcome.PROCESSED
        assert already_acted_on(second, parse_event(second.body))
        assert process_delivery(second) == Outcome.DUPLICATE

    assert iron_signals.names() == APPROVED


def test_parked_deliveries_are_acted_on_once_their_identification_is_known(
    identification: Identification, iron_signals: SignalRecorder, iron: FakeIron
) -> None:
    customer = identification.customer
    later_id = uuid.uuid4()
    iron.add_customer(id=str(customer.iron_id))
    iron.add_identification(str(customer.iron_id), "Approved", id=str(later_id))
    event = build_event("identification_status", customer.iron_id, later_id, "Approved")
    parked = stored(event)
    assert process_delivery(parked) == Outcome.UNKNOWN_OBJECT
    act_on_parked_deliveries(later_id)  # still unknown: nothing to act on
    parked.refresh_from_db()
    assert (parked.outcome, parked.attempts) == (Outcome.UNKNOWN_OBJECT, 2)

    Identification.objects.filter(pk=identification.pk).update(status="Declined")
    known = IdentificationFactory(customer=customer, iron_id=later_id, iron_created_at=LONG_AGO)
    act_on_parked_deliveries(later_id)

    parked.refresh_from_db()
    known.refresh_from_db()
    assert parked.outcome == Outcome.PROCESSED
    assert known.status == "Approved"
    # Older than the state the intent got from Iron: its change was confirmed first.
    assert len(iron.requests_to("GET", rf"/api/identifications/{later_id}$")) == 1


@pytest.mark.postgres
def test_duplicate_event_lookup_uses_the_partial_event_key_index():
    """The index holds processed deliveries only; the lookup must ask for exactly those.

    If ``already_acted_on`` stopped filtering on ``outcome='processed'``, PostgreSQL could
    not use the partial index and would read the whole table on every delivery.
    """
    event = parse_event(
        encode_event(
            build_event("identification_status", uuid.uuid4(), uuid.uuid4(), "Pending")
        ).decode()
    )
    row = WebhookDelivery.objects.create(body="{}", event_key=event.key)
    with CaptureQueriesContext(connection) as queries:
        assert already_acted_on(row, event) is False
    (query,) = queries.captured_queries
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN " + query["sql"])
        plan = "\n".join(line for (line,) in cursor.fetchall())
    assert "iron_kyc_delivery_event_key" in plan, plan
