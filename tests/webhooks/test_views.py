"""The webhook view, over the real URL with CSRF checks on, under tests/settings.py's hostile
DRF defaults (IsAuthenticated, SessionAuthentication, an anonymous throttle of 1/day).

The helpers at the top are shared by the other ``test_webhook*`` modules; the autouse
fixture ``no_secrets_in_logs`` scans every record each webhook test logged (DEBUG and up)
for the secrets, the API key, every signature sent and every body sent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any
from unittest import mock

import pytest
import time_machine
from django.conf import settings
from django.db import connection
from django.test import Client
from django.urls import reverse

from django_iron_kyc import signing, tasks
from django_iron_kyc.models import Customer, Identification, WebhookDelivery
from django_iron_kyc.testing import build_event, encode_event, sign_webhook
from django_iron_kyc.testing.factories import CustomerFactory, IdentificationFactory
from django_iron_kyc.testing.pytest_plugin import SignalRecorder

Outcome = WebhookDelivery.Outcome

SECRET = settings.IRON_KYC_WEBHOOK_SECRET
OLD_SECRET = "old-secret-rotated-out"
NEW_SECRET = "new-secret-rotated-in"
WHSEC_RAW = b"\x01raw-key-bytes\xfe"
WHSEC_SECRET = "whsec_" + base64.b64encode(WHSEC_RAW).decode()
BROKEN_SECRET = "whsec_%%%not-base64"
# Everything that must never reach a log line.
NEVER_LOGGED = [
    SECRET,
    OLD_SECRET,
    NEW_SECRET,
    WHSEC_SECRET,
    BROKEN_SECRET,
    settings.IRON_KYC_API_KEY,
]

_sent: list[str] = []  # signatures and bodies sent by the current test


@pytest.fixture(autouse=True)
def no_secrets_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """After each test: no secret, API key, signature or whole body in any log record."""
    caplog.set_level(logging.DEBUG)
    _sent.clear()
    yield
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    logged = "\n".join(formatter.format(record) for record in caplog.records)
    for value in [*NEVER_LOGGED, *_sent]:
        assert value not in logged, f"{value[:20]!r}... was logged"


def webhook_url() -> str:
    return reverse("iron_kyc:webhook")


def signed_headers(
    body: bytes,
    *,
    secret: str | bytes = SECRET,
    timestamp: int | None = None,
    webhook_id: str | None = None,
) -> dict[str, str]:
    headers = sign_webhook(body, secret, timestamp=timestamp, webhook_id=webhook_id)
    _sent.append(headers[signing.SIGNATURE_HEADER].removeprefix("v1="))
    if len(body) > 40:
        _sent.append(body.decode("utf-8", errors="replace"))
    return headers


def post(client: Client, body: bytes, headers: dict[str, str], **extra: Any) -> Any:
    return client.post(
        webhook_url(), data=body, content_type="application/json", headers=headers, **extra
    )


def as_body(event: dict[str, Any] | bytes) -> bytes:
    return event if isinstance(event, bytes) else encode_event(event)


@pytest.fixture
def webhook_client() -> Client:
    return Client(enforce_csrf_checks=True)


@pytest.fixture
def send(webhook_client: Client, django_capture_on_commit_callbacks: Any) -> Callable[..., Any]:
    """Sign and post a delivery; run on-commit callbacks as a real commit would."""

    def send(
        event: dict[str, Any] | bytes,
        *,
        secret: str | bytes = SECRET,
        timestamp: int | None = None,
        webhook_id: str | None = None,
        **extra: Any,
    ) -> Any:
        body = as_body(event)
        headers = signed_headers(body, secret=secret, timestamp=timestamp, webhook_id=webhook_id)
        with django_capture_on_commit_callbacks(execute=True):
            return post(webhook_client, body, headers, **extra)

    return send


# Iron's state of the test objects dates from before any event the tests send.
LONG_AGO = datetime(2025, 1, 1, tzinfo=dt_timezone.utc)


@pytest.fixture
def customer(db: None) -> Customer:
    return CustomerFactory(iron_created_at=LONG_AGO)


@pytest.fixture
def identification(customer: Customer) -> Identification:
    return IdentificationFactory(customer=customer, iron_created_at=LONG_AGO)


def identification_event(
    identification: Identification,
    status: str = "Approved",
    *,
    timestamp: datetime | str | None = None,
    shape: str = "tagged",
) -> dict[str, Any]:
    return build_event(
        "identification_status",
        identification.customer.iron_id,  # type: ignore[arg-type]
        identification.iron_id,  # type: ignore[arg-type]
        status,
        timestamp=timestamp,
        shape=shape,
    )


# --- Getting through: hostile host defaults, CSRF, methods ------------------------------


def test_webhook_url_is_named_and_under_the_host_prefix() -> None:
    assert webhook_url() == "/iron/webhook/"


def test_webhook_accepts_signed_delivery_despite_hostile_drf_defaults(
    send: Callable[..., Any], identification: Identification
) -> None:
    response = send(identification_event(identification))

    assert response.status_code == 200
    assert response.json() == {"outcome": "processed"}
    assert response["Content-Type"] == "application/json"


def test_webhook_is_not_throttled_by_the_host_anonymous_rate(
    send: Callable[..., Any], identification: Identification
) -> None:
    statuses = [
        send(identification_event(identification, status)).status_code
        for status in ("Processed", "PendingReview", "Approved")
    ]
    assert statuses == [200, 200, 200]


def test_webhook_needs_no_csrf_token_even_with_a_logged_in_session(
    send: Callable[..., Any], webhook_client: Client, identification: Identification
) -> None:
    from tests.accounts.models import User

    webhook_client.force_login(User.objects.create(username="staff", is_staff=True))

    response = send(identification_event(identification))

    assert response.status_code == 200


def test_webhook_answers_json_whatever_accept_header_says(
    send: Callable[..., Any], identification: Identification
) -> None:
    response = send(identification_event(identification), HTTP_ACCEPT="text/html")

    assert response.status_code == 200
    assert response.json() == {"outcome": "processed"}


@pytest.mark.parametrize("method", ["get", "put", "patch", "delete", "options"])
def test_webhook_allows_post_only(webhook_client: Client, method: str, db: None) -> None:
    response = getattr(webhook_client, method)(webhook_url())

    assert response.status_code == 405
    assert "detail" in response.json()


# --- Authentication ----------------------------------------------------------------------


NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt_timezone.utc)


@pytest.mark.parametrize(
    ("offset", "expected"),
    [(0, 200), (-300, 200), (300, 200), (-301, 401), (301, 401)],
    ids=["now", "exactly-300s-old", "exactly-300s-ahead", "301s-old", "301s-ahead"],
)
def test_webhook_timestamp_tolerance_edges(
    send: Callable[..., Any], identification: Identification, offset: int, expected: int
) -> None:
    with time_machine.travel(NOW, tick=False):
        response = send(
            identification_event(identification), timestamp=int(NOW.timestamp()) + offset
        )

    assert response.status_code == expected
    if expected == 401:
        assert "tolerance" in response.json()["detail"]
        assert not WebhookDelivery.objects.exists()


@pytest.mark.parametrize(("offset", "expected"), [(10, 200), (11, 401), (-11, 401)])
def test_webhook_tolerance_follows_the_setting(
    send: Callable[..., Any],
    identification: Identification,
    settings: Any,
    offset: int,
    expected: int,
) -> None:
    settings.IRON_KYC_WEBHOOK_TOLERANCE = 10
    with time_machine.travel(NOW, tick=False):
        response = send(
            identification_event(identification), timestamp=int(NOW.timestamp()) + offset
        )

    assert response.status_code == expected


@pytest.mark.parametrize("order", ["right-first", "right-last", "right-in-uppercase"])
def test_webhook_accepts_one_matching_signature_among_several(
    webhook_client: Client, identification: Identification, order: str
) -> None:
    body = encode_event(identification_event(identification))
    headers = signed_headers(body)
    right = headers[signing.SIGNATURE_HEADER]
    wrong = signing.sign("another-secret", headers[signing.TIMESTAMP_HEADER], body)
    headers[signing.SIGNATURE_HEADER] = {
        "right-first": f"{right} {wrong}",
        "right-last": f"{wrong} v2=abc {right}",
        "right-in-uppercase": f"{wrong} v1={right.removeprefix('v1=').upper()}",
    }[order]

    assert post(webhook_client, body, headers).status_code == 200


def test_webhook_secret_rotation_accepts_every_listed_secret(
    send: Callable[..., Any], identification: Identification, settings: Any
) -> None:
    settings.IRON_KYC_WEBHOOK_SECRET = [NEW_SECRET, OLD_SECRET]

    old = send(identification_event(identification, "Processed"), secret=OLD_SECRET)
    new = send(identification_event(identification, "Approved"), secret=NEW_SECRET)
    assert (old.status_code, new.status_code) == (200, 200)
    refused = send(identification_event(identification, "Declined"), secret=SECRET)
    assert refused.status_code == 401
    assert refused.json() == {"detail": "signature does not match"}


def test_webhook_whsec_secret_is_base64_decoded(
    send: Callable[..., Any], identification: Identification, settings: Any
) -> None:
    settings.IRON_KYC_WEBHOOK_SECRET = WHSEC_SECRET

    as_text = send(identification_event(identification), secret=WHSEC_SECRET.encode())
    decoded = send(identification_event(identification), secret=WHSEC_RAW)

    assert as_text.status_code == 401
    assert decoded.status_code == 200


def test_webhook_signature_covers_timestamp_and_body(
    webhook_client: Client, identification: Identification
) -> None:
    body = encode_event(identification_event(identification))
    headers = signed_headers(body)
    # A body changed after signing, and a timestamp changed after signing.
    tampered = body.replace(b"Approved", b"Declined")
    moved = dict(headers)
    moved[signing.TIMESTAMP_HEADER] = str(int(headers[signing.TIMESTAMP_HEADER]) - 1)

    assert post(webhook_client, tampered, headers).status_code == 401
    assert post(webhook_client, body, moved).status_code == 401
    assert not WebhookDelivery.objects.exists()


def test_webhook_refuses_standard_webhooks_signature_form_with_reason(
    webhook_client: Client, identification: Identification
) -> None:
    body = encode_event(identification_event(identification))
    headers = signed_headers(body)
    digest = hmac.new(SECRET.encode(), b"x", hashlib.sha256).digest()
    headers[signing.SIGNATURE_HEADER] = "v1," + base64.b64encode(digest).decode()

    response = post(webhook_client, body, headers)

    assert response.status_code == 400
    assert "Standard Webhooks" in response.json()["detail"]


BAD_HEADERS: list[tuple[str, str, str | None]] = [
    # (name, header, value or None to drop it)
    ("no-timestamp", signing.TIMESTAMP_HEADER, None),
    ("empty-timestamp", signing.TIMESTAMP_HEADER, ""),
    ("word-timestamp", signing.TIMESTAMP_HEADER, "yesterday"),
    ("negative-timestamp", signing.TIMESTAMP_HEADER, "-1717171717"),
    ("float-timestamp", signing.TIMESTAMP_HEADER, "1717171717.5"),
    ("exponent-timestamp", signing.TIMESTAMP_HEADER, "1e9"),
    ("huge-timestamp", signing.TIMESTAMP_HEADER, "9" * 40),
    ("zero-timestamp", signing.TIMESTAMP_HEADER, "0"),
    ("superscript-timestamp", signing.TIMESTAMP_HEADER, "\u00b2"),
    ("arabic-digits-timestamp", signing.TIMESTAMP_HEADER, "\u0661\u0667\u0661\u0667"),
    ("iso-timestamp", signing.TIMESTAMP_HEADER, "2026-03-01T12:00:00Z"),
    ("no-signature", signing.SIGNATURE_HEADER, None),
    ("empty-signature", signing.SIGNATURE_HEADER, ""),
    ("bare-v1", signing.SIGNATURE_HEADER, "v1"),
    ("empty-v1", signing.SIGNATURE_HEADER, "v1="),
    ("v2-only", signing.SIGNATURE_HEADER, "v2=" + "a" * 64),
    ("not-hex", signing.SIGNATURE_HEADER, "v1=" + "z" * 64),
    ("short-hex", signing.SIGNATURE_HEADER, "v1=abcd"),
    ("non-ascii", signing.SIGNATURE_HEADER, "v1=\u00e9\u00e9"),
    ("comma-list", signing.SIGNATURE_HEADER, "v1=aa,v1=bb"),
    ("too-long", signing.SIGNATURE_HEADER, "v1=" + "a" * 5000),
    ("many", signing.SIGNATURE_HEADER, " ".join(["v1=" + "a" * 64] * 100)),
    ("id-too-long", signing.ID_HEADER, "x" * 300),
    ("id-control-chars", signing.ID_HEADER, "abc\x00def"),
    ("id-empty", signing.ID_HEADER, "   "),
    ("id-non-ascii", signing.ID_HEADER, "id-\u00e9"),
]


@pytest.mark.parametrize(
    ("header", "value"),
    [(header, value) for _, header, value in BAD_HEADERS],
    ids=[name for name, _, _ in BAD_HEADERS],
)
def test_webhook_refuses_bad_headers_with_4xx_and_a_reason(
    webhook_client: Client, identification: Identification, header: str, value: str | None
) -> None:
    body = encode_event(identification_event(identification))
    headers = signed_headers(body)
    if value is None:
        del headers[header]
    else:
        headers[header] = value

    response = post(webhook_client, body, headers)

    assert response.status_code in (400, 401)
    assert response.json()["detail"]
    assert not WebhookDelivery.objects.exists()


def test_webhook_refusal_is_logged_with_reason_address_and_id_only(
    webhook_client: Client, identification: Identification, caplog: pytest.LogCaptureFixture
) -> None:
    body = encode_event(identification_event(identification))
    headers = signed_headers(body, secret="not-the-secret", webhook_id="wh-refused-1")

    response = post(webhook_client, body, headers, REMOTE_ADDR="203.0.113.9")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == signing.SIGNATURE_HEADER
    (record,) = [r for r in caplog.records if r.name == "django_iron_kyc.webhooks.views"]
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert "signature does not match" in message
    assert "203.0.113.9" in message
    assert "wh-refused-1" in message
    assert str(identification.iron_id) not in message  # nothing from the body
    assert not WebhookDelivery.objects.exists()


# --- Size and configuration ---------------------------------------------------------------


def test_webhook_refuses_body_over_the_size_cap_with_413(
    send: Callable[..., Any], identification: Identification, settings: Any
) -> None:
    settings.IRON_KYC_WEBHOOK_MAX_BODY_SIZE = 300
    event = identification_event(identification)
    event["padding"] = "x" * 300

    response = send(event)

    assert response.status_code == 413
    assert "300 bytes" in response.json()["detail"]
    assert not WebhookDelivery.objects.exists()


def test_webhook_body_exactly_at_the_cap_is_accepted(
    send: Callable[..., Any], identification: Identification, settings: Any
) -> None:
    event = identification_event(identification)
    event["padding"] = ""
    settings.IRON_KYC_WEBHOOK_MAX_BODY_SIZE = len(encode_event(event)) + 10
    event["padding"] = "x" * 10

    assert send(event).status_code == 200


def test_webhook_over_djangos_upload_limit_is_413_not_500(
    send: Callable[..., Any], identification: Identification, settings: Any
) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    settings.IRON_KYC_WEBHOOK_MAX_BODY_SIZE = 10_000

    response = send(identification_event(identification))

    assert response.status_code == 413


@pytest.mark.parametrize(
    ("content_length", "expected"),
    [("abc", 400), ("-5", 400), ("1.5", 400), ("\u00b2", 400), ("9" * 40, 413)],
)
def test_webhook_refuses_malformed_content_length(
    send: Callable[..., Any], identification: Identification, content_length: str, expected: int
) -> None:
    response = send(identification_event(identification), CONTENT_LENGTH=content_length)

    assert response.status_code == expected


@pytest.mark.parametrize("configured", [None, "", [], [BROKEN_SECRET]])
def test_webhook_without_a_usable_secret_answers_503_and_stores_nothing(
    send: Callable[..., Any], identification: Identification, settings: Any, configured: Any
) -> None:
    settings.IRON_KYC_WEBHOOK_SECRET = configured

    response = send(identification_event(identification))

    assert response.status_code == 503
    assert response.json() == {"detail": "webhook receiver is not configured"}
    assert not WebhookDelivery.objects.exists()


def test_webhook_one_broken_secret_in_a_rotation_list_does_not_block_the_others(
    send: Callable[..., Any], identification: Identification, settings: Any
) -> None:
    settings.IRON_KYC_WEBHOOK_SECRET = [BROKEN_SECRET, SECRET]

    assert send(identification_event(identification)).status_code == 200


# --- Processing ---------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["tagged", "flat"])
def test_webhook_identification_status_is_applied_through_services(
    send: Callable[..., Any],
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

    assert response.status_code == 200
    identification.refresh_from_db()
    assert identification.status == Identification.Status.APPROVED
    assert identification.iron_updated_at == datetime.fromisoformat(timestamp)
    assert iron_signals.names() == ["identification_status_changed", "identification_approved"]
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
    send: Callable[..., Any], identification: Identification
) -> None:
    event = identification_event(identification, shape="flat")
    event["data"]["message"] = {"SomeFutureTag": event["data"]["message"]}

    assert send(event).json() == {"outcome": "processed"}
    identification.refresh_from_db()
    assert identification.status == "Approved"


@pytest.mark.parametrize("shape", ["tagged", "flat"])
def test_webhook_customer_status_is_applied_through_services(
    send: Callable[..., Any],
    customer: Customer,
    iron_signals: SignalRecorder,
    shape: str,
) -> None:
    event = build_event(
        "customer_status", customer.iron_id, customer.iron_id, "Active", shape=shape
    )

    response = send(event)

    assert response.json() == {"outcome": "processed"}
    customer.refresh_from_db()
    assert customer.status == Customer.Status.ACTIVE
    assert iron_signals.names() == ["customer_status_changed"]
    assert iron_signals[0][1]["previous_status"] == "IdentificationRequired"
    assert iron_signals[0][1]["source"] == "webhook"


def test_webhook_same_webhook_id_twice_acts_once(
    send: Callable[..., Any],
    identification: Identification,
    iron_signals: SignalRecorder,
) -> None:
    event = identification_event(identification)

    first = send(event, webhook_id="wh-same")
    second = send(event, webhook_id="wh-same")

    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json() == {"outcome": "duplicate"}
    row = WebhookDelivery.objects.get()
    assert row.outcome == Outcome.PROCESSED
    assert row.attempts == 1
    assert iron_signals.names() == ["identification_status_changed", "identification_approved"]


def test_webhook_same_event_under_a_new_webhook_id_acts_once(
    send: Callable[..., Any],
    identification: Identification,
    iron_signals: SignalRecorder,
) -> None:
    event = identification_event(identification)

    send(event, webhook_id="wh-a")
    second = send(event, webhook_id="wh-b")

    assert second.status_code == 200
    assert second.json() == {"outcome": "duplicate"}
    outcomes = dict(WebhookDelivery.objects.values_list("webhook_id", "outcome"))
    assert outcomes == {"wh-a": Outcome.PROCESSED, "wh-b": Outcome.DUPLICATE}
    assert iron_signals.names() == ["identification_status_changed", "identification_approved"]


def test_webhook_without_webhook_id_is_stored_and_deduplicated_by_event(
    webhook_client: Client, identification: Identification
) -> None:
    body = encode_event(identification_event(identification))
    responses = []
    for _ in range(2):
        headers = signed_headers(body)
        del headers[signing.ID_HEADER]
        responses.append(post(webhook_client, body, headers).json())

    assert responses == [{"outcome": "processed"}, {"outcome": "duplicate"}]
    assert list(WebhookDelivery.objects.values_list("webhook_id", flat=True)) == [None, None]


def test_webhook_older_event_changes_nothing(
    send: Callable[..., Any],
    identification: Identification,
    iron_signals: SignalRecorder,
) -> None:
    newer = NOW
    older = NOW - timedelta(minutes=1)
    send(identification_event(identification, "Approved", timestamp=newer))
    iron_signals.clear()

    response = send(identification_event(identification, "Processed", timestamp=older))

    assert response.status_code == 200
    assert response.json() == {"outcome": "stale"}
    identification.refresh_from_db()
    assert identification.status == "Approved"
    assert identification.iron_updated_at == newer
    assert iron_signals.names() == []


def test_webhook_out_of_order_events_end_in_the_newest_state(
    send: Callable[..., Any], identification: Identification
) -> None:
    send(identification_event(identification, "Approved", timestamp=NOW))
    send(identification_event(identification, "PendingReview", timestamp=NOW - timedelta(2)))
    send(identification_event(identification, "Processed", timestamp=NOW - timedelta(3)))

    identification.refresh_from_db()
    assert identification.status == "Approved"
    outcomes = list(WebhookDelivery.objects.order_by("pk").values_list("outcome", flat=True))
    assert outcomes == [Outcome.PROCESSED, Outcome.STALE, Outcome.STALE]


def test_webhook_unknown_identification_of_known_customer_refreshes_the_customer(
    send: Callable[..., Any], customer: Customer
) -> None:
    event = build_event("identification_status", customer.iron_id, uuid.uuid4(), "Approved")

    with mock.patch.object(tasks.refresh_customer, "apply_async") as apply_async:
        response = send(event)

    assert response.json() == {"outcome": "unknown_object"}
    apply_async.assert_called_once_with((customer.pk,), {})
    assert WebhookDelivery.objects.get().outcome == Outcome.UNKNOWN_OBJECT


def test_webhook_refresh_is_enqueued_only_after_commit(
    webhook_client: Client, customer: Customer, django_capture_on_commit_callbacks: Any
) -> None:
    event = build_event("identification_status", customer.iron_id, uuid.uuid4(), "Approved")
    body = encode_event(event)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = post(webhook_client, body, signed_headers(body))

    assert response.json() == {"outcome": "unknown_object"}
    assert len(callbacks) == 1  # the refresh, waiting for the commit


@pytest.mark.parametrize("event_type", ["identification_status", "customer_status"])
def test_webhook_unknown_customer_is_stored_and_acknowledged(
    send: Callable[..., Any],
    db: None,
    event_type: str,
    django_capture_on_commit_callbacks: Any,
) -> None:
    event = build_event(event_type, uuid.uuid4(), uuid.uuid4(), "Approved")

    response = send(event)

    assert response.status_code == 200
    assert response.json() == {"outcome": "unknown_object"}
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
    send: Callable[..., Any], db: None, event: dict[str, Any]
) -> None:
    response = send(event)

    assert response.status_code == 200
    assert response.json() == {"outcome": "ignored"}
    row = WebhookDelivery.objects.get()
    assert row.outcome == Outcome.IGNORED
    assert row.event_type == event["type"]
    assert row.event_key == ""


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
def test_webhook_signed_body_not_of_irons_shape_is_400_and_stored_invalid(
    send: Callable[..., Any], db: None, body: bytes, settings: Any
) -> None:
    settings.IRON_KYC_WEBHOOK_MAX_BODY_SIZE = 200_000

    response = send(body)

    assert response.status_code == 400
    assert response.json()["detail"]
    row = WebhookDelivery.objects.get()
    assert row.outcome == Outcome.INVALID
    assert row.error == response.json()["detail"]
    assert row.processed_at is not None


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
    send: Callable[..., Any], identification: Identification, path: tuple[str, ...], value: Any
) -> None:
    response = send(_handled_event_with(identification, path, value))

    assert response.status_code == 400
    assert WebhookDelivery.objects.get().outcome == Outcome.INVALID
    identification.refresh_from_db()
    assert identification.status == "Pending"


def test_webhook_tagged_message_with_two_tags_is_invalid(
    send: Callable[..., Any], identification: Identification
) -> None:
    event = identification_event(identification, shape="flat")
    message = event["data"]["message"]
    event["data"]["message"] = {"IdentificationStatus": message, "Other": message}

    assert send(event).status_code == 400


def test_webhook_invalid_delivery_sent_again_is_refused_again_and_stored_once(
    send: Callable[..., Any], db: None
) -> None:
    first = send(b"[]", webhook_id="wh-invalid")
    second = send(b"[]", webhook_id="wh-invalid")

    assert (first.status_code, second.status_code) == (400, 400)
    assert second.json() == first.json()
    assert WebhookDelivery.objects.count() == 1


def test_webhook_unknown_status_is_stored_as_sent(
    send: Callable[..., Any], identification: Identification
) -> None:
    response = send(identification_event(identification, "SomethingNew"))

    assert response.json() == {"outcome": "processed"}
    identification.refresh_from_db()
    assert identification.status == "SomethingNew"


# --- Failures -----------------------------------------------------------------------------


def _boom(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("database on fire")


def test_webhook_processing_error_answers_500_and_keeps_the_traceback(
    send: Callable[..., Any],
    identification: Identification,
    iron_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with mock.patch("django_iron_kyc.services.deliveries.act_on_event", _boom):
        response = send(identification_event(identification), webhook_id="wh-fail")

    assert response.status_code == 500
    assert response.json() == {"detail": "processing failed; please retry"}
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
    identification: Identification,
    iron_signals: SignalRecorder,
) -> None:
    event = identification_event(identification)
    with mock.patch("django_iron_kyc.services.deliveries.act_on_event", _boom):
        assert send(event, webhook_id="wh-retry").status_code == 500

    retry = send(event, webhook_id="wh-retry")

    assert retry.status_code == 200
    assert retry.json() == {"outcome": "processed"}
    row = WebhookDelivery.objects.get()
    assert row.outcome == Outcome.PROCESSED
    assert row.attempts == 2
    assert row.error == ""
    assert row.traceback == ""
    identification.refresh_from_db()
    assert identification.status == "Approved"
    assert iron_signals.names() == ["identification_status_changed", "identification_approved"]


@pytest.mark.django_db(transaction=True)
def test_webhook_survives_atomic_requests(
    monkeypatch: pytest.MonkeyPatch, iron_signals: SignalRecorder
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

    assert response.status_code == 500
    assert depth_while_processing == [1]  # our own transaction, not nested in the request's
    assert WebhookDelivery.objects.get(webhook_id="wh-atomic").outcome == Outcome.FAILED

    retry = post(client, body, signed_headers(body, webhook_id="wh-atomic"))

    assert retry.json() == {"outcome": "processed"}
    assert iron_signals.names() == ["identification_status_changed", "identification_approved"]


def test_webhook_never_logs_secrets_signatures_or_bodies(
    send: Callable[..., Any],
    webhook_client: Client,
    identification: Identification,
    caplog: pytest.LogCaptureFixture,
    settings: Any,
) -> None:
    """A tour of every path that logs, at DEBUG; ``no_secrets_in_logs`` checks the records."""
    settings.IRON_KYC_WEBHOOK_SECRET = [SECRET, OLD_SECRET, WHSEC_SECRET]
    send(identification_event(identification, "Processed"))
    send(identification_event(identification, "Processed"))  # duplicate event
    send(identification_event(identification, "Approved", timestamp=NOW - timedelta(days=9)))
    send(build_event("transaction", uuid.uuid4(), uuid.uuid4(), None))
    send(b'{"not": "iron"}')
    send(identification_event(identification), secret="wrong-secret")
    with mock.patch("django_iron_kyc.services.deliveries.act_on_event", _boom):
        send(identification_event(identification, "Declined"))
    settings.IRON_KYC_WEBHOOK_SECRET = [BROKEN_SECRET, ""]
    send(identification_event(identification))

    assert len(caplog.records) >= 8
    levels = {record.levelname for record in caplog.records}
    assert {"INFO", "WARNING", "ERROR"} <= levels


def test_log_scan_would_notice_a_logged_secret(caplog: pytest.LogCaptureFixture) -> None:
    """The scanning fixture is not vacuous: it sees what this test logs."""
    logging.getLogger("django_iron_kyc.webhooks").debug("key=%s", "abc")
    formatter = logging.Formatter("%(message)s")
    assert "key=abc" in "\n".join(formatter.format(r) for r in caplog.records)


# A header Iron would never send is the sender's fault (400); a well-formed signature that is
# stale or does not match is refused as unauthenticated (401).
MISMATCHED_NOT_MALFORMED = {"not-hex", "short-hex", "comma-list", "zero-timestamp"}


@pytest.mark.parametrize(
    ("header", "value", "expected"),
    [
        (header, value, 401 if name in MISMATCHED_NOT_MALFORMED else 400)
        for name, header, value in BAD_HEADERS
    ],
    ids=[name for name, _, _ in BAD_HEADERS],
)
def test_webhook_answers_400_for_malformed_headers_and_401_for_a_bad_signature(
    webhook_client: Client,
    identification: Identification,
    header: str,
    value: str | None,
    expected: int,
) -> None:
    body = encode_event(identification_event(identification))
    headers = signed_headers(body)
    if value is None:
        del headers[header]
    else:
        headers[header] = value

    assert post(webhook_client, body, headers).status_code == expected


@pytest.mark.parametrize(("length", "expected"), [(255, 200), (256, 400)])
def test_webhook_id_may_be_as_long_as_its_column(
    webhook_client: Client, identification: Identification, length: int, expected: int
) -> None:
    body = encode_event(identification_event(identification))

    response = post(webhook_client, body, signed_headers(body, webhook_id="w" * length))

    assert response.status_code == expected
    assert WebhookDelivery.objects.filter(webhook_id="w" * length).exists() is (expected == 200)
