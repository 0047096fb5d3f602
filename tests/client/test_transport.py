"""The client over real sockets on 127.0.0.1: retries with urllib3's backoff, timeouts and
dropped connections against a scripted server, a forwarding proxy, and TLS with a
private CA bundle."""

from __future__ import annotations

import socket
import ssl
import uuid

import pytest
from django.test import override_settings

from django_iron_kyc.client import IronClient
from django_iron_kyc.exceptions import (
    IronTransientError,
)
from tests.client.support import (
    API_KEY,
    CUSTOMER_ID,
    IDENT_ID,
    PROXY_AUTH,
    PROXY_ENVIRONMENT,
    RecordingHandler,
    client,
    drop,
    hang,
    identification,
    reply,
    serving,
)

# --- a real HTTP server on loopback -----------------------------------------------------------


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


# --- through a proxy --------------------------------------------------------------------------


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


# --- a private CA bundle ----------------------------------------------------------------------


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
