"""Fixtures of the client tests: the network mocked with ``responses``, a scripted server
and a forwarding proxy on 127.0.0.1, urllib3's sleeps recorded, a self-signed certificate."""

from __future__ import annotations

import http.client
import shutil
import subprocess
import time
import types
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import responses
import urllib3.util.retry
from responses.registries import OrderedRegistry

from django_iron_kyc.validators import is_loopback_host
from tests.client.support import LoopbackProxy, RecordingHandler, ScriptedIron, reply, serving


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(registry=OrderedRegistry) as rsps:
        yield rsps


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
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """urllib3's sleeps between retries, recorded instead of slept."""
    recorded: list[float] = []
    fake_time = types.SimpleNamespace(sleep=recorded.append, time=time.time)
    monkeypatch.setattr(urllib3.util.retry, "time", fake_time)
    return recorded


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


@pytest.fixture
def self_signed_certificate(tmp_path: Path) -> tuple[str, str]:
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
