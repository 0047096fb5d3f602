"""Signals: once per actual change, after commit, never on rollback, documented kwargs."""

from __future__ import annotations

from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

import pytest
from django.db import transaction

from django_iron_kyc import services, signals
from django_iron_kyc.models import Customer, Identification
from django_iron_kyc.services import RemoteIdentification, apply_identification_state
from django_iron_kyc.testing import FakeIron
from django_iron_kyc.testing.factories import IdentificationFactory
from django_iron_kyc.testing.mirror import mirror_customer, mirror_identification

T0 = datetime(2026, 1, 15, 10, 0, tzinfo=dt_timezone.utc)


def decision(ident: Identification, status: str = "Approved", minutes: int = 1) -> Any:
    assert ident.iron_id is not None
    return RemoteIdentification(
        iron_id=ident.iron_id, status=status, updated_at=T0 + timedelta(minutes=minutes)
    )


@pytest.mark.django_db(transaction=True)
def test_signals_wait_for_the_real_commit(iron_signals: Any) -> None:
    ident = IdentificationFactory(iron_updated_at=T0)
    with transaction.atomic():
        apply_identification_state(ident, decision(ident), source="webhook")
        assert iron_signals.names() == []  # not before commit
    assert iron_signals.names() == ["identification_status_changed", "identification_approved"]


@pytest.mark.django_db(transaction=True)
def test_no_signal_when_the_transaction_rolls_back(iron_signals: Any) -> None:
    ident = IdentificationFactory(iron_updated_at=T0)

    @transaction.atomic
    def caller() -> None:
        apply_identification_state(ident, decision(ident), source="webhook")
        raise RuntimeError("the caller failed afterwards")

    with pytest.raises(RuntimeError):
        caller()
    ident.refresh_from_db()
    assert ident.status == "Pending"
    assert iron_signals.names() == []
    # Applied again for real: the change (and its signals) happen once, now.
    apply_identification_state(ident, decision(ident), source="webhook")
    assert iron_signals.names() == ["identification_status_changed", "identification_approved"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("status", "terminal_signal"),
    [
        ("Approved", "identification_approved"),
        ("Declined", "identification_declined"),
        ("Expired", "identification_expired"),
    ],
)
def test_terminal_signals_carry_the_documented_kwargs(
    django_capture_on_commit_callbacks: Any, iron_signals: Any, status: str, terminal_signal: str
) -> None:
    ident = IdentificationFactory(iron_updated_at=T0)
    with django_capture_on_commit_callbacks(execute=True):
        apply_identification_state(ident, decision(ident, status), source="poll")
    changed, terminal = iron_signals.calls
    assert changed[0] == "identification_status_changed"
    assert set(changed[1]) == {"sender", "identification", "previous_status", "status", "source"}
    assert changed[1]["sender"] is Identification
    assert changed[1]["identification"].pk == ident.pk
    assert (changed[1]["previous_status"], changed[1]["status"]) == ("Pending", status)
    assert changed[1]["source"] == "poll"
    assert terminal[0] == terminal_signal
    assert set(terminal[1]) == {"sender", "identification", "customer", "previous_status", "source"}
    assert terminal[1]["sender"] is Identification
    assert terminal[1]["customer"] == ident.customer
    assert terminal[1]["previous_status"] == "Pending"
    assert terminal[1]["source"] == "poll"


@pytest.mark.django_db
def test_signals_after_commit_need_no_query(
    django_capture_on_commit_callbacks: Any, django_assert_num_queries: Any, iron_signals: Any
) -> None:
    # After the commit the database may already be gone: sending must not depend on it.
    ident = IdentificationFactory(iron_updated_at=T0)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        apply_identification_state(ident, decision(ident), source="webhook")
    with django_assert_num_queries(0):
        for callback in callbacks:
            callback()
    assert iron_signals.names() == ["identification_status_changed", "identification_approved"]
    assert iron_signals.kwargs_of("identification_approved")[0]["customer"] == ident.customer


@pytest.mark.django_db
def test_archived_is_terminal_but_has_no_terminal_signal(
    django_capture_on_commit_callbacks: Any, iron_signals: Any
) -> None:
    ident = IdentificationFactory(iron_updated_at=T0)
    with django_capture_on_commit_callbacks(execute=True):
        apply_identification_state(ident, decision(ident, "Archived"), source="poll")
    assert iron_signals.names() == ["identification_status_changed"]


@pytest.mark.django_db
def test_a_failing_receiver_neither_stops_the_others_nor_undoes_the_change(
    django_capture_on_commit_callbacks: Any, iron_signals: Any, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(**kwargs: Any) -> None:
        raise RuntimeError("host receiver bug")

    signals.identification_status_changed.connect(broken, dispatch_uid="broken")
    try:
        ident = IdentificationFactory(iron_updated_at=T0)
        with django_capture_on_commit_callbacks(execute=True):
            apply_identification_state(ident, decision(ident), source="webhook")
    finally:
        signals.identification_status_changed.disconnect(dispatch_uid="broken")
    ident.refresh_from_db()
    assert ident.status == "Approved"
    assert "identification_approved" in iron_signals.names()
    assert "host receiver bug" in caplog.text


# --- the source of each path -------------------------------------------------------------


def approvals(iron_signals: Any) -> list[str]:
    return [kwargs["source"] for kwargs in iron_signals.kwargs_of("identification_approved")]


@pytest.mark.django_db
def test_create_path_sends_source_create(
    iron: FakeIron, django_capture_on_commit_callbacks: Any, iron_signals: Any
) -> None:
    customer = mirror_customer(iron)
    with django_capture_on_commit_callbacks(execute=True):
        services.start_identification(customer)
    [sent] = iron_signals.kwargs_of("identification_status_changed")
    assert (sent["status"], sent["source"]) == ("Pending", "create")


@pytest.mark.django_db
def test_sandbox_path_sends_source_sandbox(
    iron: FakeIron, django_capture_on_commit_callbacks: Any, iron_signals: Any
) -> None:
    ident = mirror_identification(iron, mirror_customer(iron))
    with django_capture_on_commit_callbacks(execute=True):
        services.sandbox_approve(ident)
    assert approvals(iron_signals) == ["sandbox"]


@pytest.mark.django_db
def test_poll_path_sends_source_poll(
    iron: FakeIron, django_capture_on_commit_callbacks: Any, iron_signals: Any
) -> None:
    ident = mirror_identification(iron, mirror_customer(iron))
    Identification.objects.filter(pk=ident.pk).update(next_poll_at=T0)
    iron.set_identification_status(ident.iron_id, "Approved", notify=False)
    with django_capture_on_commit_callbacks(execute=True):
        services.poll_due_identifications()
    assert approvals(iron_signals) == ["poll"]
    [customer_change] = iron_signals.kwargs_of("customer_status_changed")
    assert (customer_change["status"], customer_change["source"]) == ("Active", "poll")


@pytest.mark.django_db
def test_refresh_path_sends_source_refresh(
    iron: FakeIron, django_capture_on_commit_callbacks: Any, iron_signals: Any
) -> None:
    customer = mirror_customer(iron)
    ident = mirror_identification(iron, customer)
    iron.set_identification_status(ident.iron_id, "Declined", notify=False)
    with django_capture_on_commit_callbacks(execute=True):
        services.refresh_customer(customer)
    assert [k["source"] for k in iron_signals.kwargs_of("identification_declined")] == ["refresh"]


@pytest.mark.django_db
def test_webhook_path_sends_source_webhook_once_even_when_delivered_twice(
    iron: FakeIron,
    django_capture_on_commit_callbacks: Any,
    iron_signals: Any,
    deliver_fake_webhooks: Any,
) -> None:
    ident = mirror_identification(iron, mirror_customer(iron))
    iron.duplicate_next_webhooks(1)
    iron.set_identification_status(ident.iron_id, "Approved")
    with django_capture_on_commit_callbacks(execute=True):
        responses = deliver_fake_webhooks()
    assert all(r.status_code < 300 for r in responses)
    assert approvals(iron_signals) == ["webhook"]


@pytest.mark.django_db
def test_superseded_identification_approved_later_changes_nothing_on_the_customer(
    iron: FakeIron, django_capture_on_commit_callbacks: Any, iron_signals: Any
) -> None:
    customer = mirror_customer(iron)
    old = mirror_identification(iron, customer)
    with django_capture_on_commit_callbacks(execute=True):
        new = services.start_identification(customer, force=True)
    iron_signals.clear()
    iron.set_identification_status(old.iron_id, "Approved", notify=False)
    with django_capture_on_commit_callbacks(execute=True):
        services.refresh_customer(customer)
    old.refresh_from_db()
    new.refresh_from_db()
    assert old.status == "Approved"
    assert new.status == "Pending"
    assert approvals(iron_signals) == []
    assert [
        k["identification"].pk for k in iron_signals.kwargs_of("identification_status_changed")
    ] == [old.pk]
    customer.refresh_from_db()
    assert customer.status == Customer.Status.IDENTIFICATION_REQUIRED
    assert iron_signals.kwargs_of("customer_status_changed") == []
