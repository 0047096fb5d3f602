"""Races on PostgreSQL: several connections at once, released together by a Barrier.

What the other suites do not already race (``tests/webhooks/test_concurrency.py``: one
delivery, or one event under two ids, on two connections; ``tests/services/test_concurrency.py``:
concurrent plain starts, a webhook and a poll applying one decision, two sweeps at once):

- forced restarts racing plain starts: one identification in flight, here and at Iron;
- a forced restart while the superseded intent's create POST is still on the wire;
- a webhook with an older status against a poll that reads the newer one;
- the same delivery on two connections while a refresh applies the same decision.

Each thread has its own connection (closed at the end), no sleeps: a Barrier starts them
together and a gate held at the fake Iron orders the one scenario that needs an order.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection

from django_iron_kyc import services
from django_iron_kyc.exceptions import IdentificationInFlightError
from django_iron_kyc.models import Identification, WebhookDelivery
from django_iron_kyc.testing import FakeIron, SignalRecorder, WebhookSender
from django_iron_kyc.testing.mirror import mirror_customer, mirror_identification
from tests.reliability.gate import Gate
from tests.support import CREATE_PATH, JOIN_TIMEOUT, run_together

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("sandbox_iron"),
]

ROUNDS = 3


def unexpected(results: list[Any], *allowed: type[BaseException]) -> list[BaseException]:
    return [r for r in results if isinstance(r, BaseException) and not isinstance(r, allowed)]


def status_changes(recorder: SignalRecorder, pk: int) -> list[tuple[str, str]]:
    return [
        (kw["previous_status"], kw["status"])
        for kw in recorder.kwargs_of("identification_status_changed")
        if kw["identification"].pk == pk
    ]


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_forced_and_plain_starts_at_once_leave_one_in_flight_here_and_at_iron(
    iron: FakeIron, iron_signals: SignalRecorder, round_: int
) -> None:
    customer = mirror_customer(iron)
    current = mirror_identification(iron, customer)

    results = run_together(
        lambda: services.start_identification(customer),
        lambda: services.start_identification(customer, force=True),
        lambda: services.start_identification(customer),
        lambda: services.start_identification(customer, force=True),
        return_exceptions=True,
    )

    assert not unexpected(results, IdentificationInFlightError)
    # One in flight is there all along, so the plain starts are refused.
    assert isinstance(results[0], IdentificationInFlightError)
    assert isinstance(results[2], IdentificationInFlightError)
    assert isinstance(results[1], Identification)
    assert isinstance(results[3], Identification)
    (in_flight,) = Identification.objects.in_flight().filter(customer=customer)
    assert in_flight.pk in {results[1].pk, results[3].pk}
    current.refresh_from_db()
    assert current.superseded_at is not None
    # Iron counts the one we count.
    services.refresh_customer(customer)
    in_flight.refresh_from_db()
    assert in_flight.superseded_at is None
    assert str(in_flight.iron_id) == iron.newest_identification(customer.iron_id)["id"]
    assert not iron_signals.kwargs_of("identification_approved")


def test_forced_restart_while_the_superseded_intent_is_posted_keeps_iron_and_us_agreeing(
    iron: FakeIron, iron_signals: SignalRecorder
) -> None:
    """The first intent's POST is on the wire when an admin forces a new identification.

    Iron answers the first POST only after the forced one was created: at Iron the first
    intent's identification is then the newest, the one Iron counts. Afterwards (and after
    a refresh at the latest) the identification we count must be the one Iron counts.
    """
    customer = mirror_customer(iron)
    gate = Gate()
    iron.fail_next(method="POST", path=CREATE_PATH, delay=gate)
    first: list[Any] = []

    def start_first() -> None:
        try:
            first.append(services.start_identification(customer))
        except BaseException as exc:
            first.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=start_first)
    thread.start()
    assert gate.reached.wait(JOIN_TIMEOUT)  # its POST is held at Iron
    forced = services.start_identification(customer, force=True)
    gate.set()  # Iron now creates the first one, after the forced one
    thread.join(JOIN_TIMEOUT)
    assert not thread.is_alive()
    (superseded,) = first
    assert isinstance(superseded, Identification), superseded
    superseded.refresh_from_db()
    forced.refresh_from_db()
    assert len(iron.identifications) == 2
    newest = iron.newest_identification(customer.iron_id)["id"]

    services.refresh_customer(customer)

    counted = [
        str(i.iron_id)
        for i in Identification.objects.filter(customer=customer, superseded_at__isnull=True)
        if not i.failed_at
    ]
    assert counted == [newest], (
        f"Iron counts {newest}; we count {counted} (forced {forced.iron_id}, "
        f"first {superseded.iron_id}, superseded here: {superseded.superseded_at is not None})"
    )


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_webhook_with_an_older_status_against_a_poll_reading_the_newer_one(
    iron: FakeIron, iron_signals: SignalRecorder, round_: int
) -> None:
    customer = mirror_customer(iron)
    row = mirror_identification(iron, customer)
    iron.set_identification_status(row.iron_id, "Processed")
    older = [d for d in iron.outbox if d.type == "identification_status"]
    iron.set_identification_status(row.iron_id, "Approved")
    (newer,) = [d for d in iron.outbox if d.type == "identification_status" and d not in older]
    Identification.objects.filter(pk=row.pk).update(next_poll_at=row.created_at)
    sender = WebhookSender()

    results = run_together(
        lambda: sender(older[0]), services.poll_due_identifications, return_exceptions=True
    )

    assert not unexpected(results)
    assert results[0].status_code == 200
    row.refresh_from_db()
    if results[1].polled:
        # The poll applied Approved (before or after the webhook's Processed: never undone).
        assert row.status == "Approved"
    else:
        # The webhook held the row: the sweep skipped it (skip_locked), to poll it later.
        assert row.status == "Processed"
        assert row.next_poll_at is not None
    assert sender(newer).status_code == 200  # the webhook of the newer status, late
    row.refresh_from_db()
    assert row.status == "Approved"
    changes = status_changes(iron_signals, row.pk)
    assert changes in (
        [("Pending", "Processed"), ("Processed", "Approved")],
        [("Pending", "Approved")],
    ), changes
    assert len(iron_signals.kwargs_of("identification_approved")) == 1


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_same_delivery_twice_while_a_refresh_applies_the_same_decision(
    iron: FakeIron, iron_signals: SignalRecorder, round_: int
) -> None:
    customer = mirror_customer(iron)
    row = mirror_identification(iron, customer)
    iron.set_identification_status(row.iron_id, "Declined", review_comment="blurred")
    (delivery,) = [d for d in iron.outbox if d.type == "identification_status"]
    sender = WebhookSender()

    results = run_together(
        lambda: sender(delivery),
        lambda: sender(delivery),
        lambda: services.refresh_customer(customer),
        return_exceptions=True,
    )

    assert not unexpected(results)
    assert [r.status_code for r in results[:2]] == [200, 200]
    assert WebhookDelivery.objects.filter(webhook_id=delivery.webhook_id).count() == 1
    row.refresh_from_db()
    assert row.status == "Declined"
    assert status_changes(iron_signals, row.pk) == [("Pending", "Declined")]
    assert len(iron_signals.kwargs_of("identification_declined")) == 1
