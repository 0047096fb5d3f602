"""Customers: create_customer (idempotent, retried with the same key) and
refresh_customer."""

from __future__ import annotations

from typing import Any

import pytest

from django_iron_kyc import services
from django_iron_kyc.exceptions import IdentificationStateError, IronAPIError, IronTransientError
from django_iron_kyc.models import Customer, Identification
from django_iron_kyc.testing import FakeIron
from django_iron_kyc.testing.factories import CustomerFactory
from django_iron_kyc.testing.mirror import mirror_identification
from tests.support import CUSTOMERS_PATH, LIST_PATH

pytestmark = pytest.mark.django_db


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
    [request] = iron.requests_to("POST", CUSTOMERS_PATH)
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
    first, second = iron.requests_to("POST", CUSTOMERS_PATH)
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
    first, second = iron.requests_to("POST", CUSTOMERS_PATH)
    assert first.idempotency_key == second.idempotency_key == str(customer.idempotency_key)
    assert customer.external_id == "crm-7"


def test_create_customer_already_created_returns_it_without_http(
    iron: FakeIron, django_user_model: Any
) -> None:
    user = django_user_model.objects.create(username="ada")
    first = services.create_customer(email="ada@example.com", user=user)
    again = services.create_customer(email="ada@example.com", user=user)
    assert again.pk == first.pk
    assert len(iron.requests_to("POST", CUSTOMERS_PATH)) == 1


def test_create_customer_refused_stores_a_readable_error(iron: FakeIron) -> None:
    with pytest.raises(IronAPIError) as caught:
        services.create_customer(email="not-an-email")
    assert not isinstance(caught.value, IronTransientError)
    row = Customer.objects.get()
    assert row.iron_id is None
    assert "invalid (400)" in row.last_error
    assert "email is required" in row.last_error


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


def test_refresh_customer_needs_a_customer_at_iron(iron: FakeIron) -> None:
    with pytest.raises(IdentificationStateError):
        services.refresh_customer(CustomerFactory(unconfirmed=True))
    assert iron.requests == []
