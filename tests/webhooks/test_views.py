"""The webhook view (webhooks.views): getting through a hostile host project, verifying the
signature, refusing what is malformed, too big or unconfigured, answering JSON, and the
processing mode chosen per URL.

The view is reached over its real URL with CSRF checks on, under tests/settings.py's hostile
DRF defaults (IsAuthenticated, SessionAuthentication, an anonymous throttle of 1/day).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
import time_machine
from django.test import Client
from django.urls import include, path

from django_iron_kyc import signing
from django_iron_kyc.models import Identification, WebhookDelivery
from django_iron_kyc.testing import SignalRecorder, build_event, encode_event
from django_iron_kyc.webhooks import IronWebhookView
from tests.accounts.models import User
from tests.support import (
    BROKEN_SECRET,
    NEW_SECRET,
    NOW,
    OLD_SECRET,
    SECRET,
    WHSEC_RAW,
    WHSEC_SECRET,
    identification_event,
    post,
    signed_headers,
    webhook_url,
)
from tests.webhooks.support import APPROVED, countdowns

Outcome = WebhookDelivery.Outcome

# For the tests marked @pytest.mark.urls(__name__): one URL per processing mode.
urlpatterns = [
    path("deferred/", IronWebhookView.as_view(processing="deferred")),
    path("inline/", IronWebhookView.as_view(processing="inline")),
    path("setting/", IronWebhookView.as_view()),
    path("iron/", include("django_iron_kyc.urls")),
]


# --- Getting through: hostile host defaults, CSRF, methods ------------------------------------


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


# --- Authentication ---------------------------------------------------------------------------


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
def test_webhook_refuses_bad_headers_with_400_if_malformed_401_if_not_matching_and_a_reason(
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

    response = post(webhook_client, body, headers)

    assert response.status_code == expected
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


@pytest.mark.parametrize(("length", "expected"), [(255, 200), (256, 400)])
def test_webhook_id_may_be_as_long_as_its_column(
    webhook_client: Client, identification: Identification, length: int, expected: int
) -> None:
    body = encode_event(identification_event(identification))

    response = post(webhook_client, body, signed_headers(body, webhook_id="w" * length))

    assert response.status_code == expected
    assert WebhookDelivery.objects.filter(webhook_id="w" * length).exists() is (expected == 200)


# --- Size and configuration -------------------------------------------------------------------


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


# --- Processing per URL -----------------------------------------------------------------------


@pytest.mark.urls(__name__)
@pytest.mark.parametrize(
    ("setting", "url", "outcome"),
    [
        ("inline", "/deferred/", "received"),
        ("deferred", "/inline/", "processed"),
        ("inline", "/setting/", "processed"),
        ("deferred", "/setting/", "received"),
        ("deferred", "/iron/webhook/", "received"),
    ],
)
def test_as_view_processing_overrides_the_setting(
    send: Callable[..., Any],
    identification: Identification,
    iron_signals: SignalRecorder,
    sent_drains: list[dict[str, Any]],
    settings: Any,
    setting: str,
    url: str,
    outcome: str,
) -> None:
    settings.IRON_KYC_WEBHOOK_PROCESSING = setting

    response = send(identification_event(identification), url=url)

    assert response.status_code == 200
    assert response.json() == {"outcome": outcome}
    assert WebhookDelivery.objects.get().outcome == outcome
    identification.refresh_from_db()
    if outcome == "processed":
        assert identification.status == Identification.Status.APPROVED
        assert iron_signals.names() == APPROVED
        assert sent_drains == []
    else:
        assert identification.status == Identification.Status.PENDING
        assert iron_signals.names() == []
        assert countdowns(sent_drains) == [None]


@pytest.mark.parametrize("processing", ["bogus", "Deferred", "", True, 0])
def test_as_view_refuses_an_unknown_processing_mode(processing: Any) -> None:
    with pytest.raises(ValueError, match="processing must be 'inline', 'deferred' or None"):
        IronWebhookView.as_view(processing=processing)


# --- Logs -------------------------------------------------------------------------------------


def _boom(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("database on fire")


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
