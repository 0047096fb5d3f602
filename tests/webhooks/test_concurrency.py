"""On PostgreSQL: one delivery (or one event) arriving on two connections at once acts once.

Each thread has its own database connection; a Barrier releases both requests together.
Whatever the interleaving, the unique ``webhook_id`` and the row locks must leave exactly
one delivery acted on and one set of signals.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from django_iron_kyc.models import Identification, WebhookDelivery
from django_iron_kyc.testing import encode_event
from django_iron_kyc.testing.factories import IdentificationFactory
from django_iron_kyc.testing.pytest_plugin import SignalRecorder
from tests.test_webhooks import (  # noqa: F401 (no_secrets_in_logs is an autouse fixture)
    LONG_AGO,
    identification_event,
    no_secrets_in_logs,
    post,
    signed_headers,
)

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
]

Outcome = WebhookDelivery.Outcome
ROUNDS = 5


def _identification() -> Identification:
    return IdentificationFactory(iron_created_at=LONG_AGO)


def run_together(*targets: Callable[[], Any]) -> list[Any]:
    """Call every target from its own thread and connection, all released at once; return
    what each returned, in order."""
    barrier = threading.Barrier(len(targets))
    results: list[Any] = [None] * len(targets)
    errors: list[BaseException] = []

    def run(index: int, target: Callable[[], Any]) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = target()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, t)) for i, t in enumerate(targets)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert all(not thread.is_alive() for thread in threads)
    return results


def post_together(requests: list[tuple[bytes, dict[str, str]]]) -> list[Any]:
    """POST every (body, headers) from its own thread and connection, all released at once."""
    return run_together(
        *(
            functools.partial(post, Client(enforce_csrf_checks=True), body, headers)
            for body, headers in requests
        )
    )


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
    assert iron_signals.names() == ["identification_status_changed", "identification_approved"]


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
    assert iron_signals.names() == ["identification_status_changed", "identification_approved"]
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
