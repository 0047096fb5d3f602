"""The fake Iron's state rules on their own: no server, no HTTP, no database."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from django_iron_kyc.testing.fake.clock import IronClock, iron_time, parse_iron_time
from django_iron_kyc.testing.fake.state import (
    IronState,
    NotDecidableError,
    PendingIdentificationError,
    StatusChange,
    UnknownObjectError,
)


@pytest.fixture
def changes() -> list[StatusChange]:
    return []


@pytest.fixture
def state(changes: list[StatusChange]) -> IronState:
    return IronState(on_change=changes.append)


def told(changes: list[StatusChange]) -> list[tuple[str, str]]:
    return [(change.kind, change.status) for change in changes]


def test_a_new_customer_needs_an_identification(state):
    customer = state.add_customer(email="ada@example.com")

    assert customer["status"] == "IdentificationRequired"
    assert customer["identification_ids"] == []
    assert customer["partner_id"] == state.partner_id
    assert state.newest_identification(customer["id"]) is None


def test_approval_makes_the_customer_active_and_tells_both_changes(state, changes):
    customer = state.add_customer()
    identification = state.add_identification(customer["id"])

    state.set_identification_status(identification["id"], "Approved")

    assert state.customer(customer["id"])["status"] == "Active"
    assert told(changes) == [("identification", "Approved"), ("customer", "Active")]
    assert changes[0].object_id == identification["id"]
    assert changes[1].object_id == changes[1].customer_id == customer["id"]


def test_a_new_identification_supersedes_the_one_in_flight_but_not_a_decided_one(state):
    customer = state.add_customer()
    decided = state.add_identification(customer["id"], "Declined")
    old = state.add_identification(customer["id"])

    new = state.add_identification(customer["id"])

    assert state.superseded() == {old["id"]}
    assert not state.is_superseded(decided["id"])
    assert state.newest_identification(customer["id"])["id"] == new["id"]
    # The superseded one still changes, but no longer moves the customer.
    state.set_identification_status(old["id"], "Approved")
    assert state.customer(customer["id"])["status"] == "IdentificationRequired"


def test_without_superseding_a_customer_with_one_in_flight_is_refused(state):
    customer = state.add_customer()
    state.add_identification(customer["id"])

    with pytest.raises(PendingIdentificationError):
        state.add_identification(customer["id"], supersede=False)

    assert len(state.identifications_of(customer["id"])) == 1


def test_an_unknown_status_is_kept_and_leaves_the_customer_alone(state):
    customer = state.add_customer()
    identification = state.add_identification(customer["id"], "Approved")

    state.set_identification_status(identification["id"], "SomethingNew")

    assert state.identification(identification["id"])["status"] == "SomethingNew"
    assert state.customer(customer["id"])["status"] == "Active"


@pytest.mark.parametrize("status", ["Approved", "Declined", "Expired", "Archived"])
def test_only_an_undecided_identification_can_be_decided(state, status):
    identification = state.add_identification(state.add_customer()["id"], status)

    with pytest.raises(NotDecidableError, match=f"status {status}"):
        state.decide(identification["id"], "Approved")


def test_notify_false_tells_nothing(state, changes):
    identification = state.add_identification(state.add_customer()["id"])

    state.set_identification_status(identification["id"], "Approved", notify=False)

    assert changes == []


def test_unknown_ids_raise_a_key_error_that_names_what_was_looked_for(state):
    missing = uuid.uuid4()

    with pytest.raises(KeyError):
        state.set_identification_status(missing, "Approved")
    with pytest.raises(UnknownObjectError) as caught:
        state.add_identification(missing)
    assert (caught.value.kind, caught.value.object_id) == ("customer", str(missing))


def test_answers_are_copies(state):
    customer = state.add_customer()
    customer["status"] = "Suspended"

    assert state.customer(customer["id"])["status"] == "IdentificationRequired"


def test_identifications_are_ordered_by_creation_time_then_creation_order(state):
    customer = state.add_customer()
    later = datetime.now(timezone.utc) + timedelta(days=1)
    first = state.add_identification(customer["id"], created_at=later)
    second = state.add_identification(customer["id"], created_at=later)
    earliest = state.add_identification(customer["id"], created_at=later - timedelta(hours=1))

    ids = [i["id"] for i in state.identifications_of(customer["id"])]

    assert ids == [earliest["id"], first["id"], second["id"]]


def test_clock_ticks_strictly_forward_and_advances():
    clock = IronClock()

    ticks = [clock.tick() for _ in range(100)]
    moved = clock.advance(3600)

    assert ticks == sorted(set(ticks))
    assert moved - ticks[-1] >= timedelta(hours=1)
    assert clock.tick() >= moved


def test_iron_time_round_trips():
    moment = datetime(2026, 1, 15, 10, 0, 0, 123456, tzinfo=timezone.utc)

    assert iron_time(moment) == "2026-01-15T10:00:00.123456Z"
    assert parse_iron_time(iron_time(moment)) == moment


def test_archiving_a_customer_archives_its_identifications_and_tells_each_change(state, changes):
    customer = state.add_customer()
    approved = state.add_identification(customer["id"], "Approved")
    pending = state.add_identification(customer["id"])

    archived = state.archive_customer(customer["id"])

    assert archived["status"] == "Archived"
    assert {state.identification(i["id"])["status"] for i in (approved, pending)} == {"Archived"}
    assert told(changes) == [("identification", "Archived")] * 2 + [("customer", "Archived")]


def test_archiving_again_changes_and_tells_nothing(state, changes):
    customer = state.add_customer()
    state.archive_customer(customer["id"])
    before, changes[:] = state.customer(customer["id"]), []

    assert state.archive_customer(customer["id"]) == before
    assert changes == []
