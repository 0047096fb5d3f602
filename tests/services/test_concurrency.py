"""The services raced on real concurrent connections (PostgreSQL: row locks, SKIP LOCKED):
starts, a webhook and a poll applying one decision, sweeps."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import Any

import pytest
from celery import _state as celery_state
from django.db import connection, transaction
from django.utils import timezone

from django_iron_kyc import services
from django_iron_kyc.exceptions import IdentificationInFlightError
from django_iron_kyc.models import Identification
from django_iron_kyc.services import RemoteIdentification, Source, apply_identification_state
from django_iron_kyc.testing import FakeIron, build_event
from django_iron_kyc.testing.mirror import mirror_customer, mirror_identification
from tests.support import CREATE_PATH, LIST_PATH, run_together

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
]

TIMEOUT = 30.0


def celery_app_of_this_thread() -> str:
    """Where a task's ``.delay()`` from this thread goes (a new thread: the default app)."""
    app = celery_state.get_current_app()
    return f"{app.main} (task_always_eager={app.conf.task_always_eager})"


def explain(iron: FakeIron, caplog: pytest.LogCaptureFixture, celery_apps: list[str]) -> str:
    """What Iron received, where the tasks went, the rows, and what was logged."""
    received = [f"{r.method} {r.path} -> {r.status}" for r in list(iron.requests)]
    rows = list(
        Identification.objects.values(
            "pk", "iron_id", "status", "create_attempts", "last_error", "failed_at"
        )
    )
    return "\n".join(
        [
            f"Iron received: {received or 'nothing'}",
            f"Celery app in the racing threads: {celery_apps}",
            f"identifications: {rows}",
            "log:",
            caplog.text or "(nothing)",
        ]
    )


def test_concurrent_starts_make_one_identification_and_one_post(
    iron: FakeIron, iron_signals: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # Eager tasks leave transient errors to the sweep and on_commit(robust=True) only logs a
    # failed enqueue: the log says why a POST is missing.
    caplog.set_level(logging.DEBUG, logger="django_iron_kyc")
    caplog.set_level(logging.INFO, logger="celery.app.trace")
    customer = mirror_customer(iron)
    celery_apps: list[str] = []

    def start() -> Identification:
        celery_apps.append(celery_app_of_this_thread())
        return services.start_identification(customer)

    results = run_together(*[start] * 4, return_exceptions=True)

    started = [r for r in results if isinstance(r, Identification)]
    refused = [r for r in results if isinstance(r, IdentificationInFlightError)]
    assert (len(started), len(refused)) == (1, 3), results
    assert Identification.objects.count() == 1
    posts = iron.requests_to("POST", CREATE_PATH)
    assert len(posts) == 1, explain(iron, caplog, celery_apps)
    assert posts[0].idempotency_key == str(started[0].idempotency_key)
    assert len(iron.identifications) == 1
    [sent] = iron_signals.kwargs_of("identification_status_changed")
    assert (sent["status"], sent["source"]) == ("Pending", "create")


def _waiting_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return bool(cursor.fetchone()[0])


def test_webhook_and_poll_applying_one_decision_at_once_send_one_signal(
    iron: FakeIron, iron_signals: Any
) -> None:
    ident = mirror_identification(iron, mirror_customer(iron))
    decided = iron.set_identification_status(ident.iron_id, "Approved", notify=False)
    polled = RemoteIdentification.from_api(decided)
    webhook = RemoteIdentification(
        iron_id=polled.iron_id,
        status="Approved",
        updated_at=(polled.updated_at or timezone.now()) + timedelta(milliseconds=300),
    )
    webhook_applied, release = threading.Event(), threading.Event()

    def webhook_path() -> Any:
        with transaction.atomic():
            result = apply_identification_state(ident.pk, webhook, source=Source.WEBHOOK)
            webhook_applied.set()
            release.wait(TIMEOUT)  # hold the row lock while the poll arrives
        return result

    def poll_path() -> Any:
        webhook_applied.wait(TIMEOUT)
        return apply_identification_state(ident.pk, polled, source=Source.POLL)

    def referee() -> None:
        webhook_applied.wait(TIMEOUT)
        blocked = threading.Event()
        for _ in range(int(TIMEOUT / 0.01)):
            if _waiting_on_a_lock():
                break
            blocked.wait(0.01)
        release.set()

    from_webhook, from_poll, _ = run_together(webhook_path, poll_path, referee)

    assert from_webhook.status_changed
    assert not from_poll.status_changed  # it waited for the lock and saw the decision
    assert [k["source"] for k in iron_signals.kwargs_of("identification_approved")] == ["webhook"]
    assert len(iron_signals.kwargs_of("identification_status_changed")) == 1
    ident.refresh_from_db()
    assert ident.status == "Approved"


def test_webhook_delivery_and_sweep_at_once_send_one_signal(
    iron: FakeIron, iron_signals: Any, send_iron_webhook: Any
) -> None:
    ident = mirror_identification(iron, mirror_customer(iron))
    Identification.objects.filter(pk=ident.pk).update(next_poll_at=timezone.now())
    iron.set_identification_status(ident.iron_id, "Approved", notify=False)
    event = build_event(
        "identification_status",
        customer_id=str(ident.customer.iron_id),
        message_id=str(ident.iron_id),
        status="Approved",
    )

    def deliver() -> Any:
        return send_iron_webhook(event)

    def sweep() -> Any:
        return services.poll_due_identifications()

    response, _ = run_together(deliver, sweep)

    assert response.status_code < 300
    approved = iron_signals.kwargs_of("identification_approved")
    assert len(approved) == 1
    assert approved[0]["source"] in ("webhook", "poll")
    ident.refresh_from_db()
    assert ident.status == "Approved"


def test_two_sweeps_at_once_poll_each_customer_once(iron: FakeIron) -> None:
    idents = [mirror_identification(iron, mirror_customer(iron)) for _ in range(6)]
    Identification.objects.update(next_poll_at=timezone.now())

    def sweep() -> services.PollSweepResult:
        return services.poll_due_identifications()

    first, second = run_together(sweep, sweep)

    assert first.polled + second.polled == len(idents)
    assert len(iron.requests_to("GET", LIST_PATH)) == len(idents)
    assert set(Identification.objects.values_list("poll_count", flat=True)) == {1}
