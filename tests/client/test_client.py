"""IronClient: the one HTTP seam to Iron (Part A items 1, 2 and 8 of IRON_API.md): what every
request carries, answers that are not a JSON object, redirects, retries and pagination.

These tests mock the network with ``responses`` (test_transport.py runs what it cannot
show against servers on 127.0.0.1).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest
import requests
import responses
from django.test import override_settings
from responses import matchers

from django_iron_kyc import __version__
from django_iron_kyc.exceptions import IronAPIError, IronTransientError
from tests.client.support import (
    API_KEY,
    BASE,
    CREATE_IDENT,
    CUSTOMER_ID,
    CUSTOMERS,
    IDENT_ID,
    LIST_IDENTS,
    SANDBOX,
    call_each_method,
    client,
    identification,
    register_each_method,
)

# --- what every request carries ---------------------------------------------------------------


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


@override_settings(IRON_KYC_TIMEOUT=(2, 7))
def test_every_call_has_the_configured_timeout(mocked):
    register_each_method(mocked)

    call_each_method(client())

    assert len(mocked.calls) == 7
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


def test_archive_customer_puts_to_the_customers_archive(mocked):
    archive = f"{CUSTOMERS}/{CUSTOMER_ID}/archive"
    mocked.put(archive, json={"id": CUSTOMER_ID, "status": "Archived"})

    assert client().archive_customer(CUSTOMER_ID)["status"] == "Archived"

    (call,) = mocked.calls
    assert (call.request.method, call.request.url, call.request.body) == ("PUT", archive, None)


def test_ids_are_quoted_into_one_path_segment(mocked):
    mocked.get(f"{BASE}/api/customers/..%2Fwebhooks%3Fx%3D1", json={})

    client().get_customer("../webhooks?x=1")

    assert mocked.calls[0].request.path_url == "/api/customers/..%2Fwebhooks%3Fx%3D1"


# --- answers that are not a JSON object -------------------------------------------------------


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


# --- redirects --------------------------------------------------------------------------------


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


# --- retries ----------------------------------------------------------------------------------


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


# --- pagination -------------------------------------------------------------------------------


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
