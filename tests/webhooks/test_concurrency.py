"""On PostgreSQL: one delivery (or one event) arriving on two connections at once acts once,
and two drains at once act on each delivery once.

Each thread has its own database connection; a Barrier releases both requests together.
Whatever the interleaving, the unique ``webhook_id`` and the row locks must leave exactly
one delivery acted on and one set of signals.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from django_iron_kyc.models import Identification, WebhookDelivery
from django_iron_kyc.testing import SignalRecorder, encode_event
from django_iron_kyc.testing.factories import IdentificationFactory
from django_iron_kyc.webhooks.drain import process_received_deliveries
from tests.support import (
    LONG_AGO,
    identification_event,
    post_together,
    run_together,
    signed_headers,
)
from tests.webhooks.support import APPROVED, approved, store

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
]

Outcome = WebhookDelivery.Outcome
ROUNDS = 5


def _identification() -> Identification:
    return IdentificationFactory(iron_created_at=LONG_AGO)


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_webhook_same_delivery_on_two_connections_at_once_acts_once(
    iron_signals: SignalRecorder, round_: int
) -> None:
    identification = _identification()
    body = encode_event(identification_event(identification))
    headers = signed_headers(body, webhook_id=f"wh-race-{round_}")

    responses = post_together([(body, headers), (body, headers)])

    assert [r.status_code for r in responses] == [200, 200]
    assert sorted(r.json()["outcome"] for r in responses) == ["duplicate", "processed"]
    row = WebhookDelivery.objects.get()
    assert row.outcome == Outcome.PROCESSED
    assert row.attempts == 1
    assert iron_signals.names() == APPROVED


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_webhook_same_event_under_two_ids_at_once_acts_once(
    iron_signals: SignalRecorder, round_: int
) -> None:
    identification = _identification()
    body = encode_event(identification_event(identification))

    responses = post_together(
        [
            (body, signed_headers(body, webhook_id=f"wh-a-{round_}")),
            (body, signed_headers(body, webhook_id=f"wh-b-{round_}")),
        ]
    )

    assert sorted(r.json()["outcome"] for r in responses) == ["duplicate", "processed"]
    assert sorted(WebhookDelivery.objects.values_list("outcome", flat=True)) == [
        Outcome.DUPLICATE,
        Outcome.PROCESSED,
    ]
    assert iron_signals.names() == APPROVED
    identification.refresh_from_db()
    assert identification.status == "Approved"


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_webhook_same_invalid_delivery_at_once_is_refused_twice_and_stored_once(
    round_: int,
) -> None:
    body = b'{"type": "identification_status", "timestamp": "not a time", "data": {}}'
    headers = signed_headers(body, webhook_id=f"wh-invalid-{round_}")

    responses = post_together([(body, headers), (body, headers)])

    assert [r.status_code for r in responses] == [400, 400]
    assert responses[0].json() == responses[1].json()
    assert WebhookDelivery.objects.get().outcome == Outcome.INVALID


@pytest.mark.parametrize("round_", range(3))
def test_deferred_same_webhook_id_on_two_connections_at_once_is_stored_once(
    deferred: None, sent_drains: list[dict[str, Any]], round_: int
) -> None:
    identification = _identification()
    body = encode_event(identification_event(identification))
    headers = signed_headers(body, webhook_id=f"wh-deferred-race-{round_}")

    responses = post_together([(body, headers), (body, headers)])

    assert [r.status_code for r in responses] == [200, 200]
    assert [r.json() for r in responses] == [{"outcome": "received"}] * 2
    assert WebhookDelivery.objects.get().outcome == Outcome.RECEIVED


@pytest.mark.parametrize("round_", range(3))
def test_two_drains_at_once_act_on_each_delivery_once(
    iron_signals: SignalRecorder, sent_drains: list[dict[str, Any]], round_: int
) -> None:
    identifications = [_identification() for _ in range(40)]
    for each in identifications:
        store(each)

    results = run_together(process_received_deliveries, process_received_deliveries)

    total = sum((r.outcomes for r in results), Counter())
    assert total["processed"] == 40
    assert set(total) <= {"processed", "busy", "duplicate"}
    assert not any(r.more for r in results)
    rows = WebhookDelivery.objects.all()
    assert {(row.outcome, row.attempts) for row in rows} == {(Outcome.PROCESSED, 1)}
    assert Counter(i.pk for i in approved(iron_signals)) == Counter(
        {i.pk: 1 for i in identifications}
    )
    assert set(Identification.objects.values_list("status", flat=True)) == {"Approved"}
