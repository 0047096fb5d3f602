"""The ordering rule (our contract with Iron, Part A item 5), webhook by webhook, both modes.

A webhook's timestamp is when Iron *sent* it, so an old event retried later carries a later
time than a newer one. A move forward in the lifecycle is applied with no call to Iron; any
other change is confirmed with ``GET /api/identifications/{id}`` (or the customer) first,
and Iron's answer is what counts. Iron is the fake here, in the state the test gives it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from django_iron_kyc.models import Customer, Identification, WebhookDelivery
from django_iron_kyc.testing import FakeIron, SignalRecorder, build_event
from django_iron_kyc.testing.mirror import mirror_customer, mirror_identification
from django_iron_kyc.webhooks import reprocess_delivery
from tests.support import NOW, identification_event
from tests.webhooks.support import APPROVED, Processing

Outcome = WebhookDelivery.Outcome
NON_TERMINAL = ["Pending", "Processed", "PendingReview"]
TERMINAL = ["Approved", "Declined", "Expired"]


@pytest.fixture
def ident(iron: FakeIron, db: None) -> Identification:
    """A Pending identification, the same at the fake Iron and here."""
    return mirror_identification(iron, mirror_customer(iron))


def gets_of(iron: FakeIron, ident: Identification) -> int:
    """How many times the app asked Iron for ``ident``."""
    return len(iron.requests_to("GET", rf"/api/identifications/{ident.iron_id}$"))


def status_of(ident: Identification) -> str:
    ident.refresh_from_db()
    return ident.status


def test_a_late_retry_of_an_older_event_never_undoes_a_decision(
    send: Callable[..., Any],
    processing: Processing,
    iron: FakeIron,
    ident: Identification,
    iron_signals: SignalRecorder,
) -> None:
    """The issue's scenario: Approved applied, then Processed retried with a later send time."""
    iron.set_identification_status(ident.iron_id, "Approved", notify=False)
    approved = send(identification_event(ident, "Approved", timestamp=NOW))
    assert processing.outcome(approved) == Outcome.PROCESSED
    assert iron_signals.names() == APPROVED

    retry = send(identification_event(ident, "Processed", timestamp=NOW + timedelta(seconds=30)))
    again = send(identification_event(ident, "Approved", timestamp=NOW + timedelta(seconds=60)))

    assert processing.outcome(retry) == Outcome.STALE
    assert processing.outcome(again) == Outcome.PROCESSED  # the same status: nothing changes
    assert status_of(ident) == "Approved"
    assert iron_signals.names() == APPROVED  # no Approved -> Processed, no second approval
    assert gets_of(iron, ident) == 1  # the retry was checked with Iron; the rest was not


@pytest.mark.parametrize("decision", TERMINAL)
@pytest.mark.parametrize("old", NON_TERMINAL)
def test_a_stale_retry_of_a_status_before_a_decision_is_dropped(
    send: Callable[..., Any],
    processing: Processing,
    iron: FakeIron,
    ident: Identification,
    iron_signals: SignalRecorder,
    decision: str,
    old: str,
) -> None:
    iron.set_identification_status(ident.iron_id, decision, notify=False)
    send(identification_event(ident, decision, timestamp=NOW))
    iron_signals.clear()

    response = send(identification_event(ident, old, timestamp=NOW + timedelta(minutes=5)))

    assert processing.outcome(response) == Outcome.STALE
    assert status_of(ident) == decision
    assert iron_signals.names() == []


def test_a_move_sideways_between_decisions_is_confirmed_and_dropped(
    send: Callable[..., Any], processing: Processing, iron: FakeIron, ident: Identification
) -> None:
    iron.set_identification_status(ident.iron_id, "Approved", notify=False)
    send(identification_event(ident, "Approved", timestamp=NOW))

    response = send(identification_event(ident, "Declined", timestamp=NOW + timedelta(1)))

    assert processing.outcome(response) == Outcome.STALE
    assert status_of(ident) == "Approved"


def test_a_move_forward_is_applied_without_asking_iron(
    send: Callable[..., Any], processing: Processing, iron: FakeIron, ident: Identification
) -> None:
    for n, status in enumerate(["Processed", "PendingReview", "Approved", "Archived"]):
        response = send(identification_event(ident, status, timestamp=NOW + timedelta(n)))
        assert processing.outcome(response) == Outcome.PROCESSED
        assert status_of(ident) == status
    assert iron.requests == []


def test_a_step_up_confirmed_by_iron_is_applied_and_old_retries_stay_out(
    send: Callable[..., Any],
    processing: Processing,
    iron: FakeIron,
    ident: Identification,
    iron_signals: SignalRecorder,
) -> None:
    iron.set_identification_status(ident.iron_id, "Approved", notify=False)
    send(identification_event(ident, "Approved", timestamp=NOW))
    iron.set_identification_status(ident.iron_id, "Pending", notify=False)  # a step-up
    iron_signals.clear()

    step_up = send(identification_event(ident, "Pending", timestamp=NOW + timedelta(days=30)))

    assert processing.outcome(step_up) == Outcome.PROCESSED
    ident.refresh_from_db()
    assert (ident.status, ident.moved_back_at is not None) == ("Pending", True)
    assert [
        kw["previous_status"] for kw in iron_signals.kwargs_of("identification_status_changed")
    ] == ["Approved"]
    # Iron retries the old Approved with a new send time: it looks forward, but after a
    # move back every webhook is confirmed, and Iron still says Pending.
    retry = send(identification_event(ident, "Approved", timestamp=NOW + timedelta(days=31)))
    assert processing.outcome(retry) == Outcome.STALE
    assert status_of(ident) == "Pending"


def test_iron_unreachable_during_a_confirmation_keeps_the_delivery_and_applies_nothing(
    send: Callable[..., Any],
    processing: Processing,
    iron: FakeIron,
    ident: Identification,
    django_capture_on_commit_callbacks: Any,
) -> None:
    iron.set_identification_status(ident.iron_id, "Approved", notify=False)
    send(identification_event(ident, "Approved", timestamp=NOW))
    iron.fail_next(10, path=rf"/api/identifications/{ident.iron_id}$", status=503)

    response = send(identification_event(ident, "Processed", timestamp=NOW + timedelta(1)))

    assert processing.outcome(response) == Outcome.FAILED
    row = WebhookDelivery.objects.order_by("-pk").first()
    assert row is not None
    assert "IronTransientError" in row.error
    assert status_of(ident) == "Approved"
    # Iron is back: the retry confirms, and the old event changes nothing.
    iron.clear_faults()
    with django_capture_on_commit_callbacks(execute=True):
        assert reprocess_delivery(row.pk) == Outcome.STALE
    assert status_of(ident) == "Approved"


def test_send_times_are_kept_apart_from_irons_object_times(
    send: Callable[..., Any], processing: Processing, iron: FakeIron, ident: Identification
) -> None:
    object_time = ident.iron_updated_at
    send(identification_event(ident, "Processed", timestamp=NOW))
    send(identification_event(ident, "PendingReview", timestamp=NOW - timedelta(days=1)))

    ident.refresh_from_db()
    assert ident.iron_updated_at == object_time  # a webhook never sets Iron's object time
    assert ident.webhook_sent_at == NOW  # the newest send time acted on
    assert ident.status == "PendingReview"  # forward, whatever its send time


def test_equal_send_times_never_let_a_status_go_backwards(
    send: Callable[..., Any], processing: Processing, iron: FakeIron, ident: Identification
) -> None:
    same_second = NOW.replace(microsecond=0)
    iron.set_identification_status(ident.iron_id, "PendingReview", notify=False)
    send(identification_event(ident, "PendingReview", timestamp=same_second))

    response = send(identification_event(ident, "Processed", timestamp=same_second))

    assert processing.outcome(response) == Outcome.STALE
    assert status_of(ident) == "PendingReview"


def test_an_unknown_status_is_stored_as_iron_confirms_it(
    send: Callable[..., Any], processing: Processing, iron: FakeIron, ident: Identification
) -> None:
    iron.set_identification_status(ident.iron_id, "SomethingNew", notify=False)

    response = send(identification_event(ident, "SomethingNew"))

    assert processing.outcome(response) == Outcome.PROCESSED
    assert status_of(ident) == "SomethingNew"
    assert gets_of(iron, ident) == 1


def test_out_of_order_events_end_in_irons_state(
    send: Callable[..., Any], processing: Processing, iron: FakeIron, ident: Identification
) -> None:
    iron.set_identification_status(ident.iron_id, "Approved", notify=False)
    send(identification_event(ident, "Approved", timestamp=NOW))
    send(identification_event(ident, "PendingReview", timestamp=NOW - timedelta(2)))
    send(identification_event(ident, "Processed", timestamp=NOW - timedelta(3)))

    assert status_of(ident) == "Approved"
    outcomes = list(WebhookDelivery.objects.order_by("pk").values_list("outcome", flat=True))
    assert outcomes == [Outcome.PROCESSED, Outcome.STALE, Outcome.STALE]


# --- customers -------------------------------------------------------------------------------


def customer_event(customer: Customer, status: str, minutes: int) -> dict[str, Any]:
    return build_event(
        "customer_status",
        customer.iron_id,
        customer.iron_id,
        status,
        timestamp=NOW + timedelta(minutes=minutes),
    )


def customer_gets(iron: FakeIron, customer: Customer) -> int:
    return len(iron.requests_to("GET", rf"/api/customers/{customer.iron_id}$"))


def test_a_customer_status_the_identification_implies_is_applied_without_asking_iron(
    send: Callable[..., Any], processing: Processing, iron: FakeIron, ident: Identification
) -> None:
    customer = ident.customer
    iron.set_identification_status(ident.iron_id, "Approved", notify=False)
    send(identification_event(ident, "Approved", timestamp=NOW))

    response = send(customer_event(customer, "Active", 1))

    assert processing.outcome(response) == Outcome.PROCESSED
    customer.refresh_from_db()
    assert customer.status == "Active"
    assert customer.webhook_sent_at == NOW + timedelta(minutes=1)
    assert customer_gets(iron, customer) == 0


def test_a_customer_status_change_not_implied_is_confirmed_with_iron(
    send: Callable[..., Any], processing: Processing, iron: FakeIron, ident: Identification
) -> None:
    customer = ident.customer
    iron.set_identification_status(ident.iron_id, "Approved", notify=False)  # Iron: Active
    send(identification_event(ident, "Approved", timestamp=NOW))
    send(customer_event(customer, "Active", 1))

    # A late retry of the customer's earlier status: Iron says Active.
    retry = send(customer_event(customer, "IdentificationRequired", 2))
    assert processing.outcome(retry) == Outcome.STALE
    customer.refresh_from_db()
    assert customer.status == "Active"
    # A real step-up at Iron: confirmed, and applied.
    iron.set_customer_status(customer.iron_id, "IdentificationRequired", notify=False)
    step_up = send(customer_event(customer, "IdentificationRequired", 3))
    assert processing.outcome(step_up) == Outcome.PROCESSED
    customer.refresh_from_db()
    assert customer.status == "IdentificationRequired"
    assert customer_gets(iron, customer) == 2
