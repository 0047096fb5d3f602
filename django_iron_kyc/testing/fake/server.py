"""The fake's HTTP side: a threaded server on 127.0.0.1 that records each request, applies
the armed faults, and answers with whatever the API says."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from requests.structures import CaseInsensitiveDict

from .answers import Answer
from .faults import Fault, FaultInjector, fault_answer, hold
from .options import FakeOptions

__all__ = ["FakeServer", "RecordedRequest"]


@dataclass
class RecordedRequest:
    """One request the fake received, kept for assertions.

    ``headers`` is case-insensitive (``headers["idempotency-key"]`` works). ``json`` is the
    decoded body, or ``None`` if there was none or it was not JSON. ``status`` is the status
    answered (``None`` when the connection was dropped), ``replayed`` is true when the
    answer was an idempotent replay, and ``fault`` is the injected fault that hit it.
    """

    method: str
    path: str
    query: dict[str, list[str]]
    headers: CaseInsensitiveDict[str]
    body: bytes
    json: Any
    status: int | None = None
    replayed: bool = False
    fault: Fault | None = None

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("IDEMPOTENCY-KEY")


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "FakeIron/1"
    # Headers and body go out in separate writes: without TCP_NODELAY, Nagle's algorithm
    # and the client's delayed ACK hold every keep-alive answer back by about 40 ms.
    disable_nagle_algorithm = True

    def _dispatch(self) -> None:
        self.server.fake_server.handle(self)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the fake must not print requests (they carry the API key)."""


class _HTTPServer(ThreadingHTTPServer):
    """Keeps its open connections, so that stopping can close those a client holds open."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], fake_server: FakeServer) -> None:
        self.fake_server = fake_server
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (timeout, test ended) is normal here: stay quiet."""
        error = sys.exc_info()[1]
        if not isinstance(error, (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)

    def close_open_connections(self) -> None:
        with self.sockets_lock:
            sockets = list(self.open_sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class FakeServer:
    """Serves ``respond(request)`` over HTTP on ``host:port`` (port 0: a free one).

    Every request is recorded in :attr:`requests` before anything else. A matching armed
    fault hits before ``respond`` (so before authentication, like a proxy in front of Iron).
    ``on_request`` is called with each record once it is answered or dropped.
    """

    def __init__(
        self,
        respond: Callable[[RecordedRequest], Answer],
        *,
        faults: FaultInjector,
        options: FakeOptions,
        host: str = "127.0.0.1",
        port: int = 0,
        on_request: Callable[[RecordedRequest], None] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.requests: list[RecordedRequest] = []
        self._respond = respond
        self._faults = faults
        self._options = options
        self._on_request = on_request
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._httpd is not None

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("FakeIron is not started")
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        if self._httpd is not None:
            return
        self._stopping.clear()
        self._httpd = _HTTPServer((self.host, self.port), self)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"FakeIron:{self.port}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving, wake any delayed answer and close the connections clients hold."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.close_open_connections()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._thread = None

    def requests_to(self, method: str | None, path_regex: str) -> list[RecordedRequest]:
        with self._lock:
            return [
                r
                for r in self.requests
                if (method is None or r.method == method.upper()) and re.search(path_regex, r.path)
            ]

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        record = self._serve(handler)
        if self._on_request is not None:
            self._on_request(record)

    def _serve(self, handler: BaseHTTPRequestHandler) -> RecordedRequest:
        record = _record(handler)
        with self._lock:
            self.requests.append(record)
        fault = record.fault = self._faults.take(record.method, record.path)
        if fault is not None:
            hold(fault, self._stopping)
            if fault.drop == "before":
                _drop(handler)
                return record
            if fault.drop is None and fault.status is not None:
                _send(handler, record, fault_answer(fault, record.path, self._options.error_format))
                return record
        answer = self._respond(record)
        if fault is not None and fault.drop == "after":
            _drop(handler)
            return record
        _send(handler, record, answer)
        return record


def _record(handler: BaseHTTPRequestHandler) -> RecordedRequest:
    length = int(handler.headers.get("Content-Length") or 0)
    body = handler.rfile.read(length) if length > 0 else b""
    split = urlsplit(handler.path)
    try:
        decoded: Any = json.loads(body) if body else None
    except ValueError:
        decoded = None
    return RecordedRequest(
        method=handler.command,
        path=split.path,
        query=parse_qs(split.query, keep_blank_values=True),
        headers=CaseInsensitiveDict(dict(handler.headers.items())),
        body=body,
        json=decoded,
    )


def _send(handler: BaseHTTPRequestHandler, record: RecordedRequest, answer: Answer) -> None:
    record.status = answer.status
    handler.send_response(answer.status)
    if answer.content_type:
        handler.send_header("Content-Type", answer.content_type)
    handler.send_header("Content-Length", str(len(answer.body)))
    for name, value in answer.headers.items():
        handler.send_header(name, value)
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(answer.body)


def _drop(handler: BaseHTTPRequestHandler) -> None:
    handler.close_connection = True
    with contextlib.suppress(OSError):
        handler.connection.shutdown(socket.SHUT_RDWR)
