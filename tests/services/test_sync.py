"""Applying one customer's listing from Iron (services.sync, through refresh_customer):
adopt what is unknown, supersede what Iron no longer counts, revive what it still does;
and the one in-flight rule its snapshots share with the model."""

from __future__ import annotations

from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

import pytest

from django_iron_kyc import services
from django_iron_kyc.models import Customer, Identification
from django_iron_kyc.services import parse_iron_datetime
from django_iron_kyc.services.sync import SNAPSHOT_FIELDS, snapshot_in_flight
from django_iron_kyc.testing import FakeIron
from django_iron_kyc.testing.factories import IdentificationFactory
from django_iron_kyc.testing.mirror import mirror_identification
from tests.support import START, creations, intent

pytestmark = pytest.mark.django_db


def test_refresh_customer_adopts_unknown_identifications(
    iron: FakeIron, customer: Customer, time_machine: Any
) -> None:
    time_machine.move_to(START, tick=False)
    older = iron.add_identification(customer.iron_id)
    time_machine.move_to(START + timedelta(minutes=5), tick=False)
    newer = iron.add_identification(customer.iron_id)  # supersedes `older` at Iron
    services.refresh_customer(customer)
    rows = {str(r.iron_id): r for r in Identification.objects.all()}
    assert set(rows) == {older["id"], newer["id"]}
    assert rows[newer["id"]].superseded_at is None
    assert rows[newer["id"]].is_in_flight
    assert rows[newer["id"]].url == newer["url"]
    assert rows[older["id"]].superseded_at is not None
    assert rows[older["id"]].iron_created_at == parse_iron_datetime(older["created_at"])


def test_refresh_customer_supersedes_a_local_one_iron_no_longer_counts(
    iron: FakeIron, customer: Customer
) -> None:
    local = mirror_identification(iron, customer)
    newer = iron.add_identification(customer.iron_id)  # e.g. made in Iron's dashboard
    services.refresh_customer(customer)
    local.refresh_from_db()
    assert local.superseded_at is not None
    [current] = Identification.objects.in_flight()
    assert str(current.iron_id) == newer["id"]


def test_refresh_customer_adopts_into_an_unconfirmed_intent(
    iron: FakeIron, customer: Customer
) -> None:
    row = intent(customer)
    created = iron.add_identification(customer.iron_id)  # what our lost POST created
    services.refresh_customer(customer)
    row.refresh_from_db()
    assert str(row.iron_id) == created["id"]
    assert Identification.objects.count() == 1
    services.submit_identification(row)
    assert creations(iron) == []  # confirmed: the task has nothing left to do


def test_refresh_customer_revives_a_superseded_identification_iron_still_counts(
    iron: FakeIron, customer: Customer
) -> None:
    old = mirror_identification(iron, customer)
    forced = services.start_identification(customer, force=True)
    iron.fail_next(method="POST", status=400)
    assert services.submit_identification(forced).failed_at is not None  # never created
    services.refresh_customer(customer)
    old.refresh_from_db()
    assert old.superseded_at is None
    assert old.next_poll_at is not None
    assert list(Identification.objects.in_flight()) == [old]


# --- one in-flight rule ------------------------------------------------------------------


T0 = datetime(2026, 1, 15, 10, 0, tzinfo=dt_timezone.utc)


def test_in_flight_is_one_rule_for_the_constraint_queryset_property_and_sync() -> None:
    (constraint,) = Identification._meta.constraints
    assert constraint.condition == Identification.IN_FLIGHT

    rows = []
    for status in ["", *Identification.Status.values, "SomethingNew"]:
        for superseded in (False, True):
            for failed in (False, True):
                rows.append(
                    IdentificationFactory(
                        status=status,
                        superseded_at=T0 if superseded else None,
                        failed_at=T0 if failed else None,
                    )
                )
    in_flight = set(Identification.objects.in_flight().values_list("pk", flat=True))
    assert in_flight == set(
        Identification.objects.filter(Identification.IN_FLIGHT).values_list("pk", flat=True)
    )
    snapshots = {row["pk"]: row for row in Identification.objects.values(*SNAPSHOT_FIELDS)}
    for row in rows:
        expected = row.pk in in_flight
        assert row.is_in_flight is expected, (row.status, row.superseded_at, row.failed_at)
        assert snapshot_in_flight(snapshots[row.pk]) is expected, row.status
    assert len(in_flight) == len(Identification.Status.values) - 4 + 2  # "" and unknown
