"""IronClient: the one HTTP seam to Iron (Part A items 1, 2 and 8 of IRON_API.md).

Most tests mock the network with ``responses``. What ``responses`` cannot show (real
timeouts, dropped connections, urllib3's backoff sleeps) runs against a tiny scripted HTTP
server on 127.0.0.1.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import http.client
import json
import logging
import pickle
import shutil
import socket
import ssl
import subprocess
import threading
import types
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import responses
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from responses import matchers
from responses.registries import OrderedRegistry

from django_iron_kyc import __version__
from django_iron_kyc.client import ClientOptions, IronClient
from django_iron_kyc.exceptions import (
    IronAPIError,
    IronConfigurationError,
    IronKycError,
    IronTransientError,
)
from django_iron_kyc.validators import is_loopback_host

BASE = "http://127.0.0.1:9"
API_KEY = "test-api-key-d0-not-log"  # tests/settings.py
CUSTOMER_ID = "2ff3e394-978b-4489-8795-0a4e769a04c6"
IDENT_ID = "c3d4e5f6-a7b8-9012-cdef-345678901234"
CUSTOMERS = f"{BASE}/api/customers"
CREATE_IDENT = f"{BASE}/api/customers/{CUSTOMER_ID}/identifications/v2"
LIST_IDENTS = f"{BASE}/api/customers/{CUSTOMER_ID}/identifications"
SANDBOX = f"{BASE}/api/sandbox/identification/{IDENT_ID}"


def identification(status: str = "Pending", **extra: Any) -> dict[str, Any]:
    return {
        "id": IDENT_ID,
        "customer_id": CUSTOMER_ID,
        "status": status,
        "url": "https://verify.example/link",
        "created_at": "2025-06-02T14:59:26Z",
        "updated_at": "2025-06-02T14:59:26Z",
        **extra,
    }


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(registry=OrderedRegistry) as rsps:
        yield rsps


def client(**kwargs: Any) -> IronClient:
    kwargs.setdefault("backoff_factor", 0)
    return IronClient(**kwargs)


# --- what every request carries ---------------------------------------------------------


def test_every_request_carries_api_key_user_agent_and_accept(mocked):
    mocked.get(f"{CUSTOMERS}/{CUSTOMER_ID}", json={"id": CUSTOMER_ID})

    assert client().get_customer(CUSTOMER_ID) == {"id": CUSTOMER_ID}

    headers = mocked.calls[0].request.headers
    assert headers["X-API-Key"] == API_KEY
    assert headers["User-Agent"].startswith(f"django-iron-kyc/{__version__} ")
    assert headers["Accept"].startswith("application/json")
    assert "X-API-Version" not in headers
    assert "X-SUB-PARTNER-ID" not in headers
    assert "IDEMPOTENCY-KEY" not in headers


@override_settings(IRON_KYC_API_VERSION="2025-03-13", IRON_KYC_SUB_PARTNER_ID=IDENT_ID)
def test_api_version_and_sub_partner_headers_come_from_settings(mocked):
    mocked.get(f"{CUSTOMERS}/{CUSTOMER_ID}", json={"id": CUSTOMER_ID})

    client().get_customer(CUSTOMER_ID)

    headers = mocked.calls[0].request.headers
    assert headers["X-API-Version"] == "2025-03-13"
    assert headers["X-SUB-PARTNER-ID"] == IDENT_ID


@override_settings(IRON_KYC_API_KEY="other-key", IRON_KYC_BASE_URL="https://api.iron.xyz/")
def test_client_reads_settings_when_made():
    with responses.RequestsMock() as rsps:
        rsps.get(f"https://api.iron.xyz/api/customers/{CUSTOMER_ID}", json={})
        made = client()
        made.get_customer(CUSTOMER_ID)
        assert rsps.calls[0].request.headers["X-API-Key"] == "other-key"
    assert made.base_url == "https://api.iron.xyz"


def call_each_method(c: IronClient) -> None:
    key = uuid.uuid4()
    c.create_customer(email="a@example.com", idempotency_key=key)
    c.get_customer(CUSTOMER_ID)
    c.create_identification(CUSTOMER_ID, idempotency_key=key)
    c.list_identifications(CUSTOMER_ID)
    c.get_identification(IDENT_ID)
    c.sandbox_decide(IDENT_ID, approved=True, idempotency_key=key)


def register_each_method(rsps: responses.RequestsMock) -> None:
    rsps.post(CUSTOMERS, json={"id": CUSTOMER_ID}, status=201)
    rsps.get(f"{CUSTOMERS}/{CUSTOMER_ID}", json={"id": CUSTOMER_ID})
    rsps.post(CREATE_IDENT, json=identification(), status=201)
    rsps.get(LIST_IDENTS, json={"items": [identification()], "cursor": None})
    rsps.get(f"{BASE}/api/identifications/{IDENT_ID}", json=identification())
    rsps.post(SANDBOX, json=identification("Approved"), status=201)


@override_settings(IRON_KYC_TIMEOUT=(2, 7))
def test_every_call_has_the_configured_timeout(mocked):
    register_each_method(mocked)

    call_each_method(client())

    assert len(mocked.calls) == 6
    assert {call.request.req_kwargs["timeout"] for call in mocked.calls} == {(2.0, 7.0)}


def test_every_post_carries_the_idempotency_key_it_was_given(mocked):
    register_each_method(mocked)

    call_each_method(client())

    for call in mocked.calls:
        if call.request.method == "POST":
            uuid.UUID(call.request.headers["IDEMPOTENCY-KEY"])
            assert call.request.headers["Content-Type"].startswith("application/json")
        else:
            assert "IDEMPOTENCY-KEY" not in call.request.headers
    keys = {c.request.headers.get("IDEMPOTENCY-KEY") for c in mocked.calls}
    assert len(keys - {None}) == 1


def test_post_without_idempotency_key_is_refused_before_sending(mocked):
    with pytest.raises(ValueError, match="idempotency key"):
        client().request("POST", "/api/customers", json_body={})
    assert len(mocked.calls) == 0


def test_create_identification_sends_link_body(mocked):
    key = uuid.uuid4()
    mocked.post(
        CREATE_IDENT,
        json=identification(),
        status=201,
        match=[
            matchers.json_params_matcher({"type": "Link"}),
            matchers.header_matcher({"IDEMPOTENCY-KEY": str(key)}),
        ],
    )
    mocked.post(
        CREATE_IDENT,
        json=identification(with_edd=True),
        status=201,
        match=[matchers.json_params_matcher({"type": "Link", "with_edd": True})],
    )

    c = client()
    assert c.create_identification(CUSTOMER_ID, idempotency_key=key)["status"] == "Pending"
    assert c.create_identification(uuid.UUID(CUSTOMER_ID), idempotency_key=key, with_edd=True)[
        "with_edd"
    ]


def test_create_customer_sends_only_given_fields(mocked):
    mocked.post(
        CUSTOMERS,
        json={"id": CUSTOMER_ID},
        status=201,
        match=[
            matchers.json_params_matcher(
                {"customer_type": "Person", "email": "a@example.com", "external_id": "u-1"}
            )
        ],
    )

    client().create_customer(email="a@example.com", external_id="u-1", idempotency_key="k")


@pytest.mark.parametrize("approved", [True, False])
def test_sandbox_decide_posts_the_decision(mocked, approved):
    mocked.post(
        SANDBOX,
        json=identification("Approved" if approved else "Declined"),
        status=201,
        match=[matchers.json_params_matcher({"approved": approved})],
    )

    client().sandbox_decide(IDENT_ID, approved=approved, idempotency_key=uuid.uuid4())


def test_ids_are_quoted_into_one_path_segment(mocked):
    mocked.get(f"{BASE}/api/customers/..%2Fwebhooks%3Fx%3D1", json={})

    client().get_customer("../webhooks?x=1")

    assert mocked.calls[0].request.path_url == "/api/customers/..%2Fwebhooks%3Fx%3D1"


# --- answers that are not a JSON object ---------------------------------------------------


def test_success_that_is_not_json_is_an_api_error(mocked):
    mocked.get(f"{CUSTOMERS}/{CUSTOMER_ID}", body="<html>hi</html>", status=200)

    with pytest.raises(IronAPIError, match="not JSON") as info:
        client().get_customer(CUSTOMER_ID)
    assert type(info.value) is IronAPIError


def test_success_with_a_json_list_is_an_api_error(mocked):
    mocked.get(f"{CUSTOMERS}/{CUSTOMER_ID}", json=[1, 2])

    with pytest.raises(IronAPIError, match="not a JSON object"):
        client().get_customer(CUSTOMER_ID)


@pytest.mark.parametrize("status", [200, 400, 503])
def test_answer_nested_too_deep_to_read_is_an_api_error(mocked, status):
    mocked.get(f"{CUSTOMERS}/{CUSTOMER_ID}", body="[" * 100_000 + "]" * 100_000, status=status)

    with pytest.raises(IronAPIError) as info:
        client(max_retries=0).get_customer(CUSTOMER_ID)

    assert info.value.status == status
    assert len(info.value.message) <= 500


def test_empty_success_body_is_an_empty_object(mocked):
    mocked.get(f"{CUSTOMERS}/{CUSTOMER_ID}", body="", status=204)

    assert client().get_customer(CUSTOMER_ID) == {}


# --- error shapes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "content_type", "message", "code", "request_id"),
    [
        pytest.param(
            401,
            "authorization error",
            "text/plain; charset=utf-8",
            "authorization error",
            None,
            None,
            id="plain-text-401",
        ),
        pytest.param(
            409,
            '"Has Pending Identification"',
            "application/json; charset=utf-8",
            "Has Pending Identification",
            None,
            None,
            id="json-string",
        ),
        pytest.param(
            400,
            json.dumps(
                {"error": {"code": "invalid_body", "message": "bad type", "request_id": "r-1"}}
            ),
            "application/json",
            "bad type",
            "invalid_body",
            "r-1",
            id="error-envelope",
        ),
        pytest.param(
            404,
            json.dumps({"message": "Customer not found", "code": "not_found"}),
            "application/json",
            "Customer not found",
            "not_found",
            None,
            id="message-object",
        ),
        pytest.param(403, "", "text/plain", "Forbidden", None, None, id="empty-body-uses-reason"),
        pytest.param(
            400,
            json.dumps({"error": "missing field", "request_id": "r-2"}),
            "application/json",
            "missing field",
            None,
            "r-2",
            id="error-string-field",
        ),
    ],
)
def test_client_errors_become_one_api_error(
    mocked, status, body, content_type, message, code, request_id
):
    mocked.get(f"{CUSTOMERS}/{CUSTOMER_ID}", body=body, status=status, content_type=content_type)

    with pytest.raises(IronAPIError) as info:
        client().get_customer(CUSTOMER_ID)

    error = info.value
    assert type(error) is IronAPIError
    assert (error.status, error.message, error.code, error.request_id) == (
        status,
        message,
        code,
        request_id,
    )
    assert error.method == "GET"
    assert error.path == f"/api/customers/{CUSTOMER_ID}"
    assert str(status) in str(error)


def test_server_error_with_trace_id_is_transient(mocked):
    mocked.get(
        f"{CUSTOMERS}/{CUSTOMER_ID}",
        json={"message": "internal error", "trace_id": "trace-9"},
        status=500,
    )

    with pytest.raises(IronTransientError) as info:
        client().get_customer(CUSTOMER_ID)

    assert (info.value.status, info.value.message, info.value.request_id) == (
        500,
        "internal error",
        "trace-9",
    )
    assert info.value.retry_after is None
    assert "request_id=trace-9" in str(info.value)


@pytest.mark.parametrize("status", [501, 502, 520])
def test_any_5xx_is_transient(mocked, status):
    mocked.get(f"{CUSTOMERS}/{CUSTOMER_ID}", body="<html>upstream</html>", status=status)

    with pytest.raises(IronTransientError) as info:
        client().get_customer(CUSTOMER_ID)
    assert info.value.status == status


def test_request_id_header_is_used_when_the_body_has_none(mocked):
    mocked.get(
        f"{CUSTOMERS}/{CUSTOMER_ID}",
        body="nope",
        status=404,
        headers={"X-Request-Id": "hdr-1"},
    )

    with pytest.raises(IronAPIError) as info:
        client().get_customer(CUSTOMER_ID)
    assert info.value.request_id == "hdr-1"


def test_pending_identification_conflict_is_recognised(mocked):
    mocked.post(CREATE_IDENT, json="Has Pending Identification", status=409)
    mocked.post(CREATE_IDENT, json="Idempotency key reused with another body", status=409)

    c = client()
    with pytest.raises(IronAPIError) as first:
        c.create_identification(CUSTOMER_ID, idempotency_key=uuid.uuid4())
    with pytest.raises(IronAPIError) as second:
        c.create_identification(CUSTOMER_ID, idempotency_key=uuid.uuid4())

    assert first.value.is_pending_identification_conflict
    assert not first.value.is_idempotency_conflict
    assert second.value.is_idempotency_conflict
    assert not second.value.is_pending_identification_conflict


def test_error_text_a_database_would_refuse_is_replaced(mocked):
    """NUL and a lone surrogate cannot be stored in a text column (last_error)."""
    answer = {"error": {"message": "bad\x00value \ud800", "code": "c\x00", "request_id": "\udfff"}}
    mocked.get(f"{CUSTOMERS}/{CUSTOMER_ID}", body=json.dumps(answer), status=400)

    with pytest.raises(IronAPIError) as info:
        client().get_customer(CUSTOMER_ID)

    error = info.value
    assert (error.message, error.code, error.request_id) == ("bad\ufffdvalue ?", "c\ufffd", "?")
    assert str(error).encode("utf-8")


def test_long_error_bodies_are_cut(mocked):
    mocked.get(f"{CUSTOMERS}/{CUSTOMER_ID}", body="x" * 10_000, status=502)

    with pytest.raises(IronTransientError) as info:
        client(max_retries=0).get_customer(CUSTOMER_ID)

    assert len(info.value.message) == 500
    assert len(info.value.body) == 2000
    assert info.value.code is info.value.request_id is None


# --- redirects ----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirects_are_refused_and_never_followed(mocked, status):
    mocked.get(
        f"{CUSTOMERS}/{CUSTOMER_ID}",
        status=status,
        headers={"Location": "https://evil.example/steal"},
    )

    with pytest.raises(IronAPIError, match="redirect") as info:
        client().get_customer(CUSTOMER_ID)

    assert info.value.status == status
    assert not isinstance(info.value, IronTransientError)
    assert len(mocked.calls) == 1  # a call to evil.example would fail as unregistered


# --- retries ------------------------------------------------------------------------------


def test_post_retried_after_503_reuses_the_same_idempotency_key(mocked):
    key = uuid.uuid4()
    mocked.post(CREATE_IDENT, json={"message": "busy", "trace_id": "t"}, status=503)
    mocked.post(CREATE_IDENT, json=identification(), status=201)

    result = client(max_retries=2).create_identification(CUSTOMER_ID, idempotency_key=key)

    assert result["id"] == IDENT_ID
    assert len(mocked.calls) == 2
    sent = [(c.request.headers["IDEMPOTENCY-KEY"], c.request.body) for c in mocked.calls]
    assert sent[0] == sent[1] == (str(key), b'{"type":"Link"}')


def test_429_with_short_retry_after_is_retried(mocked):
    mocked.get(LIST_IDENTS, body="Rate limited", status=429, headers={"Retry-After": "0"})
    mocked.get(LIST_IDENTS, json={"items": [identification()]})

    assert client(max_retries=1).list_identifications(CUSTOMER_ID) == [identification()]
    assert len(mocked.calls) == 2


@pytest.mark.parametrize("retry_after", ["120", "Wed, 21 Oct 2099 07:28:00 GMT"])
def test_429_with_long_retry_after_is_not_waited_for(mocked, retry_after):
    mocked.post(
        CREATE_IDENT,
        body="Creation Rate Limit Exceeded",
        status=429,
        headers={"Retry-After": retry_after},
    )

    with pytest.raises(IronTransientError) as info:
        client(max_retries=3, retry_after_max=10).create_identification(
            CUSTOMER_ID, idempotency_key=uuid.uuid4()
        )

    assert len(mocked.calls) == 1
    assert info.value.status == 429
    assert info.value.message == "Creation Rate Limit Exceeded"
    assert info.value.retry_after is not None
    assert info.value.retry_after > 10


def test_unreadable_retry_after_ends_retries_without_crashing(mocked):
    mocked.get(LIST_IDENTS, body="slow down", status=429, headers={"Retry-After": "soon"})

    with pytest.raises(IronTransientError) as info:
        client(max_retries=3).list_identifications(CUSTOMER_ID)
    assert len(mocked.calls) == 1
    assert info.value.retry_after is None


def test_server_errors_are_retried_then_raised_as_transient(mocked):
    for _ in range(3):
        mocked.get(f"{CUSTOMERS}/{CUSTOMER_ID}", json={"message": "down"}, status=502)

    with pytest.raises(IronTransientError) as info:
        client(max_retries=2).get_customer(CUSTOMER_ID)
    assert len(mocked.calls) == 3
    assert info.value.status == 502


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
def test_client_errors_are_not_retried(mocked, status):
    mocked.post(CREATE_IDENT, body="no", status=status)

    with pytest.raises(IronAPIError) as info:
        client(max_retries=3).create_identification(CUSTOMER_ID, idempotency_key=uuid.uuid4())

    assert type(info.value) is IronAPIError
    assert len(mocked.calls) == 1


def test_connection_error_is_transient(mocked):
    mocked.get(f"{CUSTOMERS}/{CUSTOMER_ID}", body=requests.ConnectionError("refused"))

    with pytest.raises(IronTransientError) as info:
        client().get_customer(CUSTOMER_ID)
    assert info.value.status is None
    assert "no response" in str(info.value)


def test_timeout_from_requests_is_transient(mocked):
    mocked.get(f"{CUSTOMERS}/{CUSTOMER_ID}", body=requests.ReadTimeout("slow"))

    with pytest.raises(IronTransientError, match="ReadTimeout"):
        client().get_customer(CUSTOMER_ID)


def test_body_cut_mid_stream_is_transient(mocked):
    mocked.get(f"{CUSTOMERS}/{CUSTOMER_ID}", body=requests.exceptions.ChunkedEncodingError())

    with pytest.raises(IronTransientError):
        client().get_customer(CUSTOMER_ID)


def test_other_request_failures_are_api_errors_but_not_transient(mocked):
    mocked.get(f"{CUSTOMERS}/{CUSTOMER_ID}", body=requests.exceptions.InvalidHeader("bad"))

    with pytest.raises(IronAPIError) as info:
        client().get_customer(CUSTOMER_ID)
    assert type(info.value) is IronAPIError


# --- pagination ---------------------------------------------------------------------------


def ident(n: int) -> dict[str, Any]:
    return identification(id=f"00000000-0000-4000-8000-{n:012d}")


def test_iter_identifications_follows_cursor_pages(mocked):
    mocked.get(
        LIST_IDENTS,
        json={"items": [ident(1), ident(2)], "cursor": "c-1"},
        match=[matchers.query_param_matcher({"page_size": "100"})],
    )
    mocked.get(
        LIST_IDENTS,
        json={"items": [ident(3)], "cursor": "c-2"},
        match=[matchers.query_param_matcher({"page_size": "100", "cursor": "c-1"})],
    )
    mocked.get(
        LIST_IDENTS,
        json={"items": [ident(4)], "cursor": None, "prev_cursor": "c-1"},
        match=[matchers.query_param_matcher({"page_size": "100", "cursor": "c-2"})],
    )

    ids = [item["id"] for item in client().iter_identifications(CUSTOMER_ID)]

    assert ids == [ident(n)["id"] for n in (1, 2, 3, 4)]
    assert len(mocked.calls) == 3


def test_pagination_stops_when_cursor_is_absent(mocked):
    mocked.get(LIST_IDENTS, json={"items": [ident(1)]})

    assert len(client().list_identifications(CUSTOMER_ID)) == 1
    assert len(mocked.calls) == 1


def test_pagination_stops_on_an_empty_page_even_with_a_cursor(mocked):
    mocked.get(LIST_IDENTS, json={"items": [ident(1)], "cursor": "c-1"})
    mocked.get(LIST_IDENTS, json={"items": [], "cursor": "c-2"})

    assert len(client().list_identifications(CUSTOMER_ID)) == 1
    assert len(mocked.calls) == 2


def test_pagination_stops_on_a_repeated_cursor(mocked, caplog):
    mocked.get(LIST_IDENTS, json={"items": [ident(1)], "cursor": "c-1"})
    mocked.get(LIST_IDENTS, json={"items": [ident(2)], "cursor": "c-1"})

    with caplog.at_level(logging.WARNING, logger="django_iron_kyc"):
        assert len(client().list_identifications(CUSTOMER_ID)) == 2
    assert len(mocked.calls) == 2
    assert "repeated the cursor" in caplog.text


def test_page_size_is_clamped_to_irons_maximum(mocked):
    mocked.get(
        LIST_IDENTS, json={"items": []}, match=[matchers.query_param_matcher({"page_size": "100"})]
    )
    mocked.get(
        LIST_IDENTS, json={"items": []}, match=[matchers.query_param_matcher({"page_size": "1"})]
    )

    assert list(client().iter_identifications(CUSTOMER_ID, page_size=5000)) == []
    assert list(client().iter_identifications(CUSTOMER_ID, page_size=0)) == []


def test_list_page_without_items_list_is_an_api_error(mocked):
    mocked.get(LIST_IDENTS, json={"items": "nope"})

    with pytest.raises(IronAPIError, match="items"):
        client().list_identifications(CUSTOMER_ID)


def test_pagination_skips_items_that_are_not_objects(mocked):
    mocked.get(LIST_IDENTS, json={"items": [ident(1), "junk", None]})

    assert client().list_identifications(CUSTOMER_ID) == [ident(1)]


# --- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["", "   "])
def test_client_refuses_a_missing_api_key(key):
    with override_settings(IRON_KYC_API_KEY=key), pytest.raises(IronConfigurationError):
        IronClient()


def test_configuration_error_is_improperly_configured():
    with pytest.raises(ImproperlyConfigured):
        IronClient(api_key="")


def test_api_key_with_control_characters_is_refused_without_echoing_it():
    with pytest.raises(IronConfigurationError) as info:
        IronClient(api_key="sk-secret\nX-Evil: 1")
    assert "sk-secret" not in str(info.value)


def test_surrounding_whitespace_in_the_api_key_is_dropped(mocked):
    mocked.get(f"{CUSTOMERS}/{CUSTOMER_ID}", json={})

    IronClient(api_key=" key-from-env-file\n").get_customer(CUSTOMER_ID)
    assert mocked.calls[0].request.headers["X-API-Key"] == "key-from-env-file"


@pytest.mark.parametrize(
    "base_url", ["http://api.iron.xyz", "ftp://api.iron.xyz", "api.iron.xyz", "http://"]
)
def test_client_refuses_a_base_url_that_would_leak_the_key(base_url):
    with pytest.raises(IronConfigurationError):
        IronClient(base_url=base_url)


@pytest.mark.parametrize("base_url", ["http://localhost:8000", "http://[::1]:9", BASE])
def test_client_allows_plain_http_to_loopback(base_url):
    assert IronClient(base_url=base_url).base_url == base_url


def test_timeout_given_as_one_number_applies_to_connect_and_read():
    assert IronClient(timeout=3).timeout == (3.0, 3.0)


@override_settings(
    IRON_KYC_BASE_URL="https://api.iron.xyz/",
    IRON_KYC_TIMEOUT=4,
    IRON_KYC_MAX_RETRIES=3,
    IRON_KYC_PROXY="http://proxy-user:pr0xy-s3cret@proxy.internal:3128",
)
def test_client_options_are_the_settings_with_what_is_given_in_their_place():
    options = ClientOptions.from_settings(max_retries=0, api_version="2025-03-13")

    assert (options.api_key, options.base_url, options.timeout) == (
        API_KEY,
        "https://api.iron.xyz",
        (4.0, 4.0),
    )
    assert (options.max_retries, options.api_version, options.sub_partner_id) == (
        0,
        "2025-03-13",
        None,
    )
    assert IronClient(max_retries=0, api_version="2025-03-13").options == options
    assert API_KEY not in repr(options)
    assert "pr0xy-s3cret" not in repr(options)
    with pytest.raises(AttributeError):
        options.api_key = "other"  # type: ignore[misc]


def test_client_options_are_checked_however_they_are_made():
    options = ClientOptions.from_settings()

    with pytest.raises(IronConfigurationError, match="IRON_KYC_BASE_URL"):
        dataclasses.replace(options, base_url="http://api.iron.xyz")
    with pytest.raises(IronConfigurationError, match="IRON_KYC_API_KEY"):
        dataclasses.replace(options, api_key="sk live")


# --- the API key stays secret -------------------------------------------------------------


def test_api_key_is_never_logged_or_shown(mocked, caplog):
    mocked.get(f"{CUSTOMERS}/{CUSTOMER_ID}", json={"id": CUSTOMER_ID})
    mocked.get(LIST_IDENTS, json={"message": "down"}, status=503)
    mocked.get(LIST_IDENTS, json={"message": "down"}, status=503)
    mocked.post(CREATE_IDENT, body="authorization error", status=401)
    mocked.get(f"{BASE}/api/identifications/{IDENT_ID}", body=requests.ConnectionError("x"))
    # An error page that echoes the request headers must not carry the key any further.
    mocked.post(SANDBOX, body=f"bad header X-API-Key: {API_KEY}", status=400)

    c = client(max_retries=1)
    errors: list[BaseException] = []
    with caplog.at_level(logging.DEBUG):
        c.get_customer(CUSTOMER_ID)
        for call in (
            lambda: c.list_identifications(CUSTOMER_ID),
            lambda: c.create_identification(CUSTOMER_ID, idempotency_key=uuid.uuid4()),
            lambda: c.get_identification(IDENT_ID),
            lambda: c.sandbox_decide(IDENT_ID, approved=True, idempotency_key=uuid.uuid4()),
        ):
            with pytest.raises(IronAPIError) as info:
                call()
            errors.append(info.value)

    assert caplog.records, "nothing was logged: the scan would prove nothing"
    assert API_KEY not in caplog.text
    assert API_KEY not in repr(c)
    assert API_KEY not in str(c)
    for error in errors:
        assert API_KEY not in str(error)
        assert API_KEY not in repr(error)
        assert API_KEY not in repr(error.body)
        assert error.__context__ is None
        assert error.__cause__ is None
    assert "********" in errors[-1].message


def shown_by(error: IronAPIError) -> str:
    """Everything an error can show: its str and repr, its args and each attribute."""
    return "\n".join(
        [str(error), repr(error), *map(str, error.args), *map(repr, vars(error).values())]
    )


# The key's first ten characters: what a cut at 500 (or 2000, or 200) used to leave behind.
KEY_START = API_KEY[:10]


@pytest.mark.parametrize(
    ("status", "answer", "headers"),
    [
        pytest.param(400, {"error": {"message": "no", "request_id": API_KEY}}, {}, id="request_id"),
        pytest.param(409, {"error": {"code": API_KEY, "message": "no"}}, {}, id="error.code"),
        pytest.param(400, {"message": "no", "code": f"bad:{API_KEY}"}, {}, id="code"),
        pytest.param(500, {"message": "down", "trace_id": API_KEY}, {}, id="trace_id"),
        pytest.param(404, "not found", {"X-Request-Id": API_KEY}, id="x-request-id-header"),
        pytest.param(
            503, "", {"X-Request-Id": "r-" + API_KEY * 20}, id="x-request-id-across-the-cut"
        ),
        pytest.param(400, "x" * 490 + API_KEY, {}, id="text-across-the-500-cut"),
        pytest.param(400, {"message": "x" * 490 + API_KEY}, {}, id="message-across-the-500-cut"),
        pytest.param(
            400, {"error": "x" * 495 + API_KEY, "request_id": "x" * 190 + API_KEY}, {}, id="both"
        ),
        pytest.param(502, "y" * 1990 + API_KEY, {}, id="body-across-the-2000-cut"),
        pytest.param(400, f'"{"z" * 490}{API_KEY}"', {}, id="json-string-across-the-cut"),
    ],
)
def test_api_key_echoed_anywhere_in_an_error_answer_is_in_no_field_of_the_error(
    mocked, status, answer, headers
):
    body = answer if isinstance(answer, str) else json.dumps(answer)
    mocked.get(f"{CUSTOMERS}/{CUSTOMER_ID}", body=body, status=status, headers=headers)

    with pytest.raises(IronAPIError) as info:
        client(max_retries=0).get_customer(CUSTOMER_ID)

    shown = shown_by(info.value)
    assert KEY_START not in shown
    assert "********" in shown
    assert len(info.value.message) <= 500


def test_api_key_in_the_status_line_is_in_no_field_of_the_error(iron_server):
    def status_line_with_the_key(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(407, f"Proxy Authentication Required for {API_KEY}")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    iron_server.script += [status_line_with_the_key]

    with pytest.raises(IronAPIError) as info:
        IronClient(base_url=iron_server.url, max_retries=0).get_customer(CUSTOMER_ID)

    assert info.value.message == "Proxy Authentication Required for ********"
    assert KEY_START not in shown_by(info.value)


def test_api_error_survives_pickling_with_its_attributes():
    error = IronTransientError(
        "busy",
        status=503,
        code="overloaded",
        request_id="r-1",
        method="POST",
        path="/api/customers",
        body={"message": "busy"},
        retry_after=4.5,
    )

    copy = pickle.loads(pickle.dumps(error))

    assert type(copy) is IronTransientError
    assert isinstance(copy, IronKycError)
    assert copy.__dict__ == error.__dict__
    assert str(copy) == str(error)


# --- a real HTTP server on loopback -------------------------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class ScriptedIron:
    """Answers each request with the next scripted action; records what it received."""

    url: str
    script: list[Callable[[BaseHTTPRequestHandler], None]] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


def reply(status: int, body: Any = None, headers: dict[str, str] | None = None) -> Callable:
    def action(handler: BaseHTTPRequestHandler) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        handler.send_response(status)
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    return action


def hang(server: ScriptedIron) -> Callable:
    def action(handler: BaseHTTPRequestHandler) -> None:
        server.release.wait(timeout=10)
        handler.close_connection = True

    return action


def drop(handler: BaseHTTPRequestHandler) -> None:
    handler.close_connection = True  # no status line at all


class RecordingHandler(BaseHTTPRequestHandler):
    """A quiet HTTP/1.1 handler that can record each request it reads."""

    protocol_version = "HTTP/1.1"

    def record(self, seen: list[Seen]) -> Seen:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        seen.append(Seen(self.command, self.path, dict(self.headers), body))
        return seen[-1]

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serving(
    handler: type[BaseHTTPRequestHandler], tls: ssl.SSLContext | None = None
) -> Iterator[str]:
    """Serve ``handler`` from a thread on a free loopback port; yields its base URL."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    if tls is not None:
        httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    # A short poll interval: shutdown() waits for it, at every test's teardown.
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def iron_server() -> Iterator[ScriptedIron]:
    state: ScriptedIron

    class Handler(RecordingHandler):
        def handle_any(self) -> None:
            self.record(state.seen)
            action = state.script.pop(0) if state.script else reply(500, {"message": "empty"})
            action(self)

        do_GET = do_POST = handle_any

    with serving(Handler) as url:
        state = ScriptedIron(url=url)
        try:
            yield state
        finally:
            state.release.set()  # before the server stops: a hanging handler lets go


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    """urllib3's sleeps between retries, recorded instead of slept."""
    import urllib3.util.retry

    recorded: list[float] = []
    fake_time = types.SimpleNamespace(sleep=recorded.append, time=__import__("time").time)
    monkeypatch.setattr(urllib3.util.retry, "time", fake_time)
    return recorded


def test_loopback_503_then_201_retries_with_backoff_and_the_same_key(iron_server, sleeps):
    iron_server.script += [
        reply(503, {"message": "busy", "trace_id": "t-1"}),
        reply(503, {"message": "busy", "trace_id": "t-2"}),
        reply(201, identification()),
    ]
    key = uuid.uuid4()

    c = IronClient(base_url=iron_server.url, max_retries=3, backoff_factor=0.5)
    result = c.create_identification(CUSTOMER_ID, idempotency_key=key)

    assert result["id"] == IDENT_ID
    assert [s.headers["IDEMPOTENCY-KEY"] for s in iron_server.seen] == [str(key)] * 3
    assert {s.body for s in iron_server.seen} == {b'{"type":"Link"}'}
    # urllib3: no wait before the first retry, then factor * 2 ** (n - 1) plus jitter.
    assert len(sleeps) == 1
    assert 1.0 <= sleeps[0] <= 1.25


def test_loopback_retry_after_is_honoured(iron_server, sleeps):
    iron_server.script += [reply(429, "slow down", {"Retry-After": "2"}), reply(200, {"id": 1})]

    c = IronClient(base_url=iron_server.url, max_retries=2, retry_after_max=10)
    assert c.get_customer(CUSTOMER_ID) == {"id": 1}
    assert sleeps == [2.0]


def test_loopback_long_retry_after_returns_at_once(iron_server, sleeps):
    iron_server.script += [reply(429, "slow down", {"Retry-After": "3600"})]

    c = IronClient(base_url=iron_server.url, max_retries=5, retry_after_max=10)
    with pytest.raises(IronTransientError) as info:
        c.get_customer(CUSTOMER_ID)

    assert info.value.retry_after == 3600.0
    assert len(iron_server.seen) == 1
    assert sleeps == []


def test_loopback_read_timeout_is_transient(iron_server):
    iron_server.script += [hang(iron_server)]

    c = IronClient(base_url=iron_server.url, max_retries=0, timeout=(2, 0.2))
    with pytest.raises(IronTransientError) as info:
        c.get_customer(CUSTOMER_ID)
    assert "ReadTimeout" in info.value.message
    assert info.value.status is None


def test_loopback_dropped_connection_is_retried_with_the_same_key(iron_server, sleeps):
    iron_server.script += [drop, reply(201, {"id": CUSTOMER_ID})]
    key = uuid.uuid4()

    c = IronClient(base_url=iron_server.url, max_retries=1)
    assert c.create_customer(email="a@example.com", idempotency_key=key) == {"id": CUSTOMER_ID}
    assert [s.headers["IDEMPOTENCY-KEY"] for s in iron_server.seen] == [str(key)] * 2


def test_loopback_dropped_connection_without_retries_is_transient(iron_server):
    iron_server.script += [drop]

    c = IronClient(base_url=iron_server.url, max_retries=0)
    with pytest.raises(IronTransientError):
        c.create_customer(email="a@example.com", idempotency_key=uuid.uuid4())


def test_loopback_refused_connection_is_transient():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port any more.

    c = IronClient(base_url=f"http://127.0.0.1:{port}", max_retries=1, backoff_factor=0)
    with pytest.raises(IronTransientError) as info:
        c.get_customer(CUSTOMER_ID)
    assert info.value.__context__ is None


# --- IRON_KYC_PROXY and IRON_KYC_CA_BUNDLE ------------------------------------------------

PROXY_USER = "proxy-user"
PROXY_PASSWORD = "pr0xy-s3cret"
# Every form of the proxy's credentials that must never be shown (the password is also checked
# on its own, percent-decoded, in the redaction test).
PROXY_AUTH = "Basic " + base64.b64encode(f"{PROXY_USER}:{PROXY_PASSWORD}".encode()).decode()
PROXY_ENVIRONMENT = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy")


def test_proxy_and_ca_bundle_settings_reach_every_request(mocked, tmp_path):
    bundle = tmp_path / "private-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    proxy = "http://proxy.internal:3128"
    register_each_method(mocked)

    with override_settings(IRON_KYC_PROXY=proxy, IRON_KYC_CA_BUNDLE=str(bundle)):
        call_each_method(client())

    assert len(mocked.calls) == 6
    for call in mocked.calls:
        assert call.request.req_kwargs["proxies"] == {"http": proxy, "https": proxy}
        assert call.request.req_kwargs["verify"] == str(bundle)


def test_environment_proxies_and_ca_bundles_are_ignored(mocked, monkeypatch, tmp_path):
    bundle = tmp_path / "env-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    for name in PROXY_ENVIRONMENT:
        monkeypatch.setenv(name, "http://env-proxy.internal:3128")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(bundle))
    mocked.get(f"{CUSTOMERS}/{CUSTOMER_ID}", json={})

    client().get_customer(CUSTOMER_ID)

    assert mocked.calls[0].request.req_kwargs["proxies"] == {}
    assert mocked.calls[0].request.req_kwargs["verify"] is True


def test_ca_bundle_set_to_false_never_turns_verification_off(mocked):
    mocked.get(f"{CUSTOMERS}/{CUSTOMER_ID}", json={})

    with override_settings(IRON_KYC_CA_BUNDLE=False):
        client().get_customer(CUSTOMER_ID)

    assert mocked.calls[0].request.req_kwargs["verify"] is True


@pytest.mark.parametrize(
    "proxy",
    [
        f"ftp://{PROXY_USER}:{PROXY_PASSWORD}@proxy.internal",
        f"{PROXY_USER}:{PROXY_PASSWORD}@proxy.internal:3128",
        f"http://{PROXY_USER}:{PROXY_PASSWORD}@:3128",
        f"http://{PROXY_USER}:{PROXY_PASSWORD}\u20ac@proxy.internal:3128",
    ],
)
def test_client_refuses_a_bad_proxy_without_echoing_it(proxy):
    with override_settings(IRON_KYC_PROXY=proxy), pytest.raises(IronConfigurationError) as info:
        IronClient()
    assert "IRON_KYC_PROXY" in str(info.value)
    assert PROXY_PASSWORD not in str(info.value)
    assert PROXY_PASSWORD not in repr(info.value)


def test_client_refuses_a_ca_bundle_that_is_not_a_file(tmp_path):
    with pytest.raises(IronConfigurationError, match="IRON_KYC_CA_BUNDLE"):
        IronClient(ca_bundle=str(tmp_path / "missing.pem"))
    with pytest.raises(IronConfigurationError, match="IRON_KYC_CA_BUNDLE"):
        IronClient(ca_bundle=str(tmp_path))


@dataclass
class LoopbackProxy:
    """A forwarding HTTP proxy on 127.0.0.1; records each request it was asked to make."""

    url: str
    seen: list[Seen] = field(default_factory=list)
    # Answered by the proxy itself, in order, instead of forwarding.
    script: list[Callable[[BaseHTTPRequestHandler], None]] = field(default_factory=list)

    def with_credentials(self, user: str = PROXY_USER, password: str = PROXY_PASSWORD) -> str:
        return self.url.replace("http://", f"http://{user}:{password}@")


@pytest.fixture
def proxy_server() -> Iterator[LoopbackProxy]:
    state: LoopbackProxy

    class Handler(RecordingHandler):
        def handle_any(self) -> None:
            body = self.record(state.seen).body
            if state.script:
                state.script.pop(0)(self)
                return
            target = urlsplit(self.path)
            if self.command == "CONNECT" or not is_loopback_host(target.hostname):
                # It never tunnels nor leaves the machine: a test cannot reach the network.
                reply(403, {"message": "this proxy only forwards plain http to loopback"})(self)
                return
            headers = {
                name: value
                for name, value in self.headers.items()
                if not name.lower().startswith("proxy-") and name.lower() != "connection"
            }
            upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=5)
            try:
                path = f"{target.path}?{target.query}" if target.query else target.path
                upstream.request(self.command, path, body or None, headers)
                answer = upstream.getresponse()
                data = answer.read()
            finally:
                upstream.close()
            self.send_response(answer.status)
            for name, value in answer.getheaders():
                if name.lower() not in ("connection", "content-length", "transfer-encoding"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_CONNECT = handle_any

    with serving(Handler) as url:
        state = LoopbackProxy(url=url)
        yield state


def test_requests_go_through_the_proxy_when_it_is_set(iron_server, proxy_server):
    iron_server.script += [reply(200, {"id": CUSTOMER_ID}), reply(201, {"id": CUSTOMER_ID})]
    key = uuid.uuid4()

    with override_settings(IRON_KYC_PROXY=proxy_server.with_credentials()):
        c = IronClient(base_url=iron_server.url, max_retries=0)
    c.get_customer(CUSTOMER_ID)
    c.create_customer(email="a@example.com", idempotency_key=key)

    # An absolute URI is what a client asks a proxy for; a direct request has only the path.
    assert [(s.method, s.path) for s in proxy_server.seen] == [
        ("GET", f"{iron_server.url}/api/customers/{CUSTOMER_ID}"),
        ("POST", f"{iron_server.url}/api/customers"),
    ]
    assert [s.headers["Proxy-Authorization"] for s in proxy_server.seen] == [PROXY_AUTH] * 2
    assert proxy_server.seen[1].body == b'{"customer_type":"Person","email":"a@example.com"}'
    # Iron got both requests from the proxy, with the key and none of the proxy's credentials.
    assert [s.headers["X-API-Key"] for s in iron_server.seen] == [API_KEY] * 2
    assert iron_server.seen[1].headers["IDEMPOTENCY-KEY"] == str(key)
    assert all("Proxy-Authorization" not in s.headers for s in iron_server.seen)


def test_https_requests_tunnel_through_the_proxy(iron_server, proxy_server):
    c = IronClient(
        base_url=iron_server.url.replace("http://", "https://"),
        proxy=proxy_server.with_credentials(),
        max_retries=0,
    )
    with pytest.raises(IronTransientError, match="ProxyError"):
        c.get_customer(CUSTOMER_ID)

    # The test proxy refuses every tunnel: it was asked for one, and Iron was never reached.
    host_port = iron_server.url.removeprefix("http://")
    assert [(s.method, s.path) for s in proxy_server.seen] == [("CONNECT", host_port)]
    assert proxy_server.seen[0].headers["Proxy-Authorization"] == PROXY_AUTH
    assert iron_server.seen == []


@pytest.mark.parametrize("environment", [False, True], ids=["no-env", "proxy-env"])
def test_requests_go_direct_without_the_setting_whatever_the_environment_says(
    iron_server, proxy_server, monkeypatch, environment
):
    if environment:
        for name in PROXY_ENVIRONMENT:
            monkeypatch.setenv(name, proxy_server.url)
    iron_server.script += [reply(200, {"id": CUSTOMER_ID})]

    with override_settings(IRON_KYC_PROXY=None):
        IronClient(base_url=iron_server.url, max_retries=0).get_customer(CUSTOMER_ID)

    assert proxy_server.seen == []
    assert [(s.method, s.path) for s in iron_server.seen] == [
        ("GET", f"/api/customers/{CUSTOMER_ID}")
    ]


def test_no_proxy_environment_variable_cannot_bypass_the_setting(
    iron_server, proxy_server, monkeypatch
):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "*")
    iron_server.script += [reply(200, {"id": CUSTOMER_ID})]

    IronClient(base_url=iron_server.url, proxy=proxy_server.url).get_customer(CUSTOMER_ID)

    assert len(proxy_server.seen) == 1
    assert len(iron_server.seen) == 1


@pytest.mark.parametrize(
    ("user", "password"),
    [(PROXY_USER, PROXY_PASSWORD), ("proxy%20user", "pr0xy%40s3cret%3Ax")],
    ids=["plain", "percent-encoded"],
)
def test_proxy_credentials_never_appear_in_errors_logs_or_repr(
    iron_server, proxy_server, sleeps, caplog, user, password
):
    proxy = proxy_server.with_credentials(user, password)
    decoded = (requests.utils.unquote(user), requests.utils.unquote(password))
    auth = "Basic " + base64.b64encode(":".join(decoded).encode()).decode()
    secrets = {password, decoded[1], f"{user}:{password}", ":".join(decoded), auth.split()[1]}
    echo = f"Proxy-Authorization: {auth}; proxy {proxy}; password {decoded[1]}"
    # A proxy whose error pages echo what it was sent, as plain text and as JSON.
    proxy_server.script += [
        reply(407, echo),
        reply(502, {"message": "bad gateway", "detail": {"proxy": proxy}}),
        reply(502, {"message": echo}),
    ]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]

    c = IronClient(base_url=iron_server.url, proxy=proxy, max_retries=1, backoff_factor=0)
    tunnel = IronClient(
        base_url=iron_server.url.replace("http://", "https://"), proxy=proxy, max_retries=0
    )
    unreachable = IronClient(
        base_url=iron_server.url,
        proxy=proxy.replace(urlsplit(proxy).netloc.rpartition(":")[2], str(closed_port)),
        max_retries=1,
        backoff_factor=0,
    )
    errors: list[IronAPIError] = []
    with caplog.at_level(logging.DEBUG):
        for call, expected in (
            (lambda: c.get_customer(CUSTOMER_ID), IronAPIError),  # 407 from the proxy
            (lambda: c.get_customer(CUSTOMER_ID), IronTransientError),  # 502, retried: 502
            (lambda: tunnel.get_customer(CUSTOMER_ID), IronTransientError),  # CONNECT refused
            (lambda: unreachable.get_customer(CUSTOMER_ID), IronTransientError),
        ):
            with pytest.raises(expected) as info:
                call()
            errors.append(info.value)

    assert [e.status for e in errors] == [407, 502, None, None]
    assert "ProxyError" in errors[2].message
    assert "ProxyError" in errors[3].message
    assert "********" in errors[0].message
    assert "********" in errors[0].body
    assert "********" in errors[1].message
    assert errors[1].body is None  # JSON that held a secret is dropped, as for the API key
    assert caplog.records, "nothing was logged: the scan would prove nothing"
    shown = [caplog.text, repr(c), str(c), repr(tunnel), repr(unreachable)]
    for error in errors:
        shown += [str(error), repr(error), repr(error.body), repr(error.__dict__)]
        assert error.__context__ is None
        assert error.__cause__ is None
    for secret in secrets:
        assert not [text for text in shown if secret in text], secret
    assert iron_server.seen == []  # every request ended at the proxy


def test_proxy_credentials_echoed_in_any_field_are_in_no_field_of_the_error(mocked):
    proxy = f"http://{PROXY_USER}:{PROXY_PASSWORD}@proxy.internal:3128"
    token = PROXY_AUTH.split()[1]
    mocked.get(
        f"{CUSTOMERS}/{CUSTOMER_ID}",
        json={"error": {"code": token, "message": "x" * 494 + PROXY_PASSWORD}},
        status=407,
        headers={"X-Request-Id": f"{PROXY_USER}:{PROXY_PASSWORD}"},
    )

    with pytest.raises(IronAPIError) as info:
        client(proxy=proxy).get_customer(CUSTOMER_ID)

    shown = shown_by(info.value)
    assert (info.value.code, info.value.request_id) == ("********", "********")
    assert PROXY_PASSWORD[:6] not in shown
    assert token not in shown


@pytest.fixture
def self_signed_certificate(tmp_path) -> tuple[str, str]:
    """``(certificate, key)`` files for 127.0.0.1, made by the openssl command."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed")
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
            *("-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_ca_bundle_verifies_a_private_certificate_that_certifi_refuses(
    self_signed_certificate,
):
    cert, key = self_signed_certificate

    class Handler(RecordingHandler):
        def do_GET(self) -> None:
            reply(200, {"id": CUSTOMER_ID})(self)

    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    with serving(Handler, tls) as url:
        with override_settings(IRON_KYC_CA_BUNDLE=cert):
            assert client(base_url=url).get_customer(CUSTOMER_ID) == {"id": CUSTOMER_ID}
        for bundle in (None, False):
            with (
                override_settings(IRON_KYC_CA_BUNDLE=bundle),
                pytest.raises(IronTransientError, match="SSLError"),
            ):
                client(base_url=url, max_retries=0).get_customer(CUSTOMER_ID)
