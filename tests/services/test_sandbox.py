"""sandbox_approve / sandbox_decline against the fake Iron."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from django_iron_kyc import services
from django_iron_kyc.exceptions import IdentificationStateError, SandboxNotAllowedError
from django_iron_kyc.models import Customer
from django_iron_kyc.testing import FakeIron
from django_iron_kyc.testing.mirror import mirror_identification
from tests.support import SANDBOX_PATH, intent

pytestmark = pytest.mark.django_db


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
    [request] = iron.requests_to("POST", SANDBOX_PATH)
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
