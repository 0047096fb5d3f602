"""The errors the client raises (IronAPIError, built by the private _http_errors): every
shape of Iron's error answers, and neither the API key nor the proxy's credentials in
any field, however the answer echoes them."""

from __future__ import annotations

import base64
import json
import logging
import pickle
import socket
import uuid
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

import pytest
import requests

from django_iron_kyc.client import IronClient
from django_iron_kyc.exceptions import (
    IronAPIError,
    IronKycError,
    IronTransientError,
)
from tests.client.support import (
    API_KEY,
    BASE,
    CREATE_IDENT,
    CUSTOMER_ID,
    CUSTOMERS,
    IDENT_ID,
    KEY_START,
    LIST_IDENTS,
    PROXY_AUTH,
    PROXY_PASSWORD,
    PROXY_USER,
    SANDBOX,
    client,
    reply,
    shown_by,
)

# --- error shapes -----------------------------------------------------------------------------


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


# --- the API key stays secret -----------------------------------------------------------------


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


# --- the proxy's credentials stay secret ------------------------------------------------------


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
