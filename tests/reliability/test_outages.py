"""Outages: the database gone while a webhook arrives; the broker gone when work is enqueued.

Database: a ``connection.execute_wrapper`` makes every query from the k-th one on raise
``OperationalError``, for k = 0, 1, 2, ... until a delivery gets through with no query
failing, so the outage starts at every point of receiving, storing and processing one
delivery. Inline, each time Iron gets a 5xx; its retry (same ``webhook-id``, or a new one)
with the database back must end in one stored delivery, the decision applied and one
signal. Deferred (``IRON_KYC_WEBHOOK_PROCESSING = "deferred"``; Celery is eager, so the
drain runs in the request once the delivery is stored): an outage from the first query
on is a 5xx with nothing stored, and Iron's retry of the same delivery is stored and
acted on; a later one is a 200 (stored), and the webhook sweep acts on it once the retry
delay has passed. Either way: applied once, one signal.

Broker: Celery pointed at a Redis port nobody listens on. ``start_identification``: the
intent must be stored and the caller must not crash; the sweep creates it later. A
deferred webhook delivery: answered 200 (stored) as soon as the drain could not be sent,
and the webhook sweep acts on it once the retry delay has passed.
"""

from __future__ import annotations

import contextlib
import time
from datetime import timedelta
from typing import Any

import pytest
from celery import Celery
from django.db import OperationalError, connection
from django.test import Client
from django.urls import reverse

from django_iron_kyc import services
from django_iron_kyc.conf import iron_settings
from django_iron_kyc.models import Identification, WebhookDelivery
from django_iron_kyc.testing import FakeIron, SignalRecorder
from django_iron_kyc.testing.fake import Delivery
from django_iron_kyc.testing.mirror import mirror_customer, mirror_identification
from tests.celery import broker_down as dead_broker
from tests.reliability.support import run_webhook_sweep
from tests.support import CREATE_PATH

pytestmark = pytest.mark.django_db(transaction=True)

# Far more queries than one delivery takes: the loop stops at the first clean delivery.
MAX_QUERIES = 60
# Seconds. Kombu gives up connecting to the broker after broker_connection_timeout (1 s
# in broker_down()), whether the publish may retry or not.
ANSWER_WITHIN = 5


class DatabaseDown:
    """An execute wrapper: queries after the first ``works_for`` raise OperationalError."""

    def __init__(self, works_for: int) -> None:
        self.works_for = works_for
        self.queries = 0
        self.failed = 0

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        self.queries += 1
        if self.queries > self.works_for:
            self.failed += 1
            raise OperationalError("server closed the connection unexpectedly (injected)")
        return execute(sql, params, many, context)


def post(delivery: Delivery, **headers: str) -> Any:
    client = Client(enforce_csrf_checks=True, raise_request_exception=False)
    return client.post(
        reverse("iron_kyc:webhook"),
        data=delivery.body,
        content_type="application/json",
        headers={**delivery.headers, **headers},
    )


def approved_delivery(iron: FakeIron) -> tuple[Identification, Delivery]:
    """A fresh identification here and at Iron, approved at Iron: its webhook delivery."""
    row = mirror_identification(iron, mirror_customer(iron))
    iron.set_identification_status(row.iron_id, "Approved")
    (delivery,) = [d for d in iron.outbox if d.type == "identification_status"]
    iron.outbox.clear()
    return row, delivery


def post_while_the_database_is_down(
    iron: FakeIron, works_for: int
) -> tuple[Identification, Delivery, DatabaseDown, Any]:
    """A fresh approval delivered while queries after the first ``works_for`` fail."""
    row, delivery = approved_delivery(iron)
    down = DatabaseDown(works_for)
    with connection.execute_wrapper(down):
        response = post(delivery)
    return row, delivery, down, response


@pytest.mark.parametrize("retry", ["same webhook-id", "new webhook-id"])
def test_webhook_while_the_database_is_down_gets_5xx_and_iron_retry_applies_it_once(
    iron: FakeIron, iron_signals: SignalRecorder, retry: str
) -> None:
    """One decision delivered with the database failing from the k-th query on, every k.

    For every k: a 5xx while the database is down, then Iron's retry answered 200, the
    decision applied, stored once and signalled once (across both attempts).
    """
    for works_for in range(MAX_QUERIES):
        iron_signals.clear()
        row, delivery, down, first = post_while_the_database_is_down(iron, works_for)
        if not down.failed:
            assert first.status_code == 200
            # The outage started at each query of the request before this one.
            assert works_for >= 5, works_for
            return
        assert first.status_code >= 500, (works_for, first.status_code, first.content)

        again = iron.resend(delivery, new_id=retry == "new webhook-id")
        iron.outbox.clear()
        second = post(again)

        assert second.status_code == 200, (works_for, second.content)
        assert second.json()["outcome"] in {"processed", "duplicate"}
        row.refresh_from_db()
        assert row.status == "Approved", works_for
        stored = WebhookDelivery.objects.filter(object_iron_id=row.iron_id)
        assert {d.webhook_id for d in stored} <= {delivery.webhook_id, again.webhook_id}
        assert stored.filter(outcome="processed").count() == 1, (
            works_for,
            list(stored.values("webhook_id", "outcome", "error")),
        )
        approved = [
            kw["identification"].pk for kw in iron_signals.kwargs_of("identification_approved")
        ]
        assert approved == [row.pk], (works_for, iron_signals.names())
    pytest.fail(f"a delivery took more than {MAX_QUERIES} queries")


def assert_acted_on_once(row: Identification, delivery: Delivery, signals: SignalRecorder) -> None:
    row.refresh_from_db()
    assert row.status == "Approved"
    stored = WebhookDelivery.objects.get(webhook_id=delivery.webhook_id)
    assert stored.outcome == "processed", (stored.outcome, stored.error)
    approved = [kw["identification"].pk for kw in signals.kwargs_of("identification_approved")]
    assert approved == [row.pk], signals.names()


@pytest.mark.usefixtures("deferred")
def test_deferred_webhook_while_the_database_is_down_is_refused_or_stored_and_acted_on_once(
    iron: FakeIron, iron_signals: SignalRecorder, time_machine: Any
) -> None:
    """Deferred, one decision delivered with the database failing from the k-th query on.

    k = 0, the INSERT: a 5xx with nothing stored, and Iron's retry of the same delivery is
    answered ``received`` and acted on. Any later k: stored, so a 200, and whatever the
    outage left (the drain failed with it) the webhook sweep acts on after the retry delay.
    """
    for works_for in range(MAX_QUERIES):
        iron_signals.clear()
        row, delivery, down, first = post_while_the_database_is_down(iron, works_for)
        stored = WebhookDelivery.objects.filter(webhook_id=delivery.webhook_id)
        if not down.failed:
            assert first.json() == {"outcome": "received"}
            assert_acted_on_once(row, delivery, iron_signals)  # by the drain, in the request
            # The outage started at each query of the request before this one.
            assert works_for >= 5, works_for
            return
        if works_for == 0:
            assert first.status_code >= 500, first.content
            assert not stored.exists()  # so Iron must resend it
            again = post(delivery)
            assert again.json() == {"outcome": "received"}, again.content
        else:
            assert first.json() == {"outcome": "received"}, (works_for, first.content)
            assert stored.exists()
            run_webhook_sweep(time_machine)
        assert_acted_on_once(row, delivery, iron_signals)
    pytest.fail(f"a delivery took more than {MAX_QUERIES} queries")


def broker_down() -> contextlib.AbstractContextManager[Celery]:
    """The test kit's dead broker, with a 1-second connection timeout and no retries."""
    return dead_broker(
        broker_connection_timeout=1,
        broker_connection_retry=False,
        task_publish_retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.1},
    )


def test_start_identification_with_the_broker_down_keeps_the_intent_and_the_sweep_creates_it(
    iron: FakeIron, iron_signals: SignalRecorder, time_machine: Any
) -> None:
    customer = mirror_customer(iron)
    time_machine.move_to(customer.created_at + timedelta(seconds=1), tick=False)

    with broker_down():
        row = services.start_identification(customer)  # must not raise

    row.refresh_from_db()
    assert row.iron_id is None
    assert row.is_in_flight
    assert not iron.requests_to("POST", CREATE_PATH)

    # The broker is back (eager here); the sweep catches up after the recovery delay.
    time_machine.shift(iron_settings.CREATE_RECOVERY_DELAY + timedelta(seconds=1))
    result = services.poll_due_identifications()

    assert result.recovered == 1
    row.refresh_from_db()
    assert row.status == "Pending"
    assert row.url
    [request] = iron.requests_to("POST", CREATE_PATH)
    assert request.idempotency_key == str(row.idempotency_key)
    changes = iron_signals.kwargs_of("identification_status_changed")
    assert [(kw["identification"].pk, kw["status"]) for kw in changes] == [(row.pk, "Pending")]


@pytest.mark.usefixtures("deferred")
def test_deferred_webhook_with_the_broker_down_is_answered_at_once_and_the_sweep_acts_on_it(
    iron: FakeIron, iron_signals: SignalRecorder, time_machine: Any, caplog: Any
) -> None:
    row, delivery = approved_delivery(iron)

    with broker_down():
        started = time.monotonic()
        answer = post(delivery)
        took = time.monotonic() - started

    assert answer.status_code == 200
    assert answer.json() == {"outcome": "received"}
    assert took < ANSWER_WITHIN, f"the answer waited {took:.1f}s for the broker"
    assert "Could not enqueue the task that processes stored Iron webhook deliveries" in (
        caplog.text
    )
    stored = WebhookDelivery.objects.get(webhook_id=delivery.webhook_id)
    assert stored.outcome == "received"
    row.refresh_from_db()
    assert row.status == "Pending"
    assert not iron_signals.kwargs_of("identification_status_changed")

    # The broker is back (eager here). The sweep leaves it to the drain for the retry delay.
    assert run_webhook_sweep() == {"outcomes": {}, "more": False}
    swept = run_webhook_sweep(time_machine)

    assert swept == {"outcomes": {"processed": 1}, "more": False}
    assert_acted_on_once(row, delivery, iron_signals)
