"""The poll sweep: what is due, one list call per customer, backoff, staleness, recovery."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from django_iron_kyc import services, tasks
from django_iron_kyc.models import Customer, Identification
from django_iron_kyc.services import polling
from django_iron_kyc.testing import FakeIron
from django_iron_kyc.testing.factories import IdentificationFactory
from django_iron_kyc.testing.mirror import mirror_customer, mirror_identification
from tests.support import CREATE_PATH, LIST_PATH

pytestmark = pytest.mark.django_db

# Ahead of the real clock: the fake's clock never goes back, even under time-machine.
NOW = (datetime.now(dt_timezone.utc) + timedelta(days=2)).replace(microsecond=0)


@pytest.fixture(autouse=True)
def clock_at_now(time_machine: Any) -> None:
    """Every test here starts at :data:`NOW`, the clock standing still."""
    time_machine.move_to(NOW, tick=False)


def due(iron: FakeIron, customer: Customer | None = None, **fields: Any) -> Identification:
    """A pending identification, mirrored at the fake, due for a poll now."""
    ident = mirror_identification(iron, customer or mirror_customer(iron))
    fields.setdefault("next_poll_at", NOW)
    Identification.objects.filter(pk=ident.pk).update(**fields)
    ident.refresh_from_db()
    return ident


def list_calls(iron: FakeIron) -> list[Any]:
    return iron.requests_to("GET", LIST_PATH)


def sweep(capture: Any) -> services.PollSweepResult:
    with capture(execute=True):
        return services.poll_due_identifications()


def test_poll_applies_a_decision_and_refreshes_the_customer(
    iron: FakeIron, django_capture_on_commit_callbacks: Any
) -> None:
    ident = due(iron)
    iron.set_identification_status(ident.iron_id, "Approved", notify=False)
    result = sweep(django_capture_on_commit_callbacks)
    ident.refresh_from_db()
    assert ident.status == "Approved"
    assert ident.last_polled_at == NOW
    assert ident.next_poll_at is None
    ident.customer.refresh_from_db()
    assert ident.customer.status == Customer.Status.ACTIVE
    assert (result.customers, result.polled, result.changed) == (1, 1, 1)
    assert len(list_calls(iron)) == 1


@pytest.mark.parametrize(
    "fields",
    [
        {"next_poll_at": NOW + timedelta(seconds=1)},  # not due yet
        {"next_poll_at": None},
        {"stale_at": NOW - timedelta(days=1)},
        {"superseded_at": NOW - timedelta(days=1)},
        {"status": "Approved"},
    ],
)
def test_poll_skips_what_is_not_due(iron: FakeIron, fields: dict[str, Any]) -> None:
    due(iron, **fields)
    result = services.poll_due_identifications()
    assert result.polled == 0
    assert list_calls(iron) == []


def test_one_list_call_per_customer_covers_all_its_identifications(
    iron: FakeIron, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    customer = mirror_customer(iron)
    old = mirror_identification(iron, customer)
    Identification.objects.filter(pk=old.pk).update(superseded_at=NOW)
    current = due(iron, customer)
    iron.set_identification_status(old.iron_id, "Approved", notify=False)
    iron.set_identification_status(current.iron_id, "Processed", notify=False)
    for _ in range(12):  # more than one page at page_size 10
        iron.add_identification(
            customer.iron_id, status="Expired", created_at=NOW - timedelta(days=9)
        )
    iron.set_identification_status(current.iron_id, "Processed", notify=False)
    sweep(django_capture_on_commit_callbacks)
    old.refresh_from_db()
    current.refresh_from_db()
    assert old.status == "Approved"  # stored although superseded
    assert current.status == "Processed"
    assert len(list_calls(iron)) == 1  # one paginated call (page_size 100)
    assert Identification.objects.filter(customer=customer).count() == 14  # history adopted


def test_poll_backs_off_doubling_up_to_the_maximum_interval(
    iron: FakeIron, time_machine: Any
) -> None:
    ident = due(iron)
    intervals = []
    for _ in range(12):
        now = datetime.now(dt_timezone.utc)
        services.poll_due_identifications()
        ident.refresh_from_db()
        intervals.append(ident.next_poll_at - now)
        time_machine.move_to(ident.next_poll_at, tick=False)
    minute = timedelta(minutes=1)
    assert intervals[:5] == [2 * minute, 4 * minute, 8 * minute, 16 * minute, 32 * minute]
    assert max(intervals) == timedelta(hours=6)  # never less often than every 6 hours
    assert intervals[-3:] == [timedelta(hours=6)] * 3
    assert ident.poll_count == 12
    assert len(list_calls(iron)) == 12


def test_poll_flags_identifications_older_than_the_maximum_age(
    iron: FakeIron, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.IRON_KYC_POLL_MAX_AGE = 7 * 86400
    old = due(iron, iron_created_at=NOW - timedelta(days=8))
    young = due(iron, iron_created_at=NOW - timedelta(days=6))
    with caplog.at_level(logging.WARNING, logger="django_iron_kyc"):
        result = services.poll_due_identifications()
    old.refresh_from_db()
    young.refresh_from_db()
    assert old.stale_at == NOW
    assert old.next_poll_at is None
    assert young.stale_at is None
    assert (result.stale, result.polled) == (1, 1)
    assert f"Identification #{old.pk}" in caplog.text
    assert "flagged stale" in caplog.text
    assert len(list_calls(iron)) == 1  # only the young one is polled


def test_poll_works_in_batches_of_customers(iron: FakeIron, settings: Any) -> None:
    settings.IRON_KYC_POLL_BATCH_SIZE = 2
    idents = [due(iron) for _ in range(5)]
    result = services.poll_due_identifications()
    assert (result.customers, result.polled) == (5, 5)
    assert len(list_calls(iron)) == 5
    assert all(
        i.poll_count == 1 for i in Identification.objects.filter(pk__in=[i.pk for i in idents])
    )


def test_poll_queries_per_batch_do_not_grow_with_the_batch(iron: FakeIron) -> None:
    def count_queries(customers: int) -> int:
        Identification.objects.all().delete()
        for _ in range(customers):
            due(iron)
        with CaptureQueriesContext(connection) as queries:
            result = services.poll_due_identifications()
        assert result.polled == customers
        return len(queries)

    assert count_queries(2) == count_queries(9)


def test_poll_adopts_an_identification_made_elsewhere(
    iron: FakeIron, django_capture_on_commit_callbacks: Any
) -> None:
    ident = due(iron)
    elsewhere = iron.add_identification(ident.customer.iron_id)
    result = sweep(django_capture_on_commit_callbacks)
    ident.refresh_from_db()
    assert ident.superseded_at is not None
    [current] = Identification.objects.in_flight()
    assert str(current.iron_id) == elsewhere["id"]
    assert (result.adopted, result.superseded) == (1, 1)


def test_poll_stops_at_a_transient_error_and_leases_what_it_claimed(
    iron: FakeIron, time_machine: Any
) -> None:
    first, second = due(iron), due(iron)
    iron.fail_next(status=503, method="GET")
    result = services.poll_due_identifications()
    assert result.errors == 1
    assert result.polled == 0
    assert len(list_calls(iron)) == 1
    # Claimed, so neither a concurrent sweep nor the next minute's polls it at once...
    assert services.poll_due_identifications().polled == 0
    # ...but it comes back once the lease ends.
    time_machine.move_to(NOW + polling.POLL_LEASE, tick=False)
    assert services.poll_due_identifications().polled == 2
    assert {first.pk, second.pk} == set(
        Identification.objects.filter(poll_count=1).values_list("pk", flat=True)
    )


def test_poll_carries_on_past_a_customer_iron_does_not_know(
    iron: FakeIron, caplog: pytest.LogCaptureFixture
) -> None:
    lost = IdentificationFactory(next_poll_at=NOW)  # its customer is unknown at the fake
    fine = due(iron)
    result = services.poll_due_identifications()
    assert (result.polled, result.errors) == (2, 1)
    lost.refresh_from_db()
    fine.refresh_from_db()
    assert lost.poll_count == fine.poll_count == 1  # backs off: no hammering
    assert "Customer not found" in caplog.text


# --- intents an outage left behind --------------------------------------------------------


def test_sweep_recreates_an_intent_the_broker_lost_with_the_same_key(
    iron: FakeIron, time_machine: Any, django_capture_on_commit_callbacks: Any
) -> None:
    customer = mirror_customer(iron)
    with django_capture_on_commit_callbacks(execute=False):  # the task never reaches a worker
        row = services.start_identification(customer)
    assert services.poll_due_identifications().recovered == 0  # too early

    time_machine.move_to(NOW + timedelta(minutes=5), tick=False)
    result = sweep(django_capture_on_commit_callbacks)

    assert result.recovered == 1
    row.refresh_from_db()
    assert row.status == "Pending"
    [request] = iron.requests_to("POST", CREATE_PATH)
    assert request.idempotency_key == str(row.idempotency_key)


def test_sweep_does_not_enqueue_an_intent_twice_while_it_waits(
    iron: FakeIron, time_machine: Any, django_capture_on_commit_callbacks: Any
) -> None:
    row = Identification.objects.create(customer=mirror_customer(iron))
    time_machine.move_to(NOW + timedelta(minutes=10), tick=False)
    with django_capture_on_commit_callbacks(execute=False) as enqueued:
        assert services.poll_due_identifications().recovered == 1
        assert services.poll_due_identifications().recovered == 0
    assert len(enqueued) == 1
    row.refresh_from_db()
    assert row.next_poll_at == NOW + timedelta(minutes=15)


def test_sweep_reconciles_an_intent_left_behind_for_a_day(
    iron: FakeIron, time_machine: Any, django_capture_on_commit_callbacks: Any
) -> None:
    row = Identification.objects.create(customer=mirror_customer(iron))
    time_machine.move_to(NOW + timedelta(hours=24), tick=False)
    sweep(django_capture_on_commit_callbacks)
    row.refresh_from_db()
    assert row.failed_at is not None
    assert "not sent again" in row.last_error
    assert iron.requests_to("POST", CREATE_PATH) == []


@pytest.mark.parametrize(
    "fields", [{"failed_at": NOW}, {"superseded_at": NOW}], ids=["failed", "superseded"]
)
def test_sweep_leaves_failed_and_superseded_intents_alone(
    iron: FakeIron, time_machine: Any, fields: dict[str, Any]
) -> None:
    Identification.objects.create(customer=mirror_customer(iron), **fields)
    time_machine.move_to(NOW + timedelta(hours=1), tick=False)
    assert services.poll_due_identifications().recovered == 0


def test_poll_task_returns_the_counts(iron: FakeIron) -> None:
    due(iron)
    assert tasks.poll_pending_identifications.delay().get()["polled"] == 1
