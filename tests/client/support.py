"""Helpers of the client tests: Iron's URLs and objects, and small HTTP servers on loopback."""

from __future__ import annotations

import base64
import contextlib
import json
import ssl
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import responses

from django_iron_kyc.client import IronClient
from django_iron_kyc.exceptions import IronAPIError

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


def client(**kwargs: Any) -> IronClient:
    kwargs.setdefault("backoff_factor", 0)
    return IronClient(**kwargs)


def call_each_method(c: IronClient) -> None:
    key = uuid.uuid4()
    c.create_customer(email="a@example.com", idempotency_key=key)
    c.get_customer(CUSTOMER_ID)
    c.create_identification(CUSTOMER_ID, idempotency_key=key)
    c.list_identifications(CUSTOMER_ID)
    c.get_identification(IDENT_ID)
    c.sandbox_decide(IDENT_ID, approved=True, idempotency_key=key)
    c.archive_customer(CUSTOMER_ID)


def register_each_method(rsps: responses.RequestsMock) -> None:
    rsps.post(CUSTOMERS, json={"id": CUSTOMER_ID}, status=201)
    rsps.get(f"{CUSTOMERS}/{CUSTOMER_ID}", json={"id": CUSTOMER_ID})
    rsps.post(CREATE_IDENT, json=identification(), status=201)
    rsps.get(LIST_IDENTS, json={"items": [identification()], "cursor": None})
    rsps.get(f"{BASE}/api/identifications/{IDENT_ID}", json=identification())
    rsps.post(SANDBOX, json=identification("Approved"), status=201)
    rsps.put(f"{CUSTOMERS}/{CUSTOMER_ID}/archive", json={"id": CUSTOMER_ID, "status": "Archived"})


# --- what an error shows ------------------------------------------------------------------


def shown_by(error: IronAPIError) -> str:
    """Everything an error can show: its str and repr, its args and each attribute."""
    return "\n".join(
        [str(error), repr(error), *map(str, error.args), *map(repr, vars(error).values())]
    )


KEY_START = API_KEY[:10]


# --- servers on loopback ------------------------------------------------------------------


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


# --- a proxy ------------------------------------------------------------------------------
PROXY_USER = "proxy-user"
PROXY_PASSWORD = "pr0xy-s3cret"
PROXY_AUTH = "Basic " + base64.b64encode(f"{PROXY_USER}:{PROXY_PASSWORD}".encode()).decode()
PROXY_ENVIRONMENT = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy")


@dataclass
class LoopbackProxy:
    """A forwarding HTTP proxy on 127.0.0.1; records each request it was asked to make."""

    url: str
    seen: list[Seen] = field(default_factory=list)
    # Answered by the proxy itself, in order, instead of forwarding.
    script: list[Callable[[BaseHTTPRequestHandler], None]] = field(default_factory=list)

    def with_credentials(self, user: str = PROXY_USER, password: str = PROXY_PASSWORD) -> str:
        return self.url.replace("http://", f"http://{user}:{password}@")
