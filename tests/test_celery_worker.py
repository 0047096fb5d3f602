"""A real, non-eager Celery worker (in-process thread, the ``worker_app`` fixture) runs the
lifecycle's tasks.

The broker is ``memory://`` unless ``CELERY_BROKER_URL`` is set in the environment (e.g.
``redis://127.0.0.1:6379/3``): then the tasks travel through that broker.
"""

from __future__ import annotations

from typing import Any

import pytest
from celery import Celery

from django_iron_kyc import services, signals, tasks
from django_iron_kyc.models import Identification
from django_iron_kyc.testing import FakeIron
from django_iron_kyc.testing.mirror import mirror_customer, mirror_identification
from tests.support import CREATE_PATH, Waiter

pytestmark = [pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]


def test_worker_creates_the_identification_after_commit(iron: FakeIron, worker_app: Celery) -> None:
    customer = mirror_customer(iron)
    pending = Waiter(signals.identification_status_changed, status="Pending", source="create")

    identification = services.start_identification(customer)

    assert pending.wait(), "the worker did not create the identification"
    identification.refresh_from_db()
    assert identification.status == Identification.Status.PENDING
    assert identification.url.startswith(iron.base_url)
    [request] = iron.requests_to("POST", CREATE_PATH)
    assert request.idempotency_key == str(identification.idempotency_key)


def test_worker_retries_a_transient_error_through_the_broker(
    iron: FakeIron, settings: Any, worker_app: Celery
) -> None:
    settings.IRON_KYC_TASK_RETRY_BACKOFF = 0  # retry at once
    customer = mirror_customer(iron)
    iron.fail_next(method="POST", status=503)
    pending = Waiter(signals.identification_status_changed, status="Pending")

    identification = services.start_identification(customer)

    assert pending.wait(), "the retried task did not create the identification"
    first, second = iron.requests_to("POST", CREATE_PATH)
    assert first.status == 503
    assert second.status == 201
    assert first.idempotency_key == second.idempotency_key == str(identification.idempotency_key)


def test_worker_runs_the_sweep_and_the_refresh(iron: FakeIron, worker_app: Celery) -> None:
    customer = mirror_customer(iron)
    ident = mirror_identification(iron, customer)
    Identification.objects.filter(pk=ident.pk).update(next_poll_at="2000-01-01T00:00:00Z")
    iron.set_identification_status(ident.iron_id, "Processed", notify=False)
    processed = Waiter(signals.identification_status_changed, status="Processed", source="poll")
    tasks.poll_pending_identifications.delay()
    assert processed.wait(), "the sweep did not poll"

    iron.set_identification_status(ident.iron_id, "Approved", notify=False)
    approved = Waiter(signals.identification_approved, source="refresh")
    tasks.refresh_customer.delay(customer.pk)
    assert approved.wait(), "the refresh did not run"
