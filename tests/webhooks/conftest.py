"""Fixtures of the webhook tests.

Every test here has its log records scanned for secrets (``no_secrets_in_logs``) and starts
and ends with the process's drain scheduler reset. ``processing`` runs a test once inline and
once deferred.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import pytest
from django.test import Client

from django_iron_kyc import tasks
from django_iron_kyc.models import Customer, Identification
from django_iron_kyc.testing.factories import CustomerFactory, IdentificationFactory
from django_iron_kyc.webhooks.drain import (
    DeliverySweepResult,
    drain_scheduler,
    process_received_deliveries,
)
from tests.support import LONG_AGO, SECRET, as_body, post, signed_headers
from tests.webhooks.support import Processing


@pytest.fixture(autouse=True)
def scan_logs_for_secrets(no_secrets_in_logs: None) -> None:
    """Every webhook test: no secret, key, signature or body in the logs."""


@pytest.fixture(autouse=True)
def fresh_drain_scheduler() -> Iterator[None]:
    """The process-wide scheduler starts and ends each test with no window open."""
    drain_scheduler.reset()
    yield
    drain_scheduler.reset()


@pytest.fixture(params=["inline", "deferred"])
def processing(request: pytest.FixtureRequest, settings: Any) -> Processing:
    """``IRON_KYC_WEBHOOK_PROCESSING``, once each way (see :class:`Processing`)."""
    settings.IRON_KYC_WEBHOOK_PROCESSING = request.param
    return Processing(request.param)


@pytest.fixture
def deferred(settings: Any) -> None:
    """``IRON_KYC_WEBHOOK_PROCESSING = "deferred"``, for what only deferred processing does."""
    settings.IRON_KYC_WEBHOOK_PROCESSING = "deferred"


@pytest.fixture
def customer(db: None) -> Customer:
    customer: Customer = CustomerFactory(iron_created_at=LONG_AGO)
    return customer


@pytest.fixture
def identification(customer: Customer) -> Identification:
    identification: Identification = IdentificationFactory(
        customer=customer, iron_created_at=LONG_AGO
    )
    return identification


@pytest.fixture
def webhook_client() -> Client:
    return Client(enforce_csrf_checks=True)


@pytest.fixture
def send(webhook_client: Client, django_capture_on_commit_callbacks: Any) -> Callable[..., Any]:
    """``send(event_or_body, *, secret=, timestamp=, webhook_id=, url=, **client_kwargs)``:
    sign and post a delivery; run the on-commit callbacks as a real commit would."""

    def send(
        event: dict[str, Any] | bytes,
        *,
        secret: str | bytes = SECRET,
        timestamp: int | None = None,
        webhook_id: str | None = None,
        url: str | None = None,
        **extra: Any,
    ) -> Any:
        body = as_body(event)
        headers = signed_headers(body, secret=secret, timestamp=timestamp, webhook_id=webhook_id)
        with django_capture_on_commit_callbacks(execute=True):
            return post(webhook_client, body, headers, url=url, **extra)

    return send


@pytest.fixture
def sent_drains() -> Iterator[list[dict[str, Any]]]:
    """The keyword arguments of every drain the scheduler sends; none reaches Celery."""
    sent: list[dict[str, Any]] = []

    def record(args: Any = (), kwargs: Any = None, **options: Any) -> None:
        assert not args
        assert not kwargs
        sent.append(options)

    with mock.patch.object(tasks.process_received_webhooks, "apply_async", record):
        yield sent


@pytest.fixture
def drain(django_capture_on_commit_callbacks: Any) -> Callable[[], DeliverySweepResult]:
    """``drain()``: run the drain; its on-commit callbacks (signals) run as a commit would."""

    def drain() -> DeliverySweepResult:
        with django_capture_on_commit_callbacks(execute=True):
            return process_received_deliveries()

    return drain
