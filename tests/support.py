"""Helpers shared by the test modules: paths at the fake Iron, signed webhook deliveries,
the thread race runner, a signal waiter and the checkout's root.

Fixtures live in the conftest modules; this module only holds plain functions, classes and
constants, so any test module may import it (no test module imports another).
"""

from __future__ import annotations

import base64
import functools
import os
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connections
from django.test import Client
from django.urls import reverse

from django_iron_kyc import signing
from django_iron_kyc.models import Customer, Identification
from django_iron_kyc.testing import (
    FakeIron,
    RecordedRequest,
    build_event,
    encode_event,
    sign_webhook,
)

# --- the checkout ---------------------------------------------------------------------------

# The checkout under test: a subprocess started elsewhere would import the installed package.
ROOT = Path(__file__).resolve().parents[1]


# Iron's documented payloads, each with its source (tests/fixtures/iron/*.json).
IRON_FIXTURES = ROOT / "tests" / "fixtures" / "iron"


def checkout_first(env: dict[str, str]) -> dict[str, str]:
    """``env`` with this checkout first on ``PYTHONPATH``."""
    return {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))}


# --- requests the fake Iron records (for ``fake.requests_to(method, path)``) ----------------

CUSTOMERS_PATH = r"^/api/customers$"
CUSTOMER_PATH = r"^/api/customers/[^/]+$"
CREATE_PATH = r"^/api/customers/[^/]+/identifications/v2$"
LIST_PATH = r"^/api/customers/[^/]+/identifications$"
SANDBOX_PATH = r"^/api/sandbox/identification/"

# Ahead of the real clock, for the tests that move time (time-machine) from here: the fake
# Iron's clock never goes back, even under time-machine.
START = (datetime.now(dt_timezone.utc) + timedelta(days=2)).replace(microsecond=0)


def creations(fake: FakeIron) -> list[RecordedRequest]:
    """The requests to create an identification that ``fake`` received."""
    return fake.requests_to("POST", CREATE_PATH)


def intent(customer: Customer, **fields: Any) -> Identification:
    """An identification recorded here and not sent to Iron yet."""
    return Identification.objects.create(customer=customer, **fields)


# --- signed webhook deliveries ----------------------------------------------------------------

SECRET: str = settings.IRON_KYC_WEBHOOK_SECRET
OLD_SECRET = "old-secret-rotated-out"
NEW_SECRET = "new-secret-rotated-in"
WHSEC_RAW = b"\x01raw-key-bytes\xfe"
WHSEC_SECRET = "whsec_" + base64.b64encode(WHSEC_RAW).decode()
BROKEN_SECRET = "whsec_%%%not-base64"
# Everything that must never reach a log line (the ``no_secrets_in_logs`` fixture).
NEVER_LOGGED = [
    SECRET,
    OLD_SECRET,
    NEW_SECRET,
    WHSEC_SECRET,
    BROKEN_SECRET,
    settings.IRON_KYC_API_KEY,
]
# The signatures and bodies sent by the current test (``signed_headers`` adds to it; the
# ``no_secrets_in_logs`` fixture empties it first and looks for each in the logs after).
SENT: list[str] = []

# Iron's state of the test objects dates from before any event the tests send.
LONG_AGO = datetime(2025, 1, 1, tzinfo=dt_timezone.utc)
# When the webhook tests' events happen (time-machine moves the clock there).
NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt_timezone.utc)


def webhook_url() -> str:
    return reverse("iron_kyc:webhook")


def signed_headers(
    body: bytes,
    *,
    secret: str | bytes = SECRET,
    timestamp: int | None = None,
    webhook_id: str | None = None,
) -> dict[str, str]:
    """Iron's headers for ``body``; the signature and a long body join :data:`SENT`."""
    headers = sign_webhook(body, secret, timestamp=timestamp, webhook_id=webhook_id)
    SENT.append(headers[signing.SIGNATURE_HEADER].removeprefix("v1="))
    if len(body) > 40:
        SENT.append(body.decode("utf-8", errors="replace"))
    return headers


def post(
    client: Client, body: bytes, headers: dict[str, str], *, url: str | None = None, **extra: Any
) -> Any:
    """POST ``body`` with ``headers`` to the app's webhook URL (or ``url``); ``extra`` goes to
    the test client (``REMOTE_ADDR=...``, ``CONTENT_LENGTH=...``)."""
    return client.post(
        url or webhook_url(), data=body, content_type="application/json", headers=headers, **extra
    )


def as_body(event: dict[str, Any] | bytes) -> bytes:
    return event if isinstance(event, bytes) else encode_event(event)


def identification_event(
    identification: Identification,
    status: str = "Approved",
    *,
    timestamp: datetime | str | None = None,
    shape: str = "tagged",
) -> dict[str, Any]:
    """An ``identification_status`` event about ``identification`` as Iron builds it."""
    return build_event(
        "identification_status",
        identification.customer.iron_id,  # type: ignore[arg-type]
        identification.iron_id,  # type: ignore[arg-type]
        status,
        timestamp=timestamp,
        shape=shape,
    )


# --- races ------------------------------------------------------------------------------------

JOIN_TIMEOUT = 60.0


def run_together(*calls: Callable[[], Any], return_exceptions: bool = False) -> list[Any]:
    """Call each of ``calls`` from its own thread and database connection, all released at
    once by a barrier; return what each returned, in order.

    An exception fails the test, unless ``return_exceptions``: then it takes the place of
    that call's result. Each thread closes its connections when its call ends.
    """
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(index: int, call: Callable[[], Any]) -> None:
        try:
            barrier.wait(timeout=JOIN_TIMEOUT)
            results[index] = call()
        except BaseException as exc:
            results[index] = exc
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [
        threading.Thread(target=run, args=(i, c), name=f"race-{i}") for i, c in enumerate(calls)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=JOIN_TIMEOUT)
    hung = [thread.name for thread in threads if thread.is_alive()]
    assert not hung, f"{hung} hung"
    if not return_exceptions:
        assert not errors, errors
    return results


def post_together(requests: list[tuple[bytes, dict[str, str]]]) -> list[Any]:
    """POST every (body, headers) to the webhook from its own thread and connection, all
    released at once."""
    return run_together(
        *(
            functools.partial(post, Client(enforce_csrf_checks=True), body, headers)
            for body, headers in requests
        )
    )


# --- waiting for another thread -------------------------------------------------------------

WAIT = 30.0  # seconds; a worker normally answers in well under one


class Waiter:
    """An event set when ``signal`` is sent with matching kwargs (from any thread)."""

    def __init__(self, signal: Any, **match: Any) -> None:
        self.event = threading.Event()
        self.calls: list[dict[str, Any]] = []
        self.signal = signal
        self.match = match
        signal.connect(self, weak=False, dispatch_uid=f"waiter-{id(self)}")

    def __call__(self, **kwargs: Any) -> None:
        if all(kwargs.get(k) == v for k, v in self.match.items()):
            self.calls.append(kwargs)
            self.event.set()

    def wait(self) -> bool:
        try:
            return self.event.wait(WAIT)
        finally:
            self.signal.disconnect(dispatch_uid=f"waiter-{id(self)}")
