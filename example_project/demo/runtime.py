"""What the demo and the exploring server share: a fake Iron, a database, a web server.

Everything listens on 127.0.0.1 only; nothing here reaches beyond loopback.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from celery import current_app
from django.conf import settings
from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
from django.core.wsgi import get_wsgi_application
from django.db import DEFAULT_DB_ALIAS, connections
from django.urls import reverse

from django_iron_kyc.conf import iron_settings
from django_iron_kyc.testing import FakeIron

SQLITE = "django.db.backends.sqlite3"


def use_sqlite_file(path: Path) -> None:
    """Point the default database at the SQLite file ``path``, whatever the settings say.

    Done the way Django's test runner points a connection at its test database: the
    settings dict every connection of the alias is built from is changed in place, and
    the connection opened so far is dropped. Call it before any other thread connects.
    """
    connections.close_all()
    config = connections.settings[DEFAULT_DB_ALIAS]
    config.clear()
    config.update({"ENGINE": SQLITE, "NAME": str(path), "OPTIONS": dict(settings.SQLITE_OPTIONS)})
    connections.configure_settings(connections.settings)  # back-fill Django's defaults
    with contextlib.suppress(AttributeError):  # AttributeError: not connected in this thread
        del connections[DEFAULT_DB_ALIAS]


def run_tasks_in_process() -> None:
    """Run Celery tasks eagerly in this process, whatever ``CELERY_BROKER_URL`` says."""
    current_app.conf.task_always_eager = True
    current_app.conf.task_eager_propagates = True


@contextmanager
def pointed_at(fake: FakeIron) -> Iterator[None]:
    """The ``IRON_KYC_*`` settings point at ``fake`` (sandbox actions on: it is loopback).

    Set on the settings object itself, so every thread sees them and
    ``settings.SETTINGS_MODULE`` stays what it is; ``iron_settings.reload()`` makes
    django-iron-kyc read them again (it keeps what it read until a setting changes).
    """
    values = {**fake.django_settings(), "IRON_KYC_SANDBOX_ACTIONS": None}
    missing = object()
    saved = {name: getattr(settings, name, missing) for name in values}
    for name, value in values.items():
        setattr(settings, name, value)
    iron_settings.reload()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is missing:
                delattr(settings, name)
            else:
                setattr(settings, name, value)
        iron_settings.reload()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """The demo prints what matters itself."""


class WebServer:
    """This project served by Django's threaded WSGI server on 127.0.0.1, in a thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.httpd = ThreadedWSGIServer((host, port), _QuietHandler, allow_reuse_address=False)
        self.httpd.set_app(get_wsgi_application())
        self.host = host
        self.port: int = self.httpd.server_address[1]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"web:{self.port}",
            daemon=True,
        )

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def webhook_url(self) -> str:
        return self.base_url + reverse("iron_kyc:webhook")

    def start(self) -> WebServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (for servers that cannot take port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
