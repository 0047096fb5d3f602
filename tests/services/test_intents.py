"""Intents: start_identification, submit_identification (create at Iron, retry with the
same key, reconcile, adopt on 409) and attaching what Iron created."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction

from django_iron_kyc import services
from django_iron_kyc.exceptions import (
    IdentificationInFlightError,
    IdentificationStateError,
    IronTransientError,
)
from django_iron_kyc.models import Customer, Identification, IdentificationQuerySet, WebhookDelivery
from django_iron_kyc.testing import FakeIron
from django_iron_kyc.testing.factories import CustomerFactory, IdentificationFactory
from django_iron_kyc.testing.mirror import mirror_identification
from tests.support import LIST_PATH, START, creations, intent

pytestmark = pytest.mark.django_db


def test_start_identification_saves_the_intent_and_enqueues_after_commit(
    iron: FakeIron, customer: Customer, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        identification = services.start_identification(customer, with_edd=True)
        assert creations(iron) == []  # nothing is sent before commit
    assert identification.pk is not None
    assert identification.idempotency_key
    assert identification.iron_id is None
    assert identification.status == ""
    assert identification.with_edd is True
    assert len(callbacks) == 1

    callbacks[0]()  # the commit: the (eager) task runs

    [request] = creations(iron)
    assert request.idempotency_key == str(identification.idempotency_key)
    assert request.json == {"type": "Link", "with_edd": True}
    identification.refresh_from_db()
    assert identification.status == Identification.Status.PENDING
    assert identification.url.startswith(iron.base_url)
    assert str(identification.iron_id) in iron.identifications
    assert identification.create_attempts == 1


def test_start_identification_rolled_back_enqueues_nothing(
    iron: FakeIron, customer: Customer, django_capture_on_commit_callbacks: Any
) -> None:
    @transaction.atomic
    def view() -> None:
        services.start_identification(customer)
        raise RuntimeError("the view failed after starting")

    with django_capture_on_commit_callbacks(execute=True) as callbacks, pytest.raises(RuntimeError):
        view()
    assert callbacks == []
    assert not Identification.objects.exists()
    assert creations(iron) == []


@pytest.mark.parametrize(
    "existing",
    [
        {},  # Pending at Iron
        {"unconfirmed": True},  # our intent, not confirmed by Iron yet
        {"processed": True},
    ],
)
def test_start_identification_refuses_while_one_is_in_flight(
    iron: FakeIron, customer: Customer, existing: dict[str, Any]
) -> None:
    current = IdentificationFactory(customer=customer, **existing)
    with pytest.raises(IdentificationInFlightError) as caught:
        services.start_identification(customer)
    assert caught.value.identification == current
    assert "force" in str(caught.value)
    assert Identification.objects.count() == 1
    assert iron.requests == []


@pytest.mark.parametrize(
    "finished",
    [{"approved": True}, {"declined": True}, {"expired": True}, {"superseded": True}],
)
def test_start_identification_allowed_after_terminal_superseded(
    iron: FakeIron, customer: Customer, finished: dict[str, Any]
) -> None:
    IdentificationFactory(customer=customer, **finished)
    assert services.start_identification(customer).pk


def test_start_identification_allowed_after_a_failed_intent(
    iron: FakeIron, customer: Customer
) -> None:
    IdentificationFactory(customer=customer, unconfirmed=True, failed_at=START)
    assert services.start_identification(customer).pk


def test_start_identification_force_supersedes_the_one_in_flight(
    iron: FakeIron, customer: Customer
) -> None:
    old = IdentificationFactory(customer=customer, next_poll_at=START)
    new = services.start_identification(customer, force=True)
    old.refresh_from_db()
    assert old.superseded_at is not None
    assert old.next_poll_at is None
    assert new.superseded_at is None
    assert list(Identification.objects.in_flight()) == [new]


def test_start_identification_needs_a_customer_at_iron(iron: FakeIron) -> None:
    customer = CustomerFactory(unconfirmed=True)
    with pytest.raises(IdentificationStateError):
        services.start_identification(customer)
    assert not Identification.objects.exists()


def test_start_identification_constraint_is_the_backstop(
    iron: FakeIron, customer: Customer, monkeypatch: pytest.MonkeyPatch
) -> None:
    IdentificationFactory(customer=customer)
    # As if the check had raced: the partial unique constraint still refuses the second.
    monkeypatch.setattr(IdentificationQuerySet, "in_flight", lambda self: self.none())
    with pytest.raises(IdentificationInFlightError):
        services.start_identification(customer)
    assert Identification.objects.count() == 1


# --- submit_identification --------------------------------------------------------------


def test_submit_happy_path_posts_once_and_stores_pending_with_url(
    iron: FakeIron, customer: Customer, django_capture_on_commit_callbacks: Any, iron_signals: Any
) -> None:
    row = intent(customer)
    with django_capture_on_commit_callbacks(execute=True):
        result = services.submit_identification(row)
    assert result.status == Identification.Status.PENDING
    assert result.url
    assert result.last_error == ""
    assert result.next_poll_at is not None  # the poller follows it from now on
    [request] = creations(iron)
    assert request.idempotency_key == str(row.idempotency_key)
    [sent] = iron_signals.kwargs_of("identification_status_changed")
    assert (sent["previous_status"], sent["status"], sent["source"]) == ("", "Pending", "create")


def test_submit_is_idempotent_once_confirmed(iron: FakeIron, customer: Customer) -> None:
    row = intent(customer)
    services.submit_identification(row)
    again = services.submit_identification(row)
    assert again.iron_id is not None
    assert len(creations(iron)) == 1
    assert again.create_attempts == 1


def test_submit_never_sends_a_superseded_intent(iron: FakeIron, customer: Customer) -> None:
    row = intent(customer, superseded_at=START)
    result = services.submit_identification(row)
    assert result.iron_id is None
    assert result.create_attempts == 0
    assert iron.requests == []


def test_submit_does_nothing_for_a_failed_intent(iron: FakeIron, customer: Customer) -> None:
    row = intent(customer, failed_at=START, last_error="refused")
    services.submit_identification(row)
    assert iron.requests == []


@pytest.mark.parametrize(
    ("fault", "transient"),
    [
        ({"status": 503}, "503"),
        ({"status": 500}, "500"),
        ({"drop": "before"}, "ConnectionError"),
        ({"drop": "after"}, "ConnectionError"),
        ({"status": 429, "retry_after": 120}, "429"),
    ],
)
def test_submit_transient_error_keeps_the_intent_and_the_retry_reuses_the_key(
    iron: FakeIron, customer: Customer, fault: dict[str, Any], transient: str
) -> None:
    row = intent(customer)
    iron.fail_next(method="POST", **fault)
    with pytest.raises(IronTransientError) as caught:
        services.submit_identification(row)
    if "retry_after" in fault:
        assert caught.value.retry_after == fault["retry_after"]
    row.refresh_from_db()
    assert row.iron_id is None
    assert row.failed_at is None
    assert row.is_in_flight
    assert "will be retried with the same key" in row.last_error
    assert transient in row.last_error

    result = services.submit_identification(row)

    assert result.status == Identification.Status.PENDING
    assert result.last_error == ""
    assert result.create_attempts == 2
    first, second = creations(iron)
    assert first.idempotency_key == second.idempotency_key == str(row.idempotency_key)
    # Even when Iron had created it before the connection dropped: one identification.
    assert len(iron.identifications) == 1


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (400, "invalid (400)"),
        (401, "refused the API key"),
        (403, "403 Forbidden"),
        (404, "does not know this customer"),
    ],
)
def test_submit_permanent_error_fails_the_intent_without_retry(
    iron: FakeIron, customer: Customer, status: int, reason: str
) -> None:
    row = intent(customer)
    iron.fail_next(method="POST", status=status)
    result = services.submit_identification(row)
    assert result.failed_at is not None
    assert reason in result.last_error
    assert not result.is_in_flight
    assert result.next_poll_at is None
    assert len(creations(iron)) == 1
    # Failed: never sent again, and the customer may start a new identification.
    services.submit_identification(row)
    assert len(creations(iron)) == 1
    assert services.start_identification(customer).pk != row.pk


def test_submit_real_401_and_404_fail_readably(
    iron: FakeIron, customer: Customer, settings: Any
) -> None:
    unknown = CustomerFactory()  # not at the fake Iron
    missing = services.submit_identification(intent(unknown))
    assert "does not know this customer (404)" in missing.last_error
    settings.IRON_KYC_API_KEY = "wrong-key"
    refused = services.submit_identification(intent(customer))
    assert "refused the API key" in refused.last_error
    assert "authorization error" in refused.last_error


def test_submit_key_reused_with_another_body_fails_and_logs_the_key(
    iron: FakeIron, customer: Customer, caplog: pytest.LogCaptureFixture
) -> None:
    row = intent(customer)
    iron.fail_next(method="POST", drop="after")  # Iron stores the key with {"type": "Link"}
    with pytest.raises(IronTransientError):
        services.submit_identification(row)
    Identification.objects.filter(pk=row.pk).update(with_edd=True)  # another body, same key
    with caplog.at_level(logging.ERROR, logger="django_iron_kyc"):
        result = services.submit_identification(row)
    assert result.failed_at is not None
    assert "already used for a different request (409)" in result.last_error
    assert str(row.idempotency_key) in caplog.text
    assert len(creations(iron)) == 2
    services.submit_identification(row)
    assert len(creations(iron)) == 2  # never retried


@pytest.mark.fake_iron(conflict_on_pending=True)
def test_submit_409_has_pending_adopts_the_pending_identification(
    iron: FakeIron, customer: Customer
) -> None:
    iron.add_identification(customer.iron_id, status="Declined")
    pending = iron.add_identification(customer.iron_id, status="Processed")
    row = intent(customer)
    result = services.submit_identification(row)
    assert result.pk == row.pk
    assert str(result.iron_id) == pending["id"]
    assert result.status == Identification.Status.PROCESSED
    assert result.failed_at is None
    assert len(creations(iron)) == 1
    assert len(iron.requests_to("GET", LIST_PATH)) == 1


@pytest.mark.fake_iron(conflict_on_pending=True)
def test_submit_409_for_an_identification_superseded_locally_makes_it_current_again(
    iron: FakeIron, customer: Customer
) -> None:
    old = mirror_identification(iron, customer)
    new = services.start_identification(customer, force=True)
    result = services.submit_identification(new)
    assert result.failed_at is not None
    assert "still pending there (409 Has Pending Identification)" in result.last_error
    assert "It is the current identification again." in result.last_error
    old.refresh_from_db()
    assert old.superseded_at is None
    assert old.next_poll_at is not None
    assert list(Identification.objects.in_flight()) == [old]


def submit_with_the_answer_lost(iron: FakeIron, row: Identification) -> str:
    """POST ``row``: Iron creates the identification, but its answer is lost. Its Iron id."""
    iron.fail_next(method="POST", drop="after")
    with pytest.raises(IronTransientError):
        services.submit_identification(row)
    [created] = iron.identifications
    return str(created)


def test_submit_old_key_is_never_posted_again_and_adopts_what_iron_created(
    iron: FakeIron, customer: Customer, time_machine: Any, caplog: pytest.LogCaptureFixture
) -> None:
    time_machine.move_to(START, tick=False)
    row = intent(customer)
    created = submit_with_the_answer_lost(iron, row)
    time_machine.move_to(START + timedelta(hours=24), tick=False)

    with caplog.at_level(logging.INFO, logger="django_iron_kyc"):
        result = services.submit_identification(row)

    assert str(result.iron_id) == created
    assert result.status == Identification.Status.PENDING
    assert len(creations(iron)) == 1  # no POST after the key expired
    assert len(iron.requests_to("GET", LIST_PATH)) == 1
    assert "reconciled by listing" in caplog.text


def test_a_webhook_that_came_before_its_identification_was_known_acts_once_it_is_attached(
    iron: FakeIron,
    customer: Customer,
    time_machine: Any,
    deliver_fake_webhooks: Any,
    django_capture_on_commit_callbacks: Any,
    iron_signals: Any,
) -> None:
    """Found by the reliability state machine: the creation answer is lost, Iron approves the
    identification and says so, and the refresh that webhook asks for does not happen (here:
    its on-commit hook is not run). The POST sent again gets the idempotent replay of the
    first answer, Pending; the stored delivery must still count."""
    time_machine.move_to(START, tick=False)
    row = intent(customer)
    created = submit_with_the_answer_lost(iron, row)
    time_machine.move_to(START + timedelta(minutes=5), tick=False)
    iron.set_identification_status(created, "Approved")
    with django_capture_on_commit_callbacks(execute=False):  # the refresh is lost
        deliver_fake_webhooks()
    approved = WebhookDelivery.objects.get(object_status="Approved")
    assert approved.outcome == WebhookDelivery.Outcome.UNKNOWN_OBJECT
    iron_signals.clear()

    with django_capture_on_commit_callbacks(execute=True):
        result = services.submit_identification(row)

    _, second = creations(iron)
    assert second.replayed  # Iron's first answer: Pending
    result.refresh_from_db()
    assert (str(result.iron_id), result.status) == (created, Identification.Status.APPROVED)
    approved.refresh_from_db()
    assert approved.outcome == WebhookDelivery.Outcome.PROCESSED
    assert not WebhookDelivery.objects.filter(outcome=WebhookDelivery.Outcome.UNKNOWN_OBJECT)
    assert [
        kwargs["identification"].pk for kwargs in iron_signals.kwargs_of("identification_approved")
    ] == [row.pk]
    # Attaching it again (a repeated answer) acts on nothing more.
    with django_capture_on_commit_callbacks(execute=True):
        services.submit_identification(row)
    assert len(iron_signals.kwargs_of("identification_approved")) == 1


def test_submit_old_key_with_nothing_at_iron_fails_with_the_reason(
    iron: FakeIron, customer: Customer, time_machine: Any
) -> None:
    time_machine.move_to(START, tick=False)
    # An identification from before the intent is not the intent's.
    iron.add_identification(customer.iron_id, status="Declined")
    time_machine.move_to(START + timedelta(hours=1), tick=False)
    row = intent(customer)
    time_machine.move_to(START + timedelta(hours=25), tick=False)
    result = services.submit_identification(row)
    assert result.failed_at is not None
    assert result.iron_id is None
    assert "older than" in result.last_error
    assert "not sent again" in result.last_error
    assert creations(iron) == []


def test_submit_gives_up_after_the_attempt_cap_by_reconciling(
    iron: FakeIron, customer: Customer, settings: Any
) -> None:
    settings.IRON_KYC_CREATE_MAX_ATTEMPTS = 2
    row = intent(customer)
    iron.fail_next(2, method="POST", status=503)
    for _ in range(2):
        with pytest.raises(IronTransientError):
            services.submit_identification(row)
    result = services.submit_identification(row)
    assert result.failed_at is not None
    assert "Gave up after 2 attempts" in result.last_error
    assert len(creations(iron)) == 2
    assert len(iron.requests_to("GET", LIST_PATH)) == 1


def test_submit_for_a_customer_not_at_iron_fails(iron: FakeIron) -> None:
    row = intent(CustomerFactory(unconfirmed=True))
    result = services.submit_identification(row)
    assert result.failed_at is not None
    assert "does not exist at Iron" in result.last_error
    assert iron.requests == []
