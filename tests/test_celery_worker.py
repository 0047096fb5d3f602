"""A real, non-eager Celery worker (in-process thread) runs the lifecycle's tasks.

The broker is ``memory://`` unless ``CELERY_BROKER_URL`` is set in the environment (e.g.
``redis://127.0.0.1:6379/3``): then the tasks travel through that broker.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker

from django_iron_kyc import services, signals, tasks
from django_iron_kyc.models import Identification
from django_iron_kyc.testing import FakeIron
from tests.celery import app as test_app
from tests.test_lifecycle import CREATE_PATH, mirror_customer, mirror_identification

pytestmark = [pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]

WAIT = 30.0  # seconds; the worker normally answers in well under one


@pytest.fixture
def worker_app() -> Iterator[Celery]:
    """A non-eager app with its own queue, current while a real worker consumes it."""
    app = Celery("iron_kyc_worker_test", set_as_current=False)
    app.conf.update(
        broker_url=os.environ.get("CELERY_BROKER_URL", "memory://"),
        result_backend="cache+memory://",
        task_always_eager=False,
        task_default_queue=f"iron-kyc-test-{uuid.uuid4().hex}",
        broker_connection_retry_on_startup=False,
        worker_hijack_root_logger=False,
        broker_transport_options={"polling_interval": 0.05},
    )
    app.set_current()
    try:
        with start_worker(app, pool="solo", concurrency=1, perform_ping_check=False):
            yield app
    finally:
        # start_worker made the worker app current and default (threads use the default).
        test_app.set_current()
        test_app.set_default()


class Waiter:
    """An event set when a signal with matching kwargs is sent (from any thread)."""

    def __init__(self, signal: Any, **match: Any) -> None:
        self.event = threading.Event()
        self.calls: list[dict[str, Any]] = []
        self.signal = signal
        self.match = match
        signal.connect(self, weak=False, dispatch_uid=f"waiter-{id(self)}")

    def __call__(self, **kwargs: Any) -> None:
        if all(kwargs.get(k) == v for k, v in self.match.items()):
            self.calls.append(kwargs)
            self.event.set()

    def wait(self) -> bool:
        try:
            return self.event.wait(WAIT)
        finally:
            self.signal.disconnect(dispatch_uid=f"waiter-{id(self)}")


def test_worker_creates_the_identification_after_commit(
    fake_iron: FakeIron, settings: Any, worker_app: Celery
) -> None:
    settings.IRON_KYC_MAX_RETRIES = 0
    customer = mirror_customer(fake_iron)
    pending = Waiter(signals.identification_status_changed, status="Pending", source="create")

    identification = services.start_identification(customer)

    assert pending.wait(), "the worker did not create the identification"
    identification.refresh_from_db()
    assert identification.status == Identification.Status.PENDING
    assert identification.url.startswith(fake_iron.base_url)
    [request] = fake_iron.requests_to("POST", CREATE_PATH)
    assert request.idempotency_key == str(identification.idempotency_key)


def test_worker_retries_a_transient_error_through_the_broker(
    fake_iron: FakeIron, settings: Any, worker_app: Celery
) -> None:
    settings.IRON_KYC_MAX_RETRIES = 0
    settings.IRON_KYC_TASK_RETRY_BACKOFF = 0  # retry at once
    customer = mirror_customer(fake_iron)
    fake_iron.fail_next(method="POST", status=503)
    pending = Waiter(signals.identification_status_changed, status="Pending")

    identification = services.start_identification(customer)

    assert pending.wait(), "the retried task did not create the identification"
    first, second = fake_iron.requests_to("POST", CREATE_PATH)
    assert first.status == 503
    assert second.status == 201
    assert first.idempotency_key == second.idempotency_key == str(identification.idempotency_key)


def test_worker_runs_the_sweep_and_the_refresh(
    fake_iron: FakeIron, settings: Any, worker_app: Celery
) -> None:
    settings.IRON_KYC_MAX_RETRIES = 0
    customer = mirror_customer(fake_iron)
    ident = mirror_identification(fake_iron, customer)
    Identification.objects.filter(pk=ident.pk).update(next_poll_at="2000-01-01T00:00:00Z")
    fake_iron.set_identification_status(ident.iron_id, "Processed", notify=False)
    processed = Waiter(signals.identification_status_changed, status="Processed", source="poll")
    tasks.poll_pending_identifications.delay()
    assert processed.wait(), "the sweep did not poll"

    fake_iron.set_identification_status(ident.iron_id, "Approved", notify=False)
    approved = Waiter(signals.identification_approved, source="refresh")
    tasks.refresh_customer.delay(customer.pk)
    assert approved.wait(), "the refresh did not run"
