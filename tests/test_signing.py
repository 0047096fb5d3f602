"""Iron's webhook signature scheme (IRON_API.md Part A item 6 and the §5.3 test vector)."""

from __future__ import annotations

import base64
import contextlib

import pytest
from django.core.exceptions import SuspiciousOperation
from hypothesis import given, settings
from hypothesis import strategies as st

from django_iron_kyc import signing
from django_iron_kyc.exceptions import IronKycError, WebhookVerificationError
from django_iron_kyc.signing import (
    MalformedSignatureError,
    SignatureError,
    compute_signature,
    sign,
    verify,
)

SECRET = "test_secret"
TIMESTAMP = "1717171717"
BODY = (
    b'{"type":"identification_status","timestamp":"2025-06-02T14:59:26.769468+00:00",'
    b'"data":{"customer_id":"2ff3e394-978b-4489-8795-0a4e769a04c6","message":'
    b'{"IdentificationStatus":{"id":"c3d4e5f6-a7b8-9012-cdef-345678901234",'
    b'"status":"Approved"}}}}'
)
VECTOR = "a61a5512b6d992f6c47df3f1b3a92509d6cb2341c81cc76215cc4b3194394c3d"
NOW = 1717171717.0


def check(
    signature: str | None,
    *,
    body: bytes = BODY,
    timestamp: str | None = TIMESTAMP,
    secrets: list[str | bytes] | None = None,
    tolerance: int = 300,
    now: float = NOW,
) -> int:
    return verify(
        body=body,
        timestamp_header=timestamp,
        signature_header=signature,
        secrets=[SECRET] if secrets is None else secrets,
        tolerance=tolerance,
        now=now,
    )


def test_test_vector_from_iron_api_md():
    assert compute_signature(SECRET, TIMESTAMP, BODY) == VECTOR
    assert sign(SECRET, int(TIMESTAMP), BODY.decode()) == f"v1={VECTOR}"
    assert check(f"v1={VECTOR}") == int(TIMESTAMP)


def test_signature_is_compared_case_insensitively_as_hex():
    assert check(f"v1={VECTOR.upper()}") == int(TIMESTAMP)


def test_header_names_are_irons():
    assert signing.SIGNATURE_HEADER == "webhook-signature"
    assert signing.TIMESTAMP_HEADER == "webhook-timestamp"
    assert signing.ID_HEADER == "webhook-id"


def test_whsec_secret_is_base64_decoded():
    raw = b"\x00\x01binary-key\xff"
    secret = "whsec_" + base64.b64encode(raw).decode()
    header = sign(raw, TIMESTAMP, BODY)
    assert signing.secret_bytes(secret) == raw
    assert check(header, secrets=[secret]) == int(TIMESTAMP)
    # The same text used as UTF-8 bytes would be another key.
    assert sign(secret.encode(), TIMESTAMP, BODY) != header


@pytest.mark.parametrize("secret", ["whsec_***", "whsec_"])
def test_whsec_secret_without_a_base64_key_is_a_value_error(secret):
    """Not even an empty key: anyone could sign with it."""
    with pytest.raises(ValueError, match="base64"):
        signing.secret_bytes(secret)


def test_one_matching_signature_among_several_is_enough():
    header = f"v1={'0' * 64} v1={VECTOR} v2=whatever"
    assert check(header) == int(TIMESTAMP)


def test_rotation_any_configured_secret_may_match():
    assert check(f"v1={VECTOR}", secrets=["new-secret", SECRET]) == int(TIMESTAMP)
    with pytest.raises(SignatureError, match="does not match"):
        check(f"v1={VECTOR}", secrets=["new-secret", "older-secret"])


@pytest.mark.parametrize("offset", [300, -300, 0, 299.5])
def test_timestamp_inside_tolerance_in_both_directions(offset):
    assert check(f"v1={VECTOR}", now=NOW + offset) == int(TIMESTAMP)


@pytest.mark.parametrize("offset", [301, -301, 86400, -86400])
def test_timestamp_outside_tolerance_in_both_directions(offset):
    with pytest.raises(SignatureError, match="tolerance"):
        check(f"v1={VECTOR}", now=NOW + offset)


def test_tolerance_is_a_parameter():
    with pytest.raises(SignatureError, match="tolerance"):
        check(f"v1={VECTOR}", now=NOW + 61, tolerance=60)


def test_standard_webhooks_form_is_refused_with_a_clear_reason():
    standard = "v1," + base64.b64encode(bytes.fromhex(VECTOR)).decode()
    with pytest.raises(SignatureError) as info:
        check(standard)
    assert "Standard Webhooks" in info.value.reason
    assert "v1=<hex>" in info.value.reason


def test_tampered_body_does_not_match():
    with pytest.raises(SignatureError, match="does not match"):
        check(f"v1={VECTOR}", body=BODY.replace(b"Approved", b"Declined"))


def test_timestamp_is_part_of_the_signed_message():
    with pytest.raises(SignatureError, match="does not match"):
        check(f"v1={VECTOR}", timestamp="1717171718")


@pytest.mark.parametrize(
    ("signature", "timestamp", "reason"),
    [
        (None, TIMESTAMP, "missing webhook-signature"),
        ("   ", TIMESTAMP, "missing webhook-signature"),
        (f"v1={VECTOR}", None, "missing webhook-timestamp"),
        (f"v1={VECTOR}", "", "missing webhook-timestamp"),
        (f"v1={VECTOR}", "2024-06-01T00:00:00Z", "not a Unix time"),
        (f"v1={VECTOR}", "-1717171717", "not a Unix time"),
        (f"v1={VECTOR}", "1" * 13, "not a Unix time"),
        (f"v1={VECTOR}", "\u0661\u0667" * 5, "not a Unix time"),
        (VECTOR, TIMESTAMP, "no 'v1=<hex>'"),
        (f"v0={VECTOR}", TIMESTAMP, "no 'v1=<hex>'"),
        ("v1=", TIMESTAMP, "no 'v1=<hex>'"),
        ("v1=" + "a" * 5000, TIMESTAMP, "too long"),
        ("v1=nothex", TIMESTAMP, "does not match"),
        ("v1=ünïcode", TIMESTAMP, "no 'v1=<hex>'"),
    ],
)
def test_malformed_headers_are_refused_with_a_reason(signature, timestamp, reason):
    with pytest.raises(SignatureError, match=reason.replace("(", r"\(")) as info:
        check(signature, timestamp=timestamp)
    assert SECRET not in info.value.reason
    # A header Iron would never send (the webhook answers 400), or a signature that does
    # not match (401).
    assert isinstance(info.value, MalformedSignatureError) is (reason != "does not match")


def test_no_secret_configured_refuses_everything():
    with pytest.raises(SignatureError, match="no webhook secret"):
        check(f"v1={VECTOR}", secrets=[])


def test_signature_error_is_a_value_error_with_a_reason():
    error = SignatureError("bad")
    assert isinstance(error, ValueError)
    assert error.reason == str(error) == "bad"


def test_signature_errors_belong_to_the_apps_exception_family():
    with pytest.raises(WebhookVerificationError) as info:
        check(None)
    assert isinstance(info.value, MalformedSignatureError)
    assert isinstance(info.value, IronKycError)
    assert isinstance(info.value, SuspiciousOperation)  # Django answers 400 if one escapes
    assert issubclass(SignatureError, WebhookVerificationError)


@settings(max_examples=300, deadline=None)
@given(
    body=st.binary(max_size=256),
    timestamp=st.one_of(st.none(), st.text(max_size=20), st.integers(0, 10**13).map(str)),
    signature=st.one_of(
        st.none(),
        st.text(max_size=200),
        st.lists(st.text(alphabet="v1=,abcdef0123456789 \t", max_size=70), max_size=5).map(
            " ".join
        ),
    ),
)
def test_garbage_headers_only_ever_raise_signature_error(body, timestamp, signature):
    with contextlib.suppress(SignatureError):
        check(signature, body=body, timestamp=timestamp, now=NOW)
