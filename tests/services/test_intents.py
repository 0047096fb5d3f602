"""The identification lifecycle against the fake Iron: create, start, submit, refresh, sandbox."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

import pytest
from django.db import transaction

from django_iron_kyc import services
from django_iron_kyc.exceptions import (
    IdentificationInFlightError,
    IdentificationStateError,
    IronAPIError,
    IronTransientError,
    SandboxNotAllowedError,
)
from django_iron_kyc.models import Customer, Identification, IdentificationQuerySet, WebhookDelivery
from django_iron_kyc.services import parse_iron_datetime
from django_iron_kyc.testing import FakeIron
from django_iron_kyc.testing.factories import CustomerFactory, IdentificationFactory

pytestmark = pytest.mark.django_db

CREATE_PATH = r"^/api/customers/[^/]+/identifications/v2$"
LIST_PATH = r"^/api/customers/[^/]+/identifications$"
# Ahead of the real clock: the fake's clock never goes back, even under time-machine.
START = (datetime.now(dt_timezone.utc) + timedelta(days=2)).replace(microsecond=0)


@pytest.fixture
def iron(fake_iron: FakeIron, settings: Any) -> FakeIron:
    settings.IRON_KYC_MAX_RETRIES = 0
    return fake_iron


def mirror_customer(iron: FakeIron, **fields: Any) -> Customer:
    """A customer that exists at the fake Iron and locally, in the same state."""
    remote = iron.add_customer(**fields)
    return CustomerFactory(
        iron_id=uuid.UUID(remote["id"]),
        email=remote["email"],
        status=remote["status"],
        iron_created_at=parse_iron_datetime(remote["created_at"]),
        iron_updated_at=parse_iron_datetime(remote["updated_at"]),
    )


def mirror_identification(iron: FakeIron, customer: Customer, **fields: Any) -> Identification:
    """An identification that exists at the fake Iron and locally, in the same state."""
    remote = iron.add_identification(customer.iron_id, **fields)
    return IdentificationFactory(
        customer=customer,
        iron_id=uuid.UUID(remote["id"]),
        status=remote["status"],
        url=remote["url"],
        iron_created_at=parse_iron_datetime(remote["created_at"]),
        iron_updated_at=parse_iron_datetime(remote["updated_at"]),
    )


@pytest.fixture
def customer(iron: FakeIron) -> Customer:
    return mirror_customer(iron, email="ada@example.com")


def posts(iron: FakeIron) -> list[Any]:
    return iron.requests_to("POST", CREATE_PATH)


# --- get_client -------------------------------------------------------------------------


def test_get_client_reads_settings_when_called(settings: Any) -> None:
    settings.IRON_KYC_BASE_URL = "http://127.0.0.1:1234"
    assert services.get_client().base_url == "http://127.0.0.1:1234"
    settings.IRON_KYC_BASE_URL = "http://127.0.0.1:4321"
    assert services.get_client().base_url == "http://127.0.0.1:4321"


# --- create_customer --------------------------------------------------------------------


def test_create_customer_posts_once_and_stores_iron_state(
    iron: FakeIron,
    django_user_model: Any,
    django_capture_on_commit_callbacks: Any,
    iron_signals: Any,
) -> None:
    user = django_user_model.objects.create(username="ada")
    with django_capture_on_commit_callbacks(execute=True):
        customer = services.create_customer(
            email="ada@example.com", name="Ada", external_id="u-1", user=user
        )
    [request] = iron.requests_to("POST", r"^/api/customers$")
    assert request.idempotency_key == str(customer.idempotency_key)
    assert request.json == {
        "customer_type": "Person",
        "email": "ada@example.com",
        "name": "Ada",
        "external_id": "u-1",
    }
    assert str(customer.iron_id) in iron.customers
    assert customer.status == Customer.Status.IDENTIFICATION_REQUIRED
    assert customer.user == user
    assert customer.last_error == ""
    [sent] = iron_signals.kwargs_of("customer_status_changed")
    assert sent["source"] == "create"
    assert sent["previous_status"] == ""
    assert sent["status"] == "IdentificationRequired"


def test_create_customer_retry_after_lost_answer_reuses_row_and_key(
    iron: FakeIron, django_user_model: Any
) -> None:
    user = django_user_model.objects.create(username="ada")
    iron.fail_next(drop="after", method="POST")  # Iron creates it; the answer is lost
    with pytest.raises(IronTransientError):
        services.create_customer(email="ada@example.com", user=user)
    row = Customer.objects.get(user=user)
    assert row.iron_id is None
    assert "retried" in row.last_error

    customer = services.create_customer(email="ada@example.com", user=user)

    assert customer.pk == row.pk
    first, second = iron.requests_to("POST", r"^/api/customers$")
    assert first.idempotency_key == second.idempotency_key == str(row.idempotency_key)
    assert second.replayed
    assert len(iron.customers) == 1
    assert str(customer.iron_id) in iron.customers


def test_create_customer_retry_by_external_id_reuses_the_unconfirmed_row(iron: FakeIron) -> None:
    iron.fail_next(status=503, method="POST")
    with pytest.raises(IronTransientError):
        services.create_customer(email="bo@example.com", external_id="crm-7")
    customer = services.create_customer(email="bo@example.com", external_id="crm-7")
    assert Customer.objects.count() == 1
    first, second = iron.requests_to("POST", r"^/api/customers$")
    assert first.idempotency_key == second.idempotency_key == str(customer.idempotency_key)
    assert customer.external_id == "crm-7"


def test_create_customer_already_created_returns_it_without_http(
    iron: FakeIron, django_user_model: Any
) -> None:
    user = django_user_model.objects.create(username="ada")
    first = services.create_customer(email="ada@example.com", user=user)
    again = services.create_customer(email="ada@example.com", user=user)
    assert again.pk == first.pk
    assert len(iron.requests_to("POST", r"^/api/customers$")) == 1


def test_create_customer_refused_stores_a_readable_error(iron: FakeIron) -> None:
    with pytest.raises(IronAPIError) as caught:
        services.create_customer(email="not-an-email")
    assert not isinstance(caught.value, IronTransientError)
    row = Customer.objects.get()
    assert row.iron_id is None
    assert "invalid (400)" in row.last_error
    assert "email is required" in row.last_error


# --- start_identification ---------------------------------------------------------------


def test_start_identification_saves_the_intent_and_enqueues_after_commit(
    iron: FakeIron, customer: Customer, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        identification = services.start_identification(customer, with_edd=True)
        assert posts(iron) == []  # nothing is sent before commit
    assert identification.pk is not None
    assert identification.idempotency_key
    assert identification.iron_id is None
    assert identification.status == ""
    assert identification.with_edd is True
    assert len(callbacks) == 1

    callbacks[0]()  # the commit: the (eager) task runs

    [request] = posts(iron)
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
    assert posts(iron) == []


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


def intent(customer: Customer, **fields: Any) -> Identification:
    return Identification.objects.create(customer=customer, **fields)


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
    [request] = posts(iron)
    assert request.idempotency_key == str(row.idempotency_key)
    [sent] = iron_signals.kwargs_of("identification_status_changed")
    assert (sent["previous_status"], sent["status"], sent["source"]) == ("", "Pending", "create")


def test_submit_is_idempotent_once_confirmed(iron: FakeIron, customer: Customer) -> None:
    row = intent(customer)
    services.submit_identification(row)
    again = services.submit_identification(row)
    assert again.iron_id is not None
    assert len(posts(iron)) == 1
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
    first, second = posts(iron)
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
    assert len(posts(iron)) == 1
    # Failed: never sent again, and the customer may start a new identification.
    services.submit_identification(row)
    assert len(posts(iron)) == 1
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
    assert len(posts(iron)) == 2
    services.submit_identification(row)
    assert len(posts(iron)) == 2  # never retried


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
    assert len(posts(iron)) == 1
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
    assert len(posts(iron)) == 1  # no POST after the key expired
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

    _, second = posts(iron)
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
    assert posts(iron) == []


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
    assert len(posts(iron)) == 2
    assert len(iron.requests_to("GET", LIST_PATH)) == 1


def test_submit_for_a_customer_not_at_iron_fails(iron: FakeIron) -> None:
    row = intent(CustomerFactory(unconfirmed=True))
    result = services.submit_identification(row)
    assert result.failed_at is not None
    assert "does not exist at Iron" in result.last_error
    assert iron.requests == []


# --- refresh_customer -------------------------------------------------------------------


def test_refresh_customer_applies_customer_and_known_identifications(
    iron: FakeIron, customer: Customer, django_capture_on_commit_callbacks: Any, iron_signals: Any
) -> None:
    ident = mirror_identification(iron, customer)
    iron.set_identification_status(ident.iron_id, "Approved", notify=False)
    with django_capture_on_commit_callbacks(execute=True):
        refreshed = services.refresh_customer(customer)
    assert refreshed.status == Customer.Status.ACTIVE
    ident.refresh_from_db()
    assert ident.status == Identification.Status.APPROVED
    assert len(iron.requests_to("GET", LIST_PATH)) == 1
    assert {name for name, _ in iron_signals} == {
        "customer_status_changed",
        "identification_status_changed",
        "identification_approved",
    }
    assert {kwargs["source"] for _, kwargs in iron_signals} == {"refresh"}


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
    assert posts(iron) == []  # confirmed: the task has nothing left to do


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


def test_refresh_customer_needs_a_customer_at_iron(iron: FakeIron) -> None:
    with pytest.raises(IdentificationStateError):
        services.refresh_customer(CustomerFactory(unconfirmed=True))
    assert iron.requests == []


# --- sandbox ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "status", "signal"),
    [
        (services.sandbox_approve, "Approved", "identification_approved"),
        (services.sandbox_decline, "Declined", "identification_declined"),
    ],
)
def test_sandbox_decision_is_applied_from_iron_answer(
    iron: FakeIron,
    customer: Customer,
    django_capture_on_commit_callbacks: Any,
    iron_signals: Any,
    action: Any,
    status: str,
    signal: str,
) -> None:
    ident = mirror_identification(iron, customer)
    with django_capture_on_commit_callbacks(execute=True):
        result = action(ident)
    assert result.status == status
    [request] = iron.requests_to("POST", r"^/api/sandbox/identification/")
    assert uuid.UUID(request.idempotency_key)
    assert request.json == {"approved": status == "Approved"}
    [sent] = iron_signals.kwargs_of(signal)
    assert sent["source"] == "sandbox"
    assert sent["customer"] == customer


@pytest.mark.fake_iron(sandbox_webhooks=False)
def test_sandbox_decision_brings_the_customer_status_along_without_webhooks(
    iron: FakeIron, customer: Customer, django_capture_on_commit_callbacks: Any, iron_signals: Any
) -> None:
    ident = mirror_identification(iron, customer)
    with django_capture_on_commit_callbacks(execute=True):
        services.sandbox_approve(ident)
    customer.refresh_from_db()
    assert customer.status == iron.customers[customer.iron_id]["status"] == "Active"
    [sent] = iron_signals.kwargs_of("customer_status_changed")
    assert (sent["previous_status"], sent["status"], sent["source"]) == (
        "IdentificationRequired",
        "Active",
        "sandbox",
    )


@pytest.mark.parametrize(
    "overrides",
    [
        {"IRON_KYC_SANDBOX_ACTIONS": False},
        # Forced on, but Iron's production host: refused all the same.
        {"IRON_KYC_SANDBOX_ACTIONS": True, "IRON_KYC_BASE_URL": "https://api.iron.xyz"},
    ],
)
def test_sandbox_refused_before_any_http(
    iron: FakeIron, customer: Customer, settings: Any, overrides: dict[str, Any]
) -> None:
    ident = mirror_identification(iron, customer)
    for name, value in overrides.items():
        setattr(settings, name, value)
    with pytest.raises(SandboxNotAllowedError):
        services.sandbox_approve(ident)
    with pytest.raises(SandboxNotAllowedError):
        services.sandbox_decline(ident)
    assert iron.requests == []


def test_sandbox_needs_an_identification_known_at_iron(iron: FakeIron, customer: Customer) -> None:
    with pytest.raises(IdentificationStateError):
        services.sandbox_approve(intent(customer))
    assert iron.requests == []
