"""The exception family: what Django already knows how to handle, and what survives pickling."""

from __future__ import annotations

import pickle

import pytest
from django.core.exceptions import ImproperlyConfigured, SuspiciousOperation

from django_iron_kyc import exceptions as exc


@pytest.mark.parametrize(
    "cls",
    [
        exc.IronConfigurationError,
        exc.IronAPIError,
        exc.IronTransientError,
        exc.IdentificationInFlightError,
        exc.IdentificationStateError,
        exc.SandboxNotAllowedError,
        exc.WebhookVerificationError,
    ],
)
def test_everything_derives_from_iron_kyc_error(cls):
    assert issubclass(cls, exc.IronKycError)
    assert cls.__name__.endswith("Error")


def test_django_knows_configuration_and_signature_errors():
    assert issubclass(exc.IronConfigurationError, ImproperlyConfigured)
    assert issubclass(exc.WebhookVerificationError, SuspiciousOperation)
    assert issubclass(exc.IronTransientError, exc.IronAPIError)


def test_api_error_message_names_request_status_code_and_request_id():
    error = exc.IronAPIError(
        "bad type", status=400, code="invalid", request_id="r-1", method="POST", path="/api/x"
    )
    assert str(error) == "POST /api/x: 400 bad type (code=invalid, request_id=r-1)"
    assert repr(error) == (
        "IronAPIError(status=400, code='invalid', message='bad type', request_id='r-1')"
    )
    assert error.args == (str(error),)


def test_api_error_without_response_says_so():
    error = exc.IronTransientError("ConnectTimeout talking to Iron")
    assert str(error) == "Iron API: no response ConnectTimeout talking to Iron"
    assert error.retry_after is None
    assert error.status is None


@pytest.mark.parametrize(
    "error",
    [
        exc.IronAPIError("nope", status=404, method="GET", path="/api/customers/x", body="nope"),
        exc.IronTransientError(
            "busy", status=429, retry_after=30.0, code="rate", request_id="t", body={"a": 1}
        ),
    ],
)
def test_api_errors_survive_pickling(error):
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert copy.__dict__ == error.__dict__
    assert str(copy) == str(error)
    assert copy.args == error.args


@pytest.mark.parametrize(
    ("status", "message", "code", "pending", "idempotency"),
    [
        (409, "Has Pending Identification", None, True, False),
        (409, "customer has pending identification", None, True, False),
        (409, "conflict", "HAS_PENDING_IDENTIFICATION", True, False),
        (409, "Idempotency key reused with a different body", None, False, True),
        (400, "Has Pending Identification", None, False, False),
    ],
)
def test_conflict_kinds(status, message, code, pending, idempotency):
    error = exc.IronAPIError(message, status=status, code=code)
    assert error.is_pending_identification_conflict is pending
    assert error.is_idempotency_conflict is idempotency


def test_in_flight_error_carries_the_identification():
    marker = object()
    error = exc.IdentificationInFlightError("one at a time", identification=marker)
    assert error.identification is marker
    assert str(error) == "one at a time"
