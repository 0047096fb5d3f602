"""The one state-changing path: apply_identification_state / apply_customer_state."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

import pytest

from django_iron_kyc.models import Customer, Identification
from django_iron_kyc.services import (
    RemoteCustomer,
    RemoteIdentification,
    Source,
    apply_customer_state,
    apply_identification_state,
)
from django_iron_kyc.testing import FakeIron
from django_iron_kyc.testing.factories import CustomerFactory, IdentificationFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 1, 15, 10, 0, tzinfo=dt_timezone.utc)


def remote(ident: Identification, status: str, at: datetime | None, **fields: Any) -> Any:
    assert ident.iron_id is not None
    return RemoteIdentification(iron_id=ident.iron_id, status=status, updated_at=at, **fields)


@pytest.fixture
def pending() -> Identification:
    return IdentificationFactory(iron_created_at=T0, iron_updated_at=T0)


@pytest.fixture
def apply(django_capture_on_commit_callbacks: Any, iron: FakeIron) -> Any:
    """apply_identification_state, committed (on-commit callbacks run).

    Iron (the fake) is put in the applied state first, so that a move the ordering rule
    confirms with Iron is confirmed; ``at_iron=False`` leaves Iron as it was (a late copy).
    """

    def run(ident: Identification, status: str, at: datetime | None, **kw: Any) -> Any:
        source = kw.pop("source", Source.POLL)
        if kw.pop("at_iron", True):
            put_at_iron(iron, ident, status, at)
        with django_capture_on_commit_callbacks(execute=True):
            return apply_identification_state(ident, remote(ident, status, at, **kw), source=source)

    return run


def put_at_iron(iron: FakeIron, ident: Identification, status: str, at: datetime | None) -> None:
    """``ident`` (and its customer) exist at the fake Iron, in ``status`` since ``at``."""
    customer_id = str(ident.customer.iron_id)
    if customer_id not in iron.customers:
        iron.add_customer(id=customer_id)
    if str(ident.iron_id) not in iron.identifications:
        iron.add_identification(customer_id, status, id=str(ident.iron_id))
    iron.set_identification_status(ident.iron_id, status, notify=False, at=at)


def test_apply_stores_status_and_details(pending: Identification, apply: Any) -> None:
    result = apply(pending, "Declined", T0 + timedelta(minutes=1), review_comment="Blurry")
    assert result.applied
    assert result.status_changed
    assert result.previous_status == "Pending"
    pending.refresh_from_db()
    assert pending.status == "Declined"
    assert pending.review_comment == "Blurry"
    assert pending.iron_updated_at == T0 + timedelta(minutes=1)
    assert pending.next_poll_at is None  # terminal: no more polling


def test_apply_ignores_an_update_older_than_the_stored_one(
    pending: Identification, apply: Any, iron_signals: Any
) -> None:
    apply(pending, "Approved", T0 + timedelta(minutes=5))
    iron_signals.clear()
    result = apply(pending, "Pending", T0 + timedelta(minutes=1), at_iron=False)
    assert not result.applied
    pending.refresh_from_db()
    assert pending.status == "Approved"
    assert iron_signals.names() == []


def test_apply_same_status_again_sends_nothing(
    pending: Identification, apply: Any, iron_signals: Any
) -> None:
    apply(pending, "Approved", T0 + timedelta(minutes=1))
    apply(pending, "Approved", T0 + timedelta(minutes=2))
    apply(pending, "Approved", T0 + timedelta(minutes=2))
    assert iron_signals.names() == ["identification_status_changed", "identification_approved"]


def test_apply_accepts_rejected_as_declined(
    pending: Identification, apply: Any, iron_signals: Any
) -> None:
    apply(pending, "Rejected", T0 + timedelta(minutes=1))
    pending.refresh_from_db()
    assert pending.status == Identification.Status.DECLINED
    assert "identification_declined" in iron_signals.names()


def test_apply_stores_an_unknown_status_without_signals(
    pending: Identification, apply: Any, iron_signals: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="django_iron_kyc"):
        result = apply(pending, "OnHoldForMoonPhase", T0 + timedelta(minutes=1))
    assert result.applied
    pending.refresh_from_db()
    assert pending.status == "OnHoldForMoonPhase"
    assert pending.next_poll_at is not None  # not terminal: still followed
    assert iron_signals.names() == []
    assert "unknown identification status 'OnHoldForMoonPhase'" in caplog.text
    apply(pending, "Approved", T0 + timedelta(minutes=2))
    [sent] = iron_signals.kwargs_of("identification_approved")
    assert sent["previous_status"] == "OnHoldForMoonPhase"


def test_a_move_out_of_a_decision_is_applied_only_as_iron_confirms_it(
    pending: Identification, apply: Any, iron_signals: Any, iron: FakeIron
) -> None:
    approved_at = T0 + timedelta(minutes=1)
    apply(pending, "Approved", approved_at)
    # A late copy (Iron still says Approved): confirmed with Iron, which says otherwise.
    assert not apply(
        pending, "Pending", approved_at + timedelta(days=1), at_iron=False
    ).status_changed
    assert not apply(pending, "Pending", None, at_iron=False).status_changed
    pending.refresh_from_db()
    assert pending.status == "Approved"
    assert pending.moved_back_at is None
    assert len(iron.requests_to("GET", rf"/api/identifications/{pending.iron_id}$")) == 2
    # Iron's step-up: Approved -> Pending (confirmed), then Approved again.
    step_up = apply(pending, "Pending", approved_at + timedelta(days=30), url="https://x.test/s")
    assert step_up.status_changed
    pending.refresh_from_db()
    assert (pending.status, pending.moved_back_at is not None) == ("Pending", True)
    apply(pending, "Approved", approved_at + timedelta(days=31))
    assert iron_signals.names().count("identification_approved") == 2


def test_a_move_forward_is_applied_without_asking_iron(
    pending: Identification, apply: Any, iron: FakeIron
) -> None:
    for status in ("Processed", "PendingReview", "Declined", "Archived"):
        assert apply(pending, status, None, at_iron=False).status_changed
    assert iron.requests == []


def test_apply_to_a_superseded_identification_stores_but_fires_no_terminal_signal(
    apply: Any, iron_signals: Any
) -> None:
    customer = CustomerFactory(status=Customer.Status.IDENTIFICATION_REQUIRED)
    old = IdentificationFactory(customer=customer, superseded=True, iron_updated_at=T0)
    apply(old, "Approved", T0 + timedelta(minutes=1))
    old.refresh_from_db()
    assert old.status == "Approved"
    assert iron_signals.names() == ["identification_status_changed"]
    customer.refresh_from_db()
    assert customer.status == Customer.Status.IDENTIFICATION_REQUIRED


def test_apply_refuses_another_iron_id(pending: Identification) -> None:
    other = RemoteIdentification(iron_id=uuid.uuid4(), status="Approved", updated_at=T0)
    with pytest.raises(ValueError, match="applied to local row"):
        apply_identification_state(pending, other, source="poll")


def test_apply_progress_schedules_the_next_poll_soon(
    pending: Identification, apply: Any, settings: Any, time_machine: Any
) -> None:
    time_machine.move_to(T0 + timedelta(hours=1), tick=False)
    settings.IRON_KYC_POLL_FIRST_DELAY = 90
    Identification.objects.filter(pk=pending.pk).update(poll_count=7)
    apply(pending, "Processed", T0 + timedelta(minutes=1))
    pending.refresh_from_db()
    assert pending.next_poll_at == T0 + timedelta(hours=1, seconds=90)
    assert pending.poll_count == 0


# --- customers ----------------------------------------------------------------------------


def test_apply_customer_state_rules(
    django_capture_on_commit_callbacks: Any, iron_signals: Any
) -> None:
    customer = CustomerFactory(iron_updated_at=T0)
    assert customer.iron_id is not None

    def apply_customer(status: str, at: datetime) -> Any:
        with django_capture_on_commit_callbacks(execute=True):
            return apply_customer_state(
                customer, RemoteCustomer(customer.iron_id, status, updated_at=at), source="webhook"
            )

    assert apply_customer("Active", T0 + timedelta(minutes=2)).status_changed
    assert not apply_customer("IdentificationRequired", T0 + timedelta(minutes=1)).applied  # stale
    assert not apply_customer("Active", T0 + timedelta(minutes=3)).status_changed  # same
    assert apply_customer("Wandering", T0 + timedelta(minutes=4)).applied  # unknown: stored
    customer.refresh_from_db()
    assert customer.status == "Wandering"
    [sent] = iron_signals.kwargs_of("customer_status_changed")
    assert sent == {
        "sender": Customer,
        "customer": sent["customer"],
        "previous_status": "IdentificationRequired",
        "status": "Active",
        "source": "webhook",
    }
    assert sent["customer"].pk == customer.pk


# --- only the newest identification counts -------------------------------------------------


@pytest.mark.parametrize("newer", ["confirmed", "intent"])
def test_step_up_of_a_replaced_identification_supersedes_it_instead_of_breaking_the_constraint(
    apply: Any, iron_signals: Any, newer: str
) -> None:
    customer = CustomerFactory()
    old = IdentificationFactory(customer=customer, declined=True, iron_created_at=T0)
    if newer == "confirmed":
        current = IdentificationFactory(customer=customer, iron_created_at=T0 + timedelta(hours=1))
    else:
        current = IdentificationFactory(customer=customer, unconfirmed=True)
    # Iron moves the old one back to Pending while the customer has a newer one.
    apply(old, "Pending", T0 + timedelta(hours=2))
    apply(old, "Approved", T0 + timedelta(hours=3))
    old.refresh_from_db()
    assert old.status == "Approved"
    assert old.superseded_at is not None
    assert list(Identification.objects.in_flight()) == [current]
    assert "identification_approved" not in iron_signals.names()


def test_a_decision_on_an_identification_iron_replaced_sends_no_terminal_signal(
    apply: Any, iron_signals: Any
) -> None:
    customer = CustomerFactory()
    old = IdentificationFactory(customer=customer, approved=True, iron_created_at=T0)
    IdentificationFactory(customer=customer, iron_created_at=T0 + timedelta(hours=1))
    apply(old, "Declined", T0 + timedelta(hours=2))
    old.refresh_from_db()
    assert old.status == "Declined"
    assert old.superseded_at is not None
    assert iron_signals.names() == ["identification_status_changed"]


def test_step_up_of_the_newest_supersedes_an_older_one_still_in_flight(apply: Any) -> None:
    customer = CustomerFactory()
    older = IdentificationFactory(customer=customer, iron_created_at=T0)
    newest = IdentificationFactory(
        customer=customer, approved=True, iron_created_at=T0 + timedelta(hours=1)
    )
    apply(newest, "Pending", T0 + timedelta(hours=2))
    older.refresh_from_db()
    newest.refresh_from_db()
    assert older.superseded_at is not None
    assert newest.superseded_at is None
    assert list(Identification.objects.in_flight()) == [newest]
