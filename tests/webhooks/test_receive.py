"""Receiving a verified delivery (webhooks.receive): stored, then acted on inline or left to
the drain, deferred.

The outcome tests take the ``processing`` fixture and run in both modes: deferred, the
eager drain acts on each delivery once its request commits, so the delivery ends as it
would inline, and ``processing.outcome(response)`` reads that outcome either way. What only
one mode does has tests of its own below.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from unittest import mock

import pytest
import time_machine
from django.db import connection, transaction
from django.test import Client

from django_iron_kyc import signing, tasks
from django_iron_kyc.models import Customer, Identification, WebhookDelivery
from django_iron_kyc.testing import SignalRecorder, build_event, encode_event
from django_iron_kyc.testing.factories import IdentificationFactory
from django_iron_kyc.webhooks import receive
from django_iron_kyc.webhooks.drain import (
    DeliverySweepResult,
    process_received_deliveries,
    retry_deliveries,
)
from django_iron_kyc.webhooks.receive import receive_delivery
from tests.support import LONG_AGO, NOW, identification_event, post, signed_headers
from tests.webhooks.support import APPROVED, Processing, countdowns

Outcome = WebhookDelivery.Outcome


# --- Acting on a delivery, in both modes ------------------------------------------------------


@pytest.mark.parametrize("shape", ["tagged", "flat"])
def test_webhook_identification_status_is_applied_through_services(
    send: Callable[..., Any],
    processing: Processing,
    identification: Identification,
    iron_signals: SignalRecorder,
    shape: str,
) -> None:
    timestamp = "2026-03-01T12:00:00.123456+00:00"
    with time_machine.travel(NOW, tick=False):
        response = send(
            identification_event(identification, timestamp=timestamp, shape=shape),
            webhook_id="wh-1",
        )

    assert processing.outcome(response) == Outcome.PROCESSED
    identification.refresh_from_db()
    assert identification.status == Identification.Status.APPROVED
    assert identification.webhook_sent_at == datetime.fromisoformat(timestamp)
    assert identification.iron_updated_at == LONG_AGO  # Iron's object time: not a webhook's
    assert iron_signals.names() == APPROVED
    assert {kwargs["source"] for _, kwargs in iron_signals} == {"webhook"}
    row = WebhookDelivery.objects.get()
    assert row.webhook_id == "wh-1"
    assert row.outcome == Outcome.PROCESSED
    assert row.event_type == "identification_status"
    assert row.object_iron_id == identification.iron_id
    assert row.customer_iron_id == identification.customer.iron_id
    assert row.object_status == "Approved"
    assert row.event_timestamp == datetime.fromisoformat(timestamp)
    assert row.signed_at == NOW
    assert row.processed_at == NOW
    assert row.attempts == 1
    assert row.event_key == f"identification_status:{identification.iron_id}:Approved:{timestamp}"
    assert json.loads(row.body) == identification_event(
        identification, timestamp=timestamp, shape=shape
    )


def test_webhook_accepts_any_tag_around_the_message(
    send: Callable[..., Any], processing: Processing, identification: Identification
) -> None:
    event = identification_event(identification, shape="flat")
    event["data"]["message"] = {"SomeFutureTag": event["data"]["message"]}

    assert processing.outcome(send(event)) == Outcome.PROCESSED
    identification.refresh_from_db()
    assert identification.status == "Approved"


@pytest.mark.parametrize("shape", ["tagged", "flat"])
def test_webhook_customer_status_is_applied_through_services(
    send: Callable[..., Any],
    processing: Processing,
    customer: Customer,
    iron_signals: SignalRecorder,
    shape: str,
) -> None:
    # Active is what the customer's approved identification implies: applied as it is.
    IdentificationFactory(customer=customer, approved=True)
    event = build_event(
        "customer_status", customer.iron_id, customer.iron_id, "Active", shape=shape
    )

    response = send(event)

    assert processing.outcome(response) == Outcome.PROCESSED
    customer.refresh_from_db()
    assert customer.status == Customer.Status.ACTIVE
    assert iron_signals.names() == ["customer_status_changed"]
    assert iron_signals[0][1]["previous_status"] == "IdentificationRequired"
    assert iron_signals[0][1]["source"] == "webhook"


@pytest.mark.parametrize("again", ["wh-a", "wh-b"], ids=["same-webhook-id", "new-webhook-id"])
def test_webhook_same_event_sent_again_acts_once(
    send: Callable[..., Any],
    processing: Processing,
    identification: Identification,
    iron_signals: SignalRecorder,
    again: str,
) -> None:
    event = identification_event(identification)

    first = send(event, webhook_id="wh-a")
    second = send(event, webhook_id=again)

    assert processing.outcome(first) == Outcome.PROCESSED
    assert processing.outcome(second) == Outcome.DUPLICATE
    rows = {row.webhook_id: (row.outcome, row.attempts) for row in WebhookDelivery.objects.all()}
    expected = {"wh-a": (Outcome.PROCESSED, 1), "wh-b": (Outcome.DUPLICATE, 1)}
    assert rows == {webhook_id: expected[webhook_id] for webhook_id in {"wh-a", again}}
    assert iron_signals.names() == APPROVED


def test_webhook_without_webhook_id_is_stored_and_deduplicated_by_event(
    webhook_client: Client,
    processing: Processing,
    identification: Identification,
    django_capture_on_commit_callbacks: Any,
) -> None:
    body = encode_event(identification_event(identification))
    outcomes = []
    for _ in range(2):
        headers = signed_headers(body)
        del headers[signing.ID_HEADER]
        with django_capture_on_commit_callbacks(execute=True):
            response = post(webhook_client, body, headers)
        outcomes.append(processing.outcome(response))

    assert outcomes == [Outcome.PROCESSED, Outcome.DUPLICATE]
    assert list(WebhookDelivery.objects.values_list("webhook_id", flat=True)) == [None, None]


def test_webhook_unknown_identification_of_known_customer_refreshes_the_customer(
    send: Callable[..., Any], processing: Processing, customer: Customer
) -> None:
    event = build_event("identification_status", customer.iron_id, uuid.uuid4(), "Approved")

    with mock.patch.object(tasks.refresh_customer, "apply_async") as apply_async:
        response = send(event)

    assert processing.outcome(response) == Outcome.UNKNOWN_OBJECT
    apply_async.assert_called_once_with((customer.pk,), {})
    assert WebhookDelivery.objects.get().outcome == Outcome.UNKNOWN_OBJECT


@pytest.mark.parametrize("event_type", ["identification_status", "customer_status"])
def test_webhook_unknown_customer_is_stored_and_acknowledged(
    send: Callable[..., Any], processing: Processing, db: None, event_type: str
) -> None:
    event = build_event(event_type, uuid.uuid4(), uuid.uuid4(), "Approved")

    response = send(event)

    assert processing.outcome(response) == Outcome.UNKNOWN_OBJECT
    row = WebhookDelivery.objects.get()
    assert row.outcome == Outcome.UNKNOWN_OBJECT
    assert row.event_type == event_type


@pytest.mark.parametrize(
    "event",
    [
        build_event("transaction", uuid.uuid4(), uuid.uuid4(), None),
        build_event("ping", uuid.uuid4(), uuid.uuid4(), None, shape="flat"),
        {"type": "new_bank_account", "timestamp": "2026-03-01T12:00:00Z", "data": {}},
        {"type": "customer_created", "timestamp": "2026-03-01T12:00:00Z", "data": {"x": [1]}},
    ],
    ids=["transaction", "ping", "no-message", "odd-data"],
)
def test_webhook_other_event_types_are_stored_and_ignored(
    send: Callable[..., Any],
    processing: Processing,
    db: None,
    iron_signals: SignalRecorder,
    event: dict[str, Any],
) -> None:
    response = send(event)

    assert processing.outcome(response) == Outcome.IGNORED
    row = WebhookDelivery.objects.get()
    assert row.outcome == Outcome.IGNORED
    assert row.event_type == event["type"]
    assert row.event_key == ""
    assert iron_signals.names() == []


# --- Bodies not of Iron's shape, in both modes ------------------------------------------------


INVALID_BODIES: list[tuple[str, bytes]] = [
    ("empty", b""),
    ("not-json", b"type=identification_status"),
    ("truncated", b'{"type": "identification_status", "timestamp": '),
    ("array", b"[]"),
    ("string", b'"identification_status"'),
    ("no-type", b'{"timestamp": "2026-03-01T12:00:00Z", "data": {}}'),
    ("type-not-string", b'{"type": 5, "timestamp": "2026-03-01T12:00:00Z", "data": {}}'),
    ("type-too-long", b'{"type": "' + b"x" * 65 + b'", "timestamp": "2026-03-01T12:00:00Z"}'),
    ("nul-in-type", b'{"type": "ping\\u0000", "timestamp": "2026-03-01T12:00:00Z", "data": {}}'),
    ("surrogate", b'{"type": "\\ud800", "timestamp": "2026-03-01T12:00:00Z", "data": {}}'),
    ("no-timestamp", b'{"type": "ping", "data": {}}'),
    ("bad-timestamp", b'{"type": "ping", "timestamp": "yesterday", "data": {}}'),
    ("month-13", b'{"type": "ping", "timestamp": "2026-13-01T00:00:00Z", "data": {}}'),
    ("year-1-east", b'{"type": "ping", "timestamp": "0001-01-01T00:00:00+14:00", "data": {}}'),
    ("data-not-object", b'{"type": "ping", "timestamp": "2026-03-01T12:00:00Z", "data": []}'),
    ("not-utf8", b'{"type": "ping\xff", "timestamp": "2026-03-01T12:00:00Z", "data": {}}'),
    ("raw-nul", b'{"type": "ping", "timestamp": "2026-03-01T12:00:00Z", "data": {}}\x00'),
    ("deep-nesting", b"[" * 50_000 + b"]" * 50_000),
    ("huge-number", b"1" * 5000),
]


@pytest.mark.parametrize("body", [b for _, b in INVALID_BODIES], ids=[n for n, _ in INVALID_BODIES])
def test_webhook_signed_body_not_of_irons_shape_is_400_stored_invalid_once_and_never_acted_on(
    send: Callable[..., Any],
    processing: Processing,
    db: None,
    body: bytes,
    settings: Any,
    sent_drains: list[dict[str, Any]],
) -> None:
    settings.IRON_KYC_WEBHOOK_MAX_BODY_SIZE = 200_000

    first = send(body, webhook_id="wh-invalid")
    again = send(body, webhook_id="wh-invalid")

    assert (first.status_code, again.status_code) == (400, 400)
    assert first.json()["detail"]
    assert again.json() == first.json()
    row = WebhookDelivery.objects.get()
    assert row.outcome == Outcome.INVALID
    assert row.error == first.json()["detail"]
    assert row.attempts == 1
    assert row.processed_at is not None
    assert sent_drains == []
    assert process_received_deliveries().outcomes == Counter()
    assert retry_deliveries(now=NOW + timedelta(days=365)).outcomes == Counter()
    assert WebhookDelivery.objects.get().attempts == 1


@pytest.mark.usefixtures("processing")
def test_webhook_invalid_body_answers_the_reason(send: Callable[..., Any], db: None) -> None:
    response = send(b'{"type": "ping", "timestamp": "yesterday", "data": {}}')

    assert response.status_code == 400
    assert response.json() == {"detail": "timestamp is not an ISO 8601 date-time"}


def _handled_event_with(
    identification: Identification, path: tuple[str, ...], value: Any
) -> dict[str, Any]:
    event = identification_event(identification, shape="flat")
    target = event
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return event


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("data", "customer_id"), "not-a-uuid"),
        (("data", "customer_id"), KeyError),
        (("data", "customer_id"), 12345),
        (("data", "message"), KeyError),
        (("data", "message"), ["id"]),
        (("data", "message", "id"), KeyError),
        (("data", "message", "id"), "42"),
        (("data", "message", "status"), KeyError),
        (("data", "message", "status"), ""),
        (("data", "message", "status"), 7),
        (("data", "message", "status"), "A" * 65),
        (("data", "message", "status"), "Approved\n"),
    ],
)
def test_webhook_handled_type_with_bad_message_is_400_and_changes_nothing(
    send: Callable[..., Any],
    processing: Processing,
    identification: Identification,
    path: tuple[str, ...],
    value: Any,
) -> None:
    response = send(_handled_event_with(identification, path, value))

    assert processing.outcome(response) == Outcome.INVALID
    assert WebhookDelivery.objects.get().outcome == Outcome.INVALID
    identification.refresh_from_db()
    assert identification.status == "Pending"


def test_webhook_tagged_message_with_two_tags_is_invalid(
    send: Callable[..., Any], processing: Processing, identification: Identification
) -> None:
    event = identification_event(identification, shape="flat")
    message = event["data"]["message"]
    event["data"]["message"] = {"IdentificationStatus": message, "Other": message}

    assert processing.outcome(send(event)) == Outcome.INVALID


# --- Failures, in both modes ------------------------------------------------------------------


def _boom(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("database on fire")


def test_webhook_processing_error_is_recorded_with_its_traceback_inline_answered_500(
    send: Callable[..., Any],
    processing: Processing,
    identification: Identification,
    iron_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with mock.patch("django_iron_kyc.services.deliveries.act_on_event", _boom):
        response = send(identification_event(identification), webhook_id="wh-fail")

    assert processing.outcome(response) == Outcome.FAILED
    row = WebhookDelivery.objects.get()
    assert row.outcome == Outcome.FAILED
    assert row.error == "RuntimeError: database on fire"
    assert "Traceback" in row.traceback
    assert "_boom" in row.traceback
    assert row.attempts == 1
    assert row.processed_at is None
    assert row.event_type == "identification_status"  # described despite the rollback
    identification.refresh_from_db()
    assert identification.status == "Pending"
    assert iron_signals.names() == []
    assert any(r.levelno == logging.ERROR and r.exc_info for r in caplog.records)


def test_webhook_retry_of_a_failed_delivery_is_processed_not_treated_as_duplicate(
    send: Callable[..., Any],
    processing: Processing,
    identification: Identification,
    iron_signals: SignalRecorder,
) -> None:
    event = identification_event(identification)
    with mock.patch("django_iron_kyc.services.deliveries.act_on_event", _boom):
        assert processing.outcome(send(event, webhook_id="wh-retry")) == Outcome.FAILED

    retry = send(event, webhook_id="wh-retry")

    assert processing.outcome(retry) == Outcome.PROCESSED
    row = WebhookDelivery.objects.get()
    assert row.outcome == Outcome.PROCESSED
    assert row.attempts == 2
    assert row.error == ""
    assert row.traceback == ""
    identification.refresh_from_db()
    assert identification.status == "Approved"
    assert iron_signals.names() == APPROVED


@pytest.mark.django_db(transaction=True)
def test_webhook_survives_atomic_requests(
    processing: Processing, monkeypatch: pytest.MonkeyPatch, iron_signals: SignalRecorder
) -> None:
    """With ATOMIC_REQUESTS on, the delivery is committed before processing starts and the
    recorded failure is not rolled back with the request."""
    monkeypatch.setitem(connection.settings_dict, "ATOMIC_REQUESTS", True)
    identification = IdentificationFactory(iron_created_at=LONG_AGO)
    client = Client(enforce_csrf_checks=True)
    body = encode_event(identification_event(identification))
    depth_while_processing: list[int] = []

    def failing(*args: Any, **kwargs: Any) -> Any:
        depth_while_processing.append(len(connection.atomic_blocks))
        raise RuntimeError("boom")

    with mock.patch("django_iron_kyc.services.deliveries.act_on_event", failing):
        response = post(client, body, signed_headers(body, webhook_id="wh-atomic"))

    assert processing.outcome(response) == Outcome.FAILED
    assert depth_while_processing == [1]  # our own transaction, not nested in the request's
    assert WebhookDelivery.objects.get(webhook_id="wh-atomic").outcome == Outcome.FAILED

    retry = post(client, body, signed_headers(body, webhook_id="wh-atomic"))

    assert processing.outcome(retry) == Outcome.PROCESSED
    assert iron_signals.names() == APPROVED


def test_same_webhook_id_inside_a_callers_transaction_leaves_it_usable(
    processing: Processing, identification: Identification
) -> None:
    body = encode_event(identification_event(identification))

    with transaction.atomic():
        first = receive_delivery(body=body, webhook_id="wh-atomic", signed_at=None).outcome
        second = receive_delivery(body=body, webhook_id="wh-atomic", signed_at=None).outcome
        # Would raise TransactionManagementError (or "current transaction is aborted")
        # had the repeat failed an INSERT in this transaction.
        assert WebhookDelivery.objects.count() == 1
        Identification.objects.filter(pk=identification.pk).update(url="https://x.invalid/")

    expected = ["received", "received"] if processing.deferred else ["processed", "duplicate"]
    assert [first, second] == expected
    identification.refresh_from_db()
    assert identification.url == "https://x.invalid/"


# --- Inline only ------------------------------------------------------------------------------


def test_webhook_refresh_is_enqueued_only_after_commit(
    webhook_client: Client, customer: Customer, django_capture_on_commit_callbacks: Any
) -> None:
    event = build_event("identification_status", customer.iron_id, uuid.uuid4(), "Approved")
    body = encode_event(event)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = post(webhook_client, body, signed_headers(body))

    assert response.json() == {"outcome": "unknown_object"}
    assert len(callbacks) == 1  # the refresh, waiting for the commit


def test_a_delivery_deleted_before_it_is_acted_on_is_acknowledged_as_unknown(
    send: Callable[..., Any],
    identification: Identification,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Its customer forgotten between the INSERT and the acting (forget_customer deletes the
    # deliveries that name the customer, those not acted on yet included).
    store = receive.store_delivery

    def store_then_forget(values: dict[str, Any]) -> Any:
        stored = store(values)
        WebhookDelivery.objects.filter(pk=stored.pk).delete()
        return stored

    monkeypatch.setattr(receive, "store_delivery", store_then_forget)

    response = send(identification_event(identification))

    assert (response.status_code, response.json()) == (200, {"outcome": "unknown_object"})
    assert not WebhookDelivery.objects.exists()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    identification.refresh_from_db()
    assert identification.status == Identification.Status.PENDING


# --- Deferred only: stored as it arrived, the drain asked for on commit -----------------------


@pytest.mark.usefixtures("deferred")
def test_deferred_delivery_is_stored_received_then_the_drain_acts_on_it_once(
    send: Callable[..., Any],
    identification: Identification,
    iron_signals: SignalRecorder,
    sent_drains: list[dict[str, Any]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    timestamp = "2026-03-01T12:00:00.123456+00:00"
    event = identification_event(identification, timestamp=timestamp)

    response = send(event, webhook_id="wh-deferred")

    assert response.status_code == 200
    assert response.json() == {"outcome": "received"}
    row = WebhookDelivery.objects.get()
    assert row.webhook_id == "wh-deferred"
    assert row.body == encode_event(event).decode()
    assert row.outcome == Outcome.RECEIVED
    # Stored as it arrived: what the body says is filled in when the drain acts on it.
    described = ("event_type", "event_timestamp", "customer_iron_id", "object_iron_id")
    described += ("object_status", "event_key")
    assert [getattr(row, name) for name in described] == ["", None, None, None, "", ""]
    assert (row.attempts, row.processed_at, row.error, row.traceback) == (0, None, "", "")
    assert countdowns(sent_drains) == [None]  # on commit, at once
    assert iron_signals.names() == []
    identification.refresh_from_db()
    assert identification.status == Identification.Status.PENDING

    with django_capture_on_commit_callbacks(execute=True):
        result = process_received_deliveries()
        assert iron_signals.names() == []  # not before the commit

    assert result.outcomes == Counter({"processed": 1})
    assert result.more is False
    assert iron_signals.names() == APPROVED
    assert {kwargs["source"] for _, kwargs in iron_signals} == {"webhook"}
    identification.refresh_from_db()
    assert identification.status == Identification.Status.APPROVED
    row.refresh_from_db()
    assert (row.outcome, row.attempts) == (Outcome.PROCESSED, 1)
    assert row.processed_at is not None
    assert row.event_type == "identification_status"
    assert row.event_timestamp == datetime.fromisoformat(timestamp)
    assert row.customer_iron_id == identification.customer.iron_id
    assert row.object_iron_id == identification.iron_id
    assert row.object_status == "Approved"
    assert row.event_key == f"identification_status:{identification.iron_id}:Approved:{timestamp}"
    assert process_received_deliveries().outcomes == Counter()


def test_deferred_delivery_asks_for_a_drain_only_once_it_is_committed(
    identification: Identification,
    sent_drains: list[dict[str, Any]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    body = encode_event(identification_event(identification))

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        receive_delivery(body=body, webhook_id="wh-commit", signed_at=None, deferred=True)
    assert sent_drains == []

    for callback in callbacks:
        callback()
    assert countdowns(sent_drains) == [None]


@pytest.mark.usefixtures("deferred", "sent_drains")
def test_deferred_repeat_before_the_drain_is_answered_received_and_stored_once(
    send: Callable[..., Any],
    drain: Callable[[], DeliverySweepResult],
    identification: Identification,
    iron_signals: SignalRecorder,
) -> None:
    """Repeats after the drain (same id, or the same event under another) are tested in both
    modes by test_webhook_same_event_sent_again_acts_once."""
    event = identification_event(identification)

    waiting = [send(event, webhook_id="wh-a").json() for _ in range(2)]

    assert waiting == [{"outcome": "received"}] * 2
    assert WebhookDelivery.objects.count() == 1
    assert drain().outcomes == Counter({"processed": 1})
    row = WebhookDelivery.objects.get()
    assert (row.outcome, row.attempts) == (Outcome.PROCESSED, 1)
    assert iron_signals.names() == APPROVED
